"""What each dashboard tab shows: reads through the selectors, draws through ``figures``."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.utils import timezone

from deployments.models import AutomationPolicy, ModelVersion, UseCase
from deployments.selectors import breaches_list, model_version_get, policy_current, policy_history
from reviewapp.core.errors import InvalidInput
from reviewapp.monitoring import figures
from reviewapp.monitoring.models import HourlyRollup
from reviewapp.monitoring.selectors import (
    Window,
    feature_health,
    metrics_summary,
    queue_now,
    reference_model_for,
    snapshot_read,
)
from reviewapp.monitoring.system_page import software_panel
from reviewapp.reviews.selectors import QueueHealth, queue_health

TABS = {
    "automation": "Automation",
    "quality": "Quality",
    "inputs": "Inputs",
    "outputs": "Outputs",
    "software": "Software",
}
RANGES = {
    "24h": ("Last 24 hours", timedelta(hours=24)),
    "7d": ("Last 7 days", timedelta(days=7)),
    "30d": ("Last 30 days", timedelta(days=30)),
    "90d": ("Last 90 days", timedelta(days=90)),
    "all": ("All time", None),
}
DEFAULT_RANGE = "30d"


@dataclass(frozen=True)
class Filters:
    range: str
    model_version: ModelVersion | None
    window: Window

    def query(self) -> str:
        parts = [f"range={self.range}"]
        if self.model_version is not None:
            parts.append(f"version={self.model_version.version}")
        return "&".join(parts)


def filters_clean(*, use_case: UseCase, params, now: datetime) -> Filters:
    """The dashboard's filters from the query string; a bad value names its field."""
    chosen = params.get("range") or DEFAULT_RANGE
    if chosen not in RANGES:
        raise InvalidInput({"range": [f"must be one of {', '.join(RANGES)}"]})
    try:
        version = params.get("version")
        model_version = model_version_get(use_case=use_case, version=version) if version else None
    except Exception as exc:  # NotFound names the version; on a filter it is bad input
        raise InvalidInput({"version": [f"no model version {params.get('version')!r}"]}) from exc
    span = RANGES[chosen][1]
    window = Window.of(now - span if span else None, None)
    return Filters(range=chosen, model_version=model_version, window=window)


def _policies(use_case: UseCase) -> list[AutomationPolicy]:
    return list(policy_history(use_case=use_case).order_by("version")[1:])


