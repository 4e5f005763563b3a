"""A receiver that answers a byte at a time, each byte within the read timeout, cannot hold a
sender past ``WEBHOOK_TOTAL_TIMEOUT_SECONDS``: the exchange is cut, and the attempt fails with
that reason (to be retried like any failure)."""

import socket
import threading

import pytest

from reviewapp.webhooks.targets import TargetSession
from tests.webhooks.receiver import start_receiver


class Dripper:
    """Reads a request, then answers one byte every ``pace`` seconds for a minute unless the
    sender hangs up; ``cut`` is set when it did."""

    def __init__(self, *, answer: bytes, pace: float = 0.05):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/hook"
        self.answer = answer
        self.pace = pace
        self.cut = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        conn, _ = self.sock.accept()
        with conn:
            conn.recv(65536)
            for _ in range(int(60 / self.pace)):
                try:
                    conn.sendall(self.answer[:1])
                except OSError:
                    self.cut.set()
                    return
                self.answer = self.answer[1:] or b"x"
                if self.cut.wait(self.pace):
                    return

    def close(self):
        self.cut.set()
        self.sock.close()


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 10_000, id="headers"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n", id="body"),
    ],
)
def test_a_dripping_receiver_is_cut_at_the_total_deadline(settings, answer):
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    settings.WEBHOOK_READ_TIMEOUT_SECONDS = 30  # each byte comes well within it
    settings.WEBHOOK_TOTAL_TIMEOUT_SECONDS = 0.5
    dripper = Dripper(answer=answer)
    try:
        response = TargetSession().post(url=dripper.url, body=b"{}", headers={})
        assert response.status is None and not response.ok
        assert response.error.startswith("cut after 0.5 s"), response.error
        assert dripper.cut.wait(10), "the receiver was still being read"
    finally:
        dripper.close()


def test_a_prompt_receiver_is_not_cut_by_an_earlier_deadline(settings):
    """A deadline left armed by a finished exchange never touches the connection it returned
    to the pool, which the next post reuses."""
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    settings.WEBHOOK_TOTAL_TIMEOUT_SECONDS = 0.2
    server, stop = start_receiver(keep_alive=True)
    try:
        session = TargetSession()
        first = session.post(url=server.url, body=b"{}", headers={})
        threading.Event().wait(0.4)  # the first exchange's deadline passes
        second = session.post(url=server.url, body=b"{}", headers={})
        assert first.ok and second.ok, (first, second)
        assert len({r.peer for r in server.received}) == 1
    finally:
        stop()
