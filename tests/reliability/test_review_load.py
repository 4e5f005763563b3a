"""Reviewers in separate processes against a real gunicorn on PostgreSQL.

1. Many reviewers loop claim -> decide over a large queue: no task is ever held by two of them
   at once, every task ends with exactly one decision, every decision the server acknowledged
   is stored as sent, and the queue drains.
2. Lease fencing: a reviewer whose lease ran out and went to someone else is refused (409)
   when they finally submit; the task keeps exactly one decision, the new holder's.
"""

import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import pytest
from django.db.models import Count
from django.utils import timezone
from rest_framework.authtoken.models import Token

from reviewapp.core.roles import Role
from reviewapp.reviews.models import Decision, Item, ReviewTask
from reviewapp.reviews.services.ingest import items_store_pending
from reviewapp.reviews.services.scoring import items_score
from tests.factories import LABELS, make_use_case, make_user
from tests.reliability.clients import (
    ReviewerConfig,
    api_session,
    reviewers_run,
)
from tests.reliability.recording import reliability_results  # noqa: F401 (a fixture)
from tests.reliability.serving import gunicorn
from tests.reliability.sizing import seeds, sized

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

SCORE_CHUNK = 1000


def queue_fill(*, use_case, count: int, prefix: str) -> None:
    """``count`` routed items with open review tasks, stored the way a batch stores them."""
    rows = [(f"{prefix}-{n}", {"amount": float(n), "kind": "abc"[n % 3]}, None) for n in range(count)]
    ids = items_store_pending(use_case=use_case, rows=rows, now=timezone.now())
    for start in range(0, len(ids), SCORE_CHUNK):
        items_score(item_ids=ids[start : start + SCORE_CHUNK])


def reviewers_make(count: int, *, prefix: str) -> list:
    return [make_user(Role.REVIEWER, f"{prefix}-{n}") for n in range(count)]


def token_for(user) -> str:
    return Token.objects.get_or_create(user=user)[0].key


def overlapping_claims(claims) -> list[str]:
    """Tasks handed to a second reviewer while the first one's lease was still live."""
    by_task = defaultdict(list)
    for claim in claims:
        by_task[claim.task].append(claim)
    overlaps = []
    for task, held in by_task.items():
        held.sort(key=lambda c: c.claimed_at)
        for earlier, later in zip(held, held[1:], strict=False):
            expires = datetime.fromisoformat(earlier.lease_expires_at).timestamp()
            if later.reviewer != earlier.reviewer and later.claimed_at < expires:
                overlaps.append(task)
    return overlaps


@pytest.fixture(scope="module")
def server(django_db_setup):
    with gunicorn(workers=2, threads=4) as running:
        yield running


@pytest.mark.parametrize("seed", seeds())
def test_no_double_claim_and_no_lost_decision(server, seed, reliability_results):
    items, clients = sized(10_000, at_least=200), sized(32, at_least=8)
    set_up = time.monotonic()
    reviewers = reviewers_make(clients, prefix=f"load{seed}")
    use_case = make_use_case(
        members=reviewers, level="human_only", double_review_rate=0.05, slug=f"load-{seed}"
    )
    queue_fill(use_case=use_case, count=items, prefix=f"s{seed}")
    total_tasks = ReviewTask.objects.filter(use_case=use_case).count()
    configs = [
        ReviewerConfig(
            base_url=server.url,
            slug=use_case.slug,
            token=token_for(user),
            name=user.username,
            labels=tuple(LABELS),
            seed=seed * 1000 + n,
        )
        for n, user in enumerate(reviewers)
    ]
    started = time.monotonic()
    set_up = started - set_up
    reports = reviewers_run(configs)
    elapsed = time.monotonic() - started

    claims = [claim for report in reports for claim in report.claims]
    acknowledged = {
        (task, label, report.name) for report in reports for task, _, label in report.acknowledged
    }
    stored = set(
        Decision.objects.filter(use_case=use_case).values_list(
            "task_id", "label", "reviewer__username"
        )
    )
    stored = {(str(task), label, name) for task, label, name in stored}
    violations = {
        "errors": [e for report in reports for e in report.errors],
        "double_claims": overlapping_claims(claims),
        "acknowledged_missing": sorted(acknowledged - stored)[:20],
        "tasks_without_one_decision": list(
            ReviewTask.objects.filter(use_case=use_case)
            .annotate(n=Count("decision"))
            .exclude(n=1)
            .values_list("pk", flat=True)[:20]
        ),
        "items_undecided": list(
            Item.objects.filter(use_case=use_case)
            .exclude(decision_source=Item.Source.HUMAN)
            .values_list("external_id", flat=True)[:20]
        ),
        "queue_left": ReviewTask.objects.filter(
            use_case=use_case, state=ReviewTask.State.OPEN
        ).count(),
    }
    reliability_results(
        scenario="no_double_claim",
        seed=seed,
        size={"items": items, "tasks": total_tasks, "clients": clients},
        faults="none",
        violations=violations,
        load={
            "claims": len(claims),
            "decisions_acknowledged": len(acknowledged),
            "conflicts": sum(r.conflicts for r in reports),
            "retries": sum(r.retries for r in reports),
            "seconds": round(elapsed, 2),
            "set_up_seconds": round(set_up, 2),
            "client_seconds_max": round(max(r.seconds for r in reports), 2),
            "claims_per_second": round(len(claims) / elapsed, 1),
        },
    )
    assert not any(violations.values()), violations
    assert len(acknowledged) == total_tasks == len(claims)