def panel_build(
    *, use_case: UseCase, tab: str, filters: Filters, now: datetime | None = None
) -> dict[str, Any]:
    """The charts, headline figures and tables of one tab."""
    now = now or timezone.now()
    guardrails = policy_current(use_case=use_case).guardrails or {}
    snapshot = snapshot_read(
        use_case=use_case, model_version=filters.model_version, window=filters.window
    )
    periods = figures.periods_of(snapshot, now=now)
    totals = snapshot.totals
    features = (
        feature_health(
            use_case=use_case, model_version=filters.model_version, window=filters.window
        )
        if tab == "inputs"
        else []
    )
    summary = metrics_summary(use_case=use_case, snapshot=snapshot, features=features)
    panel: dict[str, Any] = {"summary": summary, "charts": [], "features": features}
    panel["cards"] = cards_for(tab, use_case=use_case, summary=summary, guardrails=guardrails)
    if tab == "automation":
        panel["charts"] = [figures.automation_chart(periods, _policies(use_case), totals)]
    elif tab == "quality":
        panel["charts"] = [
            figures.override_chart(periods, totals, guardrails),
            figures.accuracy_chart(use_case, periods, totals, guardrails),
            figures.confusion_chart(use_case, totals)
            if use_case.is_classification
            else figures.residuals_chart(use_case, totals),
            figures.calibration_chart(use_case, totals),
        ]
    elif tab == "inputs":
        reference = reference_model_for(use_case=use_case, model_version=filters.model_version)
        panel["reference_version"] = reference.version if reference else None
        panel["drift_excluded"] = use_case.drift_exclusions
        panel["drift_method"] = figures.DRIFT_METHOD
        panel["charts"] = [
            figures.drift_chart(features, guardrails, reference.version if reference else None),
            figures.missing_chart(features),
        ]
    elif tab == "outputs":
        breaches = breaches_list(
            use_case=use_case,
            since=filters.window.since,
            until=filters.window.until,
            newest_first=False,
            limit=500,
        )
        if filters.model_version is not None:
            breaches = [b for b in breaches if b.model_version_id == filters.model_version.pk]
        panel["charts"] = [
            figures.null_outputs_chart(periods, totals, guardrails),
            figures.outputs_chart(use_case, totals),
            figures.breaches_chart(breaches, periods),
        ]
    elif tab == "software":
        queue = queue_now(use_case=use_case, now=now)
        panel["queue"] = queue
        panel["cards"] += queue_health_cards(queue_health(use_case=use_case, now=now))
        flow = _flow_after(use_case, periods)
        names = dict(
            get_user_model()
            .objects.filter(pk__in=[int(k) for k in totals["reviewers"]])
            .values_list("pk", "username")
        )
        hours = max(len(periods.keys), 1) * periods.step.total_seconds() / 3600
        panel["charts"] = [
            figures.latency_chart(periods, totals),
            figures.throughput_chart(periods, totals),
            figures.queue_chart(periods, queue["depth"], flow, queue),
            figures.reviewers_chart(totals, names, hours),
        ]
        # The processes doing the work, shared by every use case.
        software = software_panel(now=now)
        panel["alerts"] = software["alerts"]
        panel["cards"] += software["cards"]
        panel["charts"] += software["charts"]
        panel["broker_queues"] = software["queues"]
        panel["views"] = software["views"]
    return panel


def queue_health_cards(health: QueueHealth) -> list[dict]:
    """The queue against its due times: size, age, items past due, time to clear."""
    if health.clear_seconds is not None:
        clear = figures._duration(health.clear_seconds)
        clear_note = (
            f"at {health.decisions_per_hour:.2g} decisions/h over the last 24 hours"
            if health.waiting
            else "nothing waiting"
        )
    else:
        clear, clear_note = "—", "no throughput measured (no decisions in the last 24 hours)"
    return [
        {"label": "Open review tasks", "value": f"{health.waiting:,}"},
        {
            "label": "Oldest waiting",
            "value": figures._duration(health.oldest_waiting_seconds)
            if health.oldest_waiting_seconds is not None
            else "—",
        },
        {
            "label": "Past due",
            "value": f"{health.past_due_items:,}",
            "note": "items waiting past their due time",
            "alert": health.past_due_items > 0,
        },
        {"label": "Time to clear", "value": clear, "note": clear_note},
    ]


def _flow_after(use_case: UseCase, periods: figures.Periods) -> list[int]:
    """For each period, tasks created minus tasks decided after its end (all versions: the
    queue is the use case's), to walk today's exact depth back in time."""
    if not periods.keys:
        return []
    start = periods.keys[0]
    per_period = dict.fromkeys(periods.keys, 0)
    later = 0
    rows = HourlyRollup.objects.filter(
        use_case=use_case, shadow=False, hour__gte=start
    ).values_list("hour", "tasks_created", "decisions")
    for hour, created, decided in rows:
        key = hour if periods.step == timedelta(hours=1) else hour.replace(hour=0)
        if key in per_period:
            per_period[key] += created - decided
        else:
            later += created - decided
    flow, running = [], later
    for key in reversed(periods.keys):
        flow.append(running)
        running += per_period[key]
    return list(reversed(flow))


_num = figures.number


def _over(value: float | None, guardrails: dict, name: str) -> bool:
    limit = figures.guardrail_max(guardrails, name)
    return value is not None and limit is not None and value > limit


