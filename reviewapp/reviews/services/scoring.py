"""Asynchronous scoring: pending batch items with the champion, new items with challengers,
and the sweeper that finds work a lost message left undone."""

import logging
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import timedelta

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from deployments.ml.scoring import RawOutput, score_rows
from deployments.models import ModelVersion, ModelVersionEvent, UseCase
from deployments.policy import Buckets, consults_model
from deployments.selectors import challengers_list, champion_get, policy_current, scoring_config
from deployments.services.estimators import estimator_for
from reviewapp.core.bulk import rows_insert
from reviewapp.core.errors import InvalidInput, database_unavailable
from reviewapp.core.jobs import job_progress, job_start, jobs_start
from reviewapp.reviews.models import Decision, Item, Prediction
from reviewapp.reviews.services.disagreements import disagreements_record
from reviewapp.reviews.services.ingest import (
    SCORING_INTERRUPTS,
    ExternalPrediction,
    challengers_enqueue,
    champion_outputs,
    external_prediction_read,
)
from reviewapp.reviews.services.routing import (
    PendingItem,
    items_route,
    output_assess,
    pending_item,
    prediction_columns,
)
from reviewapp.reviews.signals import predictions_recorded, use_case_facts_changed

logger = logging.getLogger(__name__)


def chunk_score(*, item_ids: list[int]) -> int:
    """A batch's chunk, as its task scores it. The batch's job shows ``running`` (with its
    ``started_at``) in a commit of its own first: when scoring and progress commit together,
    a batch of one chunk would go from ``queued`` straight to ``done``.

    The chunk's jobs are read first, then started by their keys. As one statement (the items
    as a subquery) PostgreSQL walked every queued job's items for the chunk's: 1.8 ms a queued
    job, so each chunk slowed down with the backlog of batches waiting behind it."""
    job_ids = set(
        Item.objects.filter(pk__in=item_ids, job__isnull=False).values_list("job_id", flat=True)
    )
    if job_ids:
        jobs_start(job_ids=sorted(job_ids))
    return items_score(item_ids=item_ids)


def items_score(*, item_ids: list[int], now=None) -> int:
    """Score and route the pending items among ``item_ids``; return how many were routed.

    Idempotent and safe to run twice at once: items already routed are skipped, and rows being
    routed by another worker are skipped (PostgreSQL row locks; SQLite serialises writers).

    One item must not hold the others back: when scoring the whole list fails (for any reason
    but the database or the broker being away, which the task retries), each half is scored
    on its own, down to the single item that fails. That item's failure is counted; after
    ``SCORING_MAX_ATTEMPTS`` it is routed as a null output naming the error (to a human), so
    the sweeper does not retry it forever.
    """
    now = now or timezone.now()
    try:
        return _items_score_together(item_ids=item_ids, now=now)
    except Exception as exc:
        if _outage(exc):
            raise
        if len(item_ids) > 1:
            half = len(item_ids) // 2
            return items_score(item_ids=item_ids[:half], now=now) + items_score(
                item_ids=item_ids[half:], now=now
            )
        if not item_ids:
            raise
        return item_scoring_failed(item_id=item_ids[0], error=exc, now=now)


def _outage(exc: Exception) -> bool:
    """The database or the broker went away: retrying the same work later will do, and
    splitting it would only fail again. A task's soft time limit is passed up too: the task
    splits its items into tasks of their own (``chunk_timed_out``), each with the whole time."""
    return database_unavailable(exc) or isinstance(exc, ConnectionError | SoftTimeLimitExceeded)


