"""Four-eyes: with ``UseCase.four_eyes`` on, raising the level to partial or full, or promoting
a champion, waits as a change request until a second manager approves it. Lowering automation
never waits (safety first). Approval applies the change through the same services as a direct
change, in the same transaction, so history and outbox events are the same."""

from typing import Any

from django.db import transaction
from django.utils import timezone

from deployments.models import (
    AutomationPolicy,
    ChangeRequest,
    ChangeRequestDecision,
    ModelVersion,
    UseCase,
)
from deployments.policy.guardrails import LEVEL_ORDER
from deployments.selectors import champion_get, model_version_get, policy_current
from deployments.services.model_versions import REASON_REQUIRED, model_version_promote
from deployments.services.policies import (
    POLICY_FIELDS,
    policy_change,
    policy_restore,
    policy_values_check,
)
from deployments.services.use_cases import use_case_lock
from reviewapp.core.errors import Conflict, Forbidden, InvalidInput, NotFound

GUARDED_LEVELS = ("partial", "full")


def _rank(level: str) -> int:
    return [level.value for level in LEVEL_ORDER].index(level)


def _reason_check(reason: Any, message: str = REASON_REQUIRED) -> str:
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidInput({"reason": [message]})
    return reason.strip()


def _raises_automation(*, current_level: str, changes: dict) -> bool:
    level = changes.get("level", current_level)
    return level in GUARDED_LEVELS and _rank(level) > _rank(current_level)


@transaction.atomic
def policy_change_or_request(
    *, use_case: UseCase, actor, changes: dict[str, Any], reason: str, now=None
):
    """The new policy version, or the ChangeRequest four-eyes turns the change into."""
    use_case = use_case_lock(use_case_id=use_case.pk)
    current = policy_current(use_case=use_case)
    if not use_case.four_eyes or not _raises_automation(
        current_level=current.level, changes=changes
    ):
        return policy_change(
            use_case=use_case, actor=actor, changes=changes, reason=reason, now=now
        )
    reason = _reason_check(reason, "a reason is required for every policy change")
    unknown = set(changes) - set(POLICY_FIELDS)
    if unknown:
        raise InvalidInput({name: ["not a policy field"] for name in sorted(unknown)})
    values = {field: getattr(current, field) for field in POLICY_FIELDS} | changes
    policy_values_check(values, current_url=(current.guardrails or {}).get("webhook_url") or "")
    return _request_create(
        use_case=use_case,
        kind=ChangeRequest.Kind.POLICY,
        changes=changes,
        actor=actor,
        reason=reason,
        now=now,
    )


@transaction.atomic
def policy_restore_or_request(*, use_case: UseCase, version: int, actor, reason: str):
    """Restoring an earlier version is a policy change like any other: under four-eyes,
    restoring one that raises the level waits for a second manager."""
    use_case = use_case_lock(use_case_id=use_case.pk)
    current = policy_current(use_case=use_case)
    earlier = AutomationPolicy.objects.filter(use_case=use_case, version=version).first()
    if (
        earlier is None
        or not use_case.four_eyes
        or not _raises_automation(current_level=current.level, changes={"level": earlier.level})
    ):
        return policy_restore(use_case=use_case, version=version, actor=actor, reason=reason)
    reason = _reason_check(reason, "a reason is required for every policy change")
    return _request_create(
        use_case=use_case,
        kind=ChangeRequest.Kind.POLICY,
        changes={field: getattr(earlier, field) for field in POLICY_FIELDS},
        actor=actor,
        reason=f"{reason} (restores version {version})",
        now=None,
    )


@transaction.atomic
def model_promote_or_request(*, use_case: UseCase, version: str, actor, reason: str, now=None):
    """The promoted version, or the ChangeRequest four-eyes turns the promotion into."""
    use_case = use_case_lock(use_case_id=use_case.pk)
    if not use_case.four_eyes:
        return model_version_promote(use_case=use_case, version=version, actor=actor, reason=reason)
    reason = _reason_check(reason)
    target = model_version_get(use_case=use_case, version=version)
    if target.role == ModelVersion.Role.CHAMPION:
        raise Conflict({"version": [f"{version!r} is already the champion"]})
    return _request_create(
        use_case=use_case,
        kind=ChangeRequest.Kind.PROMOTE,
        changes={"version": version},
        actor=actor,
        reason=reason,
        now=now,
    )


def _request_create(*, use_case, kind, changes, actor, reason, now) -> ChangeRequest:
    champion = champion_get(use_case=use_case)
    return ChangeRequest.objects.create(
        use_case=use_case,
        kind=kind,
        changes=changes,
        base_policy_version=policy_current(use_case=use_case).version,
        base_champion=champion.version if champion else "",
        reason=reason,
        requested_by=actor,
        requested_at=now or timezone.now(),
    )


def _pending_get(*, use_case: UseCase, request_id: int) -> ChangeRequest:
    request = (
        ChangeRequest.objects.filter(use_case=use_case, pk=request_id)
        .select_related("requested_by", "decision")
        .first()
    )
    if request is None:
        raise NotFound({"detail": f"no change request {request_id}"})
    if hasattr(request, "decision"):
        raise Conflict({"detail": "This change request has already been decided."})
    return request


@transaction.atomic
def change_request_approve(
    *, use_case: UseCase, request_id: int, actor, reason: str, now=None
) -> ChangeRequest:
    """Apply the requested change as ``actor``, a manager other than the requester. Refused
    when the policy or the champion changed since the request: it was judged against them."""
    reason = _reason_check(reason, "a reason is required to approve")
    use_case = use_case_lock(use_case_id=use_case.pk)
    request = _pending_get(use_case=use_case, request_id=request_id)
    if request.requested_by_id == actor.pk:
        raise Forbidden({"detail": "A second manager must approve; you asked for this change."})
    champion = champion_get(use_case=use_case)
    current = policy_current(use_case=use_case)
    if current.version != request.base_policy_version or (
        (champion.version if champion else "") != request.base_champion
    ):
        raise Conflict(
            {
                "detail": "The policy or the champion changed since this request; "
                "reject it and ask again."
            }
        )
    why = f"{request.reason} (asked by {request.requested_by.get_username()}; approved: {reason})"
    if request.kind == ChangeRequest.Kind.POLICY:
        policy_change(use_case=use_case, actor=actor, changes=request.changes, reason=why, now=now)
    else:
        model_version_promote(
            use_case=use_case, version=request.changes["version"], actor=actor, reason=why
        )
    ChangeRequestDecision.objects.create(
        request=request,
        approved=True,
        decided_by=actor,
        decided_at=now or timezone.now(),
        reason=reason,
    )
    return request


@transaction.atomic
def change_request_reject(
    *, use_case: UseCase, request_id: int, actor, reason: str, now=None
) -> ChangeRequest:
    """Close the request without changing anything."""
    reason = _reason_check(reason, "a reason is required to reject")
    use_case = use_case_lock(use_case_id=use_case.pk)
    request = _pending_get(use_case=use_case, request_id=request_id)
    ChangeRequestDecision.objects.create(
        request=request,
        approved=False,
        decided_by=actor,
        decided_at=now or timezone.now(),
        reason=reason,
    )
    return request
