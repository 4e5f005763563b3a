"""Gold items: items whose answer is settled, served again, blind, to measure reviewers.

An item is settled when its double review is done and every reviewer who decided it agreed (the
same label; for a regression, values within the use case's tolerance): their shared answer is
the gold answer. A manager's answer to an escalation settles the item too, whatever the
reviewers said: the manager's answer is the gold one. At ``UseCase.gold_rate`` of a reviewer's
claims in the queue, one such item they have never seen is shown to them like any blind task;
their answer is scored against the settled one and kept in ``GoldCheck`` alone, never as a
decision, so it counts for the reviewer and never for the item, the model or the queue.

Which claims are gold is decided by a hash of the reviewer, the use case and how many answers
they have given there: the share over many claims is the rate, no reviewer can tell which claim
will be gold, and a reload shows the same thing.
"""

import hashlib
import uuid
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, Exists, Max, Min, OuterRef
from django.utils import timezone

from deployments.models import UseCase
from deployments.policy import TaskReason
from reviewapp.core.errors import Conflict, NotFound
from reviewapp.reviews.models import Decision, Escalation, GoldCheck, ItemSeen, ReviewTask
from reviewapp.reviews.services.disagreements import answers_differ
from reviewapp.reviews.services.review import answer_clean, item_seen_record

# The settled items a serve looks among (the newest first): enough choice, a bounded query.
CANDIDATES = 200


def gold_held(*, use_case: UseCase, user, now=None) -> GoldCheck | None:
    """The gold item the reviewer was shown and has not answered, while its hold lasts."""
    now = now or timezone.now()
    return (
        GoldCheck.objects.filter(
            use_case=use_case,
            reviewer=user,
            answered_at__isnull=True,
            skipped=False,
            lease_expires_at__gt=now,
        )
        .select_related("item")
        .first()
    )


