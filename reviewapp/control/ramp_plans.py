"""Writing ramp plans: start, pause, resume, cancel by hand; advance and step back by the system.

Every traffic change a plan makes is a policy version (``policy_change``), so the policy
history tells the whole story; the plan's own events say which step it was and why.
"""

from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from deployments.models import AutomationPolicy, RampPlan, RampPlanEvent, UseCase
from deployments.policy.ramp import Move, RampMove, RampPlanSpec, StepProgress, ramp_next
from deployments.policy.ramp import ramp_plan_problems as _problems
from deployments.selectors import policy_current, ramp_plan_open
from deployments.services.policies import policy_change
from deployments.services.use_cases import use_case_lock
from reviewapp.core.errors import Conflict, InvalidInput
from reviewapp.reviews.models import Decision


def ramp_plan_spec(plan: RampPlan) -> RampPlanSpec:
    return RampPlanSpec(
        steps=tuple(plan.steps),
        advance_after_items=plan.advance_after_items,
        advance_after_seconds=plan.advance_after_seconds,
    )


def ramp_progress(*, plan: RampPlan, use_case: UseCase, now) -> StepProgress:
    """How far the plan's current step has come: decisions made and time passed since it began."""
    reviewed = Decision.objects.filter(
        use_case=use_case, created_at__gte=plan.step_started_at
    ).count()
    return StepProgress(
        index=plan.current_step,
        reviewed=reviewed,
        elapsed_seconds=max(0.0, (now - plan.step_started_at).total_seconds()),
    )


def _event(plan: RampPlan, kind: str, *, actor, reason: str, now, policy=None) -> RampPlanEvent:
    return RampPlanEvent.objects.create(
        plan=plan,
        kind=kind,
        step=plan.current_step,
        traffic_percent=plan.current_percent,
        actor=actor,
        policy=policy,
        reason=reason,
        created_at=now,
    )


def _open_plan_or_conflict(use_case: UseCase) -> RampPlan:
    plan = ramp_plan_open(use_case=use_case)
    if plan is None:
        raise Conflict({"detail": "This use case has no ramp plan in progress."})
    return plan


def _traffic_set(*, use_case, plan, actor, reason: str, now) -> AutomationPolicy | None:
    """Put the policy's traffic at the plan's current step, as a new version if it differs."""
    if policy_current(use_case=use_case).traffic_percent == plan.current_percent:
        return None
    return policy_change(
        use_case=use_case,
        actor=actor,
        changes={"traffic_percent": plan.current_percent},
        reason=reason,
        now=now,
    )


@transaction.atomic
def ramp_plan_start(
    *,
    use_case: UseCase,
    actor,
    steps: Any,
    advance_after_items: Any = None,
    advance_after_seconds: Any = None,
    reason: str,
    now=None,
) -> RampPlan:
    """Start a plan at its first step; the policy's traffic moves there at once."""
    now = now or timezone.now()
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidInput({"reason": ["a reason is required"]})
    problems = _problems(
        steps=steps,
        advance_after_items=advance_after_items,
        advance_after_seconds=advance_after_seconds,
    )
    if problems:
        raise InvalidInput(problems)
    use_case_lock(use_case_id=use_case.pk)
    if ramp_plan_open(use_case=use_case) is not None:
        raise Conflict({"detail": "A ramp plan is already in progress; cancel it first."})
    try:
        with transaction.atomic():
            plan = RampPlan.objects.create(
                use_case=use_case,
                steps=[float(s) for s in steps],
                advance_after_items=advance_after_items,
                advance_after_seconds=advance_after_seconds,
                step_started_at=now,
                reason=reason.strip(),
                created_by=actor,
                created_at=now,
            )
    except IntegrityError as exc:  # the partial unique index: another plan started meanwhile
        raise Conflict({"detail": "A ramp plan is already in progress."}) from exc
    policy = _traffic_set(
        use_case=use_case,
        plan=plan,
        actor=actor,
        reason=f"ramp plan started at {plan.current_percent:g}%: {reason.strip()}",
        now=now,
    )
    _event(
        plan, RampPlanEvent.Kind.START, actor=actor, reason=reason.strip(), now=now, policy=policy
    )
    return plan


@transaction.atomic
def ramp_plan_pause(*, use_case: UseCase, actor, reason: str = "", now=None) -> RampPlan:
    now = now or timezone.now()
    use_case_lock(use_case_id=use_case.pk)
    plan = _open_plan_or_conflict(use_case)
    if plan.state == RampPlan.State.PAUSED:
        return plan
    reason = (reason or "").strip() or "paused by hand"
    return _pause(plan, actor=actor, reason=reason, now=now)


