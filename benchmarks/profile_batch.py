"""Where a batch's time goes: its acceptance (one POST of 10,000 items) and its scoring (chunks of
``BATCH_CHUNK_SIZE``), timed step by step in this process.

Not a benchmark (``run.py`` does not run it): a breakdown to read beside ``bench_ingest.py``'s
end-to-end figure. The POSTs go through Django's whole stack in this process (the JSON parser,
DRF, ``items_batch_accept``), the chunks through ``chunk_score`` as their task runs it, on the
database at ``DATABASE_URL``; the queued tasks are not run (no worker), and a broker on
``CELERY_BROKER_URL`` only receives them. Wall time and this process's CPU time are both shown:
on a shared machine the CPU time is the steadier, and wall minus CPU is mostly the database.

    DATABASE_URL=postgres://... ALLOWED_HOSTS=testserver DEBUG=0 \\
    INGEST_RATE_LIMIT=100000000/minute \\
        python -c "import django; django.setup(); import benchmarks.profile_batch as p; p.main()"
"""

import functools
import importlib
import json
import statistics
import time
from collections import defaultdict

from django.conf import settings
from django.test import Client

from benchmarks.bench_ingest import _rows, _use_case, _user
from benchmarks.harness import fmt, table
from reviewapp.core.roles import Role
from reviewapp.reviews.models import Item

# (module, function): the steps timed, each where its caller looks it up.
STEPS = {
    "accept": [
        ("reviewapp.core.json_input", "_nests_too_deep"),
        ("reviewapp.core.json_input", "_suspect"),
        ("reviewapp.core.json_input", "json.loads"),
        ("reviewapp.reviews.services.ingest", "batch_rows_clean"),
        ("reviewapp.reviews.services.ingest", "items_store_pending"),
    ],
    "scoring": [
        ("reviewapp.reviews.services.ingest", "score_rows"),
        ("reviewapp.reviews.services.routing", "rows_insert"),
        ("reviewapp.reviews.services.routing", "rows_update"),
        ("reviewapp.reviews.services.routing", "events_record"),
        ("reviewapp.monitoring.receivers", "rollup_items_record"),
    ],
}


def _timed(totals: dict, module_name: str, name: str) -> None:
    module = importlib.import_module(module_name)
    owner, attribute = module, name
    if "." in name:  # a function of a module the step's module imported (json.loads)
        first, attribute = name.split(".")
        owner = getattr(module, first)
    original = getattr(owner, attribute)

    @functools.wraps(original)
    def timed(*args, **kwargs):
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            return original(*args, **kwargs)
        finally:
            totals[name][0] += time.perf_counter() - wall
            totals[name][1] += time.process_time() - cpu

    setattr(owner, attribute, timed)


def _measured(totals: dict, call, times: int) -> list[list]:
    """Run ``call`` ``times`` times; rows of (step, wall ms, CPU ms), medians per call."""
    runs: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for _ in range(times):
        totals.clear()
        wall, cpu = time.perf_counter(), time.process_time()
        call()
        runs["whole"].append((time.perf_counter() - wall, time.process_time() - cpu))
        for name, (step_wall, step_cpu) in totals.items():
            runs[name].append((step_wall, step_cpu))
    return [
        [
            name,
            fmt(statistics.median(w for w, _ in values) * 1000, 1),
            fmt(statistics.median(c for _, c in values) * 1000, 1),
        ]
        for name, values in runs.items()
    ]


def main(posts: int = 4) -> None:
    caller, token = _user(Role.INTEGRATION, "caller")
    use_case, digits, _ = _use_case(
        level="partial", members=[caller], confidence_threshold=0.9, audit_rate=0.05
    )
    client = Client(HTTP_AUTHORIZATION=f"Token {token}")
    endpoint = f"/api/v1/use-cases/{use_case.slug}/items/batch/"
    # Built before any timing: only the request is measured.
    bodies = iter(
        [json.dumps({"items": _rows(digits, 10_000, f"profile-{n}")}) for n in range(posts + 1)]
    )

    def post() -> None:
        response = client.post(endpoint, next(bodies), content_type="application/json")
        assert response.status_code == 202, response.content[:500]

    post()  # warm: the model, the connections, the per-process caches
    totals: dict = defaultdict(lambda: [0.0, 0.0])
    for module_name, name in STEPS["accept"]:
        _timed(totals, module_name, name)
    accept = _measured(totals, post, posts)

    from reviewapp.reviews.services.scoring import chunk_score

    size = settings.BATCH_CHUNK_SIZE
    ids = list(
        Item.objects.filter(use_case=use_case, status="pending")
        .order_by("id")
        .values_list("id", flat=True)
    )
    chunks = iter([ids[i : i + size] for i in range(0, len(ids), size)])
    chunk_score(item_ids=next(chunks))  # warm
    for module_name, name in STEPS["scoring"]:
        _timed(totals, module_name, name)
    scoring = _measured(
        totals, lambda: chunk_score(item_ids=next(chunks)), min(10, len(ids) // size - 1)
    )
    headers = ["step", "wall ms", "CPU ms (this process)"]
    table("Accepting a POST of 10,000 items (median of the POSTs)", headers, accept)
    table(f"Scoring a chunk of {size:,} items (median of the chunks)", headers, scoring)
