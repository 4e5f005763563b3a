"""What each threshold costs a use case a day: the pure cost curve
(``deployments.policy.costs``) fed with the use case's settings, its latest backtest, and what
was measured here (arrivals, minutes per review, the team's daily decisions)."""

from dataclasses import dataclass, replace
from datetime import timedelta

import plotly.graph_objects as go
from django.db.models import Avg, Count, Value
from django.db.models.functions import Least, TruncDate
from django.utils import timezone

from deployments.models import UseCase
from deployments.policy.costs import (
    BacktestCurve,
    CostSettings,
    Position,
    Recommendation,
    ThresholdCosts,
    capacity_fit,
    costs_missing,
    position_now,
    recommend,
    threshold_costs,
)
from reviewapp.control.presenters import COLOURS, _figure_json, _layout
from reviewapp.core.models import Job
from reviewapp.reviews.models import Decision, Item

ARRIVAL_DAYS = 7
MINUTES_DAYS = 30
MINUTES_MIN_DECISIONS = 30  # fewer recorded times than this: not measured
MINUTES_CAP_MS = 30 * 60_000
THROUGHPUT_DAYS = 7  # full days with decisions, today's unfinished one left out
THROUGHPUT_LOOKBACK_DAYS = 28


@dataclass(frozen=True)
class Measured:
    arrivals_per_day: float
    review_minutes: float | None  # mean recorded time per decision, each capped
    timed_decisions: int
    throughput_per_day: float | None  # mean decisions a day over the last full days with any
    active_days: int  # the days that mean is over


def measured_by_use_case(*, use_case_ids, now) -> dict[int, Measured]:
    """What was measured for each use case, in three queries however many there are."""
    ids = list(use_case_ids)
    arrivals = dict(
        Item.objects.filter(
            use_case_id__in=ids, received_at__gte=now - timedelta(days=ARRIVAL_DAYS)
        )
        .values("use_case_id")
        .annotate(n=Count("id"))
        .values_list("use_case_id", "n")
    )
    timed = {
        row["use_case_id"]: row
        for row in Decision.objects.filter(
            use_case_id__in=ids,
            created_at__gte=now - timedelta(days=MINUTES_DAYS),
            time_spent_ms__isnull=False,
        )
        .values("use_case_id")
        # A tab left open for an hour is not an hour of work: each time counts up to a cap.
        .annotate(n=Count("id"), mean_ms=Avg(Least("time_spent_ms", Value(MINUTES_CAP_MS))))
    }
    # A team's pace is what it did on whole days: today has not ended, and a quiet weekend or
    # holiday is no measure of it, so the mean runs over the last days that had decisions.
    today = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
    daily: dict[int, list[int]] = {}
    for use_case_id, _day, n in (
        Decision.objects.filter(
            use_case_id__in=ids,
            created_at__gte=today - timedelta(days=THROUGHPUT_LOOKBACK_DAYS),
            created_at__lt=today,
        )
        .annotate(day=TruncDate("created_at"))
        .values("use_case_id", "day")
        .annotate(n=Count("id"))
        .order_by("use_case_id", "-day")
        .values_list("use_case_id", "day", "n")
    ):
        days = daily.setdefault(use_case_id, [])
        if len(days) < THROUGHPUT_DAYS:
            days.append(n)
    measured = {}
    for use_case_id in ids:
        times = timed.get(use_case_id, {"n": 0, "mean_ms": None})
        days = daily.get(use_case_id, [])
        enough = times["n"] >= MINUTES_MIN_DECISIONS and times["mean_ms"] is not None
        measured[use_case_id] = Measured(
            arrivals_per_day=arrivals.get(use_case_id, 0) / ARRIVAL_DAYS,
            review_minutes=times["mean_ms"] / 60_000 if enough else None,
            timed_decisions=times["n"],
            throughput_per_day=sum(days) / len(days) if days else None,
            active_days=len(days),
        )
    return measured


@dataclass(frozen=True)
class CostView:
    settings: CostSettings
    measured: Measured
    missing: list[str]
    costs: ThresholdCosts | None
    recommendation: Recommendation | None
    now: Position | None  # where the use case stands today, by its level and threshold
    saving_per_day: float | None  # what the recommendation saves a day against now
    capacity_warning: dict | None
    capacity_source: str  # "settings", "measured" or ""
    minutes_source: str
    figure: dict | None

    @property
    def extra_per_day(self) -> float | None:
        """What the recommendation costs a day more than now (when now is out of bounds)."""
        return None if self.saving_per_day is None else -self.saving_per_day