def gold_due(*, use_case: UseCase, user) -> bool:
    """Whether the reviewer's next claim in this use case is a gold one."""
    if use_case.gold_rate <= 0:
        return False
    answers = (
        Decision.objects.filter(use_case=use_case, reviewer=user).count()
        + GoldCheck.objects.filter(use_case=use_case, reviewer=user).count()
    )
    digest = hashlib.sha256(f"gold:{use_case.pk}:{user.pk}:{answers}".encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < use_case.gold_rate


def _unseen(rows, *, user):
    """``rows`` (values of decisions, keyed by ``item_id``) less the items ``user`` ever saw
    or was served as gold."""
    if user is None:
        return rows
    return rows.exclude(
        Exists(ItemSeen.objects.filter(user=user, item_id=OuterRef("item_id")))
    ).exclude(Exists(GoldCheck.objects.filter(reviewer=user, item_id=OuterRef("item_id"))))


def _resolved_answers(*, use_case: UseCase, user, limit: int) -> dict[int, dict]:
    """The newest items a manager answered through an escalation: item id -> their answer."""
    answered = Escalation.objects.filter(
        task_id=OuterRef("task_id"), outcome=Escalation.Outcome.ANSWERED
    )
    rows = _unseen(
        Decision.objects.filter(use_case=use_case).filter(Exists(answered)), user=user
    ).values("item_id", "label", "value")
    answers: dict[int, dict] = {}
    for row in rows.order_by("-id")[:limit]:
        # The newest answer of an item wins, should a manager have answered it twice.
        answers.setdefault(row["item_id"], row)
    return answers


def settled_answers(*, use_case: UseCase, user=None, limit: int = CANDIDATES) -> list[dict]:
    """Settled items of the use case, newest first (``user``: only those they never saw): the
    item and its settled answer (a manager's resolution over the reviewers' agreement)."""
    resolved = _resolved_answers(use_case=use_case, user=user, limit=limit)
    # Two people decide an item through its double review: the newest finished ones are the
    # candidates, so the query reads a bounded number of items whatever the history's size.
    reviewed_twice = list(
        ReviewTask.objects.filter(
            use_case=use_case, reason=TaskReason.DOUBLE_REVIEW, state=ReviewTask.State.DONE
        )
        .order_by("-id")
        .values_list("item_id", flat=True)[: limit * 5]
    )
    decided = (
        Decision.objects.filter(use_case=use_case, item_id__in=reviewed_twice)
        .values("item_id")
        .annotate(
            people=Count("reviewer_id", distinct=True),
            labels=Count("label", distinct=True),
            low=Min("value"),
            high=Max("value"),
            label=Max("label"),
        )
        .filter(people__gte=2)
    )
    if use_case.is_classification:
        decided = decided.filter(labels=1)
    # Where a manager answered, their answer is the settled one, not the reviewers'.
    decided = _unseen(decided, user=user).exclude(
        Exists(
            Escalation.objects.filter(
                item_id=OuterRef("item_id"), outcome=Escalation.Outcome.ANSWERED
            )
        )
    )
    rows = []
    for row in decided.order_by("-item_id")[: limit * 2]:
        if not use_case.is_classification:
            if row["low"] is None or answers_differ(
                use_case=use_case,
                model_label="",
                model_value=row["low"],
                human_label="",
                human_value=row["high"],
            ):
                continue
            rows.append({"item_id": row["item_id"], "label": "", "value": row["low"]})
        else:
            rows.append({"item_id": row["item_id"], "label": row["label"], "value": None})
        if len(rows) == limit:
            break
    rows.extend(resolved.values())
    return sorted(rows, key=lambda row: row["item_id"], reverse=True)[:limit]


def gold_serve(*, use_case: UseCase, user, now=None) -> GoldCheck | None:
    """A gold item for the reviewer's claim, when one is due and one they never saw exists."""
    now = now or timezone.now()
    if not gold_due(use_case=use_case, user=user):
        return None
    candidates = settled_answers(use_case=use_case, user=user)
    if not candidates:
        return None
    pick = candidates[
        int(hashlib.sha256(f"{user.pk}:{now}".encode()).hexdigest(), 16) % len(candidates)
    ]
    lease = timedelta(seconds=settings.REVIEW_LEASE_SECONDS)
    try:
        with transaction.atomic():
            check = GoldCheck.objects.create(
                use_case=use_case,
                item_id=pick["item_id"],
                reviewer=user,
                expected_label=pick["label"],
                expected_value=pick["value"],
                served_at=now,
                lease_token=uuid.uuid4(),
                lease_expires_at=now + lease,
            )
            item_seen_record(item_id=pick["item_id"], user=user, now=now)
    except IntegrityError:  # served to this reviewer by a request a moment ago
        return gold_held(use_case=use_case, user=user, now=now)
    return GoldCheck.objects.select_related("item").get(pk=check.pk)


def gold_get_for(*, use_case: UseCase, user, check_id: Any) -> GoldCheck:
    try:
        check_id = int(check_id)
    except (TypeError, ValueError):
        raise NotFound({"detail": "No such item."}) from None
    check = GoldCheck.objects.filter(pk=check_id, use_case=use_case, reviewer=user).first()
    if check is None:
        raise NotFound({"detail": "No such item."})
    return check


def gold_answer(
    *,
    check: GoldCheck,
    user,
    label: Any = None,
    value: Any = None,
    time_spent_ms: int | None = None,
    now=None,
) -> GoldCheck:
    """Score the reviewer's answer against the settled one. 409 once answered or skipped."""
    now = now or timezone.now()
    use_case = check.use_case
    label, value = answer_clean(use_case=use_case, label=label, value=value)
    with transaction.atomic():
        locked = GoldCheck.objects.select_for_update().get(pk=check.pk)
        if locked.reviewer_id != user.pk or locked.answered_at or locked.skipped:
            raise Conflict({"detail": "This item was already answered.", "code": "decided"})
        locked.label, locked.value, locked.answered_at = label, value, now
        locked.correct = not answers_differ(
            use_case=use_case,
            model_label=locked.expected_label,
            model_value=locked.expected_value,
            human_label=label,
            human_value=value,
        )
        if time_spent_ms is None:
            time_spent_ms = int((now - locked.served_at).total_seconds() * 1000)
        locked.time_spent_ms = max(0, min(time_spent_ms, 2**31 - 1))
        locked.save(update_fields=["label", "value", "answered_at", "correct", "time_spent_ms"])
    return locked


def gold_skip(*, check: GoldCheck, user) -> None:
    """Passed on (skipped or escalated): not scored, and not served to them again."""
    GoldCheck.objects.filter(pk=check.pk, reviewer=user, answered_at__isnull=True).update(
        skipped=True
    )