def item_scoring_failed(*, item_id: int, error: Exception, now) -> int:
    """Count a failed attempt to score one pending item; at ``SCORING_MAX_ATTEMPTS`` route it
    as a null output with the error, so it reaches a human. Returns how many were routed.

    The count is committed first, on its own: should routing the null output fail too, the
    attempt is still counted and the failure logged, and the other items are not held back.
    """
    reason = f"scoring failed: {type(error).__name__}: {error}"[:1000]
    with transaction.atomic():
        item = _pending_locked(item_id=item_id)
        if item is None:
            return 0
        item.scoring_failures += 1
        item.scoring_error = reason
        item.save(update_fields=["scoring_failures", "scoring_error"])
    attempts, limit = item.scoring_failures, settings.SCORING_MAX_ATTEMPTS
    logger.warning(
        "item %s failed to score (attempt %s of %s): %s", item_id, attempts, limit, reason
    )
    if attempts < limit:
        return 0
    try:
        return _item_park(item_id=item_id, reason=reason, attempts=attempts, now=now)
    except Exception as exc:
        if _outage(exc):
            raise
        logger.exception("item %s could not be routed as a null output either", item_id)
        return 0


def _pending_locked(*, item_id: int) -> Item | None:
    """The pending item, locked unless another worker holds it; its use case is read, not
    locked. Locked with the item, the use case's row was skipped whenever another commit's
    reference checks held it (any chunk of that use case committing), and the item with it:
    a failed attempt went uncounted and its parking waited a sweep more."""
    return (
        Item.objects.select_for_update(skip_locked=True, of=("self",))
        .filter(pk=item_id, status=Item.Status.PENDING)
        .select_related("use_case")
        .first()
    )


def _item_park(*, item_id: int, reason: str, attempts: int, now) -> int:
    with transaction.atomic():
        item = _pending_locked(item_id=item_id)
        if item is None:
            return 0
        use_case = item.use_case
        policy = policy_current(use_case=use_case)
        parked = RawOutput(error=f"parked after {attempts} failed attempts: {reason}"[:1000])
        # A use case scored here keeps the null output as its champion's prediction, counted
        # with the others; an external one has no model of its own to hold it.
        champion = (
            champion_get(use_case=use_case)
            if use_case.prediction_source == UseCase.PredictionSource.REGISTRY
            else None
        )
        items_route(
            use_case=use_case,
            policy=policy,
            items=[pending_item(item)],
            outputs=[(champion, parked) if consults_model(policy.level) else None],
            now=now,
        )
        if item.job_id:
            job_start(job_id=item.job_id)
            job_progress(job_id=item.job_id, done=1)
    logger.warning("item %s routed to a human as a null output: %s", item_id, parked.error)
    use_case_facts_changed.send(sender=Item, use_case_id=use_case.pk)
    return 1


def _items_score_together(*, item_ids: list[int], now) -> int:
    with transaction.atomic():
        rows = list(
            Item.objects.select_for_update(skip_locked=True)
            .filter(pk__in=item_ids, status=Item.Status.PENDING)
            .order_by("id")
            .values_list(
                "id",
                "use_case_id",
                "features",
                "external_prediction",
                "ramp_bucket",
                "audit_bucket",
                "double_review_bucket",
                "job_id",
                "external_id",
                "priority",
                "due_at",
            )
        )
        by_use_case: dict[int, list[tuple]] = defaultdict(list)
        for row in rows:
            by_use_case[row[1]].append(row)
        for use_case_id, group in by_use_case.items():
            use_case = UseCase.objects.get(pk=use_case_id)
            policy = scoring_config(use_case=use_case).policy
            external = None
            if use_case.prediction_source == UseCase.PredictionSource.EXTERNAL:
                external = [
                    stored_prediction_read(use_case=use_case, item_id=row[0], prediction=row[3])
                    for row in group
                ]
            outputs = champion_outputs(
                use_case=use_case,
                policy=policy,
                rows=[row[2] for row in group],
                external=external,
            )
            pending = [
                PendingItem(
                    id=row[0],
                    external_id=row[8],
                    buckets=Buckets(ramp=row[4], audit=row[5], double_review=row[6]),
                    priority=row[9],
                    due_at=row[10],
                )
                for row in group
            ]
            items_route(use_case=use_case, policy=policy, items=pending, outputs=outputs, now=now)
            challengers_enqueue(use_case=use_case, item_ids=[row[0] for row in group])
        for job_id, count in Counter(row[7] for row in rows if row[7]).items():
            job_start(job_id=job_id)
            job_progress(job_id=job_id, done=count)
    for use_case_id in by_use_case:
        use_case_facts_changed.send(sender=Item, use_case_id=use_case_id)
    return len(rows)


