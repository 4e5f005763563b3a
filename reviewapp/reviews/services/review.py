"""Claiming review tasks under a lease, deciding them, skipping them.

A claim hands one open task to one reviewer for ``REVIEW_LEASE_SECONDS`` with a fresh lease
token. A decision must come from the reviewer holding the lease (and, when given, with its
token): after the lease expired and someone else claimed the task, the late decision is refused
with 409, so every task ends with exactly one decision.
"""

import json
import math
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection, transaction
from django.db.models import BooleanField, Exists, F, OuterRef, Q
from django.db.models.expressions import RawSQL
from django.db.models.lookups import Exact
from django.utils import timezone

from deployments.models import UseCase
from deployments.selectors import use_cases_visible_to
from reviewapp.core.bulk import instance_insert, instance_update, next_id_sql, writes_joined
from reviewapp.core.compiled import (
    CompiledRead,
    constants_inlined,
    params_filled,
    stand_ins_marked,
)
from reviewapp.core.errors import Conflict, InvalidInput, NotFound
from reviewapp.core.events import events_record
from reviewapp.core.logs import event_log
from reviewapp.reviews.models import (
    Decision,
    Escalation,
    Item,
    ItemSeen,
    Prediction,
    ReviewTask,
    TaskSkip,
)
from reviewapp.reviews.outcomes import OUTCOME_CORRECTED, OUTCOME_DECIDED, outcome_payload
from reviewapp.reviews.partitions import month_of_now, month_start_id
from reviewapp.reviews.services.disagreements import answers_differ, disagreements_record
from reviewapp.reviews.signals import decision_recorded, use_case_facts_changed

CLAIM_ATTEMPTS = 5


def _claimable(*, use_case: UseCase, user, now, include_skipped: bool):
    tasks = ReviewTask.objects.filter(use_case=use_case, state=ReviewTask.State.OPEN).filter(
        Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lte=now)
    )
    # Nobody reviews the same item twice (a double review needs two different people).
    tasks = tasks.exclude(
        Exists(Decision.objects.filter(item_id=OuterRef("item_id"), reviewer=user))
    )
    # A blind answer is independent only from someone who never saw the item: not after a
    # skipped, escalated or expired task of it, whatever that task showed (see ItemSeen).
    # The task's own "blind" test sits inside the subquery: with it outside, in an OR, the
    # planner hashes every item the reviewer ever saw on each claim; inside, the NOT EXISTS is
    # an anti-join that probes the (user, item) index once per row it looks at.
    tasks = tasks.exclude(
        Exists(
            ItemSeen.objects.filter(
                Exact(OuterRef("show_suggestion"), False),
                user=user,
                item_id=OuterRef("item_id"),
            )
        )
    )
    if not include_skipped:
        tasks = tasks.exclude(Exists(TaskSkip.objects.filter(task_id=OuterRef("pk"), user=user)))
    return tasks.order_by(*QUEUE_ORDERS[use_case.queue_order])


# Each order is one partial index of ReviewTask (task_queue_*_idx), walked from its start;
# ties fall back to the oldest task, then the lowest id, so the order is total.
QUEUE_ORDERS = {
    UseCase.QueueOrder.FIFO: ("created_at", "id"),
    UseCase.QueueOrder.PRIORITY: ("-priority", "created_at", "id"),
    UseCase.QueueOrder.DUE: (F("due_at").asc(nulls_last=True), "created_at", "id"),
    UseCase.QueueOrder.UNCERTAIN: ("-uncertainty", "created_at", "id"),
}


def _held(*, use_case: UseCase, user, now):
    """The tasks the user holds a live lease on in this use case, the first claimed first."""
    return ReviewTask.objects.filter(
        use_case=use_case,
        state=ReviewTask.State.OPEN,
        claimed_by=user,
        lease_expires_at__gt=now,
    ).order_by("claimed_at")


def review_task_held(*, use_case: UseCase, user, now) -> ReviewTask | None:
    """The task the user holds a live lease on in this use case, if any."""
    return _held(use_case=use_case, user=user, now=now).first()