@pytest.mark.parametrize("seed", seeds())
def test_a_late_reviewer_whose_lease_was_taken_gets_409(seed, reliability_results):
    pairs = sized(40, at_least=8)
    lease_seconds = 2
    late = reviewers_make(pairs, prefix=f"late{seed}")
    fresh = reviewers_make(pairs, prefix=f"fresh{seed}")
    use_case = make_use_case(members=[*late, *fresh], level="human_only", slug=f"fence-{seed}")
    queue_fill(use_case=use_case, count=pairs, prefix=f"f{seed}")
    late_tokens = [token_for(user) for user in late]
    fresh_tokens = [token_for(user) for user in fresh]

    with gunicorn(env={"REVIEW_LEASE_SECONDS": str(lease_seconds)}) as server:
        base = server.url + "/api/v1"

        def claim(token):
            session = api_session(token)
            response = session.post(f"{base}/use-cases/{use_case.slug}/review/next/", timeout=30)
            assert response.status_code == 200, response.text
            return session, response.json()

        def submit(held, label):
            session, task = held
            return session.post(
                f"{base}/review/tasks/{task['task']}/decision/",
                json={"label": label, "lease_token": task["lease_token"]},
                timeout=30,
            ).status_code

        with ThreadPoolExecutor(max_workers=8) as pool:
            late_held = list(pool.map(claim, late_tokens))
            time.sleep(lease_seconds + 0.5)  # every late reviewer's lease runs out
            fresh_held = list(pool.map(claim, fresh_tokens))
            # both sides submit at once: the fresh holder must win every time
            late_codes = pool.map(lambda held: submit(held, LABELS[0]), late_held)
            fresh_codes = pool.map(lambda held: submit(held, LABELS[1]), fresh_held)
            late_codes, fresh_codes = list(late_codes), list(fresh_codes)

    retaken = {task["task"] for _, task in fresh_held}
    violations = {
        "late_not_409": [
            (task["task"], code)
            for (_, task), code in zip(late_held, late_codes, strict=True)
            if task["task"] in retaken and code != 409
        ],
        "fresh_not_201": [code for code in fresh_codes if code != 201],
        "tasks_without_one_decision": list(
            ReviewTask.objects.filter(use_case=use_case)
            .annotate(n=Count("decision"))
            .exclude(n=1)
            .values_list("pk", flat=True)
        ),
        "decided_by_late_reviewer": list(
            Decision.objects.filter(use_case=use_case, label=LABELS[0]).values_list(
                "task_id", flat=True
            )
        ),
    }
    reliability_results(
        scenario="lease_fencing",
        seed=seed,
        size={"tasks": pairs, "clients": 2 * pairs},
        faults=f"lease expiry ({lease_seconds}s) then re-claim",
        violations=violations,
        load={
            "late_409": sum(code == 409 for code in late_codes),
            "fresh_201": sum(code == 201 for code in fresh_codes),
        },
    )
    assert len(retaken) == pairs
    assert not any(violations.values()), violations