def stored_prediction_read(
    *, use_case: UseCase, item_id: int, prediction
) -> ExternalPrediction | None:
    """The prediction a batch item arrived with, read as at acceptance. It was checked then, so
    this never refuses: anything unreadable routes the item to a human as a null output."""
    if prediction is None:
        return None
    try:
        return external_prediction_read(use_case=use_case, prediction=prediction)
    except InvalidInput:
        logger.warning("item %s holds an unreadable external prediction", item_id)
        return None


def challenger_score(*, model_version_id: int, item_ids: list[int], now=None) -> int:
    """Score items with a challenger, in shadow; record where it differs from humans who have
    already decided (later decisions record it themselves). Idempotent."""
    now = now or timezone.now()
    model_version, items = _challenger_unscored(
        model_version_id=model_version_id, item_ids=item_ids
    )
    if model_version is None:
        return 0
    use_case = model_version.use_case
    if not items:
        return 0
    estimator = estimator_for(model_version)
    raws = score_rows(
        estimator,
        [i.features for i in items],
        use_case.features,
        task_type=use_case.task_type,
        tolerance=use_case.tolerance,
        interrupts=SCORING_INTERRUPTS,
    )
    return _challenger_outputs_write(model_version=model_version, items=items, raws=raws, now=now)


def _challenger_unscored(*, model_version_id: int, item_ids: list[int]):
    """The challenger (None if it no longer challenges) and the items it has yet to score."""
    model_version = (
        ModelVersion.objects.filter(pk=model_version_id)
        .defer("artifact")
        .select_related("use_case")
        .first()
    )
    if model_version is None or model_version.role != ModelVersion.Role.CHALLENGER:
        return None, []
    items = list(
        Item.objects.filter(pk__in=item_ids)
        .exclude(
            Exists(Prediction.objects.filter(item=OuterRef("pk"), model_version=model_version))
        )
        .order_by("id")
    )
    return model_version, items


def _challenger_outputs_write(*, model_version: ModelVersion, items: list[Item], raws, now) -> int:
    use_case = model_version.use_case
    columns = prediction_columns(
        use_case=use_case,
        item_ids=[item.pk for item in items],
        model_versions=[model_version] * len(items),
        raws=raws,
        verdicts=[output_assess(use_case=use_case, raw=raw) for raw in raws],
        now=now,
    )
    with transaction.atomic():
        # Lock the items (in id order, as every locker does) so a decision on one of them and
        # this scoring commit one after the other: whichever is second sees the other, and the
        # disagreement and the monitoring pair are recorded exactly once.
        locked = list(
            Item.objects.select_for_update()
            .filter(pk__in=[i.pk for i in items])
            .order_by("id")
            .values_list("id", flat=True)
        )
        done = set(
            Prediction.objects.filter(model_version=model_version, item_id__in=locked).values_list(
                "item_id", flat=True
            )
        )
        keep = [i for i, item_id in enumerate(columns["item_id"]) if item_id not in done]
        rows_insert(
            Prediction, {name: [values[i] for i in keep] for name, values in columns.items()}
        )
        fresh = [columns["item_id"][i] for i in keep]
        by_item = {
            p.item_id: p
            for p in Prediction.objects.filter(model_version=model_version, item_id__in=fresh)
        }
        first: dict[int, Decision] = {}
        for decision in (
            Decision.objects.filter(item_id__in=fresh)
            .select_related("task")
            .order_by("item_id", "id")
        ):
            first.setdefault(decision.item_id, decision)
            disagreements_record(
                use_case=use_case,
                decision=decision,
                task=decision.task,
                predictions=[by_item[decision.item_id]],
                routing_prediction_id=None,
            )
        predictions_recorded.send(
            sender=Prediction,
            use_case_id=use_case.pk,
            pairs=[
                (p.pk, first[item_id].pk if item_id in first else None)
                for item_id, p in by_item.items()
            ],
        )
    return len(by_item)


TIMED_OUT = "scoring took longer than the task's time limit"


