"""The broker goes away: Redis stops during ingestion and starts again empty (it keeps nothing
on disk), or hangs (stopped by SIGSTOP: connections open, nothing answered) and resumes, and
the web process dies between committing a batch and publishing its tasks.

Ingestion must keep answering 2xx (the publish failure is logged, not a 500), and every
committed item must be scored once the broker is back: the sweeper re-enqueues pending items
older than its interval. Celery workers that exit when Redis goes away are restarted by the
supervisor, as a process manager would."""

import random
import threading
import time

import pytest
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


def _ingest_through(
    stack, world, *, size: int, seed: int, down, up, outage_s: tuple[float, float] = (2.0, 4.0)
) -> dict:
    """Send ``size`` items in batches, each until acknowledged; a third of the way through,
    call ``down()``, wait for a time in ``outage_s`` (by the seed) and call ``up()``; wait
    until everything is scored. Returns the ledger, the times and the checks."""
    rng = random.Random(seed)
    api = Api(stack.web.url, world["manager"], world["slug"])
    ledger = Ledger()
    batches = [rows(start, BATCH, prefix=f"b{seed}") for start in range(0, size, BATCH)]
    sent = threading.Semaphore(0)
    slowest = [0.0]
    started = time.monotonic()

    def send(batch: list[dict]) -> requests.Response:
        began = time.monotonic()
        try:
            return api.batch(batch)
        finally:
            slowest[0] = max(slowest[0], time.monotonic() - began)

    def send_all() -> None:
        for batch in batches:
            ids = [row["external_id"] for row in batch]
            send_until_acknowledged(
                lambda b=batch: send(b), ids, ledger, deadline=time.monotonic() + 120
            )
            sent.release()

    sender = threading.Thread(target=send_all)
    sender.start()
    for _ in range(len(batches) // 3):
        sent.acquire()
    down()
    down_at = time.monotonic()
    try:
        time.sleep(rng.uniform(*outage_s))
    finally:
        up()
    back_at = time.monotonic()
    sender.join()
    sent_at = time.monotonic()

    done, counts, violations = _all_scored(stack, world, timeout=2 * stack.sweeper_seconds + 120)
    with stack.postgres.connect() as conn:
        violations["acknowledged_not_stored"] = oracle.missing_external_ids(
            conn, slug=world["slug"], external_ids=ledger.acknowledged
        )
    violations["server_errors"] = ledger.server_errors
    violations["items_not_predicted_once"] = sum(n for k, n in counts.items() if k != 1)
    return {
        "ledger": ledger,
        "counts": counts,
        "violations": violations,
        "started": started,
        "down_s": back_at - down_at,
        "back_at": back_at,
        "sent_at": sent_at,
        "done": done,
        "slowest_answer_s": slowest[0],
    }


def test_items_sent_while_redis_is_down_are_accepted_and_scored(stack, size, seed):
    world = stack.world(slug=f"broker-{seed}-{size}")
    restarts = stack.supervisor.restarts
    run = _ingest_through(
        stack, world, size=size, seed=seed, down=stack.redis.stop, up=stack.redis.start
    )
    ledger, violations = run["ledger"], run["violations"]
    result_append(
        scenario="5a Redis stopped during ingestion",
        size=size,
        seed=seed,
        faults={
            "redis_stop_s": round(run["down_s"], 1),
            "worker_restarts": stack.supervisor.restarts - restarts,
        },
        violations=violations,
        load={
            "items_per_s": size / (run["done"] - run["started"]),
            "scored_after_broker_back_s": run["done"] - run["back_at"],
            "sweeper_interval_s": stack.sweeper_seconds,
        },
        duration_s=run["done"] - run["started"],
    )
    assert len(ledger.acknowledged) == size
    assert run["counts"] == {1: size}
    assert violations == dict.fromkeys(violations, 0), ledger.errors


# Scoring a few hundred items and a sweep's own round trip, on a busy 2-core machine.
RECOVERY_ALLOWANCE_S = 8


@pytest.mark.parametrize("past_socket_timeout", [False, True], ids=["brief", "long"])
def test_items_sent_while_redis_hangs_are_accepted_and_scored_within_two_sweeps(
    stack, size, seed, past_socket_timeout
):
    """Redis stopped (SIGSTOP) rather than gone: its sockets stay open and nothing answers,
    as with a failover or a dropped NAT entry. Briefly (2 to 4 s), every call in flight just
    waits; for longer than ``BROKER_SOCKET_TIMEOUT``, they fail (publishes after commit,
    workers' acknowledgements). Either way no process may stay stuck once Redis answers
    again: every item is scored within two sweeper intervals of its return (or of the
    client's last batch, if it was still sending then)."""
    socket_timeout = float(stack.env.get("BROKER_SOCKET_TIMEOUT", "5"))  # the app's default
    world = stack.world(slug=f"hung-{int(past_socket_timeout)}-{seed}-{size}")
    restarts = stack.supervisor.restarts
    run = _ingest_through(
        stack,
        world,
        size=size,
        seed=seed,
        down=stack.redis.pause,
        up=stack.redis.resume,
        outage_s=(socket_timeout + 2, socket_timeout + 4) if past_socket_timeout else (2, 4),
    )
    ledger, violations = run["ledger"], run["violations"]
    recovered = run["done"] - max(run["back_at"], run["sent_at"])
    result_append(
        scenario=(
            "5f Redis hung past the broker socket timeout"
            if past_socket_timeout
            else "5e Redis hung during ingestion"
        ),
        size=size,
        seed=seed,
        faults={
            "redis_sigstop_s": round(run["down_s"], 1),
            "worker_restarts": stack.supervisor.restarts - restarts,
        },
        violations=violations,
        load={
            "items_per_s": size / (run["done"] - run["started"]),
            "scored_after_broker_back_s": run["done"] - run["back_at"],
            "scored_after_last_batch_s": run["done"] - run["sent_at"],
            "slowest_answer_s": run["slowest_answer_s"],
            "retried_503": ledger.statuses.get(503, 0),
            "sweeper_interval_s": stack.sweeper_seconds,
        },
        duration_s=run["done"] - run["started"],
    )
    assert len(ledger.acknowledged) == size
    assert run["counts"] == {1: size}
    assert violations == dict.fromkeys(violations, 0), ledger.errors
    assert recovered <= 2 * stack.sweeper_seconds + RECOVERY_ALLOWANCE_S, ledger.statuses
    # A publish after commit gives up after one socket timeout (it used to wait out kombu's
    # retries, some 25 s); a brief hang holds a request only as long as it lasts.
    assert run["slowest_answer_s"] <= 2 * socket_timeout + RECOVERY_ALLOWANCE_S


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
