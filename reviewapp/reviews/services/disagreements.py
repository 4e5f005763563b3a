"""When a human answer and a model answer count as a disagreement, and recording it."""

from collections.abc import Iterable

from deployments.models import UseCase
from reviewapp.core.bulk import rows_append
from reviewapp.reviews.models import Decision, Disagreement, Prediction, ReviewTask


def answers_differ(
    *,
    use_case: UseCase,
    model_label: str,
    model_value: float | None,
    human_label: str,
    human_value: float | None,
) -> bool:
    if use_case.is_classification:
        return model_label != human_label
    if model_value is None or human_value is None:
        return False
    return abs(model_value - human_value) > (use_case.tolerance or 0.0)


def _kind_for(task: ReviewTask, *, routing: bool) -> str:
    if not routing:
        return Disagreement.Kind.CHALLENGER
    if task.reason == "audit":
        return Disagreement.Kind.AUDIT
    if task.show_suggestion:
        return Disagreement.Kind.OVERRIDE
    return Disagreement.Kind.SHADOW


def disagreements_record(
    *,
    use_case: UseCase,
    decision: Decision,
    task: ReviewTask,
    predictions: Iterable[Prediction],
    routing_prediction_id: int | None,
) -> list[Disagreement]:
    """Materialise one disagreement per usable prediction that differs from the decision.

    The prediction that routed the item gives an override, shadow or audit disagreement
    (by what the reviewer saw); every other model version's prediction is a challenger one.
    Idempotent: the pair (decision, prediction) is unique. Returns the disagreements found,
    including any already stored.
    """
    rows = []
    for prediction in predictions:
        if prediction.error:
            continue
        if not answers_differ(
            use_case=use_case,
            model_label=prediction.label,
            model_value=prediction.value,
            human_label=decision.label,
            human_value=decision.value,
        ):
            continue
        rows.append(
            Disagreement(
                use_case=use_case,
                item_id=decision.item_id,
                decision=decision,
                prediction=prediction,
                model_version_id=prediction.model_version_id,
                kind=_kind_for(task, routing=prediction.pk == routing_prediction_id),
                model_label=prediction.label,
                model_value=prediction.value,
                confidence=prediction.confidence,
                human_label=decision.label,
                human_value=decision.value,
                reviewer_id=decision.reviewer_id,
                decided_at=decision.created_at,
            )
        )
    # Columns read back nothing, so inside ``writes_joined`` this is a part of its statement.
    names = [f.attname for f in Disagreement._meta.concrete_fields if not f.primary_key]
    rows_append(
        Disagreement,
        {name: [getattr(row, name) for row in rows] for name in names},
        ignore_conflicts=True,
    )
    return rows