def backtest_curve(result: dict, *, regression: bool) -> BacktestCurve | None:
    curve = result.get("curve") or {}
    if not curve.get("thresholds"):
        return None
    pairs = curve.get("wrong_pairs")
    return BacktestCurve(
        thresholds=curve["thresholds"],
        items=result.get("items") or 0,
        automated=curve["automated"],
        errors=curve["errors"],
        wrong_pairs=None
        if pairs is None
        else {(p["true"], p["predicted"]): p["errors"] for p in pairs},
        abs_error=curve.get("abs_error") if regression else None,
        abs_error_sq=curve.get("abs_error_sq") if regression else None,
    )


def cost_settings_for(*, use_case: UseCase, policy, measured: Measured) -> tuple:
    """The pure settings, and where the minutes and the capacity came from."""
    minutes, minutes_source = use_case.review_minutes, "settings"
    if minutes is None and measured.review_minutes is not None:
        minutes, minutes_source = measured.review_minutes, "measured"
    capacity, capacity_source = None, ""
    if use_case.capacity_reviewers and use_case.capacity_hours_per_day and minutes:
        capacity = use_case.capacity_reviewers * use_case.capacity_hours_per_day * 60 / minutes
        capacity_source = "settings"
    elif measured.throughput_per_day:
        capacity, capacity_source = measured.throughput_per_day, "measured"
    ceiling = ((policy.guardrails or {}).get("audit_error_rate") or {}).get("max")
    settings = CostSettings(
        regression=not use_case.is_classification,
        error_cost=use_case.error_cost,
        pair_costs={(p["true"], p["predicted"]): p["cost"] for p in use_case.error_costs or []},
        review_minutes=minutes,
        hourly_cost=use_case.hourly_cost,
        arrivals_per_day=measured.arrivals_per_day,
        capacity_per_day=capacity,
        error_rate_ceiling=ceiling,
        traffic_share=policy.traffic_percent / 100,
        audit_rate=policy.audit_rate,
        double_review_rate=policy.double_review_rate,
    )
    return settings, minutes_source if minutes is not None else "", capacity_source


def cost_view(*, use_case: UseCase, policy, job, now=None) -> CostView:
    """Everything the policy page and the control room say about costs and capacity."""
    now = now or timezone.now()
    measured = measured_by_use_case(use_case_ids=[use_case.pk], now=now)[use_case.pk]
    settings, minutes_source, capacity_source = cost_settings_for(
        use_case=use_case, policy=policy, measured=measured
    )
    missing = costs_missing(settings)
    curve = backtest_curve(job.result, regression=settings.regression) if job else None
    costs = threshold_costs(curve, settings) if curve is not None else None
    advice = recommend(costs, settings) if costs is not None else None
    now_at = None
    saving = None
    warning = None
    if costs is not None:
        now_at = position_now(
            costs, settings, threshold=policy.confidence_threshold, level=policy.level
        )
        if advice.index is not None:
            saving = now_at.total - costs.total[advice.index]
        warning = capacity_fit(costs, settings, policy.confidence_threshold, policy.level)
    figure = (
        cost_figure(costs, current=policy.confidence_threshold, advice=advice) if costs else None
    )
    return CostView(
        settings=settings,
        measured=measured,
        missing=missing,
        costs=costs,
        recommendation=advice,
        now=now_at,
        saving_per_day=saving,
        capacity_warning=warning,
        capacity_source=capacity_source,
        minutes_source=minutes_source,
        figure=figure,
    )


