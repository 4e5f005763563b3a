"""Reviewers against a real deployment (gunicorn, Celery, PostgreSQL).

1. Reviewers in separate processes loop claim -> decide over a large queue: no task is ever
   handed to a second reviewer while the first one's lease is live, every task ends with exactly
   one decision, every decision the server acknowledged is stored as sent, the queue drains.
2. Lease fencing: a reviewer whose lease ran out and went to someone else is refused (409)
   when they finally submit; the task keeps exactly one decision, the new holder's.
"""

import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from tests.factories import LABELS
from tests.reliability import oracle
from tests.reliability.client import Api, rows
from tests.reliability.clients import ReviewerConfig, api_session, reviewers_run
from tests.reliability.processes import wait_until
from tests.reliability.report import result_append

BATCH = 10_000  # the API's limit per batch


def queue_fill(stack, world: dict, *, count: int, prefix: str) -> None:
    """Send ``count`` items in batches and wait until the workers have routed every one."""
    api = Api(stack.web.url, world["manager"], world["slug"])
    for start in range(0, count, BATCH):
        response = api.batch(rows(start, min(BATCH, count - start), prefix=prefix), timeout=300)
        assert response.status_code == 202, response.text[:500]
    with stack.postgres.connect() as conn:
        wait_until(
            lambda: oracle.pending_items(conn, use_case_id=world["use_case_id"]) == 0,
            timeout=600,
            what="routing",
        )


def reviewer_names(world: dict) -> list[str]:
    # tests/reliability/world.py names reviewers after the use case, in token order
    return [f"{world['slug']}-reviewer{i}" for i in range(len(world["reviewers"]))]


def overlapping_claims(claims) -> int:
    """Tasks handed to a second reviewer while the first one's lease was still live."""
    by_task = defaultdict(list)
    for claim in claims:
        by_task[claim.task].append(claim)
    overlaps = 0
    for held in by_task.values():
        held.sort(key=lambda c: c.claimed_at)
        for earlier, later in zip(held, held[1:], strict=False):
            expires = datetime.fromisoformat(earlier.lease_expires_at).timestamp()
            overlaps += later.reviewer != earlier.reviewer and later.claimed_at < expires
    return overlaps


TASKS_WITHOUT_ONE_DECISION = """
    SELECT count(*) FROM reviews_reviewtask t WHERE t.use_case_id = %s
    AND (SELECT count(*) FROM reviews_decision d WHERE d.task_id = t.id) <> 1"""
ITEMS_WITHOUT_HUMAN_DECISION = """
    SELECT count(*) FROM reviews_item WHERE use_case_id = %s AND decision_source <> 'human'"""
OPEN_TASKS = "SELECT count(*) FROM reviews_reviewtask WHERE use_case_id = %s AND state = 'open'"
STORED_DECISIONS = """
    SELECT d.task_id::text, d.label, u.username FROM reviews_decision d
    JOIN auth_user u ON u.id = d.reviewer_id WHERE d.use_case_id = %s"""


def count(conn, sql: str, *params) -> int:
    return conn.execute(sql, params).fetchone()[0]