def review_task_claim(
    *, use_case: UseCase, user, now=None, lease_seconds: int | None = None
) -> ReviewTask | None:
    """Claim the next task for ``user``, or None when nothing is waiting for them.

    A reviewer who already holds a live lease in this use case gets that task back (a closed
    tab loses nothing). Otherwise the oldest claimable task: open, with no live lease, on an
    item the reviewer has not decided, never a blind task of an item they have seen in any form,
    and not one they skipped unless nothing else is left. The claim and the record that the
    reviewer has seen the item commit together. On PostgreSQL the candidate row is locked with
    SKIP LOCKED so competing reviewers pass over each other's rows; on every database the claim
    itself is a conditional update, so two reviewers can never hold the same task.
    """
    now = now or timezone.now()
    lease = timedelta(seconds=lease_seconds or settings.REVIEW_LEASE_SECONDS)
    if connection.vendor == "postgresql":
        for include_skipped in (False, True):
            # The first statement also answers with the task the user already holds.
            claimed = _claim_in_one_statement(
                use_case=use_case,
                user=user,
                now=now,
                lease=lease,
                include_skipped=include_skipped,
                held_first=not include_skipped,
            )
            if claimed is not None:
                return claimed
        return None
    held = review_task_held(use_case=use_case, user=user, now=now)
    if held is not None:
        return _task_shown(held.pk)
    for include_skipped in (False, True):
        for _ in range(CLAIM_ATTEMPTS):
            with transaction.atomic():
                candidate = (
                    _claimable(
                        use_case=use_case, user=user, now=now, include_skipped=include_skipped
                    )
                    .select_for_update(skip_locked=True, of=("self",))
                    .only("id", "item_id")
                    .first()
                )
                if candidate is None:
                    break
                token = uuid.uuid4()
                won = (
                    ReviewTask.objects.filter(pk=candidate.pk, state=ReviewTask.State.OPEN)
                    .filter(Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lte=now))
                    .update(
                        claimed_by=user,
                        claimed_at=now,
                        lease_token=token,
                        lease_expires_at=now + lease,
                    )
                )
                if won:  # seen and claimed commit together
                    item_seen_record(item_id=candidate.item_id, user=user, now=now)
            if won:
                return _task_shown(candidate.pk)
    return None


def _tasks_shown():
    """Claimed tasks as the reviewer is shown them: with the item and the routing prediction,
    and ``was_returned``, whether a manager sent the task back from an escalation (only then
    is there a note to read)."""
    return ReviewTask.objects.select_related("item__prediction").annotate(
        was_returned=_was_returned_sql()
    )


# The reads the queue repeats on every claim and decision, compiled once per process
# (``CompiledRead``): the shown task by id, the task shown after a claim statement, and the
# decision's locking read. The stand-ins are ids no row has.
_SHOWN_BY_ID = CompiledRead(
    lambda task_id: _tasks_shown().filter(pk=task_id)[:1], task_id=-7_770_000_101
)
# The claim statement runs before it, in its text, and both are prepared together: the claim's
# constants are written into it (``_claim_statement``), so the plan kept for it is the one made
# for each claim's values.
_SHOWN_AFTER_CLAIM = CompiledRead(lambda: _tasks_shown()[:1])
_DECISION_READ = CompiledRead(
    lambda predictions, task_id, use_case_id: (
        _with_decision_reads(ReviewTask.objects.select_related("item"), predictions=predictions)
        .select_for_update(of=("self", "item"))
        .filter(pk=task_id, use_case_id=use_case_id)[:1]
    ),
    task_id=-7_770_000_102,
    use_case_id=-7_770_000_103,
)


def _task_shown(task_id: int) -> ReviewTask:
    task = _SHOWN_BY_ID.first(task_id=int(task_id))
    if task is None:
        raise ReviewTask.DoesNotExist(f"No task {task_id}.")
    return task


