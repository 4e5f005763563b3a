"""``settled``, the page sweeps' wait after each page (in place of a fixed 500 ms of network
quiet): it returns only once a request still in flight at load has been answered."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.conftest import requests_tracked, settled

pytestmark = pytest.mark.browser


# The page's fetch starts while the page is parsed; it does not hold back the load event.
PAGE = b"<!doctype html><p>page</p><script>fetch('/late')</script>"


class _HeldAnswers(ThreadingHTTPServer):
    """Serves ``PAGE`` at ``/page`` at once, and answers ``/late`` only once ``release`` is
    set."""

    daemon_threads = True

    def __init__(self):
        self.release = threading.Event()
        self.answered = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                body, kind = PAGE, "text/html"
                if self.path != "/page":
                    server.release.wait(5)
                    server.answered.set()
                    body, kind = b"late", "text/plain"
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/page"


@pytest.fixture
def page(browser):
    context = browser.new_context()
    page = context.new_page()
    requests_tracked(page)
    yield page
    context.close()


def test_a_request_in_flight_at_load_is_waited_for(page):
    held = _HeldAnswers()
    try:
        page.goto(held.url)
        assert not held.answered.is_set() and page.requests_in_flight >= 1
        threading.Timer(0.3, held.release.set).start()
        settled(page)
        assert held.answered.is_set()
        assert page.requests_in_flight == 0
    finally:
        held.release.set()
        held.shutdown()
        held.server_close()
