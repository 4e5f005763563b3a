"""Keys for the hashes that stand in for PII values in exports asked to keep rows joinable.

The database computes the hashes (``datasets.sql.JsonHmac``). HMAC-SHA256 under a key derived
per use case from ``EXPORT_HASH_KEY``: the same value gives
the same hash in every export of that use case (so exports join on it), nobody without the
server's key can compute or test a guess at it, and the use cases cannot be linked to each
other through it. Each manifest names the key by a fingerprint, so a reader can tell which
exports are joinable.
"""

import hashlib
import hmac

from django.conf import settings

ALGORITHM = "HMAC-SHA256"


def use_case_key(*, slug: str, secret: str | None = None) -> bytes:
    secret = settings.EXPORT_HASH_KEY if secret is None else secret
    return hmac.new(secret.encode(), f"export-pii:{slug}".encode(), hashlib.sha256).digest()


def key_fingerprint(key: bytes) -> str:
    return hmac.new(key, b"fingerprint", hashlib.sha256).hexdigest()[:16]