def _was_returned_sql() -> RawSQL:
    """``EXISTS`` an escalation of the annotated task that a manager returned. Plain SQL: an
    ORM ``Exists`` costs more to compile (0.5 ms) than the query it saves."""
    escalation = Escalation._meta
    quote = connection.ops.quote_name
    sql = (
        f"EXISTS (SELECT 1 FROM {quote(escalation.db_table)} e "
        f"WHERE e.{quote(escalation.get_field('task').column)} = "
        f"{quote(ReviewTask._meta.db_table)}.{quote(ReviewTask._meta.pk.column)} "
        f"AND e.{quote(escalation.get_field('outcome').column)} = %s)"
    )
    return RawSQL(sql, [str(Escalation.Outcome.RETURNED)], output_field=BooleanField())


def _claim_in_one_statement(
    *,
    use_case: UseCase,
    user,
    now,
    lease: timedelta,
    include_skipped: bool,
    held_first: bool = False,
) -> int | None:
    """PostgreSQL: pick the first claimable task, lock it (SKIP LOCKED), claim it, record
    that the reviewer has seen its item and read it as it is shown (``_tasks_shown``), in one
    statement: one round trip instead of a transaction of three and a read. The claim's
    update still requires an open task with no live lease. With ``held_first``, a task the
    user already holds a live lease on in this use case is the answer instead, and nothing is
    claimed. Returns the task, or None when nothing is claimable (or all of it is locked by
    other reviewers' claims at this instant)."""
    sql, params = _claim_statement(
        queue_order=use_case.queue_order,
        include_skipped=include_skipped,
        held_first=held_first,
        # Ids come from the database's clock: the month after next leaves a margin for a
        # clock that differs, and ``now`` may be a test's.
        items_below=month_start_id(month_of_now() + 2),
    )
    values = {
        "use_case": use_case.pk,
        "user": user.pk,
        "now": now,
        "token": uuid.uuid4(),
        "expires": now + lease,
    }
    params = params_filled(params, values)

    # The claim's WITH parts end with one named as the tasks' table, holding the task claimed
    # or held as it is after this statement; the ORM's read of the shown task follows them, so
    # Django builds the task, its item and prediction from the row as for any query.
    def after_claim(execute, shown_sql, shown_params, many, context):
        return execute(f"{sql} {shown_sql}", [*params, *shown_params], many, context)

    with connection.execute_wrapper(after_claim):
        return _SHOWN_AFTER_CLAIM.first()


