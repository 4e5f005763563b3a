"""Workers killed mid-batch: items are scoring while Celery pool children and whole workers
are killed with ``kill -9`` and restarted (by the supervisor, as a process manager would).

Every item must end predicted exactly once by the champion, and nothing may stay pending:
acks_late + reject_on_worker_lost hand a killed child's task back, the unique constraint on
(item, model version) and the row locks make a second run a no-op, and the sweeper re-enqueues
what a killed worker held unacknowledged."""

import random
import time

from tests.reliability import oracle
from tests.reliability.client import Api, rows
from tests.reliability.processes import wait_until
from tests.reliability.report import result_append


def test_every_item_is_predicted_exactly_once_when_workers_are_killed(stack, size, seed):
    rng = random.Random(seed)
    world = stack.world(slug=f"kills-{seed}-{size}")
    api = Api(stack.web.url, world["manager"], world["slug"])
    started = time.monotonic()
    for start in range(0, size, 1000):
        response = api.batch(rows(start, min(1000, size - start), prefix=f"k{seed}"))
        assert response.status_code == 202, response.text

    faults = {"kill_children": 0, "kill_worker": 0}
    with stack.postgres.connect() as conn:
        # Kill while the work is in flight: a pool's children, or a whole worker, at random.
        for _ in range(5):
            time.sleep(rng.uniform(0.5, 2.0))
            worker = rng.choice(stack.celery)
            if not worker.running():
                continue
            if rng.random() < 0.6:
                faults["kill_children"] += bool(worker.kill_children())
            else:
                worker.kill()
                faults["kill_worker"] += 1
        last_fault = time.monotonic()
        wait_until(
            lambda: oracle.pending_items(conn) == 0,
            timeout=120 + size / 50,
            interval=0.5,
            what="every item to be scored",
        )
        drained = time.monotonic()
        counts = oracle.predictions_per_item(conn, model_version_id=world["model_version_id"])
        violations = oracle.violations(conn)
        violations["items_not_predicted_once"] = sum(n for k, n in counts.items() if k != 1)

    result_append(
        scenario="4 workers killed mid-batch",
        size=size,
        seed=seed,
        faults=faults,
        violations=violations,
        load={
            "items_per_s": size / (drained - started),
            "drain_after_last_kill_s": drained - last_fault,
        },
        duration_s=drained - started,
    )
    assert counts == {1: size}
    assert violations == dict.fromkeys(violations, 0)