def _pause(plan: RampPlan, *, actor, reason: str, now, policy=None) -> RampPlan:
    plan.state = RampPlan.State.PAUSED
    plan.paused_reason = reason
    plan.save(update_fields=["state", "paused_reason"])
    _event(plan, RampPlanEvent.Kind.PAUSE, actor=actor, reason=reason, now=now, policy=policy)
    return plan


@transaction.atomic
def ramp_plan_resume(*, use_case: UseCase, actor, reason: str = "", now=None) -> RampPlan:
    """Resume at the current step with a fresh count: evidence gathered while paused (perhaps
    at other traffic) does not count towards the next step. Traffic returns to the step's."""
    now = now or timezone.now()
    use_case_lock(use_case_id=use_case.pk)
    plan = _open_plan_or_conflict(use_case)
    if plan.state == RampPlan.State.ACTIVE:
        return plan
    reason = (reason or "").strip() or "resumed by hand"
    plan.state = RampPlan.State.ACTIVE
    plan.paused_reason = ""
    plan.step_started_at = now
    plan.save(update_fields=["state", "paused_reason", "step_started_at"])
    policy = _traffic_set(
        use_case=use_case,
        plan=plan,
        actor=actor,
        reason=f"ramp plan resumed at {plan.current_percent:g}%: {reason}",
        now=now,
    )
    _event(plan, RampPlanEvent.Kind.RESUME, actor=actor, reason=reason, now=now, policy=policy)
    return plan


@transaction.atomic
def ramp_plan_cancel(*, use_case: UseCase, actor, reason: str = "", now=None) -> RampPlan:
    """Stop the plan; the traffic stays where it is."""
    now = now or timezone.now()
    use_case_lock(use_case_id=use_case.pk)
    plan = _open_plan_or_conflict(use_case)
    plan.state = RampPlan.State.CANCELLED
    plan.finished_at = now
    plan.save(update_fields=["state", "finished_at"])
    reason = (reason or "").strip() or "cancelled by hand"
    _event(plan, RampPlanEvent.Kind.CANCEL, actor=actor, reason=reason, now=now)
    return plan


# --- moves the system makes (called from use_case_watch, holding the use case row lock) -----


def ramp_plan_step_back(*, plan: RampPlan, move: RampMove, because: str, policy, now) -> None:
    """A guardrail broke: the plan goes back to ``move``'s step (computed by the caller, who
    wrote its traffic into ``policy`` together with the level's step-down) and pauses until a
    manager resumes it."""
    plan.current_step = move.index
    plan.step_started_at = now
    plan.save(update_fields=["current_step", "step_started_at"])
    _event(
        plan, RampPlanEvent.Kind.STEP_BACK, actor=None, reason=move.reason, now=now, policy=policy
    )
    if plan.state == RampPlan.State.ACTIVE:
        _pause(plan, actor=None, reason=f"paused after a guardrail breach: {because}", now=now)


def ramp_plan_tick(*, use_case: UseCase, plan: RampPlan, progress: StepProgress, now) -> RampMove:
    """Advance the plan one step if its current step has its evidence (guardrails hold: the
    caller only ticks when none is breached). Call holding the use case row lock."""
    current = policy_current(use_case=use_case)
    if current.traffic_percent != plan.current_percent:
        reason = (
            f"traffic was set to {current.traffic_percent:g}% outside the plan (policy version "
            f"{current.version}); resume to continue from {plan.current_percent:g}%"
        )
        _pause(plan, actor=None, reason=reason, now=now)
        return RampMove(Move.HOLD, plan.current_step, plan.current_percent, False, reason)
    move = ramp_next(plan=ramp_plan_spec(plan), progress=progress, guardrails_hold=True)
    if move.move is not Move.ADVANCE:
        return move
    plan.current_step = move.index
    plan.step_started_at = now
    fields = ["current_step", "step_started_at"]
    if move.finished:
        plan.state = RampPlan.State.DONE
        plan.finished_at = now
        fields += ["state", "finished_at"]
    plan.save(update_fields=fields)
    policy = policy_change(
        use_case=use_case,
        actor=None,
        changes={"traffic_percent": move.traffic_percent},
        reason=move.reason,
        now=now,
    )
    _event(plan, RampPlanEvent.Kind.ADVANCE, actor=None, reason=move.reason, now=now, policy=policy)
    if move.finished:
        _event(plan, RampPlanEvent.Kind.FINISH, actor=None, reason="the plan is complete", now=now)
    return move
