"""One item as the model-versions page opens it: features, every model's answer, the humans'."""

from typing import Any

from deployments.models import ModelVersion, UseCase
from reviewapp.core.errors import NotFound
from reviewapp.reviews.models import Decision, Item, Prediction
from reviewapp.reviews.presenters import features_visible, item_features_display

ROLE_ORDER = {
    ModelVersion.Role.CHAMPION: 0,
    ModelVersion.Role.CHALLENGER: 1,
    ModelVersion.Role.CANDIDATE: 2,
    ModelVersion.Role.RETIRED: 3,
}


def item_detail(*, use_case: UseCase, external_id: str, show_pii: bool) -> dict[str, Any]:
    item = (
        Item.objects.filter(use_case=use_case, external_id=external_id)
        .select_related("policy")
        .first()
    )
    if item is None:
        raise NotFound({"external_id": [f"No item {external_id!r} in {use_case.slug}."]})
    visible, masked = features_visible(item.features, use_case=use_case, show_pii=show_pii)
    # In the schema's order (PostgreSQL's jsonb does not keep the order items were sent in).
    features = {name: visible.get(name) for name in use_case.feature_names}
    predictions = sorted(
        Prediction.objects.filter(item=item).select_related("model_version"),
        key=lambda p: (ROLE_ORDER.get(p.model_version.role, 9), p.model_version_id),
    )
    rows = []
    for prediction in predictions:
        probabilities = sorted(
            (prediction.probabilities or {}).items(), key=lambda kv: kv[1], reverse=True
        )
        rows.append(
            {
                "prediction": prediction,
                "version": prediction.model_version,
                "routed": prediction.pk == item.prediction_id,
                "answer": prediction.label if use_case.is_classification else prediction.value,
                "top": probabilities[:3],
            }
        )
    decisions = list(
        Decision.objects.filter(item=item).select_related("reviewer", "task").order_by("created_at")
    )
    return {
        "item": item,
        "features": features,
        "masked": masked,
        "display": item_features_display(features, use_case=use_case, masked=masked),
        "predictions": rows,
        "decisions": decisions,
        "human": (item.decision_label if use_case.is_classification else item.decision_value)
        if item.decision_source == Item.Source.HUMAN
        else None,
    }