def chunk_timed_out(*, item_ids: list[int], requeue: Callable[[list[int]], object]) -> int:
    """A chunk's task ran out of time (its soft time limit) while scoring: a model that hangs
    on one row must not hold the others back, nor be retried whole forever. The items still
    pending are split in two tasks of their own, each with the whole time limit, down to the
    single item, whose attempt is counted (and which is parked as a null output after
    ``SCORING_MAX_ATTEMPTS``, as for any other failure). Returns how many were routed."""
    pending = list(
        Item.objects.filter(pk__in=item_ids, status=Item.Status.PENDING)
        .order_by("id")
        .values_list("id", flat=True)
    )
    if len(pending) > 1:
        logger.warning("scoring %s items ran out of time: split in two tasks", len(pending))
        half = len(pending) // 2
        requeue(pending[:half])
        requeue(pending[half:])
        return 0
    if not pending:
        return 0
    return item_scoring_failed(
        item_id=pending[0], error=TimeoutError(TIMED_OUT), now=timezone.now()
    )


def challenger_timed_out(
    *, model_version_id: int, item_ids: list[int], requeue: Callable[[list[int]], object]
) -> int:
    """As ``chunk_timed_out``, for a challenger in shadow: the single item that runs out of
    time is recorded as the challenger's null output naming why, so the sweeper does not send
    it again (nothing is routed on a challenger's output). Returns how many were recorded."""
    model_version, items = _challenger_unscored(
        model_version_id=model_version_id, item_ids=item_ids
    )
    if len(items) > 1:
        logger.warning(
            "challenger %s ran out of time on %s items: split in two tasks",
            model_version_id,
            len(items),
        )
        half = len(items) // 2
        requeue([i.pk for i in items[:half]])
        requeue([i.pk for i in items[half:]])
        return 0
    if model_version is None or not items:
        return 0
    return _challenger_outputs_write(
        model_version=model_version,
        items=items,
        raws=[RawOutput(error=TIMED_OUT)],
        now=timezone.now(),
    )


def unscored_sweep(*, older_than_seconds: int, now=None, limit: int = 50_000) -> dict[str, int]:
    """Re-enqueue work a lost message left undone: pending items older than the threshold, and
    recent items a challenger has not scored. Returns what was enqueued."""
    # The tasks module imports this service to run it, so the tasks are imported here.
    from reviewapp.reviews.tasks import score_challenger, score_items

    now = now or timezone.now()
    cutoff = now - timedelta(seconds=older_than_seconds)
    chunk = settings.BATCH_CHUNK_SIZE
    pending = list(
        Item.objects.filter(status=Item.Status.PENDING, received_at__lt=cutoff)
        .order_by("id")
        .values_list("id", flat=True)[:limit]
    )
    for start in range(0, len(pending), chunk):
        score_items.delay(item_ids=pending[start : start + chunk])
    challenged = 0
    for use_case in UseCase.objects.filter(prediction_source=UseCase.PredictionSource.REGISTRY):
        for challenger in challengers_list(use_case=use_case):
            since = (
                ModelVersionEvent.objects.filter(
                    model_version=challenger, action=ModelVersionEvent.Action.CHALLENGE
                )
                .values_list("created_at", flat=True)
                .first()
            ) or challenger.created_at
            missing = list(
                Item.objects.filter(
                    use_case=use_case,
                    received_at__gte=max(since, now - timedelta(days=1)),
                    received_at__lt=cutoff,
                )
                .exclude(status=Item.Status.PENDING)
                .exclude(
                    Exists(Prediction.objects.filter(item=OuterRef("pk"), model_version=challenger))
                )
                .order_by("id")
                .values_list("id", flat=True)[:limit]
            )
            for start in range(0, len(missing), chunk):
                score_challenger.delay(
                    model_version_id=challenger.pk, item_ids=missing[start : start + chunk]
                )
            challenged += len(missing)
    if pending or challenged:
        logger.info(
            "sweeper re-enqueued %s pending and %s challenger items", len(pending), challenged
        )
    return {"pending": len(pending), "challenger": challenged}
