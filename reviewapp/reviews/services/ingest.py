"""Receiving items from upstream systems: one at a time (realtime) or in bulk (batch)."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from deployments.guardrail_watch import use_case_watch_soon
from deployments.ml.scoring import RawOutput, features_frame, score_frame
from deployments.models import AutomationPolicy, ModelVersion, UseCase
from deployments.policy import consults_model, item_buckets
from deployments.schema import item_features_clean
from deployments.selectors import challengers_list, champion_get, policy_current
from deployments.services import estimator_for, model_version_external_get_or_register
from reviewapp.core.errors import InvalidInput
from reviewapp.core.jobs import job_create, job_progress
from reviewapp.core.models import Job
from reviewapp.reviews.models import Item
from reviewapp.reviews.services.routing import ROUTED_FIELDS, items_route

MAX_EXTERNAL_ID = 200


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
    return external_id


def external_prediction_clean(
    *, use_case: UseCase, prediction: Any, field: str = "prediction"
) -> ExternalPrediction | None:
    """Read the prediction an external caller sent.

    Its absence is the caller's error (400). A prediction that is there but unusable (a label
    outside the set, a confidence outside [0, 1], a missing value) is not: it becomes a null
    output and the item goes to a human, as with a model that failed here.
    """
    if use_case.prediction_source != UseCase.PredictionSource.EXTERNAL:
        if prediction is not None:
            raise InvalidInput({field: ["this use case is scored here; send features only"]})
        return None
    if prediction is None:
        raise InvalidInput({field: ["required: this use case takes predictions from the caller"]})
    if not isinstance(prediction, dict):
        raise InvalidInput({field: ["must be an object with label or value, and model_version"]})
    version = prediction.get("model_version")
    if not isinstance(version, str) or not version.strip() or len(version) > 64:
        raise InvalidInput({field: {"model_version": ["a string of 1 to 64 characters"]}})
    label = prediction.get("label")
    raw = RawOutput(
        label=label if isinstance(label, str) else (None if label is None else repr(label)),
        value=prediction.get("value") if _is_plain_number(prediction.get("value")) else None,
        confidence=prediction.get("confidence")
        if _is_plain_number(prediction.get("confidence"))
        else None,
        error=_malformed(prediction, use_case),
    )
    return ExternalPrediction(model_version=version, raw=raw)


def _is_plain_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _malformed(prediction: dict, use_case: UseCase) -> str:
    confidence = prediction.get("confidence")
    if confidence is not None and not _is_plain_number(confidence):
        return f"malformed external prediction: confidence {confidence!r} is not a number"
    key = "label" if use_case.is_classification else "value"
    if prediction.get(key) is None:
        return f"malformed external prediction: no {key}"
    if not use_case.is_classification and not _is_plain_number(prediction.get("value")):
        return f"malformed external prediction: value {prediction.get('value')!r} is not a number"
    return ""


def _item_new(*, use_case: UseCase, external_id: str, features: dict, now) -> Item:
    buckets = item_buckets(salt=use_case.slug, key=external_id)
    return Item(
        use_case=use_case,
        external_id=external_id,
        features=features,
        ramp_bucket=buckets.ramp,
        audit_bucket=buckets.audit,
        double_review_bucket=buckets.double_review,
        received_at=now,
    )


def champion_outputs(
    *,
    use_case: UseCase,
    policy: AutomationPolicy,
    rows: Sequence[dict],
    external: Sequence[ExternalPrediction | None] | None = None,
) -> list[tuple[ModelVersion, RawOutput] | None]:
    """The champion's output per row, or None per row when the policy does not consult it."""
    if not consults_model(policy.level):
        return [None] * len(rows)
    if use_case.prediction_source == UseCase.PredictionSource.EXTERNAL:
        versions: dict[str, ModelVersion] = {}
        outputs = []
        for sent in external:
            if sent.model_version not in versions:
                versions[sent.model_version] = model_version_external_get_or_register(
                    use_case=use_case, version=sent.model_version
                )
            outputs.append((versions[sent.model_version], sent.raw))
        return outputs
    champion = champion_get(use_case=use_case)
    if champion is None:
        missing = RawOutput(error="no champion model registered")
        return [(None, missing)] * len(rows)
    try:
        estimator = estimator_for(champion)
    except Exception as exc:  # an artifact that no longer loads must not lose the items
        failed = RawOutput(error=f"model could not be loaded: {exc}"[:1000])
        return [(champion, failed)] * len(rows)
    frame = features_frame(rows, use_case.features)
    raws = score_frame(estimator, frame, task_type=use_case.task_type, tolerance=use_case.tolerance)
    return [(champion, raw) for raw in raws]


