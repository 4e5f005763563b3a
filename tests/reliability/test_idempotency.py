"""3. Idempotent writes against a real gunicorn on PostgreSQL.

The same item (same ``external_id``) or the same decision (same ``Idempotency-Key``) sent five
times at once and five times in a row: one row, the same answer every time. The same key with
a different decision is refused with 409; a malformed key is a 400 naming the header.
"""

import random
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from rest_framework.authtoken.models import Token

from reviewapp.core.roles import Role
from reviewapp.reviews.models import Decision, Item
from tests.factories import LABELS, constant_classifier_bytes, make_use_case, make_user
from tests.factories import register_model as model_register
from tests.reliability.clients import api_session
from tests.reliability.recording import reliability_results  # noqa: F401 (a fixture)
from tests.reliability.serving import gunicorn
from tests.reliability.sizing import seeds, sized

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

COPIES = 5


@pytest.fixture(scope="module")
def server(django_db_setup):
    with gunicorn(workers=2, threads=4) as running:
        yield running


def five_times(send) -> list:
    """``send`` five times at once, then five times in a row; every (status, body)."""
    with ThreadPoolExecutor(max_workers=COPIES) as pool:
        together = list(pool.map(lambda _: send(), range(COPIES)))
    return together + [send() for _ in range(COPIES)]


def answer(response) -> tuple[int, object]:
    body = response.json() if response.content else None
    return response.status_code, body


@pytest.mark.parametrize("seed", seeds())
def test_items_and_decisions_sent_five_times_are_stored_once(server, seed, reliability_results):
    rng = random.Random(seed)
    count = sized(60, at_least=6)
    caller = make_user(Role.INTEGRATION, f"caller{seed}")
    reviewer = make_user(Role.REVIEWER, f"rev{seed}")
    use_case = make_use_case(members=[caller, reviewer], level="assisted", slug=f"idem-{seed}")
    model_register(use_case, constant_classifier_bytes("office", 0.7))
    caller_session = api_session(Token.objects.create(user=caller).key)
    reviewer_session = api_session(Token.objects.create(user=reviewer).key)
    base = f"{server.url}/api/v1"
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
                caller_session.post(f"{base}/use-cases/{use_case.slug}/items/", json=body)
            )
        )
        statuses = sorted(status for status, _ in sent)
        if statuses != [200] * (2 * COPIES - 1) + [201]:
            violations["item_created_not_once"].append((external_id, statuses))
        if len({repr(answer_body) for _, answer_body in sent}) != 1:
            violations["item_answers_differ"].append(external_id)
        if Item.objects.filter(use_case=use_case, external_id=external_id).count() != 1:
            violations["item_rows_not_one"].append(external_id)
        # Resending a received external_id with other features answers with what was stored.
        other = {**body, "features": {"amount": 9999.0, "kind": "a"}}
        status, resent = answer(
            caller_session.post(f"{base}/use-cases/{use_case.slug}/items/", json=other)
        )
        stored = Item.objects.get(use_case=use_case, external_id=external_id).features
        if status != 200 or resent != sent[0][1] or stored["amount"] != body["features"]["amount"]:
            violations["item_changed_by_other_body"].append(external_id)

    decided = []
    for _ in range(count):
        task = reviewer_session.post(f"{base}/use-cases/{use_case.slug}/review/next/").json()
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
        if Decision.objects.filter(task_id=task["task"]).count() != 1:
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
            f"{base}/use-cases/{use_case.slug}/items/",
            json={"external_id": f"reuse-{seed}-{n}", "features": {"amount": 1.0, "kind": "a"}},
        )
        task = reviewer_session.post(f"{base}/use-cases/{use_case.slug}/review/next/").json()
        reused = reviewer_session.post(
            f"{base}/review/tasks/{task['task']}/decision/",
            json={"label": LABELS[0], "lease_token": task["lease_token"]},
            headers={"Idempotency-Key": rng.choice(decided)},
        )
        if reused.status_code != 409:
            violations["key_reused_on_other_task_not_409"].append(task["task"])

    reliability_results(
        scenario="idempotent_writes",
        seed=seed,
        size={"items": count, "decisions": count, "copies": 2 * COPIES},
        faults="duplicate sends, 5 concurrent + 5 sequential",
        violations=violations,
        load={
            "item_requests": count * (2 * COPIES + 1),
            "decision_requests": count * (2 * COPIES + 2),
        },
    )
    assert not any(violations.values()), violations
