"""Where the queue page's "decide, then swap in the next item" goes: cProfile over in-process
htmx round trips.

Not a benchmark (``run.py`` does not run it): a profile to read. The same set-up as
``bench_review_ui.py`` (a throwaway test database on ``DATABASE_URL``, 2,000 pending tasks,
twenty other reviewers holding leases), then ``n`` decisions through Django's whole stack after
a warm-up. Prints the time by area and the functions by cumulative and own time.

    DATABASE_URL=postgres://... python benchmarks/profile_review_ui.py
"""

import cProfile
import io
import pstats
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.bench_review_ui import HIDDEN, _django, _populate, htmx_post  # noqa: E402
from benchmarks.harness import test_environment_setup  # noqa: E402

SHOWN = 40
# Areas by the file a function lives in (the table sums each function's own time per area,
# which never counts a moment twice).
AREAS = {
    "database driver (psycopg: round trips)": "/psycopg/",
    "Django ORM (building and compiling queries, rows to objects)": "/django/db/",
    "templates (rendering the task partial)": "/django/template",
    "forms": "/django/forms/",
}
APP = "the app's own code"
REST = "the rest (Python, Django's request handling, other libraries)"


def _area(filename: str) -> str:
    area = next((a for a, part in AREAS.items() if part in filename), None)
    if area is None and filename.startswith(str(ROOT)) and "site-packages" not in filename:
        return APP
    return area or REST


def main(n: int = 200) -> None:
    _django()
    import re

    from django.test import Client
    from django.test.utils import setup_databases, teardown_databases

    test_environment_setup(debug=False)
    old = setup_databases(verbosity=0, interactive=False, keepdb=False)
    try:
        use_case, reviewer = _populate(2_000)
        client = Client()
        client.force_login(reviewer)
        fragment = client.get(f"/queue/{use_case.slug}/").content.decode()

        def decide(count: int, fragment: str) -> str:
            for k in range(count):
                task = re.search(r'data-task="(\d+)"', fragment).group(1)
                body = dict(HIDDEN.findall(fragment))
                body.pop("csrfmiddlewaretoken", None)
                body["label"] = "office" if k % 4 else "travel"
                response = htmx_post(client, f"/queue/{use_case.slug}/tasks/{task}/decide/", body)
                assert response.status_code == 200, response.content[:300]
                fragment = response.content.decode()
            return fragment

        fragment = decide(30, fragment)  # warm caches and connections
        started = time.perf_counter()
        fragment = decide(n, fragment)
        plain = (time.perf_counter() - started) / n * 1000
        profile = cProfile.Profile()
        profile.enable()
        decide(n, fragment)
        profile.disable()
    finally:
        teardown_databases(old, verbosity=0)
    stats = pstats.Stats(profile)
    total = sum(row[2] for row in stats.stats.values())  # own time of every function
    by_area = dict.fromkeys([*AREAS, APP, REST], 0.0)
    for (filename, _, _), row in stats.stats.items():
        by_area[_area(filename)] += row[2]
    print(f"{n} round trips: {plain:.2f} ms each without the profiler")
    print(f"{'own time by area (with the profiler)':<64}{'share':>8}")
    for area, spent in by_area.items():
        print(f"{area:<64}{spent / total:>8.0%}")
    for order in ("cumulative", "tottime"):
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats(order).print_stats(SHOWN)
        print(out.getvalue())


if __name__ == "__main__":
    main()
