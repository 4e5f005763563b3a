"""Escalating a held task to a manager, and the manager's resolution.

An open escalation takes its task out of the queue (state ``escalated``): no reviewer is offered
it until a manager resolves it, by answering it (a decision in the manager's name, through the
ordinary decision service) or by returning it to the queue with a note for the next reviewer.
"""

import uuid
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from reviewapp.core.errors import Conflict, InvalidInput
from reviewapp.core.events import event_record
from reviewapp.reviews.models import Escalation, ReviewTask
from reviewapp.reviews.outcomes import ITEM_ESCALATED, escalation_payload
from reviewapp.reviews.services.review import item_seen_record, review_task_decide

MAX_TEXT = 5000


def _text_required(value: Any, *, field: str, why: str) -> str:
    text = value.strip() if isinstance(value, str) else ""
    if not text:
        raise InvalidInput({field: [why]})
    return text[:MAX_TEXT]


def escalation_raise(
    *, task: ReviewTask, user, comment: str, lease_token: Any = None, now=None
) -> Escalation:
    """Hand a task the user holds to the managers, with a comment saying why.

    409 (Conflict) when the user no longer holds the task (decided, lease lost, withdrawn).
    """
    comment = _text_required(
        comment, field="comment", why="say why you escalate this item (the manager reads it)"
    )
    now = now or timezone.now()
    with transaction.atomic():
        locked = ReviewTask.objects.select_for_update().get(pk=task.pk)
        if locked.state == ReviewTask.State.DONE:
            raise Conflict({"detail": "This task was already decided.", "code": "decided"})
        if (
            locked.state != ReviewTask.State.OPEN
            or locked.claimed_by_id != user.pk
            or (lease_token not in (None, "") and str(lease_token) != str(locked.lease_token))
        ):
            raise Conflict({"detail": "You do not hold this task.", "code": "lease_lost"})
        ReviewTask.objects.filter(pk=locked.pk).update(
            state=ReviewTask.State.ESCALATED,
            claimed_by=None,
            claimed_at=None,
            lease_token=None,
            lease_expires_at=None,
        )
        escalation = Escalation.objects.create(
            task=locked,
            item_id=locked.item_id,
            use_case_id=locked.use_case_id,
            raised_by=user,
            comment=comment,
            created_at=now,
        )
        event_record(type=ITEM_ESCALATED, use_case_id=locked.use_case_id, data=_raised(escalation))
        return escalation


def _raised(escalation: Escalation) -> dict:
    """The ``item.escalated`` payload."""
    return escalation_payload(
        external_id=escalation.item.external_id,
        task_id=escalation.task_id,
        raised_by=escalation.raised_by.get_username(),
        comment=escalation.comment,
    )


def escalation_resolve(
    *,
    escalation: Escalation,
    user,
    note: str,
    label: Any = None,
    value: Any = None,
    now=None,
) -> Escalation:
    """Resolve an open escalation.

    With an answer (``label`` or ``value``) the manager decides the task: it is leased to them
    and decided through ``review_task_decide``, so the decision, its kind and its disagreements
    are recorded exactly as for any reviewer. Without one, the task goes back to the queue at
    its original place and ``note`` is shown to whoever takes it next.
    """
    note = _text_required(
        note, field="note", why="write a note for the reviewer (what you decided and why)"
    )
    answered = label not in (None, "") or value is not None
    now = now or timezone.now()
    try:
        with transaction.atomic():
            locked = (
                Escalation.objects.select_for_update()
                .filter(pk=escalation.pk, resolved_at__isnull=True)
                .first()
            )
            if locked is None:
                raise Conflict({"detail": "This escalation was already resolved."})
            task = (
                # The task alone: a lock on its use case's row would hold up every commit
                # that refers to that use case until this one ends.
                ReviewTask.objects.select_for_update(of=("self",))
                .select_related("use_case")
                .get(pk=locked.task_id)
            )
            if task.state != ReviewTask.State.ESCALATED:  # broken invariant, never silently
                raise Conflict({"detail": "This task is no longer escalated."})
            if answered:
                token = uuid.uuid4()
                task.state = ReviewTask.State.OPEN
                task.claimed_by = user
                task.claimed_at = now
                task.lease_token = token
                task.lease_expires_at = now + timedelta(seconds=settings.REVIEW_LEASE_SECONDS)
                task.save(
                    update_fields=[
                        "state",
                        "claimed_by",
                        "claimed_at",
                        "lease_token",
                        "lease_expires_at",
                    ]
                )
                item_seen_record(item_id=task.item_id, user=user, now=now)
                review_task_decide(
                    task=task,
                    user=user,
                    label=label,
                    value=value,
                    comment=note,
                    lease_token=token,
                    time_spent_ms=0,
                    now=now,
                )
            else:
                ReviewTask.objects.filter(pk=task.pk).update(state=ReviewTask.State.OPEN)
            locked.resolved_by = user
            locked.resolved_at = now
            locked.outcome = (
                Escalation.Outcome.ANSWERED if answered else Escalation.Outcome.RETURNED
            )
            locked.resolution_note = note
            locked.save(update_fields=["resolved_by", "resolved_at", "outcome", "resolution_note"])
    except IntegrityError:
        raise Conflict({"detail": "This escalation was already resolved."}) from None
    return locked
