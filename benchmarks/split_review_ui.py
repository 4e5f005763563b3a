"""How the queue page's "decide, then swap in the next item" splits between the statements and
the rest, in process: to compare two versions, run it from each one's checkout in turn.

Not a benchmark (``run.py`` does not run it). The same set-up as ``bench_review_ui.py`` (a
throwaway test database on ``DATABASE_URL``, 2,000 pending tasks, twenty other reviewers holding
leases), then 300 htmx decisions after 30 to warm up, with the rollups folded later (as a
worker would) rather than after each commit (as the embedded mode does). Each statement is timed
from Django's side of the driver (``connection.execute_wrapper``, which the bulk writes go
through too).

    DATABASE_URL=postgres://... python benchmarks/split_review_ui.py
"""

import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.bench_review_ui import HIDDEN, _django, _populate, htmx_post  # noqa: E402
from benchmarks.harness import test_environment_setup  # noqa: E402

WARM_UP, MEASURED = 30, 300


def main() -> None:
    _django()
    from django.db import connection
    from django.test import Client
    from django.test.utils import setup_databases, teardown_databases

    from reviewapp.monitoring.services import rollups_deferred

    test_environment_setup(debug=False)
    old = setup_databases(verbosity=0, interactive=False, keepdb=False)
    spent = {"seconds": 0.0, "statements": 0}

    def timed(execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            spent["seconds"] += time.perf_counter() - started
            spent["statements"] += 1

    try:
        use_case, reviewer = _populate(2_000)
        client = Client()
        client.force_login(reviewer)
        fragment = client.get(f"/queue/{use_case.slug}/").content.decode()
        walls, statements = [], []
        with rollups_deferred():
            for k in range(WARM_UP + MEASURED):
                task = re.search(r'data-task="(\d+)"', fragment).group(1)
                body = dict(HIDDEN.findall(fragment))
                body.pop("csrfmiddlewaretoken", None)
                body["label"] = "office" if k % 4 else "travel"
                spent.update(seconds=0.0, statements=0)
                started = time.perf_counter()
                with connection.execute_wrapper(timed):
                    response = htmx_post(
                        client, f"/queue/{use_case.slug}/tasks/{task}/decide/", body
                    )
                wall = time.perf_counter() - started
                assert response.status_code == 200, response.content[:300]
                fragment = response.content.decode()
                if k >= WARM_UP:
                    walls.append(wall * 1000)
                    statements.append(spent["seconds"] * 1000)
    finally:
        teardown_databases(old, verbosity=0)
    rest = [wall - db for wall, db in zip(walls, statements, strict=True)]
    print(f"{MEASURED} decide + next round trips (median ms)")
    print(f"{'whole round trip':<40}{statistics.median(walls):>8.2f}")
    print(f"{'in statements (Django and bulk writes)':<40}{statistics.median(statements):>8.2f}")
    print(f"{'the rest (Python)':<40}{statistics.median(rest):>8.2f}")
    print(f"statements a round trip (transaction commands not counted): {spent['statements']}")


if __name__ == "__main__":
    main()
