"""What a deliberate production change will do, in numbers, for its confirmation dialog.

The rate is the last seven days of arrivals; the share a model would decide alone comes from
the policy (level, ramp) and that model's own recent confidences against the threshold.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count, Q
from django.utils import timezone

from deployments.models import (
    AutomationPolicy,
    ModelVersion,
    ModelVersionEvent,
    RampPlan,
    UseCase,
)
from deployments.policy import Level
from reviewapp.control.presenters import LEVEL_HELP
from reviewapp.reviews.models import Item, Prediction

WINDOW_DAYS = 7
DECIDING_LEVELS = (Level.PARTIAL.value, Level.FULL.value)


@dataclass(frozen=True)
class Traffic:
    items_per_day: float
    automated_per_day: float
    since: datetime


def recent_traffic(*, use_case: UseCase, now=None) -> Traffic:
    since = (now or timezone.now()) - timedelta(days=WINDOW_DAYS)
    counts = Item.objects.filter(use_case=use_case, received_at__gte=since).aggregate(
        total=Count("id"), automated=Count("id", filter=Q(route="auto"))
    )
    return Traffic(
        items_per_day=counts["total"] / WINDOW_DAYS,
        automated_per_day=counts["automated"] / WINDOW_DAYS,
        since=since,
    )


def decided_per_day(
    *, policy: AutomationPolicy, model_version: ModelVersion, traffic: Traffic
) -> float:
    """Items a day ``model_version`` would decide alone under ``policy``: the arrivals, times
    the ramp's share, times (at ``partial``) the share of its own recent predictions at or above
    the threshold. A version without recent confident-or-not predictions (regression, or not
    scoring yet) is taken at the share the current champion automated."""
    if policy.level not in DECIDING_LEVELS:
        return 0.0
    ramp = policy.traffic_percent / 100
    if policy.level == Level.FULL.value:
        return traffic.items_per_day * ramp
    scored = Prediction.objects.filter(
        model_version=model_version, created_at__gte=traffic.since, confidence__isnull=False
    ).aggregate(
        total=Count("id"),
        confident=Count("id", filter=Q(confidence__gte=policy.confidence_threshold)),
    )
    if not scored["total"]:
        return traffic.automated_per_day
    return traffic.items_per_day * ramp * scored["confident"] / scored["total"]


def about(count: float) -> str:
    """``2,100`` for 2,093.6: two significant figures are all a seven-day rate can claim."""
    rounded = int(round(count))
    if rounded >= 100:
        digits = len(str(rounded)) - 2
        rounded = int(round(rounded, -digits))
    return f"{rounded:,}"


def items(count: float) -> str:
    figure = about(count)
    return f"{figure} item" if figure == "1" else f"{figure} items"


def _level_title(level: str) -> str:
    return LEVEL_HELP.get(level, {}).get("title", level)


def promote_effect(
    *, use_case: UseCase, policy: AutomationPolicy, model_version: ModelVersion, traffic: Traffic
) -> str:
    head = f"{model_version.version} becomes champion of {use_case.name}"
    if policy.level in DECIDING_LEVELS:
        decided = decided_per_day(policy=policy, model_version=model_version, traffic=traffic)
        terms = f"{policy.traffic_percent:g}% of traffic"
        if policy.level == Level.PARTIAL.value:
            terms = f"threshold {policy.confidence_threshold:.2f}, {terms}"
        return (
            f"{head}; at the current rate about {items(decided)} a day will be decided by it "
            f"alone ({terms}), out of about {about(traffic.items_per_day)} arriving."
        )
    return (
        f"{head}; at level {_level_title(policy.level)} it decides nothing alone, and it "
        f"scores about {about(traffic.items_per_day)} items a day."
    )


def rollback_target(*, use_case: UseCase) -> ModelVersion | None:
    """The version a rollback would bring back (what the rollback service picks)."""
    last_change = (
        ModelVersionEvent.objects.filter(
            use_case=use_case,
            model_version__role=ModelVersion.Role.CHAMPION,
            action__in=[ModelVersionEvent.Action.PROMOTE, ModelVersionEvent.Action.ROLLBACK],
        )
        .select_related("previous_champion", "model_version")
        .first()
    )
    return last_change.previous_champion if last_change else None


def rollback_effect(
    *, use_case: UseCase, policy: AutomationPolicy, champion: ModelVersion | None, traffic: Traffic
) -> str:
    target = rollback_target(use_case=use_case)
    if target is None or champion is None:
        return "There is no previous champion to roll back to."
    return promote_effect(
        use_case=use_case, policy=policy, model_version=target, traffic=traffic
    ).replace(
        f"{target.version} becomes champion",
        f"{target.version} replaces {champion.version} as champion",
        1,
    )


def challenge_effect(*, version: str, traffic: Traffic) -> str:
    return (
        f"{version} scores every new item in shadow, about {about(traffic.items_per_day)} a "
        "day; no decision changes."
    )


def restore_effect(
    *, current: AutomationPolicy, earlier: AutomationPolicy, traffic: Traffic
) -> str:
    changes = []
    if current.level != earlier.level:
        changes.append(f"level {_level_title(current.level)} → {_level_title(earlier.level)}")
    if current.confidence_threshold != earlier.confidence_threshold:
        changes.append(
            f"threshold {current.confidence_threshold:g} → {earlier.confidence_threshold:g}"
        )
    if current.traffic_percent != earlier.traffic_percent:
        changes.append(f"traffic {current.traffic_percent:g}% → {earlier.traffic_percent:g}%")
    if current.audit_rate != earlier.audit_rate:
        changes.append(f"audit {current.audit_rate:.0%} → {earlier.audit_rate:.0%}")
    what = "; ".join(changes) if changes else "no setting changes"
    return (
        f"Version {earlier.version} becomes current again as version {current.version + 1}: "
        f"{what}. It applies at once to the about {about(traffic.items_per_day)} items a day "
        "arriving."
    )


def ramp_pause_effect(plan: RampPlan) -> str:
    return (
        f"Traffic stays at {plan.current_percent:g}% (step {plan.current_step + 1} of "
        f"{len(plan.steps)}); the plan stops advancing until it is resumed."
    )
