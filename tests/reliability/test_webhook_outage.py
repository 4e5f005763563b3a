"""Redis stops while reviewers decide: every outcome still reaches the webhook receiver, once.

Reviewers decide through the API of a real deployment (gunicorn, Celery workers and beat on
PostgreSQL). Redis is stopped part-way through, so the commits of the decisions made meanwhile
cannot announce their events to the workers; Redis comes back empty (it keeps nothing on disk).
The decisions must still be answered 2xx, and once the broker is back the beat's sweep must fan
out what no commit announced: the receiver, which verifies every signature, gets each outcome
exactly once (the same ``webhook-id`` on any retry is counted once), and the feed agrees."""

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from standardwebhooks.webhooks import Webhook

from tests.factories import LABELS
from tests.reliability import oracle
from tests.reliability.client import Api, Ledger, rows
from tests.reliability.clients import api_session
from tests.reliability.processes import wait_until
from tests.reliability.report import result_append
from tests.webhooks.receiver import start_receiver

REVIEWERS = 4
THINK_SECONDS = 0.2  # a person's pause between decisions: the outage falls among them


def _decide_one(session, base: str, slug: str, n: int, ledger: Ledger) -> bool:
    """Claim the next task and decide it; False when the queue has nothing left. A decision
    that got no answer is sent again with its Idempotency-Key."""
    claimed = session.post(f"{base}/api/v1/use-cases/{slug}/review/next/", timeout=30)
    ledger.record(claimed.status_code)
    if claimed.status_code == 204:
        return False
    assert claimed.status_code == 200, claimed.text[:300]
    task = claimed.json()
    body = {"label": LABELS[n % len(LABELS)], "lease_token": task["lease_token"]}
    key = f"hook-{task['task']}"
    for _ in range(5):
        try:
            answer = session.post(
                f"{base}/api/v1/review/tasks/{task['task']}/decision/",
                json=body,
                headers={"Idempotency-Key": key},
                timeout=30,
            )
        except OSError as exc:
            ledger.record(0, repr(exc))
            continue
        ledger.record(answer.status_code, answer.text[:200] if answer.status_code >= 300 else "")
        if answer.status_code in (200, 201):
            return True
    return True


def stored_decisions(stack, world) -> list:
    with stack.postgres.connect() as conn:
        return conn.execute(
            "SELECT id FROM reviews_decision WHERE use_case_id = %s", [world["use_case_id"]]
        ).fetchall()


def unpublished_commits(stack) -> int:
    """Commits whose tasks the web processes could not queue (their log says so)."""
    return sum(
        path.read_text(errors="replace").count("could not queue")
        for path in stack.dir.glob("gunicorn*.log")
    )


def test_outcomes_decided_while_redis_is_down_reach_the_receiver_once(stack, size, seed):
    rng = random.Random(seed)
    count = max(40, size // 5)
    unpublished = unpublished_commits(stack)
    world = stack.world(slug=f"hooks-{seed}-{size}", level="human_only", reviewers=REVIEWERS)
    manager = api_session(world["manager"])
    server, stop = start_receiver()
    try:
        created = manager.post(
            f"{stack.web.url}/api/v1/webhooks/",
            json={"url": server.url, "events": ["outcome.decided"], "use_cases": [world["slug"]]},
            timeout=30,
        )
        assert created.status_code == 201, created.text
        secret = created.json()["secret"]
        sent = Api(stack.web.url, world["manager"], world["slug"]).batch(
            rows(0, count, prefix=f"hook{seed}")
        )
        assert sent.status_code == 202, sent.text[:300]
        with stack.postgres.connect() as conn:
            wait_until(
                lambda: oracle.pending_items(conn, use_case_id=world["use_case_id"]) == 0,
                timeout=300,
                what="routing",
            )

        ledger = Ledger()
        decided = threading.Semaphore(0)
        sessions = [api_session(token) for token in world["reviewers"]]

        def review(index: int) -> int:
            done = 0
            while _decide_one(sessions[index], stack.web.url, world["slug"], done, ledger):
                done += 1
                decided.release()
                time.sleep(THINK_SECONDS)
            return done

        started = time.monotonic()
        with ThreadPoolExecutor(REVIEWERS) as pool:
            futures = [pool.submit(review, i) for i in range(REVIEWERS)]
            for _ in range(count // 4):
                assert decided.acquire(timeout=120), ledger.errors
            stack.redis.stop()
            down_at = time.monotonic()
            before = len(stored_decisions(stack, world))
            time.sleep(rng.uniform(2.0, 4.0))  # decisions go on committing with no broker
            # A web process that queued a fan-out just before the stop does not queue another
            # for FANOUT_QUEUED_SECONDS, so the first commits of an outage may not even try.
            # The broker stays down until a commit has failed to announce its events: the
            # three quarters left take the reviewers at least 3.75 s of pauses alone.
            wait_until(
                lambda: unpublished_commits(stack) > unpublished,
                timeout=60,
                what="a commit that could not queue its fan-out",
            )
            during = len(stored_decisions(stack, world)) - before
            stack.redis.start()
            back_at = time.monotonic()
            total = sum(f.result() for f in futures)

        hook = Webhook(secret)

        def all_delivered() -> bool:
            return len({r.headers["webhook-id"] for r in server.ok()}) >= count

        wait_until(all_delivered, timeout=4 * stack.sweeper_seconds + 120, what="deliveries")
        delivered_at = time.monotonic()
        time.sleep(stack.sweeper_seconds)  # a sweep more: nothing is sent a second time
        messages = {r.headers["webhook-id"]: hook.verify(r.body, r.headers) for r in server.ok()}
        ids = sorted(m["data"]["external_id"] for m in messages.values())
        with stack.postgres.connect() as conn:
            stored = conn.execute(
                "SELECT count(*) FROM reviews_item WHERE use_case_id = %s "
                "AND decision_source = 'human'",
                [world["use_case_id"]],
            ).fetchone()[0]
        violations = {
            "server_errors": ledger.server_errors + ledger.count(lambda s: s == 0),
            "decisions_not_stored": count - stored,
            "outcomes_not_delivered": len(set(rows_ids(count, seed)) - set(ids)),
            "outcomes_delivered_twice": len(ids) - len(set(ids)),
        }
        result_append(
            scenario="5d Redis stopped while reviewers decide (webhooks)",
            size=count,
            seed=seed,
            faults={"redis_stop_s": round(back_at - down_at, 1)},
            violations=violations,
            load={
                "decisions": total,
                "decided_while_down": during,
                "delivered_after_broker_back_s": delivered_at - back_at,
                "sweeper_interval_s": stack.sweeper_seconds,
            },
            duration_s=delivered_at - started,
        )
        assert total == count
        assert during > 0, "no decision committed while Redis was down"
        assert violations == dict.fromkeys(violations, 0), ledger.errors
    finally:
        stop()


def rows_ids(count: int, seed: int) -> list[str]:
    return [row["external_id"] for row in rows(0, count, prefix=f"hook{seed}")]
