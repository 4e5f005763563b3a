"""Safe webhook targets: which URLs may be called, and calling them without being steered.

A URL is checked when it is registered and again at every delivery, on the address it resolves
to *then*: ``http``/``https`` only; an address that is loopback, private, link-local, multicast,
reserved or otherwise not globally routable is refused unless the URL's host is listed in
``WEBHOOK_ALLOWED_HOSTS``. The request then goes to the very address that was checked (the
connection is opened to the IP, with the name kept for the Host header and TLS), so a DNS answer
that changes between the check and the connection (rebinding) cannot point it elsewhere.
Redirects are not followed; connect and read time, the whole exchange's time and the response
size are bounded.
"""

import contextlib
import heapq
import itertools
import socket
import threading
import time
from dataclasses import dataclass

import certifi
import urllib3
from django.conf import settings

from reviewapp.core.safe_targets import (  # noqa: F401 (the webhooks' names for them)
    Target,
    TargetRefused,
    address_refusal,
    target_check,
)


@dataclass(frozen=True, slots=True)
class Response:
    status: int | None
    latency_ms: int
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class _Deadlines:
    """Cuts exchanges that outlive their deadline: a receiver that answers one byte at a time,
    each within the read timeout, would otherwise hold a sender for as long as it likes. One
    thread per process keeps every armed deadline; cutting means shutting the connection's
    socket, so the sender's blocked read fails at once, wherever it was in the exchange."""

    def __init__(self):
        self._cv = threading.Condition()
        self._heap: list[tuple[float, int, _Exchange]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def arm(self, exchange: "_Exchange") -> None:
        with self._cv:
            heapq.heappush(self._heap, (exchange.deadline, next(self._order), exchange))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="webhook-deadlines", daemon=True
                )
                self._thread.start()
            self._cv.notify()

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._heap:
                    self._cv.wait()
                deadline, _, exchange = self._heap[0]
                wait = deadline - time.monotonic()
                if wait > 0 and not exchange.finished:
                    self._cv.wait(wait)
                    continue
                heapq.heappop(self._heap)
            exchange.cut()


class _Exchange:
    """One post in flight: its deadline and, once urllib3 picked it, its connection."""

    current = threading.local()

    def __init__(self, deadline: float):
        self.deadline = deadline
        self.connection = None
        self.finished = False
        self.expired = False
        self._lock = threading.Lock()

    def finish(self) -> None:
        with self._lock:  # after this, its connection may serve another post: never cut it
            self.finished = True

    def cut(self) -> None:
        with self._lock:
            if self.finished:
                return
            self.expired = True
            sock = getattr(self.connection, "sock", None)
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


class _JoinsItsExchange:
    """A connection that tells the post in flight on this thread which connection it got."""

    def request(self, *args, **kwargs):
        exchange = getattr(_Exchange.current, "value", None)
        if exchange is not None:
            exchange.connection = self
            if exchange.expired:  # the time ran out before it had a connection: send nothing
                raise urllib3.exceptions.TimeoutError("the whole attempt's time ran out")
        return super().request(*args, **kwargs)


class _HTTPConnection(_JoinsItsExchange, urllib3.connection.HTTPConnection):
    pass


class _HTTPSConnection(_JoinsItsExchange, urllib3.connection.HTTPSConnection):
    pass


class _HTTPConnectionPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSConnectionPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


_deadlines = _Deadlines()
_pools_lock = threading.Lock()
_pools: urllib3.PoolManager | None = None


def _pool_manager() -> urllib3.PoolManager:
    """The process's connections to receivers, kept alive between deliveries and batches: one
    pool per checked address (and name, for TLS), the least recently used dropped past 100,
    up to ``WEBHOOK_DELIVERY_CONCURRENCY`` idle connections each. Made in the process that
    uses it (after a worker forks), never shared across processes."""
    global _pools
    with _pools_lock:
        if _pools is None:
            _pools = urllib3.PoolManager(
                num_pools=100,
                maxsize=max(1, settings.WEBHOOK_DELIVERY_CONCURRENCY),
                block=False,
                retries=False,
            )
            _pools.pool_classes_by_scheme = {
                "http": _HTTPConnectionPool,
                "https": _HTTPSConnectionPool,
            }
        return _pools


