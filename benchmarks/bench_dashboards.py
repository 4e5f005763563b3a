"""Dashboards over a month of history, and the drift statistics behind them.

1. Dashboard server time. A use case with 20 features gets items spread over 30 days (with
   their predictions, review tasks and decisions) by COPY into PostgreSQL; the monitoring
   rollups are rebuilt from those raw rows; then every dashboard tab is requested through the
   whole Django stack (session, middleware, view, selectors, figures, template). First with
   10,000 items, then with 1,000,000 (small: 2,000 then 5,000): the figures should not grow
   with the history, since dashboards read hourly rollups only. Target: at most 300 ms per tab.
2. Drift statistics. The fold's per-feature statistics (missing, moments, min/max, histogram
   on the reference bins, per hour) over 1,000,000 rows x 20 features (small: 25,000),
   against the same statistics computed with bare NumPy in the same run (the floor).
   Target: within 2x of the floor.

    DATABASE_URL=postgres://... python benchmarks/bench_dashboards.py [--small]

It creates (and drops) its own test database, so it never touches the app's data. Without
PostgreSQL only part 2 runs.
"""

import gc
import io
import math
import os
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

NUMERIC = [f"f{i:02d}" for i in range(16)]
CATEGORICAL = [f"c{i}" for i in range(4)]
CATEGORIES = list("abcdefgh")
DAYS = 30
TABS = ("automation", "quality", "inputs", "outputs", "software")
TARGET_MS = 300.0
REVIEWERS = 5


def _django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "reviewapp.settings")
    import django

    django.setup()


# --- data -------------------------------------------------------------------------------------


def reference_frame(rows: int, seed: int = 0):
    import pandas as pd

    rng = np.random.default_rng(seed)
    frame = {name: rng.normal(i % 5, 1 + i % 3, size=rows) for i, name in enumerate(NUMERIC)}
    for name in CATEGORICAL:
        frame[name] = rng.choice(CATEGORIES, size=rows, p=np.linspace(1, 2, 8) / 12)
    return pd.DataFrame(frame)


def use_case_make():
    """A use case with 20 features on partial automation, and a trained champion."""
    import skops.io as sio
    from django.contrib.auth import get_user_model
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from deployments.models import UseCaseMembership
    from deployments.services.model_versions import model_version_register
    from deployments.services.policies import policy_change
    from deployments.services.use_cases import use_case_create
    from reviewapp.core.roles import Role, role_groups_ensure

    groups = role_groups_ensure()
    User = get_user_model()
    manager = User.objects.create_user("bench-manager", password="bench-pass-123")
    manager.groups.add(groups[Role.MANAGER])
    reviewers = []
    for n in range(REVIEWERS):
        user = User.objects.create_user(f"bench-reviewer-{n}", password="bench-pass-123")
        user.groups.add(groups[Role.REVIEWER])
        reviewers.append(user)
    features = [{"name": n, "type": "number"} for n in NUMERIC] + [
        {"name": n, "type": "category", "categories": CATEGORIES, "required": False}
        for n in CATEGORICAL
    ]
    use_case = use_case_create(
        actor=manager,
        slug="bench",
        name="Benchmark",
        task_type="classification",
        labels=["yes", "no"],
        features=features,
        now=datetime.now(UTC) - timedelta(days=DAYS + 1),
    )
    for user in reviewers:
        UseCaseMembership.objects.create(use_case=use_case, user=user)
    reference = reference_frame(4000)
    target = np.where(reference["f00"] + reference["f01"] > 1.5, "yes", "no")
    pipeline = Pipeline(
        [
            (
                "features",
                ColumnTransformer(
                    [
                        ("num", StandardScaler(), NUMERIC),
                        ("cat", OneHotEncoder(handle_unknown="ignore"), CATEGORICAL),
                    ]
                ),
            ),
            ("model", LogisticRegression(max_iter=300)),
        ]
    )
    champion = model_version_register(
        use_case=use_case,
        version="v1",
        data=sio.dumps(pipeline.fit(reference, target)),
        actor=manager,
        reference=reference,
    )
    policy = policy_change(
        use_case=use_case,
        actor=manager,
        changes={"level": "partial", "confidence_threshold": 0.8, "audit_rate": 0.05},
        reason="benchmark",
        now=datetime.now(UTC) - timedelta(days=DAYS),
    )
    return use_case, champion, policy, manager, reviewers


