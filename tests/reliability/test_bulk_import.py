"""7. Atomic bulk import against a real deployment.

A batch with one bad row stores nothing and names the row. A batch whose request dies midway
(the gunicorn worker serving it is killed with ``kill -9``, or the client hangs up), sent
again, ends with exactly its items: none missing, none twice.
"""

import random
import threading
import time

import requests

from tests.reliability import oracle
from tests.reliability.client import Api, rows
from tests.reliability.processes import wait_until
from tests.reliability.report import result_append

ITEMS_OF_PREFIX = """
    SELECT count(*), count(DISTINCT external_id) FROM reviews_item
    WHERE use_case_id = %s AND external_id LIKE %s"""


def stored(conn, use_case: int, prefix: str) -> tuple[int, int]:
    """(rows, distinct external ids) stored under ``prefix``."""
    return conn.execute(ITEMS_OF_PREFIX, [use_case, f"{prefix}-%"]).fetchone()


def batch_in_flight(api: Api, batch: list[dict], answers: list) -> threading.Thread:
    def send():
        try:
            answers.append(api.batch(batch, timeout=300).status_code)
        except requests.RequestException as exc:
            answers.append(type(exc).__name__)

    thread = threading.Thread(target=send)
    thread.start()
    return thread


def resend_until_accepted(api: Api, batch: list[dict], *, timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    while True:
        try:
            response = api.batch(batch, timeout=300)
            if response.status_code == 202 or time.monotonic() > deadline:
                return response.status_code
        except requests.RequestException:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.5)


def test_a_batch_is_all_or_nothing_and_safe_to_resend_after_a_crash(stack, size, seed):
    rng = random.Random(seed)
    world = stack.world(slug=f"bulk-{seed}", level="assisted", reviewers=0)
    use_case = world["use_case_id"]
    api = Api(stack.web.url, world["manager"], world["slug"])
    conn = stack.postgres.connect()
    started = time.monotonic()

    # A bad row three quarters in: refused whole, the row named, nothing stored.
    bad_at = size * 3 // 4
    bad = rows(0, size, prefix=f"bad{seed}")
    bad[bad_at]["features"]["amount"] = "twelve"
    timed = time.monotonic()
    refused = api.batch(bad, timeout=300)
    request_seconds = time.monotonic() - timed
    named = refused.json().get("items", {}) if refused.status_code == 400 else {}

    # The worker serving a batch is killed with kill -9 partway through the request.
    killed_batch = rows(0, size, prefix=f"kill{seed}")
    answers: list = []
    in_flight = batch_in_flight(api, killed_batch, answers)
    time.sleep(rng.uniform(0.1, 1.0) * max(request_seconds, 0.2))
    killed = stack.web.kill_workers()
    in_flight.join(timeout=320)
    wait_until(stack.web.ready, timeout=120, what="gunicorn's new workers")
    timed = time.monotonic()
    after_kill = resend_until_accepted(api, killed_batch)
    accept_seconds = time.monotonic() - timed

    # The client hangs up before the answer comes.
    dropped_batch = rows(0, size, prefix=f"drop{seed}")
    try:
        # well inside the time a batch takes to be accepted, however fast the machine
        hang_up = rng.uniform(0.005, 0.05)
        dropped = api.batch(dropped_batch, timeout=hang_up).status_code
    except requests.RequestException as exc:
        dropped = type(exc).__name__
    after_drop = resend_until_accepted(api, dropped_batch)

    wait_until(
        lambda: oracle.pending_items(conn, use_case_id=use_case) == 0, timeout=600, what="scoring"
    )
    violations = {
        "bad_batch_not_400": int(refused.status_code != 400),
        "bad_row_not_named": int(list(named) != [str(bad_at)]),
        "bad_batch_stored_rows": stored(conn, use_case, f"bad{seed}")[0],
        "killed_batch_resend_not_202": int(after_kill != 202),
        "dropped_batch_resend_not_202": int(after_drop != 202),
        **oracle.violations(conn),
    }
    for prefix in (f"kill{seed}", f"drop{seed}"):
        total, distinct = stored(conn, use_case, prefix)
        violations[f"{prefix[:4]}_missing"] = size - distinct
        violations[f"{prefix[:4]}_duplicates"] = total - distinct
    conn.close()
    result_append(
        scenario="7 atomic bulk import",
        size=size,
        seed=seed,
        faults={
            "gunicorn_workers_killed": len(killed),
            "client_disconnects": int(not isinstance(dropped, int)),
        },
        violations=violations,
        load={
            "bad_batch_request_s": request_seconds,
            "batch_accept_s": accept_seconds,
            "killed_request_answered": int(bool(answers) and isinstance(answers[0], int)),
        },
        duration_s=time.monotonic() - started,
    )
    assert killed
    assert violations == dict.fromkeys(violations, 0), (violations, answers, dropped)