# The claim statement is the same for every claim of a queue order but for five values, so
# each process compiles it once per order and variant, with stand-ins no real claim can hold,
# and puts the claim's own values in their places (building and compiling it through the ORM
# took most of a claim's time in Python). The stand-ins are found by value and type: no other
# parameter of the statement can equal them. Everything else (the open state, the bound on
# item ids, ...) is written into the statement, which is prepared (``constants_inlined``):
# with those constants as parameters, PostgreSQL's generic plan could not use the queue's
# partial index nor estimate the bound, and sorted every open task (74 ms against 0.4 ms with
# 100,000 open), so the claim was planned on every run (1 ms, more with each month).
_CLAIM_USE_CASE = -7_770_000_001
_CLAIM_USER = -7_770_000_002
_CLAIM_NOW = datetime(1901, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
_CLAIM_EXPIRES = datetime(1901, 6, 7, 8, 9, 10, 111213, tzinfo=UTC)
_CLAIM_TOKEN = uuid.UUID("00000000-0000-4000-8000-00000c1a1177")
_CLAIM_ITEMS_BELOW = -7_770_000_003
_CLAIM_STAND_INS = {
    "items_below": _CLAIM_ITEMS_BELOW,
    "use_case": _CLAIM_USE_CASE,
    "user": _CLAIM_USER,
    "now": _CLAIM_NOW,
    "expires": _CLAIM_EXPIRES,
    "token": _CLAIM_TOKEN,
}
# (queue order, skipped too, held first, bound on item ids) -> the SQL, and each parameter left
# in it with the name of the stand-in it is. The bound changes once a month.
_claim_statements: dict[tuple[str, bool, bool, int], tuple[str, list[tuple[Any, str | None]]]] = {}


def _claim_statement(
    *, queue_order: str, include_skipped: bool, held_first: bool, items_below: int
) -> tuple[str, list[tuple[Any, str | None]]]:
    key = (queue_order, include_skipped, held_first, items_below)
    kept = _claim_statements.get(key)
    if kept is None:
        for old in [k for k in _claim_statements if k[3] != items_below]:
            # Last month's; another thread crossing the month may have dropped it already.
            _claim_statements.pop(old, None)
        sql, marked = _claim_statement_build(
            queue_order=queue_order, include_skipped=include_skipped, held_first=held_first
        )
        marked = [
            (items_below, None) if name == "items_below" else (param, name)
            for param, name in marked
        ]
        kept = _claim_statements[key] = constants_inlined(sql, marked, connection)
    return kept


def _claim_statement_build(
    *, queue_order: str, include_skipped: bool, held_first: bool
) -> tuple[str, list[tuple[Any, str | None]]]:
    use_case = UseCase(pk=_CLAIM_USE_CASE, queue_order=queue_order)
    user = get_user_model()(pk=_CLAIM_USER)
    # Items of the months after next cannot exist yet: said as a constant, it keeps those
    # months' partitions out of the plan (PostgreSQL's monthly partitions, reviews.partitions).
    candidate = (
        _claimable(use_case=use_case, user=user, now=_CLAIM_NOW, include_skipped=include_skipped)
        .filter(item_id__lt=_CLAIM_ITEMS_BELOW)
        .values("id", "item_id")[:1]
    )
    select_sql, select_params = candidate.query.sql_with_params()
    held_params: tuple[Any, ...] = ()
    held_sql = "SELECT NULL::bigint AS id WHERE false"
    if held_first:
        held = _held(use_case=use_case, user=user, now=_CLAIM_NOW).values("id")[:1]
        held_sql, held_params = held.query.sql_with_params()
    task = ReviewTask._meta
    seen = ItemSeen._meta
    quote = connection.ops.quote_name
    column = {f.name: quote(f.column) for f in task.concrete_fields}
    table = quote(task.db_table)
    # ``NOT EXISTS (SELECT 1 FROM held)`` is evaluated once (an InitPlan): while the user holds
    # a task, the candidate is never read, so nothing is locked. The last part takes the
    # tasks' table's name: the query that follows reads the task claimed or held from it (the
    # parts before it see the table, a part sees only the parts before it), with the values
    # the claim gave it (the table itself shows this statement the rows as they were before).
    sql = f"""
        WITH held AS ({held_sql}),
        candidate AS ({select_sql} FOR UPDATE OF {table} SKIP LOCKED),
        claimed AS (
            UPDATE {table} AS task
               SET {column["claimed_by"]} = %s, {column["claimed_at"]} = %s,
                   {column["lease_token"]} = %s, {column["lease_expires_at"]} = %s
              FROM candidate
             WHERE task.{column["id"]} = candidate.id
               AND task.{column["item"]} = candidate.item_id AND task.{column["state"]} = %s
               AND (task.{column["lease_expires_at"]} IS NULL
                    OR task.{column["lease_expires_at"]} <= %s)
               AND NOT EXISTS (SELECT 1 FROM held)
         RETURNING task.*
        ),
        seen AS (
            INSERT INTO {quote(seen.db_table)} ({quote(seen.get_field("item").column)},
                   {quote(seen.get_field("user").column)},
                   {quote(seen.get_field("first_seen_at").column)})
            SELECT claimed.{column["item"]}, %s, %s FROM claimed
            ON CONFLICT DO NOTHING
        ),
        {table} AS (
            SELECT task.* FROM {table} AS task WHERE task.{column["id"]} IN (SELECT id FROM held)
            UNION ALL
            SELECT * FROM claimed
        )
    """
    params = [
        *held_params,
        *select_params,
        _CLAIM_USER,
        _CLAIM_NOW,
        _CLAIM_TOKEN,
        _CLAIM_EXPIRES,
        str(ReviewTask.State.OPEN),
        _CLAIM_NOW,
        _CLAIM_USER,
        _CLAIM_NOW,
    ]
    return sql, stand_ins_marked(params, _CLAIM_STAND_INS)


def item_seen_record(*, item_id: int, user, now) -> None:
    """Note that ``user`` has been shown the item (once; later sightings change nothing)."""
    ItemSeen.objects.bulk_create(
        [ItemSeen(item_id=item_id, user=user, first_seen_at=now)], ignore_conflicts=True
    )


def review_task_get_for(*, task_id: Any, user) -> ReviewTask:
    """The task, if it exists in a use case the user works on (else NotFound)."""
    try:
        task_id = int(task_id)
    except (TypeError, ValueError):
        raise NotFound({"detail": "No such task."}) from None
    task = (
        ReviewTask.objects.filter(pk=task_id, use_case__in=use_cases_visible_to(user))
        .select_related("item", "use_case")
        .first()
    )
    if task is None:
        raise NotFound({"detail": "No such task."})
    return task


def answer_clean(*, use_case: UseCase, label: Any, value: Any) -> tuple[str, float | None]:
    if use_case.is_classification:
        if value is not None:
            raise InvalidInput({"value": ["this use case takes a label, not a value"]})
        if not isinstance(label, str) or label not in use_case.labels:
            raise InvalidInput({"label": [f"must be one of {', '.join(use_case.labels)}"]})
        return label, None
    if label not in (None, ""):
        raise InvalidInput({"label": ["this use case takes a value, not a label"]})
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise InvalidInput({"value": ["a finite number is required"]})
    return "", float(value)


@dataclass
class DecideResult:
    decision: Decision
    replayed: bool  # the same Idempotency-Key and body were sent before


def _replay(*, user, idempotency_key: str, task_id: int, label: str, value, comment: str):
    earlier = Decision.objects.filter(reviewer=user, idempotency_key=idempotency_key).first()
    if earlier is None:
        return None
    if (earlier.task_id, earlier.label, earlier.value, earlier.comment) != (
        task_id,
        label,
        value,
        comment,
    ):
        raise Conflict({"idempotency_key": ["this key was already used for a different decision"]})
    return DecideResult(decision=earlier, replayed=True)


def _kind(*, task: ReviewTask, suggestion: Prediction | None, label: str, value) -> str:
    if not task.show_suggestion or suggestion is None or suggestion.error:
        return Decision.Kind.BLIND
    differs = answers_differ(
        use_case=task.use_case,
        model_label=suggestion.label,
        model_value=suggestion.value,
        human_label=label,
        human_value=value,
    )
    return Decision.Kind.OVERRIDDEN if differs else Decision.Kind.ACCEPTED


def _outcome(*, use_case: UseCase, item: Item, user) -> dict:
    """The ``outcome.decided`` payload of an item a person just settled."""
    return outcome_payload(
        use_case=use_case,
        external_id=item.external_id,
        label=item.decision_label,
        value=item.decision_value,
        source=Item.Source.HUMAN,
        by=user.get_username(),
        model_version=None,
        route=item.route,
        decided_at=item.decided_at,
    )


def _correction(*, use_case: UseCase, item: Item, user, previous, suggestion) -> dict:
    """The ``outcome.corrected`` payload: the auditor's answer, and the model's it replaces."""
    label, value = previous
    replaced = {"label": label} if use_case.is_classification else {"value": value}
    version = suggestion.model_version.version if suggestion and suggestion.model_version else None
    return {
        **_outcome(use_case=use_case, item=item, user=user),
        "replaces": {**replaced, "source": Item.Source.MODEL, "model_version": version},
    }


def review_task_decide(
    *,
    task: ReviewTask,
    user,
    label: Any = None,
    value: Any = None,
    comment: str = "",
    lease_token: Any = None,
    time_spent_ms: int | None = None,
    idempotency_key: str | None = None,
    now=None,
    predictions_apart: bool = False,
) -> DecideResult:
    """Record ``user``'s decision on a task they hold.

    409 (Conflict) when the task is already decided, when the lease was lost (another reviewer
    holds it, or ``lease_token`` is not the current one), or when it was never claimed by this
    user. The decision, the task's completion, the item's final answer and the disagreements
    commit together. Only ``task.pk`` and ``task.use_case`` are read from ``task``: the task is
    read afresh, locked, and not found (404) unless it is in that use case.

    On PostgreSQL the item's predictions come with the read that locks it, unless
    ``predictions_apart``. That read's snapshot can predate the lock: a prediction committed
    while the decision waited for the item would be missing from it. The decision's write
    counts the item's predictions afresh, and when one was missed the decision is made again
    from the start, with the predictions read after the lock (its own query).
    """
    now = now or timezone.now()
    use_case = task.use_case
    label, value = answer_clean(use_case=use_case, label=label, value=value)
    comment = (comment or "").strip()[:5000]
    lease_token = lease_token_parse(lease_token)
    try:
        with transaction.atomic():
            # The task and its item, locked by one statement; a task that is not in
            # ``task.use_case`` is not found.
            locked = _DECISION_READ.first(
                predictions=not predictions_apart, task_id=int(task.pk), use_case_id=use_case.pk
            )
            if locked is None:
                raise NotFound({"detail": "No such task."})
            locked.use_case = use_case
            if locked.state == ReviewTask.State.DONE:
                # A retry of the same decision (same Idempotency-Key, same answer) gets the
                # first answer back; anything else is a second decision.
                replay = idempotency_key and _replay(
                    user=user,
                    idempotency_key=idempotency_key,
                    task_id=task.pk,
                    label=label,
                    value=value,
                    comment=comment,
                )
                if replay:
                    return replay
                raise Conflict({"detail": "This task was already decided.", "code": "decided"})
            if locked.state != ReviewTask.State.OPEN:
                raise Conflict({"detail": "This task was withdrawn.", "code": "withdrawn"})
            if locked.claimed_by_id != user.pk or (
                lease_token not in (None, "") and lease_token != locked.lease_token
            ):
                raise Conflict(
                    {
                        "detail": "Your lease on this task was lost; it went to someone else.",
                        "code": "lease_lost",
                    }
                )
            item = locked.item
            predictions = _item_predictions(locked)
            suggestion = next((p for p in predictions if p.pk == item.prediction_id), None)
            if time_spent_ms is None and locked.claimed_at:
                time_spent_ms = int((now - locked.claimed_at).total_seconds() * 1000)
            decision = Decision(
                pk=getattr(locked, "decision_id", None),
                task=locked,
                item=item,
                use_case=use_case,
                reviewer=user,
                label=label,
                value=value,
                comment=comment,
                kind=_kind(task=locked, suggestion=suggestion, label=label, value=value),
                time_spent_ms=max(0, min(time_spent_ms or 0, 2**31 - 1)),
                idempotency_key=idempotency_key or None,
                created_at=now,
            )
            locked.state = ReviewTask.State.DONE
            locked.done_at = now
            settles = item.decision_source != Item.Source.HUMAN
            # An automated item already went out as the model's outcome; its audit sends
            # ``outcome.corrected`` only when the person answers differently, so a feed reader
            # still sees each item's outcome once.
            automated = item.decision_source == Item.Source.MODEL
            previous = (item.decision_label, item.decision_value)
            if settles:
                item.decision_label = label
                item.decision_value = value
                item.decision_source = Item.Source.HUMAN
                item.decided_at = now
                item.status = Item.Status.DECIDED
            # The decision and what is recorded with it (its outcome event, its disagreements,
            # the events other apps append) go to the database in one statement on PostgreSQL.
            read_with_lock = hasattr(locked, "item_predictions")
            counted = _predictions_counted(item) if read_with_lock else None
            with writes_joined(then=counted) as joined:
                _decision_write(decision=decision, task=locked, item=item if settles else None)
                if settles:
                    if not automated:
                        events_record(
                            type=OUTCOME_DECIDED,
                            use_case_id=use_case.pk,
                            datas=[_outcome(use_case=use_case, item=item, user=user)],
                        )
                    elif previous != (label, value):
                        correction = _correction(
                            use_case=use_case,
                            item=item,
                            user=user,
                            previous=previous,
                            suggestion=suggestion,
                        )
                        events_record(
                            type=OUTCOME_CORRECTED, use_case_id=use_case.pk, datas=[correction]
                        )
                recorded = disagreements_record(
                    use_case=use_case,
                    decision=decision,
                    task=locked,
                    predictions=predictions,
                    routing_prediction_id=item.prediction_id,
                )
                # Whether the person answered otherwise than the prediction that routed the
                # item (the answer says so without asking the database again).
                decision.routing_disagreement = any(
                    row.prediction_id == item.prediction_id for row in recorded
                )
                decision_recorded.send(
                    sender=Decision, decision=decision, prediction_ids=[p.pk for p in predictions]
                )
            if read_with_lock and joined.row[0] != len(predictions):
                raise _PredictionsMissed
    except _PredictionsMissed:
        # Everything written is rolled back; the decision is made again as it would have been.
        return review_task_decide(
            task=task,
            user=user,
            label=label,
            value=value,
            comment=comment,
            lease_token=lease_token,
            time_spent_ms=time_spent_ms,
            idempotency_key=idempotency_key,
            now=now,
            predictions_apart=True,
        )
    except IntegrityError:
        if idempotency_key:
            replay = _replay(
                user=user,
                idempotency_key=idempotency_key,
                task_id=task.pk,
                label=label,
                value=value,
                comment=comment,
            )
            if replay:
                return replay
        raise Conflict({"detail": "This task was already decided.", "code": "decided"}) from None
    use_case_facts_changed.send(sender=Decision, use_case_id=use_case.pk)
    routing = next((p for p in predictions if p.pk == item.prediction_id), None)
    event_log(
        "decision",
        use_case=use_case.slug,
        item=item.external_id,
        model_version=routing.model_version.version if routing else None,
        route=item.route,
        task=locked.pk,
        reason=locked.reason,
        kind=decision.kind,
        reviewer=user.get_username(),
    )
    return DecideResult(decision=decision, replayed=False)


DECIDED_TASK_FIELDS = ("state", "done_at")
DECIDED_ITEM_FIELDS = (
    "decision_label",
    "decision_value",
    "decision_source",
    "decided_at",
    "status",
)


# What a decision needs of each of its item's predictions, in this order (``model_version``:
# its version's name).
PREDICTION_READ = ("id", "model_version_id", "label", "value", "confidence", "error")
READ_OR_ITEM = frozenset({*PREDICTION_READ, "item_id"})


class _PredictionsMissed(Exception):
    """A prediction of the item was committed after the snapshot of the read that locked it."""


def _predictions_counted(item: Item) -> tuple[str, list]:
    """How many predictions the item has, counted by the decision's write (a newer snapshot
    than the locking read's, taken with the item locked: every writer of predictions holds
    the item's lock or creates the item)."""
    prediction = Prediction._meta
    quote = connection.ops.quote_name
    sql = (
        f"SELECT count(*) FROM {quote(prediction.db_table)} "
        f"WHERE {quote(prediction.get_field('item').column)} = %s"
    )
    return sql, [item.pk]


def _with_decision_reads(tasks, *, predictions: bool = True):
    """On PostgreSQL the locking read also brings what the decision needs to know:

    - ``decision_id``, the id of the decision it may lead to, from the decisions' own
      sequence, so that what is recorded with the decision can name it before it is written
      (an id taken for a decision not made is a gap, as a rolled-back insert leaves);
    - with ``predictions``, ``item_predictions``: the item's predictions (``PREDICTION_READ``
      and the version's name) as JSON, as the statement's snapshot shows them. That snapshot
      is taken before the lock is: the decision checks the count afterwards
      (``_predictions_counted``).
    """
    if connection.vendor != "postgresql":
        return tasks
    quote = connection.ops.quote_name
    prediction = Prediction._meta
    version = prediction.get_field("model_version").related_model._meta
    column = {name: f"p.{quote(prediction.get_field(name).column)}" for name in PREDICTION_READ}
    column["item"] = f"p.{quote(prediction.get_field('item').column)}"
    task_item = (
        f"{quote(ReviewTask._meta.db_table)}.{quote(ReviewTask._meta.get_field('item').column)}"
    )
    name = f"v.{quote(version.get_field('version').column)}"
    predictions_sql = (
        f"SELECT json_agg(json_build_array({', '.join(column[n] for n in PREDICTION_READ)}, "
        f"{name}) ORDER BY {column['id']}) "
        f"FROM {quote(prediction.db_table)} p LEFT JOIN {quote(version.db_table)} v "
        f"ON v.{quote(version.pk.column)} = {column['model_version_id']} "
        f"WHERE {column['item']} = {task_item}"
    )
    tasks = tasks.annotate(decision_id=RawSQL(*next_id_sql(Decision)))
    if predictions:
        tasks = tasks.annotate(item_predictions=RawSQL(f"({predictions_sql})", []))
    return tasks


def _item_predictions(task: ReviewTask) -> list[Prediction]:
    """The predictions of the task's item, each with its model version (its name only),
    oldest first: as the locking read brought them (``_with_decision_reads``), else read."""
    if not hasattr(task, "item_predictions"):
        return list(
            Prediction.objects.filter(item_id=task.item_id)
            .select_related("model_version")
            .defer("model_version__artifact")
            .order_by("pk")
        )
    rows = task.item_predictions or []
    if isinstance(rows, str):  # the driver may leave JSON to the caller
        rows = json.loads(rows)
    alias = connection.alias
    version_model = Prediction._meta.get_field("model_version").related_model
    predictions = []
    # ``from_db`` takes the values in the model's field order, the others deferred. JSON
    # writes a whole float without its point (3.0 as 3): each value is read as its field's type.
    fields = [f for f in Prediction._meta.concrete_fields if f.attname in READ_OR_ITEM]
    names = [f.attname for f in fields]
    for *values, version_name in rows:
        read = dict(zip(PREDICTION_READ, values, strict=True), item_id=task.item_id)
        prediction = Prediction.from_db(
            alias,
            names,
            [None if read[f.attname] is None else f.to_python(read[f.attname]) for f in fields],
        )
        if prediction.model_version_id is not None:
            prediction.model_version = version_model.from_db(
                alias, ["id", "version"], [prediction.model_version_id, version_name]
            )
        predictions.append(prediction)
    return predictions


def _decision_write(*, decision: Decision, task: ReviewTask, item: Item | None) -> None:
    """Store a new decision, close its task and, when given, settle its item with the answer
    (the fields already set on the objects). On PostgreSQL the decision holds its id already
    (``_with_decision_reads``) and the three writes are parts of the statement
    ``writes_joined`` makes: one round trip for them and what is recorded with them."""
    if connection.vendor != "postgresql" or decision.pk is None:
        decision.save(force_insert=True)
        task.save(update_fields=list(DECIDED_TASK_FIELDS))
        if item is not None:
            item.save(update_fields=list(DECIDED_ITEM_FIELDS))
        return
    instance_insert(decision)
    instance_update(task, DECIDED_TASK_FIELDS)
    if item is not None:
        instance_update(item, DECIDED_ITEM_FIELDS)


def lease_token_parse(raw: Any) -> uuid.UUID | None:
    """The lease token a caller sent (None when it sent none), or InvalidInput naming it: a
    token is the UUID text the claim gave out, never a number or anything else."""
    if raw in (None, ""):
        return None
    if isinstance(raw, uuid.UUID):  # the pages pass the token their form field parsed
        return raw
    try:
        if not isinstance(raw, str):
            raise ValueError(raw)
        return uuid.UUID(raw)
    except ValueError:
        raise InvalidInput({"lease_token": ["not a lease token"]}) from None


def review_task_skip(*, task: ReviewTask, user, lease_token: Any = None, now=None) -> None:
    """Give a held task back to the queue; this reviewer is offered it again only when nothing
    else is waiting for them."""
    now = now or timezone.now()
    lease_token = lease_token_parse(lease_token)
    with transaction.atomic():
        locked = ReviewTask.objects.select_for_update().get(pk=task.pk)
        if locked.state != ReviewTask.State.OPEN or locked.claimed_by_id != user.pk:
            raise Conflict({"detail": "You do not hold this task.", "code": "lease_lost"})
        if lease_token is not None and lease_token != locked.lease_token:
            raise Conflict({"detail": "You do not hold this task.", "code": "lease_lost"})
        ReviewTask.objects.filter(pk=locked.pk).update(
            claimed_by=None, claimed_at=None, lease_token=None, lease_expires_at=None
        )
        TaskSkip.objects.create(task=locked, user=user, created_at=now)