def _next_ids(cursor, tables: list[str]) -> dict[str, int]:
    out = {}
    for table in tables:
        cursor.execute(f"SELECT COALESCE(MAX(id), 0) + 1 FROM {table}")
        out[table] = cursor.fetchone()[0]
    return out


def _ts(values: np.ndarray) -> list[str]:
    return [datetime.fromtimestamp(v, UTC).isoformat() for v in values.tolist()]


def items_copy(*, use_case, champion, policy, reviewers, count: int, seed: int) -> None:
    """Load ``count`` items over the last 30 days with COPY: predictions, tasks, decisions."""
    from django.db import connection, transaction

    from reviewapp.reviews.partitions import partitions_for_items

    rng = np.random.default_rng(seed)
    end = datetime.now(UTC).timestamp()
    received = np.sort(rng.uniform(end - DAYS * 86400, end - 60, size=count))
    # Inputs drift slowly over the month on the first features.
    ramp = (received - received.min()) / (DAYS * 86400)
    numbers = {
        name: np.round(
            rng.normal(i % 5 + (ramp * 0.8 if i < 4 else 0), 1 + i % 3, size=count), 4
        ).tolist()
        for i, name in enumerate(NUMERIC)
    }
    cats = {name: rng.choice(CATEGORIES + [None], size=count).tolist() for name in CATEGORICAL}
    confidence = np.round(rng.uniform(0.5, 1.0, size=count), 4)
    null = rng.random(count) < 0.01
    in_ramp = rng.random(count) < 0.9
    auto = (confidence >= 0.8) & in_ramp & ~null
    human_route = null
    route = np.where(auto, "auto", np.where(human_route, "human", "assisted"))
    label = np.where(rng.random(count) < 0.55, "yes", "no")
    audited = auto & (rng.random(count) < 0.05)
    reviewed = ~auto
    decided = reviewed & (received < end - 3600) | (reviewed & (rng.random(count) < 0.5))
    latency = np.round(rng.lognormal(-1.2, 0.5, size=count), 4)
    human_label = np.where(rng.random(count) < 0.9, label, np.where(label == "yes", "no", "yes"))

    with connection.cursor() as cursor:
        ids = _next_ids(
            cursor, ["reviews_item", "reviews_prediction", "reviews_reviewtask", "reviews_decision"]
        )
    item_ids = np.arange(ids["reviews_item"], ids["reviews_item"] + count)
    prediction_ids = np.arange(ids["reviews_prediction"], ids["reviews_prediction"] + count)
    received_ts = _ts(received)
    routed_ts = _ts(received + 0.05)
    decided_at = received + rng.uniform(60, 3600, size=count)
    decided_ts = _ts(decided_at)
    feature_json = [
        "{"
        + ", ".join(
            [f'"{n}": {numbers[n][i]!r}' for n in NUMERIC]
            + [
                f'"{n}": ' + ("null" if cats[n][i] is None else f'"{cats[n][i]}"')
                for n in CATEGORICAL
            ]
        )
        + "}"
        for i in range(count)
    ]
    items, predictions, tasks, decisions = (
        io.StringIO(),
        io.StringIO(),
        io.StringIO(),
        io.StringIO(),
    )
    task_id, decision_id = ids["reviews_reviewtask"], ids["reviews_decision"]
    for i in range(count):
        is_auto = bool(auto[i])
        done = bool(decided[i])
        human = reviewed[i] and done or audited[i]
        status = "decided" if (is_auto or done) else "in_review"
        final_label = human_label[i] if human else (label[i] if is_auto else "")
        source = "human" if human else ("model" if is_auto else "")
        items.write(
            f"{item_ids[i]}\t{use_case.pk}\tb{seed}-{i}\t{feature_json[i]}\t\\N\t{i % 10000}\t"
            f"{(i * 7) % 10000}\t{(i * 13) % 10000}\t{status}\t{route[i]}\t{policy.pk}\t"
            f"{prediction_ids[i]}\t{final_label}\t\\N\t{source}\t"
            f"{decided_ts[i] if (is_auto or done) else chr(92) + 'N'}\t{received_ts[i]}\t"
            f"{routed_ts[i]}\t\\N\n"
        )
        error = "ValueError: bench" if null[i] else ""
        predictions.write(
            f"{prediction_ids[i]}\t{item_ids[i]}\t{use_case.pk}\t{champion.pk}\t"
            f"{'' if null[i] else label[i]}\t\\N\t{chr(92) + 'N' if null[i] else confidence[i]}\t"
            f"\\N\t{latency[i]}\t{error}\t{routed_ts[i]}\n"
        )
        for reason, wanted in (("review", reviewed[i]), ("audit", audited[i])):
            if not wanted:
                continue
            show = reason == "review" and route[i] == "assisted"
            finished = done or reason == "audit"
            tasks.write(
                f"{task_id}\t{item_ids[i]}\t{use_case.pk}\t{reason}\t{'t' if show else 'f'}\t"
                f"{'done' if finished else 'open'}\t\\N\t\\N\t\\N\t\\N\t{routed_ts[i]}\t"
                f"{decided_ts[i] if finished else chr(92) + 'N'}\n"
            )
            if finished:
                kind = (
                    "blind"
                    if not show
                    else ("accepted" if human_label[i] == label[i] else "overridden")
                )
                decisions.write(
                    f"{decision_id}\t{task_id}\t{item_ids[i]}\t{use_case.pk}\t"
                    f"{reviewers[i % REVIEWERS].pk}\t{human_label[i]}\t\\N\t\t{kind}\t"
                    f"{int(rng.gamma(4, 1500))}\t\\N\t{decided_ts[i]}\n"
                )
                decision_id += 1
            task_id += 1
    columns = {
        "reviews_item": "id, use_case_id, external_id, features, external_prediction, ramp_bucket, "
        "audit_bucket, double_review_bucket, status, route, policy_id, prediction_id, "
        "decision_label, decision_value, decision_source, decided_at, received_at, routed_at, "
        "job_id",
        "reviews_prediction": "id, item_id, use_case_id, model_version_id, label, value, "
        "confidence, probabilities, latency_ms, error, created_at",
        "reviews_reviewtask": "id, item_id, use_case_id, reason, show_suggestion, state, "
        "claimed_by_id, claimed_at, lease_token, lease_expires_at, created_at, done_at",
        "reviews_decision": "id, task_id, item_id, use_case_id, reviewer_id, label, value, "
        "comment, kind, time_spent_ms, idempotency_key, created_at",
    }
    buffers = {
        "reviews_item": items,
        "reviews_prediction": predictions,
        "reviews_reviewtask": tasks,
        "reviews_decision": decisions,
    }
    # Ids counted from 1 belong to the partition of the rows from before the monthly
    # partitions (PostgreSQL): it is created if this database has none.
    partitions_for_items([int(item_ids[0]), int(item_ids[-1])])
    with transaction.atomic(), connection.cursor() as cursor:
        # The item -> prediction foreign key is deferred to the commit, so items can go first.
        for table, buffer in buffers.items():
            with cursor.cursor.copy(f"COPY {table} ({columns[table]}) FROM STDIN") as copy:
                copy.write(buffer.getvalue())
        for table in buffers:
            cursor.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"(SELECT MAX(id) FROM {table}))"
            )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


