"""The database fails under load: the app's connections are terminated (pg_terminate_backend)
and PostgreSQL is restarted (an immediate, crash-like shutdown, recovered from its WAL) while
clients send items one by one and workers score a batch.

Clients see a clear 503 (``database_unavailable``, Retry-After) and retry; none sees another
5xx; every item the server acknowledged is stored (no 2xx for a write that did not commit),
and the invariants hold once the database is back."""

import random
import threading
import time

from tests.reliability import oracle
from tests.reliability.client import Api, Ledger, rows, send_until_acknowledged
from tests.reliability.processes import wait_until
from tests.reliability.report import result_append

CLIENTS = 3


def test_clients_get_a_retryable_503_and_no_acknowledged_write_is_lost(stack, size, seed):
    rng = random.Random(seed)
    world = stack.world(slug=f"db-{seed}-{size}")
    api = Api(stack.web.url, world["manager"], world["slug"])
    realtime = rows(0, size // 5, prefix=f"r{seed}")
    ledger = Ledger()
    unclear_503: list[str] = []
    started = time.monotonic()
    assert api.batch(rows(0, size // 2, prefix=f"d{seed}")).status_code == 202

    def client(share: list[dict]) -> None:
        for row in share:

            def send(row=row):
                response = api.item(row)
                if response.status_code == 503 and (
                    "database_unavailable" not in response.text
                    or "Retry-After" not in response.headers
                ):
                    unclear_503.append(response.text[:200])
                return response

            send_until_acknowledged(
                send, [row["external_id"]], ledger, deadline=time.monotonic() + 180
            )

    threads = [threading.Thread(target=client, args=(realtime[i::CLIENTS],)) for i in range(3)]
    for thread in threads:
        thread.start()

    faults = {"terminate_backends": 0, "connections_terminated": 0, "postgres_restart": 0}
    for step in range(4):
        time.sleep(rng.uniform(1.0, 2.5))
        if step == 2:
            stack.postgres.restart(mode="immediate")
            faults["postgres_restart"] += 1
        else:
            faults["connections_terminated"] += stack.postgres.terminate_backends()
            faults["terminate_backends"] += 1
    last_fault = time.monotonic()
    for thread in threads:
        thread.join()
    sent_at = time.monotonic()

    with stack.postgres.connect() as conn:
        wait_until(lambda: oracle.pending_items(conn) == 0, timeout=180, what="the batch")
        done = time.monotonic()
        violations = oracle.violations(conn)
        violations["acknowledged_not_stored"] = oracle.missing_external_ids(
            conn, slug=world["slug"], external_ids=ledger.acknowledged
        )
        counts = oracle.predictions_per_item(conn, model_version_id=world["model_version_id"])
    violations["server_errors_other_than_503"] = ledger.server_errors
    violations["unclear_503"] = len(unclear_503)
    violations["items_not_predicted_once"] = sum(n for k, n in counts.items() if k != 1)
    result_append(
        scenario="6 connections terminated, PostgreSQL restarted",
        size=size,
        seed=seed,
        faults=faults,
        violations=violations,
        load={
            "realtime_items_per_s": len(realtime) / (sent_at - started),
            "503_answers": ledger.statuses.get(503, 0),
            "refused_connections": ledger.statuses.get(0, 0),
            "recovered_after_last_fault_s": done - last_fault,
        },
        duration_s=done - started,
    )
    assert len(ledger.acknowledged) == len(realtime), ledger.errors
    assert counts == {1: size // 2 + len(realtime)}
    assert violations == dict.fromkeys(violations, 0), ledger.errors + unclear_503
