"""One step of the reviewer's queue in the browser: act on the held task, then claim the next.

The page goes through the same services as the API (``review_task_claim``,
``review_task_decide``, ``review_task_skip``). What this adds is the workflow of a person at a
keyboard: a decision that lost a race (a double submit, a lost lease) is not an error to them
but a notice, and the next task is claimed in the same request so the page can swap it in.
"""

from dataclasses import dataclass
from typing import Any

from django.utils import timezone

from deployments.models import UseCase
from reviewapp.core.errors import Conflict, NotFound
from reviewapp.reviews.models import Decision, GoldCheck, ReviewTask
from reviewapp.reviews.services.escalations import escalation_raise
from reviewapp.reviews.services.gold import (
    gold_answer,
    gold_get_for,
    gold_held,
    gold_serve,
    gold_skip,
)
from reviewapp.reviews.services.review import (
    review_task_claim,
    review_task_decide,
    review_task_get_for,
    review_task_held,
    review_task_skip,
)


@dataclass(frozen=True)
class Notice:
    level: str  # "success", "info" or "warning"
    text: str


@dataclass
class QueueStep:
    task: ReviewTask | None  # what to show next; None when nothing is waiting
    notice: Notice | None = None
    decision: Decision | None = None
    gold: GoldCheck | None = None  # or a gold item, shown as a blind task


ALREADY_DECIDED = "Already decided: that item was saved before, nothing changed."
LEASE_LOST = (
    "Your hold on that item ran out and someone else has it now; your answer was not saved."
)
SKIPPED = "Skipped: that item went back to the queue for someone else."
SKIPPED_ONLY_ONE = "Skipped, but nothing else is waiting for you: here it is again."
ESCALATED = "Escalated to the managers; their answer will show in My work."
WITHDRAWN = "That item left the queue (withdrawn or escalated); your answer was not needed."


def _conflict_notice(conflict: Conflict) -> Notice:
    detail = conflict.detail if isinstance(conflict.detail, dict) else {}
    code = detail.get("code")
    if code == "lease_lost":
        return Notice("warning", LEASE_LOST)
    if code == "withdrawn":
        return Notice("warning", WITHDRAWN)
    # "decided", or the same idempotency key sent again with another answer (a second press
    # that picked a different label before the first one came back): both mean the first
    # submit won.
    return Notice("warning", ALREADY_DECIDED)


def _task_in(*, use_case: UseCase, task_id: Any, user) -> ReviewTask:
    task = review_task_get_for(task_id=task_id, user=user)
    if task.use_case_id != use_case.pk:
        raise NotFound({"detail": "No such task."})
    return task


def queue_next(*, use_case: UseCase, user, notice: Notice | None = None) -> QueueStep:
    """The task (or gold item) the user holds in this use case, or a newly claimed one: at the
    use case's gold rate, a gold item instead of a task (see ``services.gold``)."""
    if use_case.gold_rate > 0:
        now = timezone.now()
        gold = gold_held(use_case=use_case, user=user, now=now)
        if gold is None and review_task_held(use_case=use_case, user=user, now=now) is None:
            gold = gold_serve(use_case=use_case, user=user, now=now)
        if gold is not None:
            return QueueStep(task=None, gold=gold, notice=notice)
    return QueueStep(task=review_task_claim(use_case=use_case, user=user), notice=notice)


def queue_gold_decide(
    *,
    use_case: UseCase,
    user,
    check_id: Any,
    label: Any = None,
    value: Any = None,
    time_spent_ms: int | None = None,
) -> QueueStep:
    """Answer a gold item (scored, never a decision), then claim the next. The notice is the
    one a blind decision gets: nothing tells the reviewer the item was gold."""
    check = gold_get_for(use_case=use_case, user=user, check_id=check_id)
    try:
        answered = gold_answer(
            check=check, user=user, label=label, value=value, time_spent_ms=time_spent_ms
        )
    except Conflict:
        return queue_next(use_case=use_case, user=user, notice=Notice("warning", ALREADY_DECIDED))
    notice = _saved_notice(
        use_case=use_case, label=answered.label, value=answered.value, kind=Decision.Kind.BLIND
    )
    return queue_next(use_case=use_case, user=user, notice=notice)


