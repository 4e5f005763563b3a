"""Reading items, queues and disagreements."""

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from django.db.models import Count, Min, Q, QuerySet
from django.utils import timezone

from deployments.models import UseCase
from reviewapp.core.errors import NotFound
from reviewapp.reviews.models import Disagreement, Item, Prediction, ReviewTask


def item_get(*, use_case: UseCase, external_id: str) -> Item:
    item = (
        Item.objects.filter(use_case=use_case, external_id=external_id)
        .select_related("prediction__model_version")
        .first()
    )
    if item is None:
        raise NotFound({"external_id": [f"No item {external_id!r} in {use_case.slug}."]})
    return item


def prediction_public(prediction: Prediction | None, *, use_case: UseCase) -> dict | None:
    """The prediction as callers and reviewers see it; None for a null output."""
    if prediction is None or prediction.error:
        return None
    body: dict[str, Any] = {
        "confidence": prediction.confidence,
        "model_version": prediction.model_version.version,
    }
    if use_case.is_classification:
        body["label"] = prediction.label
    else:
        body["value"] = prediction.value
    return body


def item_public(item: Item, *, use_case: UseCase) -> dict[str, Any]:
    decision = None
    if item.decision_source:
        decision = {"source": item.decision_source}
        if use_case.is_classification:
            decision["label"] = item.decision_label
        else:
            decision["value"] = item.decision_value
    return {
        "external_id": item.external_id,
        "status": item.status,
        "route": item.route or None,
        "decision": decision,
        "prediction": prediction_public(item.prediction, use_case=use_case),
    }


def queue_stats(*, use_case: UseCase, now=None) -> dict[str, Any]:
    now = now or timezone.now()
    row = ReviewTask.objects.filter(use_case=use_case, state=ReviewTask.State.OPEN).aggregate(
        waiting=Count("id"),
        claimed=Count("id", filter=Q(lease_expires_at__gt=now)),
        oldest=Min("created_at"),
    )
    oldest = row["oldest"]
    return {
        "waiting": row["waiting"],
        "in_progress": row["claimed"],
        "oldest_waiting_seconds": (now - oldest).total_seconds() if oldest else None,
    }


DISAGREEMENT_KINDS = [k.value for k in Disagreement.Kind]


def disagreements_filtered(
    *,
    use_case: UseCase,
    model_version: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    kind: str | None = None,
) -> QuerySet[Disagreement]:
    rows = Disagreement.objects.filter(use_case=use_case)
    if model_version:
        rows = rows.filter(model_version__version=model_version)
    if since:
        rows = rows.filter(decided_at__gte=since)
    if until:
        rows = rows.filter(decided_at__lt=until)
    if kind:
        rows = rows.filter(kind=kind)
    return rows.order_by("decided_at", "id")


EXPORT_META_COLUMNS = frozenset(
    {
        "external_id",
        "model_version",
        "model_label",
        "model_value",
        "confidence",
        "human_label",
        "human_value",
        "kind",
        "reviewer",
        "decided_at",
    }
)


def export_feature_columns(*, use_case: UseCase, include_pii: bool) -> dict[str, str]:
    """Feature name -> export column. A feature whose name is also a metadata column (a
    feature called ``kind``, say) is exported as ``feature_<name>`` so neither hides the other."""
    return {
        name: f"feature_{name}" if name in EXPORT_META_COLUMNS else name
        for name in use_case.feature_names
        if include_pii or name not in use_case.pii_features
    }


def disagreement_columns(*, use_case: UseCase, include_pii: bool) -> list[str]:
    features = list(export_feature_columns(use_case=use_case, include_pii=include_pii).values())
    answer = (
        ["model_label", "human_label"]
        if use_case.is_classification
        else ["model_value", "human_value"]
    )
    return [
        "external_id",
        *features,
        "model_version",
        answer[0],
        "confidence",
        answer[1],
        "kind",
        "reviewer",
        "decided_at",
    ]


def disagreement_rows(
    *, use_case: UseCase, rows: QuerySet[Disagreement], include_pii: bool, chunk_size: int = 2000
) -> Iterator[dict[str, Any]]:
    """One flat dict per disagreement, streamed from the database in chunks.

    PII features are dropped here, at the source, unless ``include_pii``: no later writer can
    leak them.
    """
    features = export_feature_columns(use_case=use_case, include_pii=include_pii).items()
    classification = use_case.is_classification
    values = rows.values_list(
        "item__external_id",
        "item__features",
        "model_version__version",
        "model_label",
        "model_value",
        "confidence",
        "human_label",
        "human_value",
        "kind",
        "reviewer__username",
        "decided_at",
    )
    for (
        external_id,
        item_features,
        version,
        model_label,
        model_value,
        confidence,
        human_label,
        human_value,
        kind,
        reviewer,
        decided_at,
    ) in values.iterator(chunk_size=chunk_size):
        row: dict[str, Any] = {"external_id": external_id}
        for name, column in features:
            row[column] = item_features.get(name)
        row["model_version"] = version
        if classification:
            row["model_label"] = model_label
            row["human_label"] = human_label
        else:
            row["model_value"] = model_value
            row["human_value"] = human_value
        row["confidence"] = confidence
        row["kind"] = kind
        row["reviewer"] = reviewer
        row["decided_at"] = decided_at
        yield row
