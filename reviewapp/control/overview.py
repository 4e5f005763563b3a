"""The spectrum overview: every use case a user may see, with what a manager needs at a glance.

A fixed number of queries whatever the number of use cases (a test pins it).
"""

from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import Count, Q
from django.utils import timezone

from deployments.models import AutomationPolicy, GuardrailBreach, ModelVersion, RampPlan, UseCase
from deployments.policy.guardrails import LEVEL_ORDER
from deployments.selectors import (
    breaches_open,
    model_roles_for,
    policies_current_for,
    ramp_plans_open_for,
)
from reviewapp.control.costs import capacity_warnings_for
from reviewapp.reviews.models import Decision, Item


@dataclass
class OverviewRow:
    use_case: UseCase
    policy: AutomationPolicy
    level_index: int
    champion: ModelVersion | None
    challengers: list[ModelVersion]
    plan: RampPlan | None
    items_today: int = 0
    automated_today: int = 0
    reviewed_today: int = 0
    overridden_today: int = 0
    breaches: list[GuardrailBreach] = field(default_factory=list)
    # Set when people could not keep up at the current threshold (see control.costs).
    capacity_warning: dict | None = None

    @property
    def automation_rate(self) -> float | None:
        return self.automated_today / self.items_today if self.items_today else None

    @property
    def override_rate(self) -> float | None:
        return self.overridden_today / self.reviewed_today if self.reviewed_today else None

    @property
    def has_guardrails(self) -> bool:
        return any(key != "webhook_url" for key in (self.policy.guardrails or {}))


def day_start(now: datetime) -> datetime:
    return timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)


def spectrum_overview(*, use_cases, now=None) -> list[OverviewRow]:
    use_cases = list(use_cases.order_by("name"))
    since = day_start(now or timezone.now())
    policies = policies_current_for(use_cases)
    roles = model_roles_for(use_cases)
    plans = ramp_plans_open_for(use_cases)
    routed = {
        row["use_case_id"]: row
        for row in Item.objects.filter(use_case__in=use_cases, received_at__gte=since)
        .exclude(route="")
        .values("use_case_id")
        .annotate(total=Count("id"), automated=Count("id", filter=Q(route="auto")))
    }
    decided = {
        row["use_case_id"]: row
        for row in Decision.objects.filter(use_case__in=use_cases, created_at__gte=since)
        .values("use_case_id")
        .annotate(
            accepted=Count("id", filter=Q(kind=Decision.Kind.ACCEPTED)),
            overridden=Count("id", filter=Q(kind=Decision.Kind.OVERRIDDEN)),
        )
    }
    warnings = capacity_warnings_for(
        use_cases=use_cases,
        policies=policies,
        champions={
            use_case_id: models["champion"][0].version
            for use_case_id, models in roles.items()
            if models.get("champion")
        },
        now=now,
    )
    open_breaches: dict[int, list[GuardrailBreach]] = {}
    for breach in breaches_open(use_cases=use_cases):
        open_breaches.setdefault(breach.use_case_id, []).append(breach)
    rows = []
    for use_case in use_cases:
        policy = policies[use_case.pk]
        models = roles.get(use_case.pk, {"champion": [], "challenger": []})
        items = routed.get(use_case.pk, {})
        decisions = decided.get(use_case.pk, {})
        rows.append(
            OverviewRow(
                use_case=use_case,
                policy=policy,
                level_index=[level.value for level in LEVEL_ORDER].index(policy.level),
                champion=(models["champion"] or [None])[0],
                challengers=models["challenger"],
                plan=plans.get(use_case.pk),
                items_today=items.get("total", 0),
                automated_today=items.get("automated", 0),
                reviewed_today=decisions.get("accepted", 0) + decisions.get("overridden", 0),
                overridden_today=decisions.get("overridden", 0),
                breaches=open_breaches.get(use_case.pk, []),
                capacity_warning=warnings.get(use_case.pk),
            )
        )
    return rows
