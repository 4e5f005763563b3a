"""The keyed hash standing in for PII values."""

import hashlib
import hmac

from hypothesis import given
from hypothesis import strategies as st

from reviewapp.datasets.pii import batches_hashed, key_fingerprint, pii_hash, use_case_key


@given(value=st.text(), slug=st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True))
def test_the_hash_is_hmac_sha256_under_the_use_cases_key(value, slug):
    key = use_case_key(slug=slug, secret="s3cret")
    want = hmac.new(key, value.encode(), hashlib.sha256).hexdigest()
    assert pii_hash(key, value) == want
    assert len(want) == 64


def test_keys_differ_by_use_case_and_by_secret():
    a, b = use_case_key(slug="a", secret="x"), use_case_key(slug="b", secret="x")
    assert a != b != use_case_key(slug="b", secret="y")
    assert pii_hash(a, "Ada") != pii_hash(b, "Ada")
    assert key_fingerprint(a) != key_fingerprint(b) and len(key_fingerprint(a)) == 16


def test_only_the_named_positions_are_hashed_and_missing_stays_missing():
    key = use_case_key(slug="a", secret="x")
    batches = [[("id-1", "Ada", 3.5), ("id-2", None, 1.0)], [("id-3", 42, 0.0)]]
    out = list(batches_hashed(iter(batches), positions=[1], key=key))
    assert out[0][0] == ("id-1", pii_hash(key, "Ada"), 3.5)
    assert out[0][1] == ("id-2", None, 1.0)
    assert out[1][0][1] == pii_hash(key, "42")
