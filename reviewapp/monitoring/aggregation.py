"""What each fact adds to the rollups, computed from the raw rows in bulk.

The incremental fold and the rebuild both go through these functions: they differ only in
which facts they feed in (pending events, or every raw row), so a rebuild equals the sum of
the folds when every fact was recorded exactly once.
"""

import math
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from django.db.models import Count

from deployments.ml.latency import LATENCY_BUDGET_EXCEEDED
from deployments.ml.scoring import NUMERIC_TYPES
from deployments.models import ModelVersion, UseCase
from deployments.policy import Route
from reviewapp.monitoring import stats
from reviewapp.reviews.models import Decision, Item, Prediction, ReviewTask

HOURLY_COUNTERS = (
    "items_routed",
    "route_auto",
    "route_assisted",
    "route_blind",
    "route_human",
    "reviewed_items",
    "reviewed_items_decided",
    "tasks_created",
    "predictions",
    "null_outputs",
    "budget_timeouts",
    "latency_count",
    "latency_sum_ms",
    "decisions",
    "decisions_accepted",
    "decisions_overridden",
    "decisions_blind",
    "review_time_count",
    "review_time_sum_ms",
    "audits",
    "audit_errors",
    "labelled",
    "agree",
    "labelled_blind",
    "agree_blind",
    "error_sum",
    "abs_error_sum",
    "sq_error_sum",
    "quad_error_sum",
    "audited",
    "audited_agree",
    "double_reviewed",
    "double_agree",
    "double_abs_error_sum",
    "double_sq_error_sum",
)
HOURLY_MAPS = (
    "latency_buckets",
    "outputs",
    "review_time_buckets",
    "reviewers",
    "confusion",
    "calibration",
)
FEATURE_COUNTERS = ("rows", "missing", "sum", "sum_sq", "below_range", "above_range", "unseen")

HourKey = tuple[int, int | None, bool, datetime]
FeatureKey = tuple[int, int | None, datetime, str]


