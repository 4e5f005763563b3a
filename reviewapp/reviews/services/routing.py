"""Applying the pure routing policy to stored items: predictions, tasks, the item's route."""

from collections.abc import Sequence
from dataclasses import dataclass

from deployments.ml.scoring import RawOutput
from deployments.models import AutomationPolicy, ModelVersion, UseCase
from deployments.policy import (
    Buckets,
    ModelOutput,
    NullOutput,
    RoutingDecision,
    assess_output,
    route,
)
from deployments.services import policy_spec
from reviewapp.monitoring.logs import event_log
from reviewapp.monitoring.services import rollup_items_record
from reviewapp.reviews.models import Item, Prediction, ReviewTask


def output_assess(*, use_case: UseCase, raw: RawOutput) -> ModelOutput | NullOutput:
    if raw.error:
        return NullOutput(reason=raw.error)
    return assess_output(
        label=raw.label,
        value=raw.value,
        confidence=raw.confidence,
        labels=use_case.labels if use_case.is_classification else None,
        value_min=use_case.value_min,
        value_max=use_case.value_max,
    )


def item_buckets_of(item: Item) -> Buckets:
    return Buckets(
        ramp=item.ramp_bucket, audit=item.audit_bucket, double_review=item.double_review_bucket
    )


@dataclass
class Routed:
    item: Item
    decision: RoutingDecision
    prediction: Prediction | None


def prediction_build(
    *,
    item: Item,
    model_version: ModelVersion,
    raw: RawOutput,
    verdict: ModelOutput | NullOutput,
    now,
) -> Prediction:
    valid = isinstance(verdict, ModelOutput)
    return Prediction(
        item=item,
        use_case_id=item.use_case_id,
        model_version=model_version,
        label=(verdict.label or "") if valid else (raw.label or "")[:200],
        value=verdict.value if valid else None,
        confidence=verdict.confidence if valid else None,
        probabilities=raw.probabilities,
        latency_ms=raw.latency_ms,
        error="" if valid else verdict.reason,
        created_at=now,
    )


def items_route(
    *,
    use_case: UseCase,
    policy: AutomationPolicy,
    items: Sequence[Item],
    outputs: Sequence[tuple[ModelVersion | None, RawOutput] | None],
    now,
) -> list[Routed]:
    """Route each item with its champion output (None when the model was not consulted),
    write its prediction and review tasks, and set its route, status and any model decision.

    A pair whose model version is None (no champion registered yet) routes as a null output
    without a prediction row.

    Call inside a transaction, with ``items`` saved and not yet routed.
    """
    spec = policy_spec(policy)
    routed: list[Routed] = []
    predictions = []
    for item, pair in zip(items, outputs, strict=True):
        prediction = None
        if pair is None:
            verdict = None
        else:
            model_version, raw = pair
            verdict = output_assess(use_case=use_case, raw=raw)
            if model_version is not None:
                prediction = prediction_build(
                    item=item, model_version=model_version, raw=raw, verdict=verdict, now=now
                )
                predictions.append(prediction)
        decision = route(policy=spec, output=verdict, buckets=item_buckets_of(item))
        routed.append(Routed(item=item, decision=decision, prediction=prediction))
    Prediction.objects.bulk_create(predictions)

    tasks = []
    for entry in routed:
        item, decision = entry.item, entry.decision
        item.route = decision.route.value
        item.policy = policy
        item.prediction = entry.prediction
        item.routed_at = now
        if decision.automated:
            item.status = Item.Status.DECIDED
            item.decision_label = entry.prediction.label
            item.decision_value = entry.prediction.value
            item.decision_source = Item.Source.MODEL
            item.decided_at = now
        else:
            item.status = Item.Status.IN_REVIEW
        tasks.extend(
            ReviewTask(
                item=item,
                use_case_id=item.use_case_id,
                reason=spec_task.reason.value,
                show_suggestion=spec_task.show_suggestion,
                created_at=now,
            )
            for spec_task in decision.tasks
        )
    ReviewTask.objects.bulk_create(tasks)
    rollup_items_record(use_case_id=use_case.pk, item_ids=[entry.item.pk for entry in routed])
    for entry in routed:
        prediction = entry.prediction
        event_log(
            "item_routed",
            use_case=use_case.slug,
            item=entry.item.external_id,
            model_version=prediction.model_version.version if prediction else None,
            route=entry.item.route,
            status=entry.item.status,
            null_output=bool(prediction.error) if prediction else None,
            latency_ms=prediction.latency_ms if prediction else None,
        )
    return routed


ROUTED_FIELDS = [
    "route",
    "policy",
    "prediction",
    "routed_at",
    "status",
    "decision_label",
    "decision_value",
    "decision_source",
    "decided_at",
]