def queue_gold_pass(*, use_case: UseCase, user, check_id: Any) -> QueueStep:
    """Skip (or escalate) a gold item: its answer is settled already, so it simply goes."""
    check = gold_get_for(use_case=use_case, user=user, check_id=check_id)
    gold_skip(check=check, user=user)
    return queue_next(use_case=use_case, user=user)


def _saved_notice(*, use_case: UseCase, label: str, value, kind: str) -> Notice:
    answer = label if use_case.is_classification else f"{value:g}"
    if kind == Decision.Kind.OVERRIDDEN:
        return Notice("success", f"Saved {answer}: you overrode the suggestion.")
    if kind == Decision.Kind.ACCEPTED:
        return Notice("success", f"Saved {answer}: you accepted the suggestion.")
    # Blind: say nothing about the model, not even whether the answer matched it.
    return Notice("success", f"Saved {answer}.")


def queue_decide(
    *,
    use_case: UseCase,
    user,
    task_id: Any,
    label: Any = None,
    value: Any = None,
    comment: str = "",
    lease_token: Any = None,
    time_spent_ms: int | None = None,
    idempotency_key: str | None = None,
) -> QueueStep:
    """Decide the held task, then claim the next. Bad input raises InvalidInput (nothing is
    saved, the task stays held); a lost race becomes a notice and the queue moves on. The task
    is read once, locked, by the decision: one not in this use case is not found there."""
    try:
        task = ReviewTask(pk=int(task_id), use_case=use_case)
    except (TypeError, ValueError):
        raise NotFound({"detail": "No such task."}) from None
    try:
        result = review_task_decide(
            task=task,
            user=user,
            label=label,
            value=value,
            comment=comment,
            lease_token=lease_token,
            time_spent_ms=time_spent_ms,
            idempotency_key=idempotency_key,
        )
    except Conflict as conflict:
        return queue_next(use_case=use_case, user=user, notice=_conflict_notice(conflict))
    notice = (
        Notice("warning", ALREADY_DECIDED)
        if result.replayed
        else _saved_notice(
            use_case=use_case,
            label=result.decision.label,
            value=result.decision.value,
            kind=result.decision.kind,
        )
    )
    step = queue_next(use_case=use_case, user=user, notice=notice)
    step.decision = result.decision
    return step


def queue_skip(*, use_case: UseCase, user, task_id: Any, lease_token: Any = None) -> QueueStep:
    """Give the held task back to the queue, then claim the next."""
    task = _task_in(use_case=use_case, task_id=task_id, user=user)
    try:
        review_task_skip(task=task, user=user, lease_token=lease_token)
    except Conflict as conflict:
        return queue_next(use_case=use_case, user=user, notice=_conflict_notice(conflict))
    step = queue_next(use_case=use_case, user=user)
    again = step.task is not None and step.task.pk == task.pk
    step.notice = Notice("info", SKIPPED_ONLY_ONE if again else SKIPPED)
    return step


def queue_escalate(
    *, use_case: UseCase, user, task_id: Any, comment: str, lease_token: Any = None
) -> QueueStep:
    """Escalate the held task to the managers, then claim the next."""
    task = _task_in(use_case=use_case, task_id=task_id, user=user)
    try:
        escalation_raise(task=task, user=user, comment=comment, lease_token=lease_token)
    except Conflict as conflict:
        return queue_next(use_case=use_case, user=user, notice=_conflict_notice(conflict))
    return queue_next(
        use_case=use_case,
        user=user,
        notice=Notice("success", ESCALATED),
    )
