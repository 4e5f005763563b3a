"""Writing automation policies: new versions, restoring earlier ones, checking guardrails."""

from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import transaction
from django.utils import timezone

from deployments.models import AutomationPolicy, UseCase
from deployments.policy import Level, PolicySpec
from deployments.policy.guardrails import GuardrailsInvalid, guardrails_parse
from deployments.selectors import policy_current
from deployments.services.use_cases import use_case_lock
from reviewapp.core.errors import InvalidInput, NotFound
from reviewapp.core.events import event_record
from reviewapp.core.safe_targets import TargetRefused, target_check

POLICY_FIELDS = (
    "level",
    "confidence_threshold",
    "traffic_percent",
    "audit_rate",
    "double_review_rate",
    "guardrails",
)


def policy_spec(policy: AutomationPolicy) -> PolicySpec:
    return PolicySpec(
        level=Level(policy.level),
        confidence_threshold=policy.confidence_threshold,
        traffic_percent=policy.traffic_percent,
        audit_rate=policy.audit_rate,
        double_review_rate=policy.double_review_rate,
    )


def guardrails_problems(raw: dict, *, unchanged_url: str = "") -> dict:
    """What is wrong with a guardrails object, by field (empty when it is fine)."""
    try:
        guardrails_parse(raw)
        errors = {}
    except GuardrailsInvalid as exc:
        errors = dict(exc.errors)
    url = raw.get("webhook_url")
    if isinstance(url, str) and url and "webhook_url" not in errors:
        try:
            URLValidator(schemes=["http", "https"])(url)
        except ValidationError:
            errors["webhook_url"] = ["not a valid http(s) URL"]
    if isinstance(url, str) and url and url != unchanged_url and "webhook_url" not in errors:
        # The webhooks call it under the same safe-target rules; a name that does not resolve
        # now is checked again at each delivery (a DNS hiccup must not block a policy change),
        # and so is a URL kept from the current version (a step-down must never be refused).
        try:
            target_check(url, unresolved_ok=True)
        except TargetRefused as refused:
            errors["webhook_url"] = [str(refused)]
    return errors


def policy_values_check(values: dict[str, Any], *, current_url: str = "") -> None:
    """Refuse a policy's values (by field) unless every one is valid."""
    errors = {}
    if values["level"] not in [level.value for level in Level]:
        errors["level"] = [f"must be one of {', '.join(level.value for level in Level)}"]
    for field, low, high in (
        ("confidence_threshold", 0, 1),
        ("traffic_percent", 0, 100),
        ("audit_rate", 0, 1),
        ("double_review_rate", 0, 1),
    ):
        value = values[field]
        if (
            not isinstance(value, int | float)
            or isinstance(value, bool)
            or not low <= value <= high
        ):
            errors[field] = [f"must be a number in [{low}, {high}]"]
    if not isinstance(values["guardrails"], dict):
        errors["guardrails"] = ["must be an object"]
    else:
        problems = guardrails_problems(values["guardrails"], unchanged_url=current_url)
        if problems:
            errors["guardrails"] = problems
    if errors:
        raise InvalidInput(errors)


@transaction.atomic
def policy_change(
    *,
    use_case: UseCase,
    actor,
    changes: dict[str, Any],
    reason: str,
    now=None,
    restored_from: AutomationPolicy | None = None,
) -> AutomationPolicy:
    """Write a new policy version from the current one with ``changes`` applied.

    ``actor`` None means the system made the change (a guardrail breach, a ramp plan step).
    The use case row is locked so concurrent changes get consecutive versions.
    """
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidInput({"reason": ["a reason is required for every policy change"]})
    unknown = set(changes) - set(POLICY_FIELDS)
    if unknown:
        raise InvalidInput({name: ["not a policy field"] for name in sorted(unknown)})
    use_case_lock(use_case_id=use_case.pk)
    current = policy_current(use_case=use_case)
    values = {field: getattr(current, field) for field in POLICY_FIELDS}
    values.update(changes)
    policy_values_check(values, current_url=(current.guardrails or {}).get("webhook_url") or "")
    policy = AutomationPolicy.objects.create(
        use_case=use_case,
        version=current.version + 1,
        changed_by=actor,
        changed_by_system=actor is None,
        changed_at=now or timezone.now(),
        reason=reason.strip(),
        restored_from=restored_from,
        **values,
    )
    event_record(type="policy.changed", use_case_id=use_case.pk, data=_policy_changed(policy))
    return policy


def _policy_changed(policy: AutomationPolicy) -> dict:
    """The ``policy.changed`` event's payload: who (None: a guardrail or ramp step), why, what."""
    return {
        "use_case": policy.use_case.slug,
        "version": policy.version,
        "level": policy.level,
        "by": policy.changed_by.get_username() if policy.changed_by else None,
        "by_system": policy.changed_by_system,
        "reason": policy.reason,
        "restored_from": policy.restored_from.version if policy.restored_from else None,
    }


def policy_restore(*, use_case: UseCase, version: int, actor, reason: str) -> AutomationPolicy:
    """Make an earlier version current again, as a new version that points back at it; like
    any policy change it needs a reason."""
    earlier = AutomationPolicy.objects.filter(use_case=use_case, version=version).first()
    if earlier is None:
        raise NotFound({"version": [f"no policy version {version}"]})
    return policy_change(
        use_case=use_case,
        actor=actor,
        changes={field: getattr(earlier, field) for field in POLICY_FIELDS},
        reason=reason,
        restored_from=earlier,
    )