# --- measurements -----------------------------------------------------------------------------


def dashboard_times(*, use_case, manager, repeat: int = 5) -> dict[str, float]:
    """Median server time per tab (htmx panel request through the whole stack), ms."""
    from django.test import Client

    client = Client()
    client.force_login(manager)
    out = {}
    for tab in TABS:
        url = f"/monitoring/{use_case.slug}/{tab}/?range=30d"
        response = client.get(url, HTTP_HX_REQUEST="true")  # warm-up
        assert response.status_code == 200, (tab, response.status_code)
        samples = []
        for _ in range(repeat):
            started = time.perf_counter()
            client.get(url, HTTP_HX_REQUEST="true")
            samples.append((time.perf_counter() - started) * 1000)
        out[tab] = statistics.median(samples)
    url = f"/api/v1/use-cases/{use_case.slug}/metrics/"
    assert client.get(url).status_code == 200
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        client.get(url)
        samples.append((time.perf_counter() - started) * 1000)
    out["metrics API"] = statistics.median(samples)
    return out


def drift_kernel(rows: int) -> tuple[float, float]:
    """Seconds for the fold's feature statistics and for bare NumPy doing the same."""

    from deployments.ml.reference import reference_stats_compute
    from reviewapp.monitoring import stats
    from reviewapp.monitoring.aggregation import Accumulator, features_group_add

    reference = reference_frame(5000, seed=1)
    specs = [{"name": n, "type": "number"} for n in NUMERIC] + [
        {"name": n, "type": "category"} for n in CATEGORICAL
    ]
    bins = {
        name: stats.feature_bins(ref)
        for name, ref in reference_stats_compute(reference, specs)["features"].items()
    }
    rng = np.random.default_rng(2)
    frame = reference_frame(rows, seed=3)
    for name in NUMERIC:
        frame.loc[rng.random(rows) < 0.02, name] = np.nan
    for name in CATEGORICAL:
        frame[name] = frame[name].astype(object)
        frame.loc[rng.random(rows) < 0.02, name] = None
    hours = np.sort(rng.integers(0, DAYS * 24, size=rows))
    n_groups = DAYS * 24
    base = datetime(2026, 1, 1, tzinfo=UTC)
    keys_of = [base + timedelta(hours=h) for h in range(n_groups)]

    def ours_run() -> None:
        acc = Accumulator()
        for name in NUMERIC + CATEGORICAL:
            features_group_add(
                acc,
                keys=[(1, 1, k, name) for k in keys_of],
                numeric=name in NUMERIC,
                column=frame[name],
                groups=hours,
                bins=bins[name],
            )

    # The floor: the same figures per hour with bare NumPy on plain arrays.
    numeric_arrays = {n: frame[n].to_numpy(dtype=float) for n in NUMERIC}
    text_arrays = {n: frame[n].fillna("").to_numpy(dtype=str) for n in CATEGORICAL}

    def floor_run() -> None:
        for name, x in numeric_arrays.items():
            missing = np.isnan(x)
            np.bincount(hours, minlength=n_groups)
            np.bincount(hours[missing], minlength=n_groups)
            xp, gp = x[~missing], hours[~missing]
            np.bincount(gp, weights=xp, minlength=n_groups)
            np.bincount(gp, weights=xp * xp, minlength=n_groups)
            lo, hi = np.full(n_groups, np.inf), np.full(n_groups, -np.inf)
            np.minimum.at(lo, gp, xp)
            np.maximum.at(hi, gp, xp)
            edges = np.asarray(bins[name]["edges"])
            width = len(edges) + 1
            np.bincount(
                gp * width + np.searchsorted(edges, xp, side="right"),
                minlength=n_groups * width,
            )
        for name, values in text_arrays.items():
            categories = np.asarray(bins[name]["categories"])
            order = np.argsort(categories)
            missing = values == ""
            np.bincount(hours, minlength=n_groups)
            np.bincount(hours[missing], minlength=n_groups)
            present, gp = values[~missing], hours[~missing]
            position = np.clip(np.searchsorted(categories[order], present), 0, len(categories) - 1)
            code = np.where(
                categories[order][position] == present, order[position], len(categories)
            )
            width = len(categories) + 1
            np.bincount(gp * width + code, minlength=n_groups * width)

    def best_of(run, times: int = 3) -> float:
        best = math.inf
        for _ in range(times):
            gc.collect()  # each run starts without garbage from the data set-up
            started = time.perf_counter()
            run()
            best = min(best, time.perf_counter() - started)
        return best

    ours, floor = best_of(ours_run), best_of(floor_run)
    return ours, floor