def challengers_enqueue(*, use_case: UseCase, item_ids: list[int]) -> None:
    from reviewapp.reviews.tasks import score_challenger

    if use_case.prediction_source != UseCase.PredictionSource.REGISTRY:
        return
    for challenger in challengers_list(use_case=use_case):
        score_challenger.delay_on_commit(model_version_id=challenger.pk, item_ids=item_ids)


def item_ingest(
    *,
    use_case: UseCase,
    external_id: Any,
    features: Any,
    prediction: Any = None,
    now=None,
) -> IngestResult:
    """Validate, score with the champion, route and store one item; answer with its state.

    Sending the same ``external_id`` again returns the stored item unchanged (``created`` is
    False): retries are safe. Scoring happens before the transaction so no lock is held while
    the model runs.
    """
    external_id = external_id_clean(external_id)
    existing = Item.objects.filter(use_case=use_case, external_id=external_id).first()
    if existing is not None:
        return IngestResult(item=existing, created=False)
    cleaned = item_features_clean(schema=use_case.features, features=features)
    sent = external_prediction_clean(use_case=use_case, prediction=prediction)
    now = now or timezone.now()
    policy = policy_current(use_case=use_case)
    outputs = champion_outputs(use_case=use_case, policy=policy, rows=[cleaned], external=[sent])
    item = _item_new(use_case=use_case, external_id=external_id, features=cleaned, now=now)
    try:
        with transaction.atomic():
            item.save(force_insert=True)
            items_route(use_case=use_case, policy=policy, items=[item], outputs=outputs, now=now)
            item.save(update_fields=ROUTED_FIELDS)
            challengers_enqueue(use_case=use_case, item_ids=[item.pk])
    except IntegrityError:
        # Another request stored the same external_id first: theirs is the item.
        existing = Item.objects.filter(use_case=use_case, external_id=external_id).first()
        if existing is None:
            raise
        return IngestResult(item=existing, created=False)
    use_case_watch_soon(use_case_id=use_case.pk)
    return IngestResult(item=item, created=True)


# --- batch --------------------------------------------------------------------------------


def batch_rows_clean(*, use_case: UseCase, rows: Any) -> list[tuple[str, dict, Any]]:
    """Check a whole batch; raise InvalidInput naming every bad row by its position."""
    if not isinstance(rows, list) or not rows:
        raise InvalidInput({"items": ["a non-empty list of items is required"]})
    limit = settings.BATCH_MAX_ITEMS
    if len(rows) > limit:
        raise InvalidInput({"items": [f"at most {limit} items per batch; got {len(rows)}"]})
    errors: dict[str, Any] = {}
    cleaned = []
    first_seen: dict[str, int] = {}
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            errors[str(index)] = {"non_field_errors": ["must be an object"]}
            continue
        unknown = set(row) - {"external_id", "features", "prediction"}
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
        try:
            features = item_features_clean(schema=use_case.features, features=row.get("features"))
        except InvalidInput as exc:
            problems.update(exc.detail)
        try:
            sent = external_prediction_clean(use_case=use_case, prediction=row.get("prediction"))
        except InvalidInput as exc:
            problems.update(exc.detail)
        if problems:
            errors[str(index)] = problems
        else:
            cleaned.append((external_id, features, row.get("prediction") if sent else None))
    if errors:
        shown = dict(list(errors.items())[:100])
        if len(errors) > len(shown):
            shown["more"] = [f"{len(errors) - len(shown)} more rows have errors"]
        raise InvalidInput({"items": shown})
    return cleaned


def items_store_pending(
    *, use_case: UseCase, rows: Sequence[tuple[str, dict, Any]], now, job: Job | None = None
) -> list[int]:
    """Insert checked rows as pending items; existing external_ids are left untouched.

    Returns the ids of the rows inserted now. Call inside a transaction.
    """
    items = []
    for external_id, features, prediction in rows:
        item = _item_new(use_case=use_case, external_id=external_id, features=features, now=now)
        item.job = job
        item.external_prediction = prediction
        items.append(item)
    wanted = [external_id for external_id, _, _ in rows]
    before = (
        set(
            Item.objects.filter(use_case=use_case, external_id__in=wanted).values_list(
                "id", flat=True
            )
        )
        if job is None
        else set()
    )
    Item.objects.bulk_create(items, ignore_conflicts=True, batch_size=2000)
    if job is not None:
        return list(Item.objects.filter(job=job).order_by("id").values_list("id", flat=True))
    stored = Item.objects.filter(use_case=use_case, external_id__in=wanted)
    return sorted(set(stored.values_list("id", flat=True)) - before)


def items_batch_accept(*, use_case: UseCase, rows: Any, actor=None, now=None) -> Job:
    """Store a whole batch atomically as pending items and queue their scoring.

    All or nothing: a bad row refuses the batch. Items whose ``external_id`` was already
    received are left as they are (resending a batch is safe); they count as done at once.
    """
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
