"""The address a request came from, trusting ``X-Forwarded-For`` only from configured proxies.

Behind a reverse proxy every request's ``REMOTE_ADDR`` is the proxy, so limits kept per address
(failed sign-ins) would lump every user together, and one attacker could lock everyone out.
But the header is written by whoever sends the request: trusted blindly, it lets an attacker
pick a fresh address for every guess. So the header is read only when the connection comes from
one of ``TRUSTED_PROXIES`` (addresses or networks), from the right, skipping the proxies' own
hops: the first address no trusted proxy wrote is the client.

Written with the standard ``ipaddress`` module: django-ipware matches trusted proxies by string
prefix, not by network, and its "best matched" address is not what a limit should key on.
"""

import ipaddress
from functools import lru_cache

from django.conf import settings


@lru_cache(maxsize=8)
def _networks(proxies: tuple[str, ...]) -> tuple:
    return tuple(ipaddress.ip_network(p, strict=False) for p in proxies)


def _trusted(address: str, networks) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def client_address(request) -> str:
    """The client's address: ``REMOTE_ADDR``, or when that is a trusted proxy, the nearest
    address in ``X-Forwarded-For`` that is not one."""
    remote = request.META.get("REMOTE_ADDR", "")
    networks = _networks(tuple(settings.TRUSTED_PROXIES))
    if not networks or not _trusted(remote, networks):
        return remote
    hops = [h.strip() for h in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    nearest = remote
    for hop in reversed([h for h in hops if h]):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return nearest  # a hop no proxy of ours wrote: stop at the last one we trust
        if not _trusted(hop, networks):
            return hop
        nearest = hop
    return nearest
