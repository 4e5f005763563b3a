"""A webhook receiver for tests: a local HTTP server that records what it is sent."""

import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    status: int
    peer: tuple = ()  # the client's (address, port): one per connection


@dataclass
class Receiver:
    url: str
    received: list[Received] = field(default_factory=list)
    fail_first: int = 0  # answer 500 to this many requests, then 204
    answer: int = 204
    location: str | None = None
    answer_body: bytes = b""
    # Each request waits here for the others (a 503 when they do not come): proves requests
    # are in flight together, without reading a clock.
    gate: threading.Barrier | None = None

    def ok(self) -> list[Received]:
        return [r for r in self.received if 200 <= r.status < 300]


def start_receiver(host: str = "127.0.0.1", *, keep_alive: bool = False):
    """(receiver, stop): a server on ``host`` at a free port; with ``keep_alive`` it speaks
    HTTP/1.1 and keeps connections open between requests, as most receivers do."""
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1" if keep_alive else "HTTP/1.0"

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            together = True
            if receiver.gate is not None:
                try:
                    receiver.gate.wait()
                except threading.BrokenBarrierError:
                    together = False
            with lock:
                failing = len(receiver.received) < receiver.fail_first
                status = 500 if failing else receiver.answer if together else 503
                receiver.received.append(
                    Received(
                        headers=dict(self.headers.items()),
                        body=body,
                        status=status,
                        peer=self.client_address,
                    )
                )
            self.send_response(status)
            if receiver.location:
                self.send_header("Location", receiver.location)
            self.send_header("Content-Length", str(len(receiver.answer_body)))
            self.end_headers()
            self.wfile.write(receiver.answer_body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer((host, 0), Handler)
    receiver = Receiver(url=f"http://{host}:{server.server_address[1]}/hook")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def stop():
        server.shutdown()
        server.server_close()

    return receiver, stop


class Listener:
    """A socket on a loopback address that counts the connections made to it."""

    def __init__(self, host: str):
        self.sock = socket.socket()
        self.sock.bind((host, 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def stop(self):
        self.stopped.set()
        self.thread.join(2)
        self.sock.close()
