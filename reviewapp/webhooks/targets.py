"""Safe webhook targets: which URLs may be called, and calling them without being steered.

A URL is checked when it is registered and again at every delivery, on the address it resolves
to *then*: ``http``/``https`` only; an address that is loopback, private, link-local, multicast,
reserved or otherwise not globally routable is refused unless the URL's host is listed in
``WEBHOOK_ALLOWED_HOSTS``. The request then goes to the very address that was checked (the
connection is opened to the IP, with the name kept for the Host header and TLS), so a DNS answer
that changes between the check and the connection (rebinding) cannot point it elsewhere.
Redirects are not followed; connect and read time and the response size are bounded.
"""

import ipaddress
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import certifi
import urllib3
from django.conf import settings

from reviewapp.webhooks.models import URL_MAX_LENGTH


class TargetRefused(Exception):
    """The URL may not be called; the message says why."""


@dataclass(frozen=True, slots=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str
    address: str  # the checked IP the request goes to


@dataclass(frozen=True, slots=True)
class Response:
    status: int | None
    latency_ms: int
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def _allowed_host(host: str) -> bool:
    return host in {h.strip().lower() for h in settings.WEBHOOK_ALLOWED_HOSTS if h.strip()}


def address_refusal(address: str) -> str | None:
    """Why this IP may not be called, or None when it is a public unicast address."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for flag in ("loopback", "private", "link_local", "multicast", "reserved", "unspecified"):
        if getattr(ip, f"is_{flag}"):
            return f"{address} is a {flag.replace('_', '-')} address"
    if not ip.is_global:
        return f"{address} is not a public address"
    return None


def _resolve(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise TargetRefused(f"{host} does not resolve ({error})") from None
    return list(dict.fromkeys(info[4][0] for info in infos))


def target_check(url: str) -> Target:
    """The URL's target, resolved and checked now; TargetRefused says why it may not be called."""
    if not isinstance(url, str) or len(url) > URL_MAX_LENGTH:
        raise TargetRefused(f"at most {URL_MAX_LENGTH} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise TargetRefused(f"not a URL ({error})") from None
    if parts.scheme not in ("http", "https"):
        raise TargetRefused("only http and https URLs are called")
    host = (parts.hostname or "").lower()
    if not host:
        raise TargetRefused("the URL names no host")
    if parts.username or parts.password:
        raise TargetRefused("credentials in the URL are not sent; use the signing secret")
    port = port or (443 if parts.scheme == "https" else 80)
    addresses = _resolve(host, port)
    if not _allowed_host(host):
        # Every address the name resolves to must be public, or a second lookup (ours or a
        # proxy's) could land on the one that is not.
        for address in addresses:
            refusal = address_refusal(address)
            if refusal:
                raise TargetRefused(f"{host}: {refusal} (not in WEBHOOK_ALLOWED_HOSTS)")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(scheme=parts.scheme, host=host, port=port, path=path, address=addresses[0])


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
