"""The hostile inputs that once reached a 500, sent to a real deployment (gunicorn, PostgreSQL,
Celery): each must be a 4xx naming what is wrong, with a bounded answer, and store nothing.

- NUL (``\\u0000``) in ``external_id``, on ``items/`` and in a batch (PostgreSQL refuses it);
- a lone surrogate (``\\ud800``) in ``external_id`` (UTF-8 cannot encode it);
- an array nested 100,000 deep (the parser would recurse past Python's limit);
- the integer 10^400 as a number feature, realtime and in a batch (no double holds it);
- a 1 MB unknown field name (once echoed back whole).

It runs once, not per seed: it is a reproduction, kept small for CI."""

import json

from tests.factories import invoice
from tests.reliability.clients import api_session

HUGE = 10**400


def _item(**changes) -> dict:
    body = invoice(1)
    features = {**body["features"], **changes.pop("features", {})}
    return {**body, **changes, "features": features}


CASES = [
    ("items", _item(external_id="inv-\x00-1"), "external_id"),
    ("batch", {"items": [invoice(2), _item(external_id="inv-\x00-2")]}, "items"),
    ("items", _item(external_id="inv-\ud800"), "external_id"),
    ("batch", {"items": [_item(external_id="inv-\udfff")]}, "items"),
    ("items", _item(features={"amount": HUGE}), "features"),
    ("batch", {"items": [invoice(3), _item(features={"amount": -HUGE})]}, "items"),
    ("items", {**_item(), "x" * 1_000_000: 1}, None),
]


def _body(value) -> bytes:
    # ensure_ascii keeps NUL and lone surrogates as JSON escapes, as a careless client sends them
    return json.dumps(value, ensure_ascii=True).encode()


def test_hostile_inputs_are_4xx_and_store_nothing(stack):
    world = stack.world(slug="hostile")
    session = api_session(world["manager"])
    base = f"{stack.web.url}/api/v1/use-cases/{world['slug']}"
    paths = {"items": f"{base}/items/", "batch": f"{base}/items/batch/"}
    sent = [(paths[where], _body(value), field) for where, value, field in CASES]
    deep = b"[" * 100_000 + b"]" * 100_000
    sent += [(paths["items"], deep, None), (paths["batch"], deep, None)]
    answers = []
    for url, body, field in sent:
        response = session.post(
            url, data=body, headers={"Content-Type": "application/json"}, timeout=60
        )
        answers.append((url.rsplit("/", 2)[-2], response.status_code, len(response.content)))
        assert 400 <= response.status_code < 500, (url, response.status_code, response.text[:300])
        assert len(response.content) < 10_000, "the answer echoes what was sent"
        if field is not None:
            assert field in response.json(), response.text[:300]
    with stack.postgres.connect() as conn:
        stored = conn.execute(
            "SELECT count(*) FROM reviews_item WHERE use_case_id = %s", [world["use_case_id"]]
        ).fetchone()[0]
        jobs = conn.execute(
            "SELECT count(*) FROM core_job WHERE use_case_id = %s", [world["use_case_id"]]
        ).fetchone()[0]
    assert (stored, jobs) == (0, 0), answers