def cost_figure(costs: ThresholdCosts, *, current: float, advice: Recommendation | None) -> dict:
    """Expected cost a day by threshold: errors (with their 95% band), reviews and the total,
    the current threshold and the recommended one marked."""
    x = costs.thresholds
    figure = go.Figure()
    figure.add_trace(
        go.Scatter(
            x=x + x[::-1],
            y=costs.error_cost_high + costs.error_cost_low[::-1],
            fill="toself",
            fillcolor="rgba(194,65,12,0.15)",
            line={"width": 0},
            hoverinfo="skip",
            name="errors, 95% interval",
        )
    )
    for values, name, colour, dash in (
        (costs.error_cost, "errors", "#c2410c", None),
        (costs.review_cost, "reviews", COLOURS[0], None),
        (costs.total, "total", "#111827", "solid"),
    ):
        figure.add_trace(
            go.Scatter(
                x=x,
                y=values,
                name=name,
                line={"color": colour, "width": 2.5 if name == "total" else 1.5, "dash": dash},
                hovertemplate=f"{name} %{{y:,.0f}} a day at %{{x:.2f}}<extra></extra>",
            )
        )
    # The thresholds as vertical lines named in the legend: labels on the plot would collide
    # when the two are close, or be cut at the edge near 1.
    top = max(max(costs.error_cost_high), max(costs.total), 1.0)
    marks = [(current, f"now ({current:.2f})", "#c2410c", "dot")]
    if advice is not None and advice.threshold is not None:
        marks.append((advice.threshold, f"recommended ({advice.threshold:.2f})", "#15803d", "dash"))
    for x_at, name, colour, dash in marks:
        figure.add_trace(
            go.Scatter(
                x=[x_at, x_at],
                y=[0, top],
                mode="lines",
                name=name,
                line={"color": colour, "dash": dash, "width": 1.5},
                hoverinfo="skip",
            )
        )
    figure.update_layout(
        **_layout(
            title={"text": "Expected cost a day by threshold", "x": 0.01},
            xaxis={"title": "confidence threshold", "range": [0, 1]},
            yaxis={"title": "cost a day", "rangemode": "tozero"},
            legend={"orientation": "h", "y": -0.3},
        )
    )
    return _figure_json(figure)


def latest_backtests_for(use_case_ids, *, champions: dict[int, str]) -> dict[int, Job]:
    """Each use case's backtest the what-if reads (its champion's latest, else its latest;
    ``champions`` maps use case ids to champion versions), in at most two queries however many
    use cases there are (backtests are few: people start them)."""
    ids = list(use_case_ids)
    newest: dict[int, object] = {}
    of_champion: dict[int, object] = {}
    for use_case_id, pk, params in (
        Job.objects.filter(use_case_id__in=ids, kind=Job.Kind.BACKTEST, state=Job.State.DONE)
        .order_by("-finished_at", "-created_at")
        .values_list("use_case_id", "pk", "params")
    ):
        newest.setdefault(use_case_id, pk)
        if (params or {}).get("model_version") == champions.get(use_case_id):
            of_champion.setdefault(use_case_id, pk)
    picked = {i: of_champion.get(i, newest.get(i)) for i in ids}
    wanted = [pk for pk in picked.values() if pk is not None]
    jobs = Job.objects.in_bulk(wanted) if wanted else {}
    return {i: jobs[pk] for i, pk in picked.items() if pk is not None}


def capacity_warnings_for(*, use_cases, policies, champions, now=None) -> dict[int, dict]:
    """The control room's capacity warnings: for each use case whose forecast human work at
    its current threshold exceeds its capacity, the figures and the threshold that would fit.
    A fixed number of queries, whatever the number of use cases (one when none has a
    backtest)."""
    now = now or timezone.now()
    jobs = latest_backtests_for([u.pk for u in use_cases], champions=champions)
    if not jobs:
        return {}
    measured = measured_by_use_case(use_case_ids=list(jobs), now=now)
    warnings = {}
    for use_case in use_cases:
        job = jobs.get(use_case.pk)
        if job is None:
            continue
        policy = policies[use_case.pk]
        settings, _, _ = cost_settings_for(
            use_case=use_case, policy=policy, measured=measured[use_case.pk]
        )
        curve = backtest_curve(job.result, regression=settings.regression)
        # Capacity is about human work, which needs no costs: price nothing if none is set.
        costs = threshold_costs(curve, _workload_only(settings)) if curve else None
        warning = (
            capacity_fit(costs, settings, policy.confidence_threshold, policy.level)
            if costs
            else None
        )
        if warning:
            warnings[use_case.pk] = warning
    return warnings


def _workload_only(settings: CostSettings) -> CostSettings:
    """The settings with placeholder prices, for the human workload alone."""
    return replace(
        settings,
        error_cost=settings.error_cost if settings.error_cost is not None else 0.0,
        review_minutes=settings.review_minutes or 1.0,
        hourly_cost=settings.hourly_cost if settings.hourly_cost is not None else 0.0,
    )