def _measure_dashboards(small: bool) -> None:
    from reviewapp.monitoring.services import rollups_rebuild

    use_case, champion, policy, manager, reviewers = use_case_make()
    sizes = [2_000, 5_000] if small else [10_000, 1_000_000]
    results = []
    loaded = 0
    for size in sizes:
        started = time.perf_counter()
        step = 200_000
        while loaded < size:
            batch = min(step, size - loaded)
            items_copy(
                use_case=use_case,
                champion=champion,
                policy=policy,
                reviewers=reviewers,
                count=batch,
                seed=loaded,
            )
            loaded += batch
        load_s = time.perf_counter() - started
        started = time.perf_counter()
        counts = rollups_rebuild(use_case=use_case)
        rebuild_s = time.perf_counter() - started
        times = dashboard_times(use_case=use_case, manager=manager)
        results.append((size, load_s, rebuild_s, counts, times))
        print(
            f"{size:>9,} items: COPY {load_s:6.1f} s; rollups rebuilt from "
            f"{counts['items']:,} items + {counts['decisions']:,} decisions in {rebuild_s:6.1f} s "
            f"({counts['items'] / rebuild_s:,.0f} items/s)",
            flush=True,
        )
    print()
    small_n, big_n = results[0][0], results[-1][0]
    print(f"{'dashboard (30 days, server ms)':<32}{small_n:>12,}{big_n:>14,}{'ratio':>8}  target")
    worst = 0.0
    for key in [*TABS, "metrics API"]:
        a, b = results[0][4][key], results[-1][4][key]
        worst = max(worst, b)
        ok = "ok" if b <= TARGET_MS else "OVER"
        print(f"{key:<32}{a:>12.1f}{b:>14.1f}{b / a:>8.2f}  <= {TARGET_MS:.0f} ms {ok}")
    print(f"slowest tab at {big_n:,} items: {worst:.1f} ms")


def _measure_kernel(small: bool) -> None:
    rows = 25_000 if small else 1_000_000
    ours, floor = drift_kernel(rows)
    print()
    print(f"{'drift statistics, ' + format(rows, ',') + ' rows x 20 features':<48}{'s':>8}")
    print(f"{'bare NumPy (floor)':<48}{floor:>8.3f}")
    print(f"{'the fold (monitoring.aggregation)':<48}{ours:>8.3f}")
    verdict = "ok" if ours / floor <= 2 else "OVER"
    print(f"{'ratio (target <= 2)':<48}{ours / floor:>8.2f}  {verdict}")


def main(small: bool) -> None:
    _django()
    from django.conf import settings

    from benchmarks.harness import throwaway_database

    if not settings.IS_POSTGRES:
        print("note: the dashboard figures need PostgreSQL (set DATABASE_URL); kernel only")
        _measure_kernel(small)
        return
    with throwaway_database(debug=False):
        from reviewapp.celery import app

        app.conf.task_always_eager = True
        _measure_dashboards(small)
        _measure_kernel(small)


if __name__ == "__main__":
    main(small="--small" in sys.argv[1:])
