"""A webhook receiver for tests: a local HTTP server that records what it is sent."""

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    status: int


@dataclass
class Receiver:
    url: str
    received: list[Received] = field(default_factory=list)
    fail_first: int = 0  # answer 500 to this many requests, then 204
    answer: int = 204
    location: str | None = None

    def ok(self) -> list[Received]:
        return [r for r in self.received if 200 <= r.status < 300]


def start_receiver(host: str = "127.0.0.1"):
    """(receiver, stop): a server on ``host`` at a free port."""
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with lock:
                failing = len(receiver.received) < receiver.fail_first
                status = 500 if failing else receiver.answer
                receiver.received.append(
                    Received(headers=dict(self.headers.items()), body=body, status=status)
                )
            self.send_response(status)
            if receiver.location:
                self.send_header("Location", receiver.location)
            self.send_header("Content-Length", "0")
            self.end_headers()

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
