"""3. Idempotent writes against a real gunicorn on PostgreSQL.

The same item (same ``external_id``) or the same decision (same ``Idempotency-Key``) sent five
times at once and five times in a row: one row, the same answer every time. The same key with
a different decision is refused with 409; a malformed key is a 400 naming the header.
"""

import random
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from tests.factories import LABELS
from tests.reliability import oracle
from tests.reliability.clients import api_session
from tests.reliability.report import result_append

COPIES = 5


def five_times(send) -> list:
    """``send`` five times at once, then five times in a row; every (status, body)."""
    with ThreadPoolExecutor(max_workers=COPIES) as pool:
        together = list(pool.map(lambda _: send(), range(COPIES)))
    return together + [send() for _ in range(COPIES)]


def answer(response) -> tuple[int, object]:
    body = response.json() if response.content else None
    return response.status_code, body


STORED_ITEMS = """
    SELECT count(*) FROM reviews_item WHERE use_case_id = %s AND external_id = %s"""
STORED_AMOUNT = """
    SELECT (features->>'amount')::float FROM reviews_item
    WHERE use_case_id = %s AND external_id = %s"""
DECISIONS_OF_TASK = "SELECT count(*) FROM reviews_decision WHERE task_id = %s"


def test_items_and_decisions_sent_five_times_are_stored_once(stack, scale, seed):
    rng = random.Random(seed)
    count = 60 if scale == "full" else 12
    world = stack.world(slug=f"idem-{seed}", level="assisted", reviewers=1)
    use_case, slug = world["use_case_id"], world["slug"]
    caller_session = api_session(world["manager"])
    reviewer_session = api_session(world["reviewers"][0])
    base = f"{stack.web.url}/api/v1"
    conn = stack.postgres.connect()
    started = time.monotonic()
    violations: dict[str, list] = {
        "item_answers_differ": [],
        "item_rows_not_one": [],
        "item_created_not_once": [],
        "item_changed_by_other_body": [],
        "decision_answers_differ": [],
        "decision_rows_not_one": [],
        "other_body_not_409": [],
        "key_reused_on_other_task_not_409": [],
        "malformed_key_not_400": [],
    }

    for n in range(count):
        external_id = f"idem-{seed}-{n}"
        body = {
            "external_id": external_id,
            "features": {"amount": round(rng.uniform(1, 500), 2), "kind": rng.choice("abc")},
        }
        sent = five_times(
            lambda body=body: answer(
                caller_session.post(f"{base}/use-cases/{slug}/items/", json=body)
            )
        )
        statuses = sorted(status for status, _ in sent)
        if statuses != [200] * (2 * COPIES - 1) + [201]:
            violations["item_created_not_once"].append((external_id, statuses))
        if len({repr(answer_body) for _, answer_body in sent}) != 1:
            violations["item_answers_differ"].append(external_id)
        if conn.execute(STORED_ITEMS, [use_case, external_id]).fetchone()[0] != 1:
            violations["item_rows_not_one"].append(external_id)
        # Resending a received external_id with other features answers with what was stored.
        other = {**body, "features": {"amount": 9999.0, "kind": "a"}}
        status, resent = answer(caller_session.post(f"{base}/use-cases/{slug}/items/", json=other))
        stored = conn.execute(STORED_AMOUNT, [use_case, external_id]).fetchone()[0]
        if status != 200 or resent != sent[0][1] or stored != body["features"]["amount"]:
            violations["item_changed_by_other_body"].append(external_id)

    decided = []
    for _ in range(count):
        task = reviewer_session.post(f"{base}/use-cases/{slug}/review/next/").json()
        url = f"{base}/review/tasks/{task['task']}/decision/"
        key = str(uuid.uuid4())
        label = rng.choice(LABELS)
        decision = {"label": label, "lease_token": task["lease_token"]}
        malformed = reviewer_session.post(
            url, json=decision, headers={"Idempotency-Key": "x" * rng.randint(201, 5000)}
        )
        if malformed.status_code != 400 or "Idempotency-Key" not in malformed.json():
            violations["malformed_key_not_400"].append((task["task"], malformed.status_code))
        sent = five_times(
            lambda url=url, decision=decision, key=key: answer(
                reviewer_session.post(url, json=decision, headers={"Idempotency-Key": key})
            )
        )
        if {status for status, _ in sent} != {201} or len({repr(b) for _, b in sent}) != 1:
            violations["decision_answers_differ"].append((task["task"], sent[0]))
        if conn.execute(DECISIONS_OF_TASK, [int(task["task"])]).fetchone()[0] != 1:
            violations["decision_rows_not_one"].append(task["task"])
        other_label = next(x for x in LABELS if x != label)
        refused = reviewer_session.post(
            url, json={**decision, "label": other_label}, headers={"Idempotency-Key": key}
        )
        if refused.status_code != 409:
            violations["other_body_not_409"].append((task["task"], refused.status_code))
        decided.append(key)

    # a key already spent on one task cannot decide another
    for n in range(3):
        caller_session.post(
            f"{base}/use-cases/{slug}/items/",
            json={"external_id": f"reuse-{seed}-{n}", "features": {"amount": 1.0, "kind": "a"}},
        )
        task = reviewer_session.post(f"{base}/use-cases/{slug}/review/next/").json()
        reused = reviewer_session.post(
            f"{base}/review/tasks/{task['task']}/decision/",
            json={"label": LABELS[0], "lease_token": task["lease_token"]},
            headers={"Idempotency-Key": rng.choice(decided)},
        )
        if reused.status_code != 409:
            violations["key_reused_on_other_task_not_409"].append(task["task"])

    counts = {name: len(found) for name, found in violations.items()}
    counts.update(oracle.violations(conn))
    conn.close()
    result_append(
        scenario="3 idempotent writes",
        size=count,
        seed=seed,
        faults={"duplicate_sends": count * 2 * (2 * COPIES + 1)},
        violations=counts,
        load={
            "item_requests": count * (2 * COPIES + 1),
            "decision_requests": count * (2 * COPIES + 2),
        },
        duration_s=time.monotonic() - started,
    )
    assert not any(violations.values()), violations
    assert counts == dict.fromkeys(counts, 0)
