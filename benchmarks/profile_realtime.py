"""Where a realtime single item's server time goes: cProfile over in-process requests.

Not a benchmark (``run.py`` does not run it): a profile to read. The requests go through
Django's whole stack in this process (middleware, DRF, ingest, scoring, routing, the database
on ``DATABASE_URL``), after a warm-up, so the model is loaded and connections are open.

    DATABASE_URL=postgres://... ALLOWED_HOSTS=testserver DEBUG=0 \\
        python -c "import django; django.setup(); import benchmarks.profile_realtime as p; p.main()"
"""

import cProfile
import io
import pstats
import time

from django.test import Client

from benchmarks.bench_ingest import _rows, _use_case, _user
from reviewapp.core.roles import Role

# Functions shown, by cumulative time and then by their own time.
SHOWN = 40


def main(n: int = 500) -> None:
    caller, token = _user(Role.INTEGRATION, "caller")
    use_case, digits, _ = _use_case(
        level="partial", members=[caller], confidence_threshold=0.9, audit_rate=0.05
    )
    rows = _rows(digits, n + 50, "p")
    client = Client(HTTP_AUTHORIZATION=f"Token {token}")
    endpoint = f"/api/v1/use-cases/{use_case.slug}/items/"
    for row in rows[:50]:
        assert client.post(endpoint, row, content_type="application/json").status_code == 201
    profile = cProfile.Profile()
    started = time.perf_counter()
    profile.enable()
    for row in rows[50:]:
        client.post(endpoint, row, content_type="application/json")
    profile.disable()
    elapsed = time.perf_counter() - started
    print(f"{n} requests in {elapsed:.2f} s: {elapsed / n * 1000:.2f} ms each (with the profiler)")
    for order in ("cumulative", "tottime"):
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats(order).print_stats(SHOWN)
        print(out.getvalue())
