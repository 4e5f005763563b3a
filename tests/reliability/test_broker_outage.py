"""The broker goes away: Redis stops during ingestion and starts again empty (it keeps nothing
on disk), and the web process dies between committing a batch and publishing its tasks.

Ingestion must keep answering 2xx (the publish failure is logged, not a 500), and every
committed item must be scored once the broker is back: the sweeper re-enqueues pending items
older than its interval. Celery workers that exit when Redis goes away are restarted by the
supervisor, as a process manager would."""

import random
import threading
import time

import requests

from tests.reliability import oracle
from tests.reliability.client import Api, Ledger, rows, send_until_acknowledged
from tests.reliability.processes import BlackHole, wait_until
from tests.reliability.report import result_append

BATCH = 50


def _all_scored(stack, world, *, timeout: float) -> tuple[float, dict[int, int], dict]:
    """Wait until nothing is pending; return when, the predictions per item and the checks."""
    with stack.postgres.connect() as conn:
        wait_until(lambda: oracle.pending_items(conn) == 0, timeout=timeout, what="scoring")
        done = time.monotonic()
        counts = oracle.predictions_per_item(conn, model_version_id=world["model_version_id"])
        return done, counts, oracle.violations(conn)


def test_items_sent_while_redis_is_down_are_accepted_and_scored(stack, size, seed):
    rng = random.Random(seed)
    world = stack.world(slug=f"broker-{seed}-{size}")
    api = Api(stack.web.url, world["manager"], world["slug"])
    ledger = Ledger()
    batches = [rows(start, BATCH, prefix=f"b{seed}") for start in range(0, size, BATCH)]
    sent = threading.Semaphore(0)
    restarts = stack.supervisor.restarts
    started = time.monotonic()

    def send_all() -> None:
        for batch in batches:
            ids = [row["external_id"] for row in batch]
            send_until_acknowledged(
                lambda b=batch: api.batch(b), ids, ledger, deadline=time.monotonic() + 120
            )
            sent.release()

    sender = threading.Thread(target=send_all)
    sender.start()
    for _ in range(len(batches) // 3):
        sent.acquire()
    stack.redis.stop()
    down_at = time.monotonic()
    time.sleep(rng.uniform(2.0, 4.0))
    stack.redis.start()
    back_at = time.monotonic()
    sender.join()

    done, counts, violations = _all_scored(stack, world, timeout=2 * stack.sweeper_seconds + 120)
    with stack.postgres.connect() as conn:
        violations["acknowledged_not_stored"] = oracle.missing_external_ids(
            conn, slug=world["slug"], external_ids=ledger.acknowledged
        )
    violations["server_errors"] = ledger.server_errors
    violations["items_not_predicted_once"] = sum(n for k, n in counts.items() if k != 1)
    result_append(
        scenario="5a Redis stopped during ingestion",
        size=size,
        seed=seed,
        faults={
            "redis_stop_s": round(back_at - down_at, 1),
            "worker_restarts": stack.supervisor.restarts - restarts,
        },
        violations=violations,
        load={
            "items_per_s": size / (done - started),
            "scored_after_broker_back_s": done - back_at,
            "sweeper_interval_s": stack.sweeper_seconds,
        },
        duration_s=done - started,
    )
    assert len(ledger.acknowledged) == size
    assert counts == {1: size}
    assert violations == dict.fromkeys(violations, 0), ledger.errors


def test_a_batch_committed_by_a_web_process_killed_before_publishing_is_scored(stack, seed):
    size = 200
    world = stack.world(slug=f"gap-{seed}")
    api = Api(stack.web.url, world["manager"], world["slug"])
    batch = rows(0, size, prefix=f"g{seed}")
    answer: dict = {}
    restarts = stack.supervisor.restarts
    started = time.monotonic()

    def send() -> None:
        try:
            answer["status"] = api.batch(batch, timeout=60).status_code
        except requests.RequestException as exc:
            answer["error"] = type(exc).__name__

    # Redis is replaced by a listener that never answers: the publish after commit hangs.
    stack.redis.stop()
    with BlackHole(stack.redis.port):
        sender = threading.Thread(target=send)
        sender.start()
        with stack.postgres.connect() as conn:
            wait_until(
                lambda: oracle.item_count(conn, use_case_id=world["use_case_id"]) == size,
                timeout=60,
                what="the batch to commit",
            )
        in_gap = sender.is_alive()  # committed, and the request is still publishing
        stack.web.kill()
        sender.join()
    stack.redis.start()
    back_at = time.monotonic()
    stack.web.start()

    done, counts, violations = _all_scored(stack, world, timeout=2 * stack.sweeper_seconds + 120)
    # The caller never heard back; sending the batch again is safe and stores nothing twice.
    resend = api.batch(batch)
    with stack.postgres.connect() as conn:
        violations["duplicated_by_resend"] = (
            oracle.item_count(conn, use_case_id=world["use_case_id"]) - size
        )
    violations["items_not_predicted_once"] = sum(n for k, n in counts.items() if k != 1)
    result_append(
        scenario="5b web killed between commit and publish",
        size=size,
        seed=seed,
        faults={
            "web_kill_9_in_gap": int(in_gap),
            "redis_black_hole": 1,
            "worker_restarts": stack.supervisor.restarts - restarts,
        },
        violations=violations,
        load={
            "scored_after_broker_back_s": done - back_at,
            "sweeper_interval_s": stack.sweeper_seconds,
        },
        duration_s=done - started,
    )
    assert in_gap, answer
    assert resend.status_code == 202
    assert counts == {1: size}
    assert violations == dict.fromkeys(violations, 0)
