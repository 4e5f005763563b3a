"""Safe targets for outgoing requests: which URLs may be called (pure address rules + DNS).

A URL is checked on the address it resolves to: ``http``/``https`` only; an address that is
loopback, private, link-local, multicast, reserved or otherwise not globally routable is refused
unless the URL's host is listed in ``WEBHOOK_ALLOWED_HOSTS``. Used when a webhook endpoint or a
policy's guardrail ``webhook_url`` is set, and again by the sender before every request
(``reviewapp.webhooks.targets``), which connects to the very address checked.
"""

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

URL_MAX_LENGTH = 2000


class TargetRefused(Exception):
    """The URL may not be called; the message says why."""


@dataclass(frozen=True, slots=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str
    address: str  # the checked IP the request goes to


def _allowed_host(host: str) -> bool:
    return host in {h.strip().lower() for h in settings.WEBHOOK_ALLOWED_HOSTS if h.strip()}


# The most telling name first: ``ipaddress`` counts 0.0.0.0, 240.0.0.1 and fe80::1 as private
# too.
REFUSED_KINDS = ("unspecified", "loopback", "multicast", "link_local", "reserved", "private")


def address_refusal(address: str) -> str | None:
    """Why this IP may not be called, or None when it is a public unicast address."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if ip.version == 6:
        # An IPv6 address that carries an IPv4 one is judged as that one: a mapped address
        # (::ffff:a.b.c.d) is connected to as a.b.c.d, and a 6to4 one (2002:a.b.c.d::/48) is
        # sent by a 6to4 tunnel to a.b.c.d.
        ip = ip.ipv4_mapped or ip.sixtofour or ip
    for flag in REFUSED_KINDS:
        if getattr(ip, f"is_{flag}"):
            kind = flag.replace("_", "-")
            return f"{address} is {'an' if kind[0] in 'aeiou' else 'a'} {kind} address"
    if not ip.is_global:
        return f"{address} is not a public address"
    return None


def _resolve(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise TargetRefused(f"{host} does not resolve ({error})") from None
    return list(dict.fromkeys(info[4][0] for info in infos))


def target_check(url: str, *, unresolved_ok: bool = False) -> Target | None:
    """The URL's target, resolved and checked now; TargetRefused says why it may not be called.

    With ``unresolved_ok`` a name that does not resolve now is let through (None): checked
    again when it is called."""
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
    try:
        addresses = _resolve(host, port)
    except TargetRefused:
        if unresolved_ok:
            return None
        raise
    if not _allowed_host(host):
        # Every address the name resolves to must be public, or a second lookup (ours or a
        # proxy's) could land on the one that is not.
        for address in addresses:
            refusal = address_refusal(address)
            if refusal:
                raise TargetRefused(f"{host}: {refusal} (not in WEBHOOK_ALLOWED_HOSTS)")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(scheme=parts.scheme, host=host, port=port, path=path, address=addresses[0])
