"""What the latency budget costs a realtime request that stays within it.

Under a budget the champion is called on a worker thread and the request waits for it with a
timeout; without one it is called inline. Both variants send the same single items through the
whole API stack (token auth, validation, scoring, routing, storage) to two use cases that
differ only by the budget (set far above the model's latency, so it never triggers). The floor
is the request without a budget; the ratio is the budgeted request over it. A second table
isolates the hand-off itself: the same single-row model call inline and through the pool.

    python benchmarks/bench_latency_budget.py [--small]

It creates (and drops) its own test database, so it never touches the app's data.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "reviewapp.settings")
    import django

    django.setup()


def _percentiles(samples_ms: list[float]) -> dict[str, float]:
    ordered = sorted(samples_ms)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {
        "p50": at(0.50),
        "p95": at(0.95),
        "p99": at(0.99),
        "mean": statistics.fmean(ordered),
    }


def _setup(budget_ms: int):
    """Two use cases on the breast-cancer data, the same fitted pipeline as champion of both."""
    import numpy as np
    import skops.io as sio
    from rest_framework.authtoken.models import Token

    from deployments.services.model_versions import model_version_register
    from deployments.services.policies import policy_change
    from deployments.services.use_cases import use_case_create
    from reviewapp.core.roles import Role, role_groups_ensure
    from reviewapp.demo import datasets

    groups = role_groups_ensure()
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user(username="bench-caller", password="x" * 12)
    user.groups.add(groups[Role.MANAGER])
    dataset = datasets.breast_cancer()
    model = sio.dumps(datasets.fit(dataset, np.arange(len(dataset.frame))))
    slugs = {}
    for name, budget in (("floor", None), ("budget", budget_ms)):
        use_case = use_case_create(
            actor=user,
            slug=f"bench-{name}",
            name=f"Bench {name}",
            task_type=dataset.task_type,
            features=dataset.features,
            labels=dataset.labels,
            latency_budget_ms=budget,
        )
        policy_change(
            use_case=use_case,
            actor=user,
            changes={"level": "partial", "confidence_threshold": 0.9, "audit_rate": 0.0},
            reason="benchmark",
        )
        model_version_register(
            use_case=use_case,
            version="v1",
            data=model,
            actor=user,
            reference=dataset.frame.head(200),
        )
        slugs[name] = use_case.slug
    rows = dataset.frame.to_dict(orient="records")
    token = Token.objects.create(user=user).key
    return slugs, rows, token


def _requests(n: int, budget_ms: int) -> dict[str, list[float]]:
    from rest_framework.test import APIClient

    slugs, rows, token = _setup(budget_ms)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    timings: dict[str, list[float]] = {"floor": [], "budget": []}
    warmup = 10
    for i in range(n + warmup):
        # Alternate the variants so drift on a shared machine hits both alike.
        order = ("floor", "budget") if i % 2 == 0 else ("budget", "floor")
        for name in order:
            body = {"external_id": f"{name}-{i}", "features": rows[i % len(rows)]}
            started = time.perf_counter()
            response = client.post(f"/api/v1/use-cases/{slugs[name]}/items/", body, format="json")
            elapsed = (time.perf_counter() - started) * 1000
            if response.status_code != 201:
                raise RuntimeError(f"{name}: {response.status_code} {response.content[:300]!r}")
            if i >= warmup:
                timings[name].append(elapsed)
    return timings


def _handoff(n: int) -> dict[str, list[float]]:
    """One single-row model call inline, then the same call through the realtime pool."""
    import numpy as np

    from deployments.ml.latency import TimeoutPool
    from deployments.ml.scoring import score_rows
    from reviewapp.demo import datasets

    dataset = datasets.breast_cancer()
    model = datasets.fit(dataset, np.arange(len(dataset.frame)))
    rows = dataset.frame.to_dict(orient="records")

    def call(i: int):
        return score_rows(
            model, [rows[i % len(rows)]], dataset.features, task_type=dataset.task_type
        )

    pool = TimeoutPool(max_workers=4, name="bench")
    timings: dict[str, list[float]] = {"inline": [], "pool": []}
    try:
        for i in range(n):
            for name in ("inline", "pool") if i % 2 else ("pool", "inline"):
                started = time.perf_counter()
                if name == "inline":
                    call(i)
                else:
                    pool.call(lambda i=i: call(i), timeout=10)
                timings[name].append((time.perf_counter() - started) * 1000)
    finally:
        pool.shutdown()
    return timings


def _table(title: str, floor_name: str, rows: dict[str, list[float]]) -> None:
    stats = {name: _percentiles(samples) for name, samples in rows.items()}
    floor = stats[floor_name]
    print(f"\n{title}")
    header = f"{'variant':<22}{'n':>6}{'p50 ms':>10}{'p95 ms':>10}{'p99 ms':>10}{'mean ms':>10}"
    print(header + f"{'ratio p50':>11}{'ratio mean':>12}")
    for name, figures in stats.items():
        print(
            f"{name:<22}{len(rows[name]):>6}{figures['p50']:>10.3f}{figures['p95']:>10.3f}"
            f"{figures['p99']:>10.3f}{figures['mean']:>10.3f}"
            f"{figures['p50'] / floor['p50']:>11.2f}{figures['mean'] / floor['mean']:>12.2f}"
        )
    others = [name for name in stats if name != floor_name]
    for name in others:
        added = (stats[name]["p50"] - floor["p50"]) * 1000
        print(f"{name}: {added:+.0f} µs at p50 over the floor ({floor_name})")


def main(small: bool) -> None:
    _django()
    from django.conf import settings
    from django.db import connection

    from benchmarks.harness import throwaway_database

    n = 60 if small else 600
    budget_ms = 10_000
    settings.MODEL_LATENCY_PROBE_CALLS = 20 if small else 300
    with throwaway_database():
        print(
            f"Latency budget overhead on a realtime single-item request "
            f"({connection.vendor}, {n} requests per variant, budget {budget_ms} ms never hit)"
        )
        _table(
            "Full request (POST /items/, partial level, breast-cancer logistic pipeline)",
            "floor",
            {
                "floor": (timings := _requests(n, budget_ms))["floor"],
                "budget": timings["budget"],
            },
        )
        _table(
            "The model call alone (single row), inline vs through the pool",
            "inline",
            _handoff(200 if small else 2000),
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="CI-size run")
    main(small=parser.parse_args().small)
