"""Reading the rollups: the one place dashboards, the metrics API and alerts get numbers from.

Windows are whole hours (the rollups' grain): ``since`` is rounded down and ``until`` up, and
the figures say which window they cover.
"""

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection
from django.db.models import Max, Min, Q, QuerySet, Sum
from django.utils import timezone

from deployments.ml.scoring import NUMERIC_TYPES
from deployments.models import GuardrailBreach, ModelVersion, UseCase
from deployments.policy import Route
from deployments.selectors import champion_get
from deployments.statistics.evidence import Estimate, Stratum, mean_interval, stratified, wilson
from reviewapp.monitoring import aggregation, stats
from reviewapp.monitoring.models import FeatureRollup, HourlyRollup
from reviewapp.reviews.models import Item
from reviewapp.reviews.selectors import queue_stats

ROUTES = [route.value for route in Route]


def _rate(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


@dataclass(frozen=True)
class Window:
    since: datetime | None
    until: datetime | None

    @classmethod
    def of(cls, since: datetime | None, until: datetime | None) -> "Window":
        if since is not None:
            since = aggregation.hour_of(since)
        if until is not None:
            floor = aggregation.hour_of(until)
            until = floor if floor == until.astimezone(UTC) else floor + timedelta(hours=1)
        return cls(since=since, until=until)

    def grains(self, *, now: datetime | None = None) -> Q:
        """Day rows for the whole UTC days inside the window, hour rows for the rest."""
        until = self.until or aggregation.hour_of(now or timezone.now()) + timedelta(hours=1)
        last_midnight = until.replace(hour=0)
        first_midnight = None
        if self.since is not None:
            first_midnight = self.since.replace(hour=0)
            if first_midnight < self.since:
                first_midnight += timedelta(days=1)
        days = Q(hour__lt=last_midnight)
        if first_midnight is not None:
            days &= Q(hour__gte=first_midnight)
        if first_midnight is not None and first_midnight >= last_midnight:
            return Q(grain="hour") & self._bounds()
        return (Q(grain="day") & days) | (Q(grain="hour") & self._bounds() & ~days)

    def _bounds(self) -> Q:
        bounds = Q()
        if self.since is not None:
            bounds &= Q(hour__gte=self.since)
        if self.until is not None:
            bounds &= Q(hour__lt=self.until)
        return bounds

    def filter(self, rows: QuerySet, field_name: str = "hour") -> QuerySet:
        if self.since is not None:
            rows = rows.filter(**{f"{field_name}__gte": self.since})
        if self.until is not None:
            rows = rows.filter(**{f"{field_name}__lt": self.until})
        return rows


@dataclass
class Snapshot:
    """The rollups of one use case over one window: per hour, and in total."""

    use_case: UseCase
    model_version: ModelVersion | None
    window: Window
    hours: dict[datetime, dict[str, Any]] = field(default_factory=dict)
    totals: dict[str, Any] = field(default_factory=aggregation._new_hourly)


def _rows(use_case: UseCase, model_version: ModelVersion | None, window: Window) -> QuerySet:
    rows = HourlyRollup.objects.filter(use_case=use_case)
    if model_version is not None:
        rows = rows.filter(model_version=model_version)
    else:
        # Across versions, a challenger's shadow predictions would count the items twice.
        rows = rows.filter(shadow=False)
    return window.filter(rows)


def _number(value) -> float | int:
    value = float(value)
    return int(value) if value.is_integer() else value


def json_totals(
    rows: QuerySet, field: str, *, group: str | None = None
) -> dict[Any, dict[str, float | int]]:
    """Sum a JSON count map (or array, keyed by position) over ``rows`` inside the database,
    grouped by the ``group`` column: parsing thousands of small JSON values in Python would
    cost more than the rest of a dashboard."""
    inner, params = rows.values("id").query.sql_with_params()
    table = rows.model._meta.db_table
    column = rows.model._meta.get_field(field).column
    grouping = f"r.{rows.model._meta.get_field(group).column}" if group else "''"
    if connection.vendor == "postgresql":
        source = (
            f"jsonb_array_elements_text(r.{column}) WITH ORDINALITY AS j(value, ord)"
            if isinstance(rows.model._meta.get_field(field).default(), list)
            else f"jsonb_each_text(r.{column}) AS j(key, value)"
        )
        key = "(j.ord - 1)::text" if "ORDINALITY" in source else "j.key"
        sql = (
            f"SELECT {grouping}, {key}, SUM(j.value::float8) FROM {table} r "
            f"CROSS JOIN LATERAL {source} WHERE r.id IN ({inner}) GROUP BY 1, 2"
        )
    else:
        sql = (
            f"SELECT {grouping}, j.key, SUM(j.value) FROM {table} r, "
            f"json_each(r.{column}) j WHERE r.id IN ({inner}) GROUP BY 1, 2"
        )
    out: dict[Any, dict[str, float | int]] = defaultdict(dict)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        for grouped, key, total in cursor.fetchall():
            out[grouped][str(key)] = _number(total)
    return out


# Per hour the charts need the counters and the latency buckets; the other maps only in total.
SERIES_MAPS = ("latency_buckets",)


def snapshot_read(
    *, use_case: UseCase, model_version: ModelVersion | None = None, window: Window
) -> Snapshot:
    rows = _rows(use_case, model_version, window)
    fields = ["hour", *aggregation.HOURLY_COUNTERS, *SERIES_MAPS]
    snapshot = Snapshot(use_case=use_case, model_version=model_version, window=window)
    totals = snapshot.totals
    for values in rows.order_by("hour").values(*fields):
        hour = values.pop("hour")
        row = snapshot.hours.get(hour)
        if row is None:
            row = snapshot.hours[hour] = aggregation._new_hourly()
        for name in aggregation.HOURLY_COUNTERS:
            row[name] += values[name]
            totals[name] += values[name]
        for name in SERIES_MAPS:
            stats.counts_add(row[name], values[name])
            stats.counts_add(totals[name], values[name])
    if snapshot.hours:
        for name in aggregation.HOURLY_MAPS:
            if name not in SERIES_MAPS:
                totals[name] = json_totals(rows, name).get("", {})
    return snapshot


def quality_of(use_case: UseCase, row: dict[str, Any]) -> dict[str, Any]:
    """Quality against human labels from one (summed) rollup row."""
    labelled = row["labelled"]
    if use_case.is_classification:
        return {
            "accuracy": _rate(row["agree"], labelled),
            "accuracy_blind": _rate(row["agree_blind"], row["labelled_blind"]),
            "labelled": labelled,
            "labelled_blind": row["labelled_blind"],
        }
    return {
        "mse": _rate(row["sq_error_sum"], labelled),
        "mae": _rate(row["abs_error_sum"], labelled),
        "bias": _rate(row["error_sum"], labelled),
        "within_tolerance": _rate(row["agree"], labelled),
        "labelled": labelled,
    }


def human_baseline_of(use_case: UseCase, row: dict[str, Any]) -> dict[str, Any]:
    n = row["double_reviewed"]
    body = {"double_reviewed": n, "agreement": _rate(row["double_agree"], n)}
    if not use_case.is_classification:
        body.update(
            mse=_rate(row["double_sq_error_sum"], n), mae=_rate(row["double_abs_error_sum"], n)
        )
    return body


def summary_of(use_case: UseCase, row: dict[str, Any]) -> dict[str, Any]:
    """The headline figures of a (summed) rollup row."""
    routed = row["items_routed"]
    judged = row["decisions_accepted"] + row["decisions_overridden"]
    return {
        "items_routed": routed,
        "routes": {route: row[f"route_{route}"] for route in ROUTES},
        "automation_rate": _rate(row["route_auto"], routed),
        "decisions": row["decisions"],
        "decisions_by_kind": {
            kind: row[f"decisions_{kind}"] for kind in ("accepted", "overridden", "blind")
        },
        "override_rate": _rate(row["decisions_overridden"], judged),
        "predictions": row["predictions"],
        "null_outputs": row["null_outputs"],
        "null_output_rate": _rate(row["null_outputs"], row["predictions"]),
        "latency_budget_exceeded": row["budget_timeouts"],
        "latency_ms": {
            **stats.duration_percentiles(row["latency_buckets"]),
            "mean": _rate(row["latency_sum_ms"], row["latency_count"]),
        },
        "review_time_ms": {
            **stats.duration_percentiles(row["review_time_buckets"], (50, 90)),
            "mean": _rate(row["review_time_sum_ms"], row["review_time_count"]),
        },
        "audits": row["audits"],
        "audit_error_rate": _rate(row["audit_errors"], row["audits"]),
        "quality": quality_of(use_case, row),
        "human_baseline": human_baseline_of(use_case, row),
    }


def evidence_of(use_case: UseCase, row: dict[str, Any]) -> dict[str, Estimate]:
    """Every rate and error figure of a (summed) rollup row with its n and 95% interval."""
    judged = row["decisions_accepted"] + row["decisions_overridden"]
    labelled = row["labelled"]
    out = {
        "automation_rate": wilson(row["route_auto"], row["items_routed"]),
        "override_rate": wilson(row["decisions_overridden"], judged),
        "null_output_rate": wilson(row["null_outputs"], row["predictions"]),
        "audit_error_rate": wilson(row["audit_errors"], row["audits"]),
        "human_agreement": wilson(row["double_agree"], row["double_reviewed"]),
    }
    if use_case.is_classification:
        out["accuracy"] = wilson(row["agree"], labelled)
        out["accuracy_blind"] = wilson(row["agree_blind"], row["labelled_blind"])
    else:
        # |e|² = e², so the MAE's second moment is the MSE's first.
        out["mae"] = mean_interval(labelled, row["abs_error_sum"], row["sq_error_sum"])
        out["mse"] = mean_interval(labelled, row["sq_error_sum"], row["quad_error_sum"])
        out["within_tolerance"] = wilson(row["agree"], labelled)
    return out


ESTIMATE_LABELS = {
    "model_accuracy": "model accuracy, weighted estimate",
    "reviewed_agreement": "agreement among reviewed items",
    "automated_error_rate": "error rate of automated decisions, from audits",
    "wrong_automated_decisions": "wrong automated decisions, estimated",
}


def estimates_of(use_case: UseCase, row: dict[str, Any]) -> dict[str, Estimate]:
    """The model's quality over *all* items it scored, unbiased under routing.

    Humans label two strata with different, known probabilities: items routed to review carry
    a label each (probability 1), automated items only when audited (the policy's audit rate,
    sampled by a deterministic bucket, independent of the prediction). Agreement among labelled
    items alone over-weights the reviewed, low-confidence ones; weighting each stratum by its
    share of the scored items removes that bias. The realised labelled share of each stratum
    stands in for its sampling probability (the ratio form of inverse-propensity weighting):
    it tracks the audit rate, and still holds while audits or reviews are waiting.

    Read "as routed" rows: a challenger's shadow rows carry no routes to stratify by.
    """
    automated = row["route_auto"]
    scored = row["predictions"] - row["null_outputs"]
    reviewed = Stratum(
        population=max(scored - automated, 0),
        labelled=row["labelled"] - row["audited"],
        successes=row["agree"] - row["audited_agree"],
    )
    audited = Stratum(automated, row["audited"], row["audited_agree"])
    error = stratified([Stratum(automated, row["audited"], row["audited"] - row["audited_agree"])])
    return {
        "model_accuracy": stratified([audited, reviewed]),
        "reviewed_agreement": wilson(reviewed.successes, reviewed.labelled),
        "automated_error_rate": error,
        "wrong_automated_decisions": error.scaled(automated),
    }


def estimates_dict(estimates: dict[str, Estimate]) -> dict[str, dict[str, Any]]:
    """The estimates as the API gives them: each with the label that says what it is."""
    return {
        name: {**estimate.as_dict(), "label": ESTIMATE_LABELS[name]}
        for name, estimate in estimates.items()
    }


# --- inputs -----------------------------------------------------------------------------------


def reference_model_for(
    *, use_case: UseCase, model_version: ModelVersion | None
) -> ModelVersion | None:
    """Whose training reference inputs are compared with: the chosen version, else the
    champion."""
    return model_version or champion_get(use_case=use_case)


def feature_health(
    *, use_case: UseCase, model_version: ModelVersion | None, window: Window
) -> list[dict[str, Any]]:
    """Per feature, over the window: missing rate, moments, quantiles, out-of-range values and
    unseen categories, and PSI against the reference model's training data. Worst drift first.

    Missing rates and moments count every routed item; the histogram-based figures count the
    items the reference model routed (their bins come from its training data)."""
    reference_model = reference_model_for(use_case=use_case, model_version=model_version)
    references = (
        (reference_model.reference_stats or {}).get("features", {}) if reference_model else {}
    )
    rows = FeatureRollup.objects.filter(use_case=use_case)
    if model_version is not None:
        rows = rows.filter(model_version=model_version)
    rows = rows.filter(window.grains())
    scalar = {
        r["feature"]: r
        for r in rows.values("feature")
        .annotate(
            n=Sum("rows"),
            missing_n=Sum("missing"),
            total=Sum("sum"),
            total_sq=Sum("sum_sq"),
            lo=Min("min"),
            hi=Max("max"),
        )
        .order_by()
    }
    binned: dict[str, dict[str, Any]] = {}
    if reference_model is not None:
        reference_rows = rows.filter(model_version=reference_model)
        hists = json_totals(reference_rows, "hist", group="feature")
        for values in (
            reference_rows.values("feature")
            .annotate(
                below=Sum("below_range"),
                above=Sum("above_range"),
                unseen_n=Sum("unseen"),
                lo=Min("min"),
                hi=Max("max"),
            )
            .order_by()
        ):
            name = values["feature"]
            counts = hists.get(name, {})
            binned[name] = {
                "below_range": values["below"] or 0,
                "above_range": values["above"] or 0,
                "unseen": values["unseen_n"] or 0,
                "min": values["lo"],
                "max": values["hi"],
                "hist": [counts.get(str(i), 0) for i in range(len(counts))],
            }
    out = []
    excluded = use_case.drift_exclusions
    for spec in use_case.features:
        name = spec["name"]
        numeric = spec["type"] in NUMERIC_TYPES
        s = scalar.get(name)
        n = (s or {}).get("n") or 0
        missing = (s or {}).get("missing_n") or 0
        present = n - missing
        entry: dict[str, Any] = {
            "feature": name,
            "type": spec["type"],
            "rows": n,
            "missing_rate": _rate(missing, n),
            "psi": None,
        }
        if numeric and present:
            mean = s["total"] / present
            variance = (
                (s["total_sq"] - present * mean * mean) / (present - 1) if present > 1 else 0.0
            )
            entry.update(
                mean=mean,
                std=math.sqrt(max(variance, 0.0)),
                min=s["lo"],
                max=s["hi"],
            )
        reference = references.get(name)
        bins = stats.feature_bins(reference)
        b = binned.get(name)
        if name in excluded:
            entry["drift_excluded"] = excluded[name]  # no PSI: see UseCase.drift_exclusions
        elif bins and b and b["hist"]:
            checked = sum(b["hist"])
            entry["checked"] = checked
            if bins["kind"] == "numeric":
                entry["psi"] = stats.psi_numeric(b["hist"], bins, reference)
                entry["out_of_range"] = b["below_range"] + b["above_range"]
                entry["out_of_range_rate"] = _rate(entry["out_of_range"], checked)
                entry["quantiles"] = stats.numeric_quantiles(
                    b["hist"], bins["edges"], b["min"], b["max"]
                )
                entry["reference"] = {
                    "mean": reference.get("mean"),
                    "std": reference.get("std"),
                    "min": reference.get("min"),
                    "max": reference.get("max"),
                }
            else:
                entry["psi"] = stats.psi_categorical(b["hist"], reference)
                if bins["closed"]:
                    entry["unseen"] = b["unseen"]
                    entry["unseen_rate"] = _rate(b["unseen"], checked)
        out.append(entry)
    out.sort(key=lambda e: (e["psi"] is None, -(e["psi"] or 0), e["feature"]))
    return out


# --- the queue --------------------------------------------------------------------------------


def queue_now(*, use_case: UseCase, now: datetime | None = None) -> dict[str, Any]:
    """The review queue as it is now (a partial index keeps this cheap at any history size)."""
    stats_now = queue_stats(use_case=use_case, now=now)
    return {
        "depth": stats_now["waiting"],
        "in_progress": stats_now["in_progress"],
        "oldest_waiting_seconds": stats_now["oldest_waiting_seconds"],
    }


def tasks_flow_after(*, use_case: UseCase, since: datetime) -> int:
    """Tasks created minus tasks decided from ``since`` on (to walk the depth back in time)."""
    row = HourlyRollup.objects.filter(use_case=use_case, shadow=False, hour__gte=since).aggregate(
        created=Sum("tasks_created"), done=Sum("decisions")
    )
    return (row["created"] or 0) - (row["done"] or 0)


def pending_items(*, use_case: UseCase, window: Window) -> int:
    """Items received and not yet scored (batch work in flight): few, and indexed."""
    return window.filter(
        Item.objects.filter(use_case=use_case, status=Item.Status.PENDING), "received_at"
    ).count()


# --- the metrics API --------------------------------------------------------------------------


def metrics_summary(
    *,
    use_case: UseCase,
    model_version: ModelVersion | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    snapshot: Snapshot | None = None,
    features: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The figures of the metrics API; the dashboards show the same ones (they pass the
    snapshot and feature health they already read)."""
    window = snapshot.window if snapshot else Window.of(since, until)
    snapshot = snapshot or snapshot_read(
        use_case=use_case, model_version=model_version, window=window
    )
    if features is None:
        features = feature_health(use_case=use_case, model_version=model_version, window=window)
    summary = summary_of(use_case, snapshot.totals)
    pending = pending_items(use_case=use_case, window=window)
    totals = snapshot.totals
    breaches = GuardrailBreach.objects.filter(use_case=use_case)
    evidence = evidence_of(use_case, totals)
    estimates = estimates_of(use_case, totals)
    if model_version is not None:
        breaches = breaches.filter(model_version=model_version)
    return {
        "use_case": use_case.slug,
        "model_version": model_version.version if model_version else None,
        "since": since if since is not None else window.since,
        "until": until if until is not None else window.until,
        "window": {"since": window.since, "until": window.until},
        "items": summary["items_routed"] + pending,
        "pending": pending,
        "in_review": totals["reviewed_items"] - totals["reviewed_items_decided"],
        "routes": summary["routes"],
        "automation_rate": summary["automation_rate"],
        "decisions": summary["decisions"],
        "decisions_by_kind": summary["decisions_by_kind"],
        "override_rate": summary["override_rate"],
        **summary["quality"],
        "human_baseline": summary["human_baseline"],
        "audits": summary["audits"],
        "audit_error_rate": summary["audit_error_rate"],
        "predictions": summary["predictions"],
        "null_outputs": summary["null_outputs"],
        "null_output_rate": summary["null_output_rate"],
        "latency_budget_exceeded": summary["latency_budget_exceeded"],
        "guardrail_breaches": window.filter(breaches, "detected_at").count(),
        "latency_ms": summary["latency_ms"],
        "review_time_ms": summary["review_time_ms"],
        "features": features,
        "evidence": {name: estimate.as_dict() for name, estimate in evidence.items()},
        "estimates": estimates_dict(estimates),
    }
