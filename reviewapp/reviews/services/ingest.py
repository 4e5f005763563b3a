"""Receiving items from upstream systems: one at a time (realtime) or in bulk (batch)."""

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from deployments.ml.latency import budget_error, budget_timeouts
from deployments.ml.scoring import RawOutput, score_rows
from deployments.models import AutomationPolicy, ModelVersion, UseCase
from deployments.policy import consults_model, item_buckets
from deployments.schema import FeaturesValidator, item_features_clean
from deployments.selectors import scoring_config
from deployments.services.estimators import (
    artifact_bytes,
    estimator_cached,
    estimator_load,
    realtime_scoring_pool,
)
from deployments.services.model_versions import model_version_external_get_or_register
from reviewapp.core.bulk import (
    instance_insert,
    next_id_sql,
    rows_insert,
    statement_rows,
    writes_joined,
)
from reviewapp.core.errors import InvalidInput
from reviewapp.core.jobs import job_create, job_progress
from reviewapp.core.json_input import text_problem
from reviewapp.core.models import Job
from reviewapp.reviews.models import Item, Prediction
from reviewapp.reviews.partitions import item_keys_table
from reviewapp.reviews.selectors import item_get
from reviewapp.reviews.services.routing import items_route, pending_item, prediction_unsaved
from reviewapp.reviews.signals import use_case_facts_changed

MAX_EXTERNAL_ID = 200
PRIORITY_MIN, PRIORITY_MAX = -1000, 1000
DUE_AT_FORMAT = "an ISO 8601 date-time with its time zone, such as 2026-12-05T17:00:00Z"
# A task's soft time limit ran out while scoring: never the model's failure, so never a null
# output; the task that was scoring decides what to do with its items.
SCORING_INTERRUPTS: tuple[type[BaseException], ...] = (SoftTimeLimitExceeded,)


@dataclass(frozen=True)
class ExternalPrediction:
    model_version: str
    raw: RawOutput


@dataclass
class IngestResult:
    item: Item
    created: bool


def external_id_clean(external_id: Any, *, field: str = "external_id") -> str:
    if not isinstance(external_id, str) or not external_id.strip():
        raise InvalidInput({field: ["a non-empty string is required"]})
    if len(external_id) > MAX_EXTERNAL_ID:
        raise InvalidInput({field: [f"at most {MAX_EXTERNAL_ID} characters"]})
    if problem := text_problem(external_id):
        raise InvalidInput({field: [problem]})
    return external_id


def external_prediction_clean(
    *, use_case: UseCase, prediction: Any, field: str = "prediction"
) -> ExternalPrediction | None:
    """Read the prediction an external caller sent with an item.

    What the caller must fix is refused (400 naming the field): a prediction sent to a use
    case scored here, none sent to an external one, one that is not an object, an unknown key
    or a missing ``model_version``. A prediction that is there but unusable as an answer (a
    label outside the set, a confidence outside [0, 1] or not a number, no label or value) is
    not the caller's error but its model's: it becomes a null output stored against that model
    version, and the item goes to a human, as with a model that failed here.
    """
    if use_case.prediction_source != UseCase.PredictionSource.EXTERNAL:
        if prediction is not None:
            raise InvalidInput({field: ["this use case is scored here; send features only"]})
        return None
    if prediction is None:
        raise InvalidInput({field: ["required: this use case takes predictions from the caller"]})
    return external_prediction_read(use_case=use_case, prediction=prediction, field=field)


def external_prediction_read(
    *, use_case: UseCase, prediction: Any, field: str = "prediction"
) -> ExternalPrediction:
    if not isinstance(prediction, dict):
        raise InvalidInput({field: ["must be an object with label or value, and model_version"]})
    unknown = sorted(str(key)[:100] for key in set(prediction) - PREDICTION_KEYS)
    if unknown:
        raise InvalidInput({field: {key: ["unknown field"] for key in unknown}})
    version = prediction.get("model_version")
    if not isinstance(version, str) or not version.strip() or len(version) > 64:
        raise InvalidInput({field: {"model_version": ["a string of 1 to 64 characters"]}})
    return ExternalPrediction(model_version=version, raw=_external_output(prediction, use_case))