def test_no_double_claim_and_no_lost_decision(stack, size, scale, seed):
    clients = 32 if scale == "full" else 8
    world = stack.world(
        slug=f"load-{seed}", level="human_only", reviewers=clients, double_review_rate=0.05
    )
    use_case = world["use_case_id"]
    queue_fill(stack, world, count=size, prefix=f"load{seed}")
    with stack.postgres.connect() as conn:
        total_tasks = count(
            conn, "SELECT count(*) FROM reviews_reviewtask WHERE use_case_id = %s", use_case
        )
    configs = [
        ReviewerConfig(
            base_url=stack.web.url,
            slug=world["slug"],
            token=token,
            name=name,
            labels=tuple(LABELS),
            seed=seed * 1000 + n,
        )
        for n, (token, name) in enumerate(
            zip(world["reviewers"], reviewer_names(world), strict=True)
        )
    ]
    started = time.monotonic()
    reports = reviewers_run(configs)
    elapsed = time.monotonic() - started

    claims = [claim for report in reports for claim in report.claims]
    acknowledged = {(t, label, r.name) for r in reports for t, _, label in r.acknowledged}
    with stack.postgres.connect() as conn:
        stored = set(conn.execute(STORED_DECISIONS, [use_case]).fetchall())
        violations = {
            "client_errors": sum(len(r.errors) for r in reports),
            "double_claims": overlapping_claims(claims),
            "acknowledged_missing": len(acknowledged - stored),
            "tasks_without_one_decision": count(conn, TASKS_WITHOUT_ONE_DECISION, use_case),
            "items_without_human_decision": count(conn, ITEMS_WITHOUT_HUMAN_DECISION, use_case),
            "queue_left": count(conn, OPEN_TASKS, use_case),
            **oracle.violations(conn),
        }
    result_append(
        scenario="1 no double claim, no lost decision",
        size=size,
        seed=seed,
        faults={"reviewer_processes": clients},
        violations=violations,
        load={
            "tasks": total_tasks,
            "claims_per_s": len(claims) / elapsed,
            "decisions_acknowledged": len(acknowledged),
            "decision_retries": sum(r.retries for r in reports),
            "conflicts_409": sum(r.conflicts for r in reports),
        },
        duration_s=elapsed,
    )
    assert [r.errors for r in reports if r.errors] == []
    assert violations == dict.fromkeys(violations, 0)
    assert len(acknowledged) == total_tasks == len(claims)


def test_a_late_reviewer_whose_lease_was_taken_gets_409(stack, scale, seed):
    pairs = 40 if scale == "full" else 10
    world = stack.world(slug=f"fence-{seed}", level="human_only", reviewers=2 * pairs)
    late_tokens, fresh_tokens = world["reviewers"][:pairs], world["reviewers"][pairs:]
    queue_fill(stack, world, count=pairs, prefix=f"fence{seed}")
    base = f"{stack.web.url}/api/v1"
    started = time.monotonic()

    def claim(token):
        session = api_session(token)
        response = session.post(f"{base}/use-cases/{world['slug']}/review/next/", timeout=30)
        assert response.status_code == 200, response.text[:300]
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
        # Every late reviewer's lease runs out (the clock moves past it).
        with stack.postgres.connect() as conn:
            conn.execute(
                "UPDATE reviews_reviewtask SET lease_expires_at = now() - interval '1 second' "
                "WHERE use_case_id = %s AND state = 'open'",
                [world["use_case_id"]],
            )
        fresh_held = list(pool.map(claim, fresh_tokens))
        # Both sides submit at once: the new holder must win every time.
        late_codes = pool.map(lambda held: submit(held, LABELS[0]), late_held)
        fresh_codes = pool.map(lambda held: submit(held, LABELS[1]), fresh_held)
        late_codes, fresh_codes = list(late_codes), list(fresh_codes)

    retaken = {task["task"] for _, task in fresh_held}
    with stack.postgres.connect() as conn:
        violations = {
            "late_submit_not_409": sum(
                code != 409
                for (_, task), code in zip(late_held, late_codes, strict=True)
                if task["task"] in retaken
            ),
            "new_holder_not_201": sum(code != 201 for code in fresh_codes),
            "tasks_without_one_decision": count(
                conn, TASKS_WITHOUT_ONE_DECISION, world["use_case_id"]
            ),
            "decided_by_late_reviewer": count(
                conn,
                "SELECT count(*) FROM reviews_decision WHERE use_case_id = %s AND label = %s",
                world["use_case_id"],
                LABELS[0],
            ),
        }
    result_append(
        scenario="2 lease fencing",
        size=pairs,
        seed=seed,
        faults={"leases_expired_and_retaken": len(retaken)},
        violations=violations,
        load={
            "late_409": sum(code == 409 for code in late_codes),
            "new_holder_201": sum(code == 201 for code in fresh_codes),
        },
        duration_s=time.monotonic() - started,
    )
    assert len(retaken) == pairs
    assert violations == dict.fromkeys(violations, 0)