def cards_for(tab: str, *, use_case: UseCase, summary: dict, guardrails: dict) -> list[dict]:
    """The headline figures above a tab's charts (the same numbers as the metrics API)."""
    if tab == "automation":
        policy = policy_current(use_case=use_case)
        return [
            {"label": "Items", "value": f"{summary['items']:,}"},
            {"label": "Decided by the model", "estimate": summary["evidence"]["automation_rate"]},
            {"label": "Waiting for a human", "value": f"{summary['in_review']:,}"},
            {"label": "Not yet scored", "value": f"{summary['pending']:,}"},
            {
                "label": "Level now",
                "value": policy.get_level_display(),
                "note": f"{policy.traffic_percent:g}% of traffic, threshold "
                f"{policy.confidence_threshold:g}",
            },
        ]
    if tab == "quality":
        evidence, estimates = summary["evidence"], summary["estimates"]
        cards = [
            {
                "label": "Override rate",
                "estimate": evidence["override_rate"],
                "alert": _over(summary["override_rate"], guardrails, "override_rate"),
                "note": "overridden / suggestions shown",
            },
        ]
        if use_case.is_classification:
            cards += [
                {
                    "label": "Model accuracy, weighted estimate",
                    "estimate": estimates["model_accuracy"],
                    "note": "all scored items: reviewed ones, and automated ones through audits",
                },
                {
                    "label": "Agreement among reviewed items",
                    "estimate": estimates["reviewed_agreement"],
                    "note": "not the model's accuracy: review sees the hard items",
                },
                {"label": "Human vs human", "estimate": evidence["human_agreement"]},
            ]
        else:
            cards += [
                {
                    "label": "Within tolerance, weighted estimate",
                    "estimate": estimates["model_accuracy"],
                    "note": "all scored items: reviewed ones, and automated ones through audits",
                },
                {"label": "MSE vs humans", "estimate": evidence["mse"], "kind": "num"},
                {"label": "MAE vs humans", "estimate": evidence["mae"], "kind": "num"},
                {"label": "Human vs human MAE", "value": _num(summary["human_baseline"]["mae"])},
            ]
        cards += [
            {
                "label": "Audit error rate",
                "estimate": evidence["audit_error_rate"],
                "note": f"{summary['audits']:,} audits",
                "alert": _over(summary["audit_error_rate"], guardrails, "audit_error_rate"),
            },
            {
                "label": "Wrong automated decisions, estimated",
                "estimate": estimates["wrong_automated_decisions"],
                "kind": "count",
                "note": f"of {summary['routes']['auto']:,} automated items",
            },
        ]
        return cards
    if tab == "inputs":
        features = summary["features"]
        worst = next((f for f in features if f["psi"] is not None), None)
        major = sum(1 for f in features if (f["psi"] or 0) >= 0.25)
        return [
            {"label": "Features", "value": f"{len(features):,}"},
            {
                "label": "Features that moved a lot",
                "value": f"{major:,}",
                "alert": major > 0,
            },
            {
                "label": "Largest input shift (0 = same as training)",
                "value": _num(worst["psi"]) if worst else "—",
                "note": worst["feature"] if worst else "",
                "alert": _over(worst["psi"] if worst else None, guardrails, "drift_psi"),
            },
        ]
    if tab == "outputs":
        return [
            {"label": "Predictions", "value": f"{summary['predictions']:,}"},
            {
                "label": "Null outputs",
                "value": f"{summary['null_outputs']:,}",
                "estimate": summary["evidence"]["null_output_rate"],
                "alert": _over(summary["null_output_rate"], guardrails, "null_output_rate"),
            },
            {"label": "Guardrail breaches", "value": f"{summary['guardrail_breaches']:,}"},
        ]
    latency = summary["latency_ms"]
    return [
        {"label": "Latency p50", "value": _num(latency["p50"], " ms")},
        {"label": "p95", "value": _num(latency["p95"], " ms")},
        {"label": "p99", "value": _num(latency["p99"], " ms")},
    ]