PREDICTION_KEYS = frozenset({"label", "value", "confidence", "model_version"})


def _is_plain_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _external_output(prediction: dict, use_case: UseCase) -> RawOutput:
    """The caller's answer as a raw output; what cannot be read is named in ``error``, which
    routing turns into a null output (range checks are routing's, as for a model here)."""
    label, value = prediction.get("label"), prediction.get("value")
    confidence = prediction.get("confidence")
    problem = ""
    if confidence is not None and not _is_plain_number(confidence):
        problem = f"confidence {_shown(confidence)} is not a number"
        confidence = None
    if use_case.is_classification:
        # Numbers are read as their text so digit labels ("0" ... "9") work from any caller.
        if _is_plain_number(label) and float(label).is_integer():
            label = str(int(label))
        if label is None:
            problem = problem or "no label"
        elif not isinstance(label, str):
            problem = problem or f"label {_shown(label)} is not a string"
            label = None
        value = None
    else:
        if value is None:
            problem = problem or "no value"
        elif not _is_plain_number(value):
            problem = problem or f"value {_shown(value)} is not a number"
            value = None
        label = None
    return RawOutput(
        label=label,
        value=value,
        confidence=confidence,
        error=f"malformed external prediction: {problem}" if problem else "",
    )


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def item_priority_clean(priority: Any) -> int:
    """An item's priority: an integer, higher first; 0 when not sent."""
    if priority is None:
        return 0
    if (
        isinstance(priority, bool)
        or not isinstance(priority, int)
        or not PRIORITY_MIN <= priority <= PRIORITY_MAX
    ):
        raise InvalidInput(
            {"priority": [f"an integer from {PRIORITY_MIN} to {PRIORITY_MAX} (higher first)"]}
        )
    return priority


def item_due_at_clean(due_at: Any) -> datetime | None:
    """The time an item should be decided by, as sent (None when not sent)."""
    if due_at is None:
        return None
    try:
        parsed = datetime.fromisoformat(due_at) if isinstance(due_at, str) else None
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise InvalidInput({"due_at": [DUE_AT_FORMAT]})
    return parsed


def item_due_at(*, use_case: UseCase, due_at: datetime | None, now) -> datetime | None:
    """The due time sent, else the use case's turnaround from receipt, else none."""
    if due_at is not None or not use_case.turnaround_minutes:
        return due_at
    return now + timedelta(minutes=use_case.turnaround_minutes)


def _item_new(
    *, use_case: UseCase, external_id: str, features: dict, now, priority=0, due_at=None
) -> Item:
    buckets = item_buckets(salt=use_case.slug, key=external_id)
    return Item(
        use_case=use_case,
        external_id=external_id,
        features=features,
        ramp_bucket=buckets.ramp,
        audit_bucket=buckets.audit,
        double_review_bucket=buckets.double_review,
        received_at=now,
        priority=priority,
        due_at=item_due_at(use_case=use_case, due_at=due_at, now=now),
    )


NO_PREDICTION_SENT = "no prediction was sent with this item"


def champion_outputs(
    *,
    use_case: UseCase,
    policy: AutomationPolicy,
    rows: Sequence[dict],
    external: Sequence[ExternalPrediction | None] | None = None,
    budget_ms: int | None = None,
) -> list[tuple[ModelVersion | None, RawOutput] | None]:
    """The output that routes each row, or None per row when the policy does not consult a
    model.

    For an external use case it is the caller's prediction, whichever version made it: the
    version is registered on first sight, and its role does not matter (the caller's model
    answered, no other did). For a use case scored here it is the champion's, within
    ``budget_ms`` when given (realtime): a champion that misses it yields null outputs.
    """
    if not consults_model(policy.level):
        return [None] * len(rows)
    if use_case.prediction_source == UseCase.PredictionSource.EXTERNAL:
        external = external if external is not None else [None] * len(rows)
        versions: dict[str, ModelVersion] = {}
        outputs: list[tuple[ModelVersion | None, RawOutput] | None] = []
        for sent in external:
            if sent is None:
                outputs.append((None, RawOutput(error=NO_PREDICTION_SENT)))
                continue
            if sent.model_version not in versions:
                versions[sent.model_version] = model_version_external_get_or_register(
                    use_case=use_case, version=sent.model_version
                )
            outputs.append((versions[sent.model_version], sent.raw))
        return outputs
    return _champion_score(use_case=use_case, rows=rows, budget_ms=budget_ms)