def hour_of(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _new_hourly() -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(HOURLY_COUNTERS, 0)
    row.update({name: {} for name in HOURLY_MAPS})
    return row


def _new_feature() -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(FEATURE_COUNTERS, 0)
    row.update({"min": None, "max": None, "hist": []})
    return row


def _min(a, b):
    return b if a is None else a if b is None else min(a, b)


def _max(a, b):
    return b if a is None else a if b is None else max(a, b)


def hourly_merge(target: dict[str, Any], source: dict[str, Any]) -> None:
    for name in HOURLY_COUNTERS:
        target[name] = target[name] + source[name]
    for name in HOURLY_MAPS:
        stats.counts_add(target[name], source[name])


def feature_merge(target: dict[str, Any], source: dict[str, Any]) -> None:
    for name in FEATURE_COUNTERS:
        target[name] = target[name] + source[name]
    target["min"] = _min(target["min"], source["min"])
    target["max"] = _max(target["max"], source["max"])
    if source["hist"]:
        if not target["hist"]:
            target["hist"] = [0] * len(source["hist"])
        target["hist"] = [a + b for a, b in zip(target["hist"], source["hist"], strict=True)]


@dataclass
class Accumulator:
    """Additions to the rollups, keyed like the rows they go to."""

    hourly: dict[HourKey, dict[str, Any]] = field(default_factory=lambda: defaultdict(_new_hourly))
    # Feature statistics arrive as columnar blocks (one per feature and batch of items).
    feature_blocks: list[tuple] = field(default_factory=list)
    _features: dict[FeatureKey, dict[str, Any]] = field(default_factory=dict)

    @property
    def features(self) -> dict[FeatureKey, dict[str, Any]]:
        """Feature rows by key, the blocks folded in."""
        while self.feature_blocks:
            for key, row in _block_rows(self.feature_blocks.pop(0)):
                existing = self._features.get(key)
                if existing is None:
                    self._features[key] = row
                else:
                    feature_merge(existing, row)
        return self._features

    def __bool__(self) -> bool:
        return bool(self.hourly or self.feature_blocks or self._features)


class Context:
    """Use cases and model versions' reference bins, loaded once per fold."""

    def __init__(self) -> None:
        self._use_cases: dict[int, UseCase] = {}
        self._bins: dict[int, dict[str, Any]] = {}

    def use_case(self, pk: int) -> UseCase:
        if pk not in self._use_cases:
            self._use_cases[pk] = UseCase.objects.get(pk=pk)
        return self._use_cases[pk]

    def bins(self, model_version_id: int | None) -> dict[str, Any]:
        """Feature name -> bins on that model version's training reference (or None)."""
        if model_version_id is None:
            return {}
        if model_version_id not in self._bins:
            reference = (
                ModelVersion.objects.filter(pk=model_version_id)
                .values_list("reference_stats", flat=True)
                .first()
            ) or {}
            features = reference.get("features") or {}
            self._bins[model_version_id] = {
                name: stats.feature_bins(ref) for name, ref in features.items()
            }
        return self._bins[model_version_id]


def _differs(use_case: UseCase, model_label, model_value, human_label, human_value) -> bool:
    if use_case.is_classification:
        return model_label != human_label
    if model_value is None or human_value is None:
        return False
    return abs(model_value - human_value) > (use_case.tolerance or 0.0)


def _value_bin(use_case: UseCase, value: float) -> int:
    return int(
        stats.value_bins(
            np.asarray([value]),
            value_min=use_case.value_min,
            value_max=use_case.value_max,
            tolerance=use_case.tolerance,
        )[0]
    )


def _prediction_add(row: dict, use_case: UseCase, p: dict[str, Any]) -> None:
    """One prediction: counted, its latency bucketed, its answer (if usable) tallied."""
    row["predictions"] += 1
    if p["latency_ms"] is not None:
        row["latency_count"] += 1
        row["latency_sum_ms"] += p["latency_ms"]
        bucket = str(int(stats.duration_bucket(np.asarray([p["latency_ms"]]))[0]))
        row["latency_buckets"][bucket] = row["latency_buckets"].get(bucket, 0) + 1
    if p["error"]:
        row["null_outputs"] += 1
        if p["error"].startswith(LATENCY_BUDGET_EXCEEDED):
            row["budget_timeouts"] += 1
        return
    key = p["label"] if use_case.is_classification else str(_value_bin(use_case, p["value"]))
    row["outputs"][key] = row["outputs"].get(key, 0) + 1


def _pair_add(row: dict, use_case: UseCase, p: dict[str, Any], human: dict, blind: bool) -> bool:
    """A usable prediction against the item's first human answer; True when they differ."""
    differs = _differs(use_case, p["label"], p["value"], human["label"], human["value"])
    row["labelled"] += 1
    row["agree"] += not differs
    if blind:
        row["labelled_blind"] += 1
        row["agree_blind"] += not differs
    calibration = row["calibration"]
    if use_case.is_classification:
        cell = f"{p['label']}|{human['label']}"
        if p["confidence"] is not None:
            b = int(stats.confidence_bins(np.asarray([p["confidence"]]))[0])
            for stat, amount in (("n", 1), ("x", p["confidence"]), ("y", float(not differs))):
                calibration[f"{b}:{stat}"] = calibration.get(f"{b}:{stat}", 0) + amount
    else:
        error = p["value"] - human["value"]
        row["error_sum"] += error
        row["abs_error_sum"] += abs(error)
        row["sq_error_sum"] += error * error
        # Σe⁴ gives the MSE its t-interval (the MSE is the mean of e², whose square is e⁴).
        row["quad_error_sum"] += error**4
        predicted, truth = _value_bin(use_case, p["value"]), _value_bin(use_case, human["value"])
        cell = f"{predicted}|{truth}"
        for stat, amount in (("n", 1), ("x", p["value"]), ("y", human["value"])):
            calibration[f"{predicted}:{stat}"] = calibration.get(f"{predicted}:{stat}", 0) + amount
    row["confusion"][cell] = row["confusion"].get(cell, 0) + 1
    return differs


PREDICTION_FIELDS = (
    "id",
    "model_version_id",
    "label",
    "value",
    "confidence",
    "latency_ms",
    "error",
)


def _routing_prediction(row: dict[str, Any]) -> dict[str, Any] | None:
    if row["prediction_id"] is None:
        return None
    return {
        "id": row["prediction_id"],
        "model_version_id": row["prediction__model_version_id"],
        **{f: row[f"prediction__{f}"] for f in PREDICTION_FIELDS[2:]},
    }


ITEM_FIELDS = (
    "id",
    "use_case_id",
    "received_at",
    "routed_at",
    "route",
    "features",
    "prediction_id",
    "prediction__model_version_id",
    *(f"prediction__{f}" for f in PREDICTION_FIELDS[2:]),
)


def items_add(acc: Accumulator, ctx: Context, item_ids: Sequence[int]) -> None:
    """Routed items: routes, queue entries, the routing prediction, the input features."""
    rows = list(Item.objects.filter(pk__in=item_ids).exclude(route="").values(*ITEM_FIELDS))
    if not rows:
        return
    tasks = dict(
        ReviewTask.objects.filter(item_id__in=[r["id"] for r in rows])
        .values("item_id")
        .annotate(n=Count("id"))
        .values_list("item_id", "n")
    )
    route_field = {route.value: f"route_{route.value}" for route in Route}
    groups: dict[tuple[int, int | None], list[dict]] = defaultdict(list)
    for row in rows:
        use_case = ctx.use_case(row["use_case_id"])
        version = row["prediction__model_version_id"]
        hour = hour_of(row["received_at"])
        bucket = acc.hourly[(row["use_case_id"], version, False, hour)]
        bucket["items_routed"] += 1
        bucket[route_field[row["route"]]] += 1
        if row["route"] != Route.AUTO:
            bucket["reviewed_items"] += 1
        prediction = _routing_prediction(row)
        if prediction is not None:
            _prediction_add(bucket, use_case, prediction)
        if tasks.get(row["id"]):
            routed = acc.hourly[(row["use_case_id"], version, False, hour_of(row["routed_at"]))]
            routed["tasks_created"] += tasks[row["id"]]
        groups[(row["use_case_id"], version)].append(row)
    for (use_case_id, version), group in groups.items():
        features_add(acc, ctx, use_case_id, version, group)


def features_add(
    acc: Accumulator, ctx: Context, use_case_id: int, version: int | None, rows: list[dict]
) -> None:
    """Input health of a group of items routed by one model version, vectorised per feature."""
    # Imported here, in the fold (a monitoring task): web processes import this module through
    # the signal receivers and never fold.
    import pandas as pd

    use_case = ctx.use_case(use_case_id)
    bins = ctx.bins(version)
    hours = [hour_of(r["received_at"]) for r in rows]
    distinct = sorted(set(hours))
    index = {h: i for i, h in enumerate(distinct)}
    groups = np.fromiter((index[h] for h in hours), dtype=np.int64, count=len(hours))
    frame = pd.DataFrame.from_records([r["features"] for r in rows])
    for spec in use_case.features:
        name = spec["name"]
        column = frame[name] if name in frame else pd.Series([None] * len(rows), dtype=object)
        feature_bins = bins.get(name)
        features_group_add(
            acc,
            keys=[(use_case_id, version, h, name) for h in distinct],
            numeric=spec["type"] in NUMERIC_TYPES,
            column=column,
            groups=groups,
            bins=feature_bins,
        )


def features_group_add(
    acc: Accumulator, *, keys: list[FeatureKey], numeric: bool, column, groups, bins
) -> None:
    import pandas as pd  # see features_add

    n = len(keys)
    if numeric:
        values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=float)
        edges = bins["edges"] if bins and bins["kind"] == "numeric" else None
        result = stats.numeric_group_stats(values, groups, n, edges)
    else:
        categories = bins["categories"] if bins and bins["kind"] == "categorical" else None
        result = stats.categorical_group_stats(column.to_numpy(dtype=object), groups, n, categories)
    # Convert whole columns to Python numbers at once; the loop below only builds the rows.
    rows, missing = result["rows"].tolist(), result["missing"].tolist()
    zeros = [0] * n
    sums = result["sum"].tolist() if numeric else zeros
    sums_sq = result["sum_sq"].tolist() if numeric else zeros
    lows = result["min"].tolist() if numeric else [math.inf] * n
    highs = result["max"].tolist() if numeric else zeros
    hists = result["hist"].tolist() if "hist" in result else None
    closed = bool(bins and bins.get("closed"))
    # Rows are built when the accumulator is written (see ``Accumulator.features``): the
    # statistics stay columnar until then.
    acc.feature_blocks.append(
        (keys, numeric, closed, rows, missing, sums, sums_sq, lows, highs, hists)
    )


