"""Keeping the rollups current: recording facts on the write path, folding them in, rebuilding.

Why an outbox and a folder rather than updating the rollups in the writer's transaction: the
current hour's row of a busy use case would be a row every ingest and every decision locks
until it commits, so writers would queue behind each other (and deadlock when they touch
several rows). Appending an event is an insert that never waits on anyone. Folding is
serialised (one folder at a time holds ``FoldLock``), reads only committed rows, and deletes
exactly the events it folded in the same transaction, so a fact is counted once even when
writers commit out of order: there is no watermark that a late commit could slip under.

With a broker, Celery beat folds every ``ROLLUP_FOLD_SECONDS``; with eager tasks (the
embedded default and the tests) the fold runs right after each writing transaction commits.
"""

import contextlib
import logging
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from reviewapp.celery import app
from reviewapp.core.bulk import rows_append, rows_update
from reviewapp.core.errors import Conflict
from reviewapp.core.snapshots import repeatable_read
from reviewapp.monitoring import aggregation
from reviewapp.monitoring.aggregation import Accumulator, Context
from reviewapp.monitoring.models import FeatureRollup, FoldLock, HourlyRollup, RollupEvent
from reviewapp.reviews.models import Decision, Item, Prediction

logger = logging.getLogger(__name__)
_deferred = threading.local()


def _fold_after_commit() -> None:
    if getattr(_deferred, "depth", 0) or not app.conf.task_always_eager:
        return
    from reviewapp.monitoring.tasks import fold_rollups

    fold_rollups.delay_on_commit()


@contextlib.contextmanager
def rollups_deferred() -> Iterator[None]:
    """Record events but do not fold after each commit (bulk loads fold once at the end)."""
    _deferred.depth = getattr(_deferred, "depth", 0) + 1
    try:
        yield
    finally:
        _deferred.depth -= 1


def rollup_items_record(*, use_case_id: int, item_ids: Iterable[int]) -> None:
    """Items were routed. Call inside the routing transaction."""
    ids = list(item_ids)
    # Columns, not instances: a batch's chunk records one per item.
    rows_append(
        RollupEvent,
        {
            "kind": [RollupEvent.Kind.ITEM] * len(ids),
            "object_id": ids,
            "use_case_id": [use_case_id] * len(ids),
            "detail": [{}] * len(ids),
            "created_at": [timezone.now()] * len(ids),
        },
    )
    _fold_after_commit()


def rollup_decision_record(*, decision, prediction_ids: Iterable[int]) -> None:
    """A human decided. ``prediction_ids`` are the item's predictions this transaction sees;
    a challenger prediction committed later records the pair itself. Call inside the decision
    transaction, holding the item's row lock."""
    rows_append(
        RollupEvent,
        {
            "kind": [RollupEvent.Kind.DECISION],
            "object_id": [decision.pk],
            "use_case_id": [decision.use_case_id],
            "detail": [{"predictions": sorted(prediction_ids)}],
            "created_at": [timezone.now()],
        },
    )
    _fold_after_commit()


def rollup_predictions_record(*, use_case_id: int, pairs: Iterable[tuple[int, int | None]]) -> None:
    """Challenger predictions were stored: (prediction id, the item's first human decision id
    or None). Call inside the scoring transaction, holding the items' row locks."""
    RollupEvent.objects.bulk_create(
        [
            RollupEvent(
                kind=RollupEvent.Kind.PREDICTION,
                object_id=prediction_id,
                use_case_id=use_case_id,
                detail={"decision": decision_id},
            )
            for prediction_id, decision_id in pairs
        ],
        batch_size=2000,
    )
    _fold_after_commit()


# --- folding ---------------------------------------------------------------------------------


def _existing(model, keys: list[tuple], key_of, *, fresh: bool) -> dict:
    """The stored rows for ``keys``: one coarse query (use cases x hours), matched here."""
    if fresh or not keys:
        return {}
    use_cases = {key[0] for key in keys}
    hours = {key_of(key) for key in keys}
    wanted = set(keys)
    rows = model.objects.filter(use_case_id__in=use_cases, hour__in=hours)
    return {k: row for row in rows if (k := row.rollup_key) in wanted}


def accumulator_write(acc: Accumulator, *, fresh: bool = False) -> None:
    """Add the accumulated figures to the stored rows. Call holding the fold lock.

    ``fresh``: the use case's rows were just deleted (a rebuild), so every row is new.
    """
    hourly_fields = [*aggregation.HOURLY_COUNTERS, *aggregation.HOURLY_MAPS]
    keys = list(acc.hourly)
    existing = _existing(HourlyRollup, keys, lambda key: key[3], fresh=fresh)
    new, changed = [], []
    for key in keys:
        row = existing.get(key)
        if row is None:
            use_case_id, version, shadow, hour = key
            new.append(
                HourlyRollup(
                    use_case_id=use_case_id,
                    model_version_id=version,
                    shadow=shadow,
                    hour=hour,
                    **acc.hourly[key],
                )
            )
            continue
        values = {f: getattr(row, f) for f in aggregation.HOURLY_COUNTERS}
        values.update({f: dict(getattr(row, f) or {}) for f in aggregation.HOURLY_MAPS})
        aggregation.hourly_merge(values, acc.hourly[key])
        for name, value in values.items():
            setattr(row, name, value)
        changed.append(row)
    HourlyRollup.objects.bulk_create(new, batch_size=1000)
    _rows_save(HourlyRollup, changed, hourly_fields)

    feature_fields = [*aggregation.FEATURE_COUNTERS, "min", "max", "hist"]
    features = aggregation.feature_grains(acc.features)
    keys = list(features)
    existing = _existing(FeatureRollup, keys, lambda key: key[3], fresh=fresh)
    new, changed = [], []
    for key in keys:
        row = existing.get(key)
        if row is None:
            use_case_id, version, grain, hour, feature = key
            new.append(
                FeatureRollup(
                    use_case_id=use_case_id,
                    model_version_id=version,
                    grain=grain,
                    hour=hour,
                    feature=feature,
                    **features[key],
                )
            )
            continue
        values = {f: getattr(row, f) for f in feature_fields}
        values["hist"] = list(values["hist"] or [])
        aggregation.feature_merge(values, features[key])
        for name, value in values.items():
            setattr(row, name, value)
        changed.append(row)
    FeatureRollup.objects.bulk_create(new, batch_size=2000)
    _rows_save(FeatureRollup, changed, feature_fields)