def _champion_score(
    *, use_case: UseCase, rows: Sequence[dict], budget_ms: int | None
) -> list[tuple[ModelVersion | None, RawOutput]]:
    started = time.perf_counter()
    champion = scoring_config(use_case=use_case).champion
    if champion is None:
        missing = RawOutput(error="no champion model registered")
        return [(None, missing)] * len(rows)
    # The database is read here, on the request's thread; the scoring thread only computes.
    estimator = estimator_cached(champion)
    data = artifact_bytes(champion) if estimator is None else None

    def score() -> list[RawOutput]:
        try:
            model = (
                estimator
                if estimator is not None  # a Pipeline's truth is its length: test identity
                else estimator_load(model_version=champion, data=data)
            )
        except SCORING_INTERRUPTS:
            raise
        except Exception as exc:  # an artifact that no longer loads must not lose the items
            return [RawOutput(error=f"model could not be loaded: {exc}"[:1000])] * len(rows)
        return score_rows(
            model,
            rows,
            use_case.features,
            task_type=use_case.task_type,
            tolerance=use_case.tolerance,
            interrupts=SCORING_INTERRUPTS,
        )

    if budget_ms is None:
        return [(champion, raw) for raw in score()]
    remaining = budget_ms / 1000 - (time.perf_counter() - started)
    outcome = realtime_scoring_pool().call(score, timeout=remaining)
    if outcome.done:
        return [(champion, raw) for raw in outcome.value]
    # The late call finishes on its own thread and its result is dropped: the items are routed
    # now, as null outputs, and nothing will write for them again.
    budget_timeouts.increment(use_case.slug, len(rows))
    waited = round((time.perf_counter() - started) * 1000, 3)
    late = RawOutput(error=budget_error(budget_ms), latency_ms=waited)
    return [(champion, late)] * len(rows)


def challengers_enqueue(*, use_case: UseCase, item_ids: list[int]) -> None:
    # The tasks module imports this service to run it, so the task is imported here.
    from reviewapp.reviews.tasks import score_challenger

    if use_case.prediction_source != UseCase.PredictionSource.REGISTRY:
        return
    for challenger in scoring_config(use_case=use_case).challengers:
        score_challenger.delay_on_commit(model_version_id=challenger.pk, item_ids=item_ids)


def _external_id_sql(use_case_id: int, external_id: str) -> tuple[str, list]:
    """``SELECT 1`` of the use case's item with this external id (the ingest idempotency key).
    Plain SQL: asked once per realtime item, and through the ORM building the query took
    longer than running it."""
    item = Item._meta
    quote = connection.ops.quote_name
    # The key table has the same two columns, kept in step with the items by triggers.
    table = item_keys_table() or item.db_table
    sql = (
        f"SELECT 1 FROM {quote(table)} WHERE "
        f"{quote(item.get_field('use_case').column)} = %s AND "
        f"{quote(item.get_field('external_id').column)} = %s"
    )
    return sql, [use_case_id, external_id]


def external_id_taken(*, use_case_id: int, external_id: str) -> bool:
    """Whether the use case holds an item with this external id."""
    sql, params = _external_id_sql(use_case_id, external_id)
    return bool(statement_rows(f"{sql} LIMIT 1", params))


def _new_item_ids(*, use_case_id: int, external_id: str) -> tuple[bool, int | None, int | None]:
    """Whether the use case holds an item with this external id, and on PostgreSQL the ids a
    new item and its prediction will take, from their own sequences, in the same round trip
    (an id taken for an item not stored is a gap, as a rolled-back insert leaves)."""
    if connection.vendor != "postgresql":
        return external_id_taken(use_case_id=use_case_id, external_id=external_id), None, None
    taken_sql, params = _external_id_sql(use_case_id, external_id)
    item_id_sql, item_params = next_id_sql(Item)
    prediction_id_sql, prediction_params = next_id_sql(Prediction)
    return statement_rows(
        f"SELECT EXISTS ({taken_sql}), {item_id_sql}, {prediction_id_sql}",
        [*params, *item_params, *prediction_params],
    )[0]


