"""Safe webhook targets: which URLs may be called, and calling them without being steered.

A URL is checked when it is registered and again at every delivery, on the address it resolves
to *then*: ``http``/``https`` only; an address that is loopback, private, link-local, multicast,
reserved or otherwise not globally routable is refused unless the URL's host is listed in
``WEBHOOK_ALLOWED_HOSTS``. The request then goes to the very address that was checked (the
connection is opened to the IP, with the name kept for the Host header and TLS), so a DNS answer
that changes between the check and the connection (rebinding) cannot point it elsewhere.
Redirects are not followed; connect and read time and the response size are bounded.
"""

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


def target_post(*, url: str, body: bytes, headers: dict[str, str], clock=time.monotonic):
    """POST ``body`` to ``url`` if it is a safe target now. Never raises for the receiver's
    faults: a refused target, a timeout or a refused connection come back as ``error``."""
    started = clock()
    try:
        target = target_check(url)
    except TargetRefused as refused:
        return Response(status=None, latency_ms=0, error=f"refused: {refused}")
    timeout = urllib3.Timeout(
        connect=settings.WEBHOOK_CONNECT_TIMEOUT_SECONDS, read=settings.WEBHOOK_READ_TIMEOUT_SECONDS
    )
    common = {"port": target.port, "timeout": timeout, "retries": False, "maxsize": 1}
    if target.scheme == "https":
        pool = urllib3.HTTPSConnectionPool(
            target.address,
            server_hostname=target.host,
            assert_hostname=target.host,
            cert_reqs="CERT_REQUIRED",
            ca_certs=certifi.where(),
            **common,
        )
    else:
        pool = urllib3.HTTPConnectionPool(target.address, **common)
    default_port = 443 if target.scheme == "https" else 80
    host_header = target.host if target.port == default_port else f"{target.host}:{target.port}"
    try:
        response = pool.urlopen(
            "POST",
            target.path,
            body=body,
            headers={**headers, "Host": host_header, "Content-Type": "application/json"},
            redirect=False,
            preload_content=False,
            assert_same_host=False,
        )
        try:
            _read_capped(response, settings.WEBHOOK_MAX_RESPONSE_BYTES)
        finally:
            response.release_conn()
        status = response.status
        error = "" if 200 <= status < 300 else f"answered {status}"
        if 300 <= status < 400:
            error = f"answered {status}; redirects are not followed"
        return Response(status=status, latency_ms=_ms(clock() - started), error=error)
    except (urllib3.exceptions.HTTPError, OSError) as failure:
        error = f"{type(failure).__name__}: {failure}"[:500]
        return Response(status=None, latency_ms=_ms(clock() - started), error=error)
    finally:
        pool.close()


def _read_capped(response, limit: int) -> None:
    """Read (and drop) at most ``limit`` bytes of the answer; the rest is not waited for."""
    read = 0
    for chunk in response.stream(8192):
        read += len(chunk)
        if read >= limit:
            break


def _ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))
