"""Keyed hashes that stand in for PII values in exports asked to keep rows joinable.

HMAC-SHA256 under a key derived per use case from ``EXPORT_HASH_KEY``: the same value gives
the same hash in every export of that use case (so exports join on it), nobody without the
server's key can compute or test a guess at it, and the use cases cannot be linked to each
other through it. Each manifest names the key by a fingerprint, so a reader can tell which
exports are joinable.
"""

import hashlib
import hmac
from collections.abc import Iterable, Iterator, Sequence

from django.conf import settings

ALGORITHM = "HMAC-SHA256"


def use_case_key(*, slug: str, secret: str | None = None) -> bytes:
    secret = settings.EXPORT_HASH_KEY if secret is None else secret
    return hmac.new(secret.encode(), f"export-pii:{slug}".encode(), hashlib.sha256).digest()


def key_fingerprint(key: bytes) -> str:
    return hmac.new(key, b"fingerprint", hashlib.sha256).hexdigest()[:16]


def pii_hash(key: bytes, value) -> str | None:
    """The hash of one value; text as itself, other values by their JSON-like text form."""
    if value is None:
        return None
    text = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def batches_hashed(
    batches: Iterable[list[tuple]], *, positions: Sequence[int], key: bytes
) -> Iterator[list[tuple]]:
    """The batches with the values at ``positions`` replaced by their hashes."""
    hashed = frozenset(positions)
    for batch in batches:
        yield [
            tuple(pii_hash(key, v) if i in hashed else v for i, v in enumerate(row))
            for row in batch
        ]
