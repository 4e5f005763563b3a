"""Rate limits kept in Django's cache (shared across processes when ``CACHE_URL`` names one).

Both limits count in fixed windows with one atomic ``incr`` per request, so a limit of tens of
thousands a minute costs the same as a limit of five (DRF's built-in throttles keep a list of
every request's time in the window instead).
"""

import time

from django.conf import settings
from django.core.cache import cache
from rest_framework.throttling import BaseThrottle


def _window_count(key: str, *, window_seconds: int) -> tuple[int, float]:
    """Count one more hit on ``key`` in the current window; return the count and the seconds
    until the window closes."""
    now = time.time()
    window_start = int(now // window_seconds) * window_seconds
    bucket = f"{key}:{window_start}"
    cache.add(bucket, 0, timeout=window_seconds + 1)
    try:
        count = cache.incr(bucket)
    except ValueError:  # evicted between add and incr
        cache.set(bucket, 1, timeout=window_seconds + 1)
        count = 1
    return count, window_start + window_seconds - now


def parse_rate(rate: str) -> tuple[int, int]:
    """``"60000/minute"`` -> (60000, 60); the period is second, minute, hour or day."""
    count, _, period = rate.partition("/")
    seconds = {"s": 1, "m": 60, "h": 3600, "d": 86400}[period.strip()[:1].lower()]
    return int(count), seconds


class IngestRateThrottle(BaseThrottle):
    """At most ``INGEST_RATE_LIMIT`` ingest requests per caller (token or session user)."""

    def allow_request(self, request, view) -> bool:
        limit, window = parse_rate(settings.INGEST_RATE_LIMIT)
        ident = request.user.pk if request.user.is_authenticated else self.get_ident(request)
        count, remaining = _window_count(f"throttle:ingest:{ident}", window_seconds=window)
        self._wait = max(1.0, remaining)
        return count <= limit

    def wait(self) -> float:
        return self._wait


def _login_key(username: str, ip: str) -> str:
    return f"throttle:login:{username.strip().lower()}:{ip}"


def login_failures_exceeded(*, username: str, ip: str) -> bool:
    """Whether this username, from this address, has used up its failed sign-ins."""
    return (cache.get(_login_key(username, ip)) or 0) >= settings.LOGIN_FAILURE_LIMIT


def login_failure_record(*, username: str, ip: str) -> None:
    """Count a failed sign-in; the count expires a window after the first failure."""
    key = _login_key(username, ip)
    if not cache.add(key, 1, timeout=settings.LOGIN_FAILURE_WINDOW_SECONDS):
        try:
            cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.add(key, 1, timeout=settings.LOGIN_FAILURE_WINDOW_SECONDS)


def login_failures_clear(*, username: str, ip: str) -> None:
    cache.delete(_login_key(username, ip))
