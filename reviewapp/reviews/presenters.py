"""How review tasks and disagreement exports look to their readers (API and pages alike)."""

from collections.abc import Iterator
from typing import Any

from deployments.models import UseCase
from reviewapp.reviews.models import ReviewTask
from reviewapp.reviews.selectors import ExportSummary, disagreement_export_table, export_chunks


def features_visible(features: dict, *, use_case: UseCase, show_pii: bool) -> tuple[dict, list]:
    """The item's features with PII values blanked for readers without the right."""
    if show_pii or not use_case.pii_features:
        return dict(features), []
    masked = sorted(name for name in use_case.pii_features if name in features)
    return {k: (None if k in use_case.pii_features else v) for k, v in features.items()}, masked


def suggestion_public(task: ReviewTask, *, use_case: UseCase) -> dict[str, Any] | None:
    """The model's suggestion, only on tasks that may show it (never on blind ones)."""
    prediction = task.item.prediction
    if not task.show_suggestion or prediction is None or prediction.error:
        return None
    if use_case.is_classification:
        return {
            "label": prediction.label,
            "confidence": prediction.confidence,
            "probabilities": prediction.probabilities or {},
        }
    return {"value": prediction.value, "confidence": prediction.confidence}


def task_public(task: ReviewTask, *, use_case: UseCase, show_pii: bool) -> dict[str, Any]:
    features, masked = features_visible(task.item.features, use_case=use_case, show_pii=show_pii)
    return {
        "task": str(task.pk),
        "external_id": task.item.external_id,
        "reason": task.reason,
        "features": features,
        "pii_masked": masked,
        "suggestion": suggestion_public(task, use_case=use_case),
        "lease_token": str(task.lease_token),
        "lease_expires_at": task.lease_expires_at,
    }


def disagreement_stream(*, use_case: UseCase, rows, fmt: str, include_pii: bool) -> Iterator[bytes]:
    table = disagreement_export_table(
        use_case=use_case, rows=rows, include_pii=include_pii, fmt=fmt
    )
    return export_chunks(table=table, fmt=fmt, summary=ExportSummary())