class TargetSession:
    """Posts to safe targets for the length of one batch of deliveries.

    Each URL is checked (resolved, its address judged) at its first post in the session, so at
    delivery time, never at registration only; the request then goes to that checked address
    over a connection kept alive by the process (``_pool_manager``), instead of a new TCP (and
    TLS) handshake per event. Safe to share between the batch's sender threads.
    """

    def __init__(self, *, clock=time.monotonic):
        self._clock = clock
        self._lock = threading.Lock()
        self._targets: dict[str, Target | TargetRefused] = {}

    def _target(self, url: str) -> Target:
        with self._lock:
            if url not in self._targets:
                try:
                    self._targets[url] = target_check(url)
                except TargetRefused as refused:
                    self._targets[url] = refused
            found = self._targets[url]
        if isinstance(found, TargetRefused):
            raise found
        return found

    @staticmethod
    def _pool(target: Target) -> urllib3.HTTPConnectionPool:
        # Only values that compare equal go in the pool's key (a Timeout does not: it is given
        # per request), or every post would get a pool and a connection of its own.
        kwargs: dict = {}
        if target.scheme == "https":
            kwargs.update(
                server_hostname=target.host,
                assert_hostname=target.host,
                cert_reqs="CERT_REQUIRED",
                ca_certs=certifi.where(),
            )
        return _pool_manager().connection_from_host(
            target.address, port=target.port, scheme=target.scheme, pool_kwargs=kwargs
        )

    def post(self, *, url: str, body: bytes, headers: dict[str, str]) -> Response:
        """POST ``body`` to ``url`` if it is a safe target. Never raises for the receiver's
        faults: a refused target, a timeout or a refused connection come back as ``error``."""
        started = self._clock()
        try:
            target = self._target(url)
        except TargetRefused as refused:
            return Response(status=None, latency_ms=0, error=f"refused: {refused}")
        default_port = 443 if target.scheme == "https" else 80
        host_header = target.host if target.port == default_port else f"{target.host}:{target.port}"
        exchange = _Exchange(time.monotonic() + settings.WEBHOOK_TOTAL_TIMEOUT_SECONDS)
        _Exchange.current.value = exchange
        _deadlines.arm(exchange)
        try:
            # urllib3 closes a connection that fails mid-request instead of pooling it.
            response = self._pool(target).urlopen(
                "POST",
                target.path,
                body=body,
                headers={**headers, "Host": host_header, "Content-Type": "application/json"},
                redirect=False,
                preload_content=False,
                assert_same_host=False,
                timeout=urllib3.Timeout(
                    connect=settings.WEBHOOK_CONNECT_TIMEOUT_SECONDS,
                    read=settings.WEBHOOK_READ_TIMEOUT_SECONDS,
                ),
            )
            complete = False
            try:
                complete = _read_capped(response, settings.WEBHOOK_MAX_RESPONSE_BYTES)
            finally:
                if not complete:  # an answer not read to its end leaves the connection unusable
                    response.close()
                response.release_conn()
            status = response.status
            error = "" if 200 <= status < 300 else f"answered {status}"
            if 300 <= status < 400:
                error = f"answered {status}; redirects are not followed"
            return Response(status=status, latency_ms=_ms(self._clock() - started), error=error)
        except (urllib3.exceptions.HTTPError, OSError) as failure:
            error = f"{type(failure).__name__}: {failure}"[:500]
            if exchange.expired:
                error = (
                    f"cut after {settings.WEBHOOK_TOTAL_TIMEOUT_SECONDS:g} s "
                    "(WEBHOOK_TOTAL_TIMEOUT_SECONDS): the receiver answered too slowly"
                )
            return Response(status=None, latency_ms=_ms(self._clock() - started), error=error)
        finally:
            exchange.finish()
            _Exchange.current.value = None


def _read_capped(response, limit: int) -> bool:
    """Read (and drop) at most ``limit`` bytes of the answer; the rest is not waited for.
    True when the answer was read to its end."""
    read = 0
    for chunk in response.stream(8192):
        read += len(chunk)
        if read >= limit:
            return False
    return True


def _ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))
