"""Figures for one use case over a period, computed from the stored rows."""

from datetime import datetime
from typing import Any

import numpy as np
from django.db.models import Count, Q

from deployments.ml.latency import LATENCY_BUDGET_EXCEEDED
from deployments.ml.reference import feature_psi
from deployments.models import AutomationPolicy, UseCase
from deployments.policy import Route
from deployments.selectors import champion_get
from reviewapp.reviews.models import Decision, Item

DRIFT_SAMPLE = 10_000


def _rate(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "p99": None}
    array = np.asarray(values, dtype=float)
    return {f"p{q}": float(np.percentile(array, q)) for q in (50, 95, 99)}


def _window(rows, field: str, since: datetime | None, until: datetime | None):
    if since:
        rows = rows.filter(**{f"{field}__gte": since})
    if until:
        rows = rows.filter(**{f"{field}__lt": until})
    return rows


def _feature_health(use_case: UseCase, items, reference: dict) -> list[dict[str, Any]]:
    sample = list(items.order_by("-received_at").values_list("features", flat=True)[:DRIFT_SAMPLE])
    out = []
    for spec in use_case.features:
        name = spec["name"]
        values = [row.get(name) for row in sample]
        missing = sum(v is None for v in values)
        entry: dict[str, Any] = {
            "feature": name,
            "missing_rate": _rate(missing, len(values)),
            "psi": None,
        }
        present = [v for v in values if v is not None]
        entry["psi"] = feature_psi(spec, present, reference.get("features", {}).get(name))
        out.append(entry)
    return out


def metrics_compute(
    *, use_case: UseCase, since: datetime | None = None, until: datetime | None = None
) -> dict[str, Any]:
    items = _window(Item.objects.filter(use_case=use_case), "received_at", since, until)
    by_route = {
        row["route"]: row["n"]
        for row in items.exclude(route="").values("route").annotate(n=Count("id"))
    }
    routed = sum(by_route.values())
    counts = items.aggregate(
        total=Count("id"),
        pending=Count("id", filter=Q(status=Item.Status.PENDING)),
        in_review=Count("id", filter=Q(status=Item.Status.IN_REVIEW)),
        null_outputs=Count("id", filter=Q(prediction__isnull=False) & ~Q(prediction__error="")),
        predicted=Count("id", filter=Q(prediction__isnull=False)),
        budget_misses=Count("id", filter=Q(prediction__error__startswith=LATENCY_BUDGET_EXCEEDED)),
    )
    decisions = _window(Decision.objects.filter(use_case=use_case), "created_at", since, until)
    kinds = decisions.aggregate(
        total=Count("id"),
        accepted=Count("id", filter=Q(kind=Decision.Kind.ACCEPTED)),
        overridden=Count("id", filter=Q(kind=Decision.Kind.OVERRIDDEN)),
    )
    judged = items.filter(decision_source=Item.Source.HUMAN, prediction__error="").exclude(
        prediction__isnull=True
    )
    quality: dict[str, Any] = {}
    if use_case.is_classification:
        pairs = list(judged.values_list("prediction__label", "decision_label"))
        agree = sum(a == b for a, b in pairs)
        quality = {"accuracy": _rate(agree, len(pairs)), "labelled": len(pairs)}
    else:
        pairs = list(judged.values_list("prediction__value", "decision_value"))
        errors = np.asarray([a - b for a, b in pairs if a is not None and b is not None])
        quality = {
            "mse": float(np.mean(errors**2)) if len(errors) else None,
            "mae": float(np.mean(np.abs(errors))) if len(errors) else None,
            "labelled": len(errors),
        }
    latencies = list(
        items.filter(prediction__isnull=False)
        .exclude(prediction__latency_ms__isnull=True)
        .values_list("prediction__latency_ms", flat=True)[:100_000]
    )
    breaches = _window(
        AutomationPolicy.objects.filter(use_case=use_case, changed_by_system=True),
        "changed_at",
        since,
        until,
    ).count()
    champion = champion_get(use_case=use_case)
    return {
        "use_case": use_case.slug,
        "since": since,
        "until": until,
        "items": counts["total"],
        "pending": counts["pending"],
        "in_review": counts["in_review"],
        "routes": {route.value: by_route.get(route.value, 0) for route in Route},
        "automation_rate": _rate(by_route.get(Route.AUTO.value, 0), routed),
        "decisions": kinds["total"],
        "override_rate": _rate(kinds["overridden"], kinds["accepted"] + kinds["overridden"]),
        **quality,
        "null_outputs": counts["null_outputs"],
        "null_output_rate": _rate(counts["null_outputs"], counts["predicted"]),
        # Realtime items answered "in review" because the champion missed the latency budget
        # (also null outputs).
        "latency_budget_exceeded": counts["budget_misses"],
        "guardrail_breaches": breaches,
        "latency_ms": _percentiles(latencies),
        "features": _feature_health(use_case, items, champion.reference_stats if champion else {}),
    }