def _block_rows(block) -> Iterator[tuple[FeatureKey, dict[str, Any]]]:
    keys, numeric, closed, rows, missing, sums, sums_sq, lows, highs, hists = block
    for i, key in enumerate(keys):
        if not rows[i]:
            continue
        hist = hists[i] if hists is not None else []
        finite = lows[i] != math.inf
        yield (
            key,
            {
                "rows": rows[i],
                "missing": missing[i],
                "sum": sums[i],
                "sum_sq": sums_sq[i],
                "min": lows[i] if finite else None,
                "max": highs[i] if finite else None,
                "below_range": hist[0] if hist and numeric else 0,
                "above_range": hist[-1] if hist and numeric else 0,
                "unseen": hist[-1] if hist and not numeric and closed else 0,
                "hist": hist,
            },
        )


def feature_grains(features: dict[FeatureKey, dict]) -> dict[tuple, dict[str, Any]]:
    """The hourly feature rows and their sums per day, keyed (use case, version, grain, start,
    feature)."""
    out: dict[tuple, dict[str, Any]] = {}
    for (use_case_id, version, hour, feature), row in features.items():
        out[(use_case_id, version, "hour", hour, feature)] = row
        day_key = (use_case_id, version, "day", hour.replace(hour=0), feature)
        day = out.get(day_key)
        if day is None:
            out[day_key] = day = _new_feature()
        feature_merge(day, row)
    return out


