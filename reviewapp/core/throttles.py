"""Rate limits kept in Django's cache (shared across processes when ``CACHE_URL`` names one).

Both limits count in fixed windows with one atomic ``incr`` per request, so a limit of tens of
thousands a minute costs the same as a limit of five (DRF's built-in throttles keep a list of
every request's time in the window instead).
"""

import contextlib
import functools
import logging
import time

from django.conf import settings
from django.core.cache import cache
from redis.exceptions import RedisError
from rest_framework.throttling import BaseThrottle

logger = logging.getLogger(__name__)


def _without_cache(default):
    """A limit whose cache (Redis) is down or hangs lets the request through, logged: while
    the cache is away the limits are not kept, and nothing else stops."""

    def decorate(function):
        @functools.wraps(function)
        def kept_or_default(*args, **kwargs):
            try:
                return function(*args, **kwargs)
            except RedisError:
                logger.warning("rate limit not kept: the cache is unavailable", exc_info=True)
                return default

        return kept_or_default

    return decorate


@_without_cache(default=None)
def _window_take(key: str, *, window_seconds: int, amount: int, limit: int) -> float | None:
    """Take ``amount`` from ``key``'s allowance of ``limit`` in the current window: None when
    taken, else the seconds until the window closes (a refusal takes nothing)."""
    now = time.time()
    window_start = int(now // window_seconds) * window_seconds
    bucket = f"{key}:{window_start}"
    cache.add(bucket, 0, timeout=window_seconds + 1)
    try:
        count = cache.incr(bucket, amount)
    except ValueError:  # evicted between add and incr
        cache.set(bucket, amount, timeout=window_seconds + 1)
        count = amount
    if count <= limit:
        return None
    with contextlib.suppress(ValueError):  # the window closed meanwhile
        cache.decr(bucket, amount)
    return window_start + window_seconds - now


def parse_rate(rate: str) -> tuple[int, int]:
    """``"60000/minute"`` -> (60000, 60); the period is second, minute, hour or day."""
    count, _, period = rate.partition("/")
    seconds = {"s": 1, "m": 60, "h": 3600, "d": 86400}[period.strip()[:1].lower()]
    return int(count), seconds


class IngestRateThrottle(BaseThrottle):
    """At most ``INGEST_RATE_LIMIT`` items per caller (token or session user) and window: one
    for a realtime item, the item count for a batch, so batches cannot go round the limit. A
    batch larger than what is left of the window is refused whole, taking nothing."""

    def cost(self, request) -> int:
        return 1

    def allow_request(self, request, view) -> bool:
        limit, window = parse_rate(settings.INGEST_RATE_LIMIT)
        ident = request.user.pk if request.user.is_authenticated else self.get_ident(request)
        remaining = _window_take(
            f"throttle:ingest:{ident}",
            window_seconds=window,
            amount=self.cost(request),
            limit=limit,
        )
        self._wait = max(1.0, remaining or 0.0)
        return remaining is None

    def wait(self) -> float:
        return self._wait


class IngestBatchRateThrottle(IngestRateThrottle):
    """A batch costs its number of items (a body that is not a list of them costs one: its
    own check then refuses it with a 400)."""

    def cost(self, request) -> int:
        items = request.data.get("items") if isinstance(request.data, dict) else None
        return max(1, len(items)) if isinstance(items, list) else 1


def _login_key(username: str, ip: str) -> str:
    return f"throttle:login:{username.strip().lower()}:{ip}"


@_without_cache(default=False)
def login_failures_exceeded(*, username: str, ip: str) -> bool:
    """Whether this username, from this address, has used up its failed sign-ins."""
    return (cache.get(_login_key(username, ip)) or 0) >= settings.LOGIN_FAILURE_LIMIT


@_without_cache(default=None)
def login_failure_record(*, username: str, ip: str) -> None:
    """Count a failed sign-in; the count expires a window after the first failure."""
    key = _login_key(username, ip)
    if not cache.add(key, 1, timeout=settings.LOGIN_FAILURE_WINDOW_SECONDS):
        try:
            cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.add(key, 1, timeout=settings.LOGIN_FAILURE_WINDOW_SECONDS)


@_without_cache(default=None)
def login_failures_clear(*, username: str, ip: str) -> None:
    cache.delete(_login_key(username, ip))
