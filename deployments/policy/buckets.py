"""Sticky sampling buckets for an item key.

Each item is bucketed once, from a hash salted by its use case, into three independent buckets in
[0, BUCKETS). The ramp compares ``ramp`` with ``traffic_percent``; audits and double reviews
compare their own bucket with their rate. Because buckets never change, raising the ramp only
adds items (an item automated at 5% stays automated at 25%) and a replay samples the same items.
"""

import hashlib
from dataclasses import dataclass

BUCKETS = 10_000


@dataclass(frozen=True, slots=True)
class Buckets:
    ramp: int
    audit: int
    double_review: int

    def __post_init__(self) -> None:
        for name in ("ramp", "audit", "double_review"):
            value = getattr(self, name)
            if not 0 <= value < BUCKETS:
                raise ValueError(f"{name} bucket {value} outside [0, {BUCKETS})")


def item_buckets(*, salt: str, key: str) -> Buckets:
    digest = hashlib.blake2b(f"{salt}\x00{key}".encode(), digest_size=24).digest()
    ramp, audit, double_review = (
        int.from_bytes(digest[i : i + 8], "big") % BUCKETS for i in (0, 8, 16)
    )
    return Buckets(ramp=ramp, audit=audit, double_review=double_review)


def rate_to_buckets(rate: float) -> int:
    """How many of the BUCKETS buckets a rate in [0, 1] selects (exact at the two ends)."""
    return round(rate * BUCKETS)