DECISION_FIELDS = (
    "id",
    "item_id",
    "use_case_id",
    "created_at",
    "kind",
    "time_spent_ms",
    "reviewer_id",
    "label",
    "value",
    "task__reason",
    "task__show_suggestion",
    "item__received_at",
    "item__route",
    "item__prediction_id",
    "item__prediction__model_version_id",
    "item__prediction__label",
    "item__prediction__value",
    "item__prediction__error",
)


def decisions_add(
    acc: Accumulator, ctx: Context, pairs: Iterable[tuple[int, Sequence[int] | None]]
) -> None:
    """Human decisions: the work itself (in the hour it was done) and, for the item's first
    human answer, its quality against each prediction given in ``pairs`` (decision id ->
    prediction ids; None means every prediction the item has)."""
    paired = dict(pairs)
    rows = list(Decision.objects.filter(pk__in=list(paired)).values(*DECISION_FIELDS))
    if not rows:
        return
    item_ids = {r["item_id"] for r in rows}
    first: dict[int, dict] = {}
    for d in (
        Decision.objects.filter(item_id__in=item_ids)
        .order_by("item_id", "id")
        .values("id", "item_id", "label", "value", "task__reason")
    ):
        first.setdefault(d["item_id"], d)
    wanted = [pid for r in rows for pid in (paired[r["id"]] or [])]
    every = [r["item_id"] for r in rows if paired[r["id"]] is None]
    predictions: dict[int, list[dict]] = defaultdict(list)
    for p in Prediction.objects.filter(pk__in=wanted).values("item_id", *PREDICTION_FIELDS):
        predictions[p["item_id"]].append(p)
    for p in Prediction.objects.filter(item_id__in=every).values("item_id", *PREDICTION_FIELDS):
        predictions[p["item_id"]].append(p)
    for d in rows:
        use_case = ctx.use_case(d["use_case_id"])
        version = d["item__prediction__model_version_id"]
        work = acc.hourly[(d["use_case_id"], version, False, hour_of(d["created_at"]))]
        work["decisions"] += 1
        work[f"decisions_{d['kind']}"] += 1
        if d["time_spent_ms"] is not None:
            work["review_time_count"] += 1
            work["review_time_sum_ms"] += d["time_spent_ms"]
            bucket = str(int(stats.duration_bucket(np.asarray([d["time_spent_ms"]]))[0]))
            work["review_time_buckets"][bucket] = work["review_time_buckets"].get(bucket, 0) + 1
        reviewer = str(d["reviewer_id"])
        work["reviewers"][reviewer] = work["reviewers"].get(reviewer, 0) + 1
        if (
            d["task__reason"] == "audit"
            and d["item__prediction_id"]
            and not d["item__prediction__error"]
        ):
            work["audits"] += 1
            work["audit_errors"] += _differs(
                use_case,
                d["item__prediction__label"],
                d["item__prediction__value"],
                d["label"],
                d["value"],
            )
        received = hour_of(d["item__received_at"])
        item_row = acc.hourly[(d["use_case_id"], version, False, received)]
        earliest = first[d["item_id"]]
        if earliest["id"] == d["id"]:
            if d["item__route"] != Route.AUTO:
                item_row["reviewed_items_decided"] += 1
            human = {"label": d["label"], "value": d["value"]}
            for p in predictions.get(d["item_id"], []):
                if p["error"]:
                    continue
                shadow = p["id"] != d["item__prediction_id"]
                blind = shadow or not d["task__show_suggestion"]
                row = acc.hourly[(d["use_case_id"], p["model_version_id"], shadow, received)]
                differs = _pair_add(row, use_case, p, human, blind)
                if not shadow and d["item__route"] == Route.AUTO:
                    # The automated items' stratum, labelled only through audits: the weighted
                    # accuracy estimate needs it apart from the reviewed items.
                    row["audited"] += 1
                    row["audited_agree"] += not differs
        elif "double_review" in (d["task__reason"], earliest["task__reason"]):
            differs = _differs(
                use_case, earliest["label"], earliest["value"], d["label"], d["value"]
            )
            item_row["double_reviewed"] += 1
            item_row["double_agree"] += not differs
            if not use_case.is_classification:
                gap = abs(earliest["value"] - d["value"])
                item_row["double_abs_error_sum"] += gap
                item_row["double_sq_error_sum"] += gap * gap


def predictions_add(
    acc: Accumulator, ctx: Context, pairs: Iterable[tuple[int, int | None]]
) -> None:
    """Challenger predictions made in shadow: counted for their model version; paired with
    the item's first human answer when ``pairs`` names it (prediction id -> decision id)."""
    paired = dict(pairs)
    rows = list(
        Prediction.objects.filter(pk__in=list(paired)).values(
            "use_case_id", "item__received_at", *PREDICTION_FIELDS
        )
    )
    decisions = {
        d["id"]: d
        for d in Decision.objects.filter(pk__in=[v for v in paired.values() if v]).values(
            "id", "label", "value"
        )
    }
    for p in rows:
        use_case = ctx.use_case(p["use_case_id"])
        key = (p["use_case_id"], p["model_version_id"], True, hour_of(p["item__received_at"]))
        row = acc.hourly[key]
        _prediction_add(row, use_case, p)
        human = decisions.get(paired[p["id"]])
        if human is not None and not p["error"]:
            _pair_add(row, use_case, p, human, blind=True)
