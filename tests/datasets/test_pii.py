"""The keys of the hash standing in for PII values (the database computes the hash itself;
tests/datasets/test_exports.py checks it against Python's hmac on every database)."""

import hashlib
import hmac

from hypothesis import given
from hypothesis import strategies as st

from reviewapp.datasets.pii import key_fingerprint, use_case_key
from reviewapp.datasets.sql import hmac_hex


@given(value=st.text(), slug=st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True))
def test_the_hash_is_hmac_sha256_under_the_use_cases_key(value, slug):
    key = use_case_key(slug=slug, secret="s3cret")
    want = hmac.new(key, value.encode(), hashlib.sha256).hexdigest()
    assert hmac_hex(key, value) == want


def test_keys_differ_by_use_case_and_by_secret():
    a, b = use_case_key(slug="a", secret="x"), use_case_key(slug="b", secret="x")
    assert a != b != use_case_key(slug="b", secret="y")
    assert hmac_hex(a, "Ada") != hmac_hex(b, "Ada")
    assert key_fingerprint(a) != key_fingerprint(b) and len(key_fingerprint(a)) == 16


def test_scalars_hash_by_their_json_text_and_missing_stays_missing():
    key = use_case_key(slug="a", secret="x")
    assert hmac_hex(key, None) is None
    assert hmac_hex(key, 42) == hmac_hex(key, "42")
    assert hmac_hex(key, True) == hmac_hex(key, "true")
