"""Writing use cases: creating them, changing them, and the row lock every writer of a use
case's configuration takes."""

from typing import Any

from django.db import transaction
from django.utils import timezone

from deployments.models import (
    AutomationPolicy,
    ModelVersion,
    ModelVersionEvent,
    UseCase,
    UseCaseMembership,
)
from deployments.policy import Level
from deployments.schema import feature_schema_clean
from reviewapp.core.errors import InvalidInput

IMMUTABLE_WITH_ITEMS = ("task_type", "labels", "features", "prediction_source")


def use_case_lock(*, use_case_id: int) -> UseCase:
    """Lock a use case's row and return it freshly read.

    Call inside ``transaction.atomic``: the lock is held until that transaction ends (outside
    one it would be released at once, and PostgreSQL refuses ``FOR UPDATE`` in autocommit).
    Every write to a use case's configuration takes this lock first, so such writes run one at
    a time per use case: policy changes get consecutive versions, model role changes see the
    champion the previous change left (exactly one champion per use case), and a switch of the
    prediction source cannot interleave with a model being registered. Take it before locking
    any other row of the use case, so concurrent writers always lock in the same order.
    """
    return UseCase.objects.select_for_update().get(pk=use_case_id)


def _labels_clean(task_type: str, labels: Any) -> list[str]:
    if task_type != UseCase.TaskType.CLASSIFICATION:
        if labels:
            raise InvalidInput({"labels": ["only classification use cases have labels"]})
        return []
    if (
        not isinstance(labels, list)
        or len(labels) < 2
        or not all(isinstance(x, str) and x and len(x) <= 200 for x in labels)
    ):
        raise InvalidInput({"labels": ["at least two non-empty label strings are required"]})
    if len(set(labels)) != len(labels):
        raise InvalidInput({"labels": ["labels must be unique"]})
    return labels


@transaction.atomic
def use_case_create(
    *,
    actor,
    slug: str,
    name: str,
    task_type: str,
    features: Any,
    labels: Any = None,
    tolerance: float | None = None,
    value_min: float | None = None,
    value_max: float | None = None,
    prediction_source: str = UseCase.PredictionSource.REGISTRY,
    description: str = "",
    item_view: str = UseCase.ItemView.TABLE,
    latency_budget_ms: int | None = None,
    level: str = Level.HUMAN_ONLY,
    now=None,
) -> UseCase:
    """Create a use case with its first policy (human only unless told); the creator joins it."""
    if UseCase.objects.filter(slug=slug).exists():
        raise InvalidInput({"slug": [f"a use case {slug!r} already exists"]})
    if task_type == UseCase.TaskType.REGRESSION and tolerance is None:
        raise InvalidInput({"tolerance": ["required for regression use cases"]})
    if task_type == UseCase.TaskType.CLASSIFICATION and tolerance is not None:
        raise InvalidInput({"tolerance": ["only regression use cases have a tolerance"]})
    use_case = UseCase.objects.create(
        slug=slug,
        name=name,
        description=description,
        task_type=task_type,
        labels=_labels_clean(task_type, labels),
        tolerance=tolerance,
        value_min=value_min,
        value_max=value_max,
        features=feature_schema_clean(features),
        prediction_source=prediction_source,
        item_view=item_view,
        latency_budget_ms=latency_budget_ms,
        created_by=actor,
    )
    if actor is not None:
        UseCaseMembership.objects.create(use_case=use_case, user=actor, can_view_pii=True)
    AutomationPolicy.objects.create(
        use_case=use_case,
        version=1,
        level=level,
        changed_by=actor,
        changed_by_system=actor is None,
        changed_at=now or timezone.now(),
        reason="use case created",
        audit_rate=0.05,
    )
    return use_case


@transaction.atomic
def use_case_update(*, use_case: UseCase, changes: dict[str, Any]) -> UseCase:
    """Change a use case. Its contract with callers (task type, labels, features, prediction
    source) is fixed once items have arrived: historical items would no longer fit it."""
    use_case = use_case_lock(use_case_id=use_case.pk)
    if use_case.items.exists():
        frozen = [
            f for f in IMMUTABLE_WITH_ITEMS if f in changes and changes[f] != getattr(use_case, f)
        ]
        if frozen:
            raise InvalidInput(
                {
                    f: ["cannot change once items have been received; create a new use case"]
                    for f in frozen
                }
            )
    if "features" in changes:
        changes["features"] = feature_schema_clean(changes["features"])
    if "gold_rate" in changes:
        rate = changes["gold_rate"]
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 0.5:
            raise InvalidInput({"gold_rate": ["a number from 0 to 0.5"]})
        changes["gold_rate"] = float(rate)
    task_type = changes.get("task_type", use_case.task_type)
    if "labels" in changes or "task_type" in changes:
        changes["labels"] = _labels_clean(task_type, changes.get("labels", use_case.labels))
    switched = (
        "prediction_source" in changes
        and changes["prediction_source"] != use_case.prediction_source
    )
    for field, value in changes.items():
        setattr(use_case, field, value)
    use_case.save(update_fields=list(changes))
    if switched:
        _roles_fit_source(use_case=use_case)
    return use_case


def _roles_fit_source(*, use_case: UseCase) -> None:
    """After the prediction source changed (only possible before any item arrived), retire the
    champion and challengers of the other kind: uploaded models no longer answer for an external
    use case, and external versions cannot score one that is scored here."""
    external = use_case.prediction_source == UseCase.PredictionSource.EXTERNAL
    live = ModelVersion.objects.filter(
        use_case=use_case, role__in=[ModelVersion.Role.CHAMPION, ModelVersion.Role.CHALLENGER]
    ).defer("artifact")
    for model_version in live:
        if (model_version.source == ModelVersion.Source.EXTERNAL) == external:
            continue
        model_version.role = ModelVersion.Role.RETIRED
        model_version.save(update_fields=["role"])
        ModelVersionEvent.objects.create(
            use_case=use_case,
            model_version=model_version,
            action=ModelVersionEvent.Action.RETIRE,
            reason="the use case now takes its predictions from its callers"
            if external
            else "the use case is now scored here",
        )
