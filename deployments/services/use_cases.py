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
    config_stamp_new,
)
from deployments.policy import Level
from deployments.schema import feature_schema_clean
from deployments.selectors import scoring_config_writing, scoring_config_written
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
    use_case = UseCase.objects.select_for_update().get(pk=use_case_id)
    # A new stamp: every process's kept scoring configuration of the use case is stale once
    # this commits (see ``scoring_config``); this thread keeps none until then.
    use_case.config_stamp = config_stamp_new()
    UseCase.objects.filter(pk=use_case_id).update(config_stamp=use_case.config_stamp)
    scoring_config_writing(use_case_id=use_case_id)
    transaction.on_commit(lambda: scoring_config_written(use_case_id=use_case_id))
    return use_case


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
    _costs_clean(use_case=use_case, changes=changes)
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


# Optional numbers of the cost and service settings: (lowest, highest, whether the lowest is
# allowed, what the refusal says).
_COST_NUMBERS = {
    "error_cost": (0.0, None, True, "a number of at least 0, or empty"),
    "review_minutes": (0.0, 24 * 60.0, False, "minutes above 0 (at most a day), or empty"),
    "hourly_cost": (0.0, None, True, "a number of at least 0, or empty"),
    "capacity_reviewers": (1, 100_000, True, "a whole number of reviewers from 1, or empty"),
    "capacity_hours_per_day": (0.0, 24.0, False, "hours above 0, at most 24, or empty"),
    "turnaround_minutes": (1, 525_600, True, "whole minutes from 1 (at most a year), or empty"),
    "retention_months": (1, 1200, True, "whole months from 1 (at most 100 years), or empty"),
}
_WHOLE = frozenset({"capacity_reviewers", "turnaround_minutes", "retention_months"})


def _cost_number(field: str, value: Any) -> float | int | None:
    if value is None:
        return None
    low, high, low_allowed, said = _COST_NUMBERS[field]
    whole = field in _WHOLE
    kind = int if whole else int | float
    if isinstance(value, bool) or not isinstance(value, kind) or value != value:
        raise InvalidInput({field: [said]})
    if value < low or (value == low and not low_allowed) or (high is not None and value > high):
        raise InvalidInput({field: [said]})
    return value if whole else float(value)


def _error_costs_clean(*, use_case: UseCase, pairs: Any) -> list[dict]:
    if pairs in (None, []):
        return []
    if not use_case.is_classification:
        raise InvalidInput({"error_costs": ["only classification use cases cost label pairs"]})
    if not isinstance(pairs, list):
        raise InvalidInput({"error_costs": ["a list of {true, predicted, cost}"]})
    cleaned, seen = [], set()
    for n, pair in enumerate(pairs):
        where = f"error_costs[{n}]"
        if not isinstance(pair, dict) or set(pair) != {"true", "predicted", "cost"}:
            raise InvalidInput({where: ["needs exactly true, predicted and cost"]})
        true, predicted = pair["true"], pair["predicted"]
        for name, label in (("true", true), ("predicted", predicted)):
            if label not in use_case.labels:
                raise InvalidInput(
                    {f"{where}.{name}": [f"must be one of {', '.join(use_case.labels)}"]}
                )
        if true == predicted:
            raise InvalidInput({where: ["a right answer costs nothing: true equals predicted"]})
        if (true, predicted) in seen:
            raise InvalidInput({where: [f"the pair {true} → {predicted} is given twice"]})
        seen.add((true, predicted))
        try:
            cost = _cost_number("error_cost", pair["cost"])
        except InvalidInput:
            cost = None  # refused below, under this pair's own name
        if cost is None:
            raise InvalidInput({f"{where}.cost": ["a number of at least 0"]})
        cleaned.append({"true": true, "predicted": predicted, "cost": cost})
    return cleaned


def _costs_clean(*, use_case: UseCase, changes: dict[str, Any]) -> None:
    """Check the cost, capacity and queue settings being changed (in place)."""
    for field in _COST_NUMBERS:
        if field in changes:
            changes[field] = _cost_number(field, changes[field])
    if "error_costs" in changes:
        changes["error_costs"] = _error_costs_clean(use_case=use_case, pairs=changes["error_costs"])
    if "queue_order" in changes and changes["queue_order"] not in UseCase.QueueOrder.values:
        raise InvalidInput({"queue_order": [f"one of {', '.join(UseCase.QueueOrder.values)}"]})
    reviewers = changes.get("capacity_reviewers", use_case.capacity_reviewers)
    hours = changes.get("capacity_hours_per_day", use_case.capacity_hours_per_day)
    if (reviewers is None) != (hours is None):
        field = "capacity_hours_per_day" if hours is None else "capacity_reviewers"
        raise InvalidInput(
            {field: ["capacity is reviewers × hours a day: give both, or neither to measure it"]}
        )


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
