"""Backtest of 100,000 human-labelled items over 100 thresholds (5,000 with --small).

The floor is the bare vectorised ``predict_proba`` of the same model over the same rows,
already in a DataFrame, measured in the same run; the ratio says what reading the items from
the database, building frames, checking every output, tallying 100 thresholds and replaying
every item through the routing policy cost on top of the model itself. Target: <= 10 s for
100,000 items on PostgreSQL.

Runs in a throwaway test database (``test_<name>`` of DATABASE_URL's database), never the
development one. ``python benchmarks/bench_backtest.py [--small]``
"""

import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "reviewapp.settings")

FEATURES = [
    *({"name": f"x{i}", "type": "number", "required": True} for i in range(8)),
    {"name": "kind", "type": "category", "categories": ["a", "b", "c", "d"], "required": False},
]
LABELS = ["low", "mid", "high"]


def _data(n: int, seed: int):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({f"x{i}": rng.normal(size=n).round(4) for i in range(8)})
    frame["kind"] = rng.choice(["a", "b", "c", "d"], size=n)
    score = frame["x0"] + 0.5 * frame["x1"] - 0.3 * frame["x2"] + (frame["kind"] == "a")
    score = score + rng.normal(scale=0.6, size=n)
    labels = np.where(score > 0.8, "high", np.where(score < -0.4, "low", "mid"))
    return frame, labels


def _model_bytes() -> bytes:
    import skops.io as sio
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    frame, labels = _data(5000, seed=1)
    pipeline = Pipeline(
        [
            (
                "features",
                ColumnTransformer(
                    [
                        ("num", StandardScaler(), [f"x{i}" for i in range(8)]),
                        ("kind", OneHotEncoder(handle_unknown="ignore"), ["kind"]),
                    ]
                ),
            ),
            ("model", LogisticRegression(max_iter=500)),
        ]
    )
    return sio.dumps(pipeline.fit(frame, labels))


def _seed(n: int, slug: str = "bench-backtest"):
    """A use case in assisted with ``n`` items a human decided over the last 30 days."""
    from datetime import timedelta

    import numpy as np
    from django.utils import timezone

    from deployments.policy import item_buckets
    from deployments.services.model_versions import model_version_register
    from deployments.services.policies import policy_change
    from deployments.services.use_cases import use_case_create
    from reviewapp.reviews.models import Item

    use_case = use_case_create(
        actor=None,
        slug=slug,
        name="Backtest benchmark",
        task_type="classification",
        features=FEATURES,
        labels=LABELS,
    )
    frame, labels = _data(n, seed=2)
    model_version_register(
        use_case=use_case, version="v1", data=_model_bytes(), actor=None, reference=frame[:2000]
    )
    policy_change(
        use_case=use_case,
        actor=None,
        changes={"level": "partial", "confidence_threshold": 0.8, "traffic_percent": 50},
        reason="benchmark",
    )
    now = timezone.now()
    rng = np.random.default_rng(3)
    rows = frame.to_dict(orient="records")
    items = []
    for i, (features, label) in enumerate(zip(rows, labels, strict=True)):
        external_id = f"b-{i}"
        buckets = item_buckets(salt=use_case.slug, key=external_id)
        human = label if rng.random() > 0.05 else LABELS[(LABELS.index(label) + 1) % 3]
        at = now - timedelta(seconds=int(rng.integers(60, 30 * 86_400)))
        items.append(
            Item(
                use_case=use_case,
                external_id=external_id,
                features=features,
                ramp_bucket=buckets.ramp,
                audit_bucket=buckets.audit,
                double_review_bucket=buckets.double_review,
                status=Item.Status.DECIDED,
                route="assisted",
                decision_label=str(human),
                decision_source=Item.Source.HUMAN,
                decided_at=at,
                received_at=at,
                routed_at=at,
            )
        )
    Item.objects.bulk_create(items, batch_size=5000)
    return use_case, frame


def _best_of(runs: int, fn) -> float:
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def main(small: bool = False) -> dict:
    import django

    django.setup()
    from django.conf import settings

    from benchmarks.harness import throwaway_database
    from deployments.selectors import champion_get
    from deployments.services.estimators import estimator_for
    from reviewapp.celery import app as celery_app
    from reviewapp.control.backtests import backtest_start
    from reviewapp.core.models import Job

    n = 5_000 if small else 100_000
    # Eager: the job queued by backtest_start runs in process when its transaction commits,
    # so the timing covers the whole way from the request to the stored result.
    celery_app.conf.task_always_eager = True
    with throwaway_database():
        started = time.perf_counter()
        use_case, frame = _seed(n)
        seeded = time.perf_counter() - started
        estimator = estimator_for(champion_get(use_case=use_case))
        floor = _best_of(3, lambda: estimator.predict_proba(frame))

        def read_rows():
            rows = use_case.items.order_by("pk").values_list("pk", "features", "decision_label")
            return list(rows)

        read = _best_of(1, read_rows)
        timings = []
        for _ in range(2 if small else 1):
            started = time.perf_counter()
            job = backtest_start(use_case=use_case, actor=None, model_version="v1")
            timings.append(time.perf_counter() - started)
        job = Job.objects.get(pk=job.pk)
        assert job.state == Job.State.DONE, job.error
        assert job.result["items"] == n and len(job.result["curve"]["thresholds"]) == 100
        backtest = min(timings)

    engine = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
    rows = [
        ("items (human-labelled)", f"{n:,}"),
        ("thresholds", "100"),
        ("database", engine),
        ("floor: predict_proba over the rows", f"{floor:.3f} s"),
        ("reading the rows (for reference)", f"{read:.3f} s"),
        ("backtest job, start to result", f"{backtest:.3f} s"),
        ("ratio backtest / floor", f"{backtest / floor:.1f}x"),
        (
            "target (100,000 items)",
            "<= 10 s" + ("" if small else (" ok" if backtest <= 10 else " MISSED")),
        ),
        ("(seeding, not timed)", f"{seeded:.1f} s"),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"\nbench_backtest ({'small' if small else 'full'})")
    for name, value in rows:
        print(f"  {name:<{width}}  {value:>14}")
    return {"items": n, "floor_s": floor, "backtest_s": backtest, "ratio": backtest / floor}


if __name__ == "__main__":
    main(small="--small" in sys.argv[1:])