def _rows_save(model, rows: list, fields: list[str]) -> None:
    """One statement for every changed row (Django's ``bulk_update`` builds a CASE per field
    and row: 50 ms for one decision's forty feature rows)."""
    rows_update(model, [r.pk for r in rows], {f: [getattr(r, f) for r in rows] for f in fields})


def _fold_lock() -> FoldLock:
    lock = FoldLock.objects.select_for_update().filter(pk=1).first()
    if lock is None:  # the migration creates it; a flushed test database may not have it
        FoldLock.objects.get_or_create(pk=1)
        lock = FoldLock.objects.select_for_update().get(pk=1)
    return lock


def events_accumulate(acc: Accumulator, ctx: Context, events: list[RollupEvent]) -> None:
    items = [e.object_id for e in events if e.kind == RollupEvent.Kind.ITEM]
    decisions = [
        (e.object_id, e.detail.get("predictions") or [])
        for e in events
        if e.kind == RollupEvent.Kind.DECISION
    ]
    predictions = [
        (e.object_id, e.detail.get("decision"))
        for e in events
        if e.kind == RollupEvent.Kind.PREDICTION
    ]
    if items:
        aggregation.items_add(acc, ctx, items)
    if decisions:
        aggregation.decisions_add(acc, ctx, decisions)
    if predictions:
        aggregation.predictions_add(acc, ctx, predictions)


def rollups_fold(*, batch_size: int = 5000, max_seconds: float | None = None) -> int:
    """Fold pending events into the rollups, oldest first, in batches; return how many.

    Each batch is one transaction: lock, read the events, add what they say, delete them.
    Stops when nothing is pending or after ``max_seconds``.
    """
    started = time.monotonic()
    folded = 0
    while True:
        with transaction.atomic():
            lock = _fold_lock()
            events = list(RollupEvent.objects.order_by("id")[:batch_size])
            if not events:
                break
            acc, ctx = Accumulator(), Context()
            events_accumulate(acc, ctx, events)
            accumulator_write(acc)
            RollupEvent.objects.filter(pk__in=[e.pk for e in events]).delete()
            lock.folded_at = timezone.now()
            lock.events_folded += len(events)
            lock.save(update_fields=["folded_at", "events_folded"])
        folded += len(events)
        if len(events) < batch_size:
            break
        if max_seconds is not None and time.monotonic() - started > max_seconds:
            break
    return folded


# --- rebuilding from the raw rows -------------------------------------------------------------


def _ids(queryset, chunk: int) -> Iterator[list[int]]:
    batch = []
    for pk in queryset.order_by("id").values_list("id", flat=True).iterator(chunk_size=chunk):
        batch.append(pk)
        if len(batch) == chunk:
            yield batch
            batch = []
    if batch:
        yield batch


def rollups_rebuild(*, use_case, chunk: int = 5000) -> dict[str, Any]:
    """Recompute a use case's rollups from its raw rows, replacing what is stored.

    Safe while traffic flows: one transaction, one snapshot, holding the fold lock; the
    pending events it covers are deleted with the old rows.

    Refused (Conflict) for a use case whose older history is archived: the rollups hold the
    only full count of it, and a decision counts in its item's hour, however old the item.
    """
    if use_case.history_archived_before is not None:
        raise Conflict(
            f"{use_case.slug}'s history before {use_case.history_archived_before.isoformat()} "
            "is archived and its rollups hold the only full count of it: restore its archives "
            "(restore_archive) before rebuilding"
        )
    with transaction.atomic():
        # Every read of the rebuild sees one snapshot: rows committed meanwhile are left to
        # their own events, which the rebuild does not delete because it cannot see them.
        repeatable_read()
        _fold_lock()
        RollupEvent.objects.filter(use_case_id=use_case.pk).delete()
        HourlyRollup.objects.filter(use_case=use_case).delete()
        FeatureRollup.objects.filter(use_case=use_case).delete()
        acc, ctx = Accumulator(), Context()
        counts = {"items": 0, "decisions": 0, "challenger_predictions": 0}
        for ids in _ids(Item.objects.filter(use_case=use_case).exclude(route=""), chunk):
            aggregation.items_add(acc, ctx, ids)
            counts["items"] += len(ids)
        for ids in _ids(Decision.objects.filter(use_case=use_case), chunk):
            aggregation.decisions_add(acc, ctx, [(pk, None) for pk in ids])
            counts["decisions"] += len(ids)
        # An anti-join: NOT IN over a million ids would be a quadratic plan on PostgreSQL.
        shadow = Prediction.objects.filter(use_case=use_case).exclude(
            Exists(Item.objects.filter(prediction_id=OuterRef("pk")))
        )
        for ids in _ids(shadow, chunk):
            aggregation.predictions_add(acc, ctx, [(pk, None) for pk in ids])
            counts["challenger_predictions"] += len(ids)
        accumulator_write(acc, fresh=True)
    return counts


def fold_interval_seconds() -> int:
    return int(getattr(settings, "ROLLUP_FOLD_SECONDS", 15))