def item_ingest(
    *,
    use_case: UseCase,
    external_id: Any,
    features: Any,
    prediction: Any = None,
    priority: Any = None,
    due_at: Any = None,
    now=None,
) -> IngestResult:
    """Validate, score with the champion (or take the caller's prediction), route and store one
    item; answer with its state.

    Sending the same ``external_id`` again returns the stored item unchanged (``created`` is
    False): retries are safe. Scoring happens before the transaction so no lock is held while
    the model runs. Under the use case's latency budget a champion too slow to answer gives a
    null output: the item is stored in review and the caller is not kept waiting for the model.
    """
    external_id = external_id_clean(external_id)
    taken, item_id, prediction_id = _new_item_ids(use_case_id=use_case.pk, external_id=external_id)
    if taken:
        return IngestResult(
            item=item_get(use_case=use_case, external_id=external_id), created=False
        )
    cleaned = item_features_clean(schema=use_case.features, features=features)
    sent = external_prediction_clean(use_case=use_case, prediction=prediction)
    priority = item_priority_clean(priority)
    due_at = item_due_at_clean(due_at)
    now = now or timezone.now()
    policy = scoring_config(use_case=use_case).policy
    outputs = champion_outputs(
        use_case=use_case,
        policy=policy,
        rows=[cleaned],
        external=[sent],
        budget_ms=use_case.latency_budget_ms,
    )
    item = _item_new(
        use_case=use_case,
        external_id=external_id,
        features=cleaned,
        now=now,
        priority=priority,
        due_at=due_at,
    )
    # On PostgreSQL the item holds its id and its prediction's already: the item is stored
    # routed, and with its prediction, its tasks and the events recorded for it, in one
    # statement. Elsewhere it is stored, then routed.
    joined = item_id is not None
    try:
        with transaction.atomic(), writes_joined():
            if joined:
                item.pk = item_id
            else:
                item.save(force_insert=True)
            (routed,) = items_route(
                use_case=use_case,
                policy=policy,
                items=[pending_item(item)],
                outputs=outputs,
                now=now,
                prediction_ids=[prediction_id] if joined else None,
                items_stored=not joined,
            )
            if joined:
                for name, value in routed.values.items():
                    setattr(item, name, value)
                instance_insert(item)
            challengers_enqueue(use_case=use_case, item_ids=[item.pk])
    except IntegrityError:
        # Another request stored the same external_id first: theirs is the item.
        if not external_id_taken(use_case_id=use_case.pk, external_id=external_id):
            raise
        return IngestResult(
            item=item_get(use_case=use_case, external_id=external_id), created=False
        )
    use_case_facts_changed.send(sender=Item, use_case_id=use_case.pk)
    for name, value in routed.values.items():
        setattr(item, name, value)
    if routed.prediction_id is not None:
        item.prediction = prediction_unsaved(
            prediction_id=routed.prediction_id, model_version=outputs[0][0], verdict=routed.verdict
        )
    return IngestResult(item=item, created=True)


# --- batch --------------------------------------------------------------------------------


class BatchRow(NamedTuple):
    external_id: str
    features: dict
    prediction: Any = None
    priority: int = 0
    due_at: datetime | None = None


BATCH_ROW_FIELDS = frozenset({"external_id", "features", "prediction", "priority", "due_at"})


