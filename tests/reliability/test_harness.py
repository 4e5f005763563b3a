"""The harness itself: a deployment starts, serves, scores, and its processes can be killed and
restarted by PID."""

import time

from tests.reliability import oracle
from tests.reliability.client import Api, rows
from tests.reliability.processes import alive, wait_until


def test_stack_serves_scores_and_survives_kills(stack):
    world = stack.world(slug="harness")
    api = Api(stack.web.url, world["manager"], world["slug"])
    assert api.batch(rows(0, 50)).status_code == 202

    killed = stack.celery[0].kill_children()
    assert killed
    wait_until(lambda: not any(alive(pid) for pid in killed), timeout=10, what="the kill")
    main = stack.celery[0].pid
    stack.celery[0].kill()
    wait_until(lambda: stack.celery[0].running() and stack.celery[0].pid != main, timeout=20)
    assert stack.supervisor.restarts >= 1

    with stack.postgres.connect() as conn:
        wait_until(lambda: oracle.pending_items(conn) == 0, timeout=60, what="scoring")
        assert oracle.predictions_per_item(conn, model_version_id=world["model_version_id"]) == {
            1: 50
        }
        assert oracle.violations(conn) == dict.fromkeys(oracle.CHECKS, 0)

    stack.postgres.restart()
    time.sleep(0.5)
    assert api.item(rows(100, 1)[0]).status_code in (200, 201, 503)
    wait_until(lambda: api.item(rows(101, 1)[0]).status_code == 201, timeout=30)
