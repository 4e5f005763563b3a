"""A server that hangs: it accepts connections and never answers (a Redis stopped with
SIGSTOP looks like this to its clients)."""

import socket
import threading


class HungServer:
    """Listens on a free port of 127.0.0.1, accepts and never answers; counts the
    connections made to it."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.accepted: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.listener.getsockname()[1]}/0"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                self.accepted.append(self.listener.accept()[0])
            except TimeoutError:
                continue

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        for sock in [self.listener, *self.accepted]:
            sock.close()