def batch_rows_clean(*, use_case: UseCase, rows: Any) -> list[BatchRow]:
    """Check a whole batch; raise InvalidInput naming every bad row by its position."""
    if not isinstance(rows, list) or not rows:
        raise InvalidInput({"items": ["a non-empty list of items is required"]})
    limit = settings.BATCH_MAX_ITEMS
    if len(rows) > limit:
        raise InvalidInput({"items": [f"at most {limit} items per batch; got {len(rows)}"]})
    errors: dict[str, Any] = {}
    cleaned = []
    first_seen: dict[str, int] = {}
    validate_features = FeaturesValidator(use_case.features)
    # A column at a time for the whole batch; the rows it leaves (None) are checked one by one.
    checked = validate_features.many(
        [row.get("features") if isinstance(row, dict) else None for row in rows]
    )
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            errors[str(index)] = {"non_field_errors": ["must be an object"]}
            continue
        features = checked[index]
        unknown = set(row) - BATCH_ROW_FIELDS
        problems: dict[str, Any] = {name: ["unknown field"] for name in sorted(unknown)}
        try:
            external_id = external_id_clean(row.get("external_id"))
            if external_id in first_seen:
                problems["external_id"] = [
                    f"duplicate of item {first_seen[external_id]} in this batch"
                ]
            else:
                first_seen[external_id] = index
        except InvalidInput as exc:
            problems.update(exc.detail)
            external_id = None
        if features is None:
            try:
                features = validate_features(row.get("features"))
            except InvalidInput as exc:
                problems.update(exc.detail)
        try:
            sent = external_prediction_clean(use_case=use_case, prediction=row.get("prediction"))
        except InvalidInput as exc:
            problems.update(exc.detail)
        priority = due_at = None
        try:
            priority = item_priority_clean(row.get("priority"))
        except InvalidInput as exc:
            problems.update(exc.detail)
        try:
            due_at = item_due_at_clean(row.get("due_at"))
        except InvalidInput as exc:
            problems.update(exc.detail)
        if problems:
            errors[str(index)] = problems
        else:
            prediction = row.get("prediction") if sent else None
            cleaned.append(BatchRow(external_id, features, prediction, priority, due_at))
    if errors:
        shown = dict(list(errors.items())[:100])
        if len(errors) > len(shown):
            shown["more"] = [f"{len(errors) - len(shown)} more rows have errors"]
        raise InvalidInput({"items": shown})
    return cleaned


def items_store_pending(
    *, use_case: UseCase, rows: Sequence[tuple], now, job: Job | None = None
) -> list[int]:
    """Insert checked rows (``BatchRow``, or its first three fields) as pending items;
    existing external_ids are left untouched.

    Returns the ids of the rows inserted now. Call inside a transaction.
    """
    columns: dict[str, list[Any]] = {
        name: []
        for name in (
            "use_case_id",
            "external_id",
            "features",
            "external_prediction",
            "ramp_bucket",
            "audit_bucket",
            "double_review_bucket",
            "status",
            "received_at",
            "job_id",
            "priority",
            "due_at",
        )
    }
    for row in rows:
        external_id, features, prediction, priority, due_at = BatchRow(*row)
        buckets = item_buckets(salt=use_case.slug, key=external_id)
        columns["use_case_id"].append(use_case.pk)
        columns["external_id"].append(external_id)
        columns["features"].append(features)
        columns["external_prediction"].append(prediction)
        columns["ramp_bucket"].append(buckets.ramp)
        columns["audit_bucket"].append(buckets.audit)
        columns["double_review_bucket"].append(buckets.double_review)
        columns["status"].append(Item.Status.PENDING)
        columns["received_at"].append(now)
        columns["job_id"].append(job.pk if job else None)
        columns["priority"].append(priority)
        columns["due_at"].append(item_due_at(use_case=use_case, due_at=due_at, now=now))
    return [pk for pk in rows_insert(Item, columns, ignore_conflicts=True) if pk is not None]


def items_batch_accept(*, use_case: UseCase, rows: Any, actor=None, now=None) -> Job:
    """Store a whole batch atomically as pending items and queue their scoring.

    All or nothing: a bad row refuses the batch. Items whose ``external_id`` was already
    received are left as they are (resending a batch is safe); they count as done at once.
    """
    # The tasks module imports this service to run it, so the task is imported here.
    from reviewapp.reviews.tasks import score_items

    cleaned = batch_rows_clean(use_case=use_case, rows=rows)
    now = now or timezone.now()
    with transaction.atomic():
        job = job_create(
            kind=Job.Kind.BATCH_INGEST, total=len(cleaned), use_case=use_case, created_by=actor
        )
        new_ids = items_store_pending(use_case=use_case, rows=cleaned, now=now, job=job)
        job_progress(job_id=job.pk, done=len(cleaned) - len(new_ids))
        chunk = settings.BATCH_CHUNK_SIZE
        for start in range(0, len(new_ids), chunk):
            score_items.delay_on_commit(item_ids=new_ids[start : start + chunk])
    return job
