"""Applying the pure routing policy to stored items: predictions, tasks, the item's route.

The batch path routes thousands of items per call, so this module works on plain rows and
writes columns (``reviewapp.core.bulk``) rather than model instances.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

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
from deployments.services.policies import policy_spec
from reviewapp.core.bulk import rows_append, rows_insert, rows_update
from reviewapp.core.events import events_record
from reviewapp.core.logs import events_enabled, events_log
from reviewapp.reviews.models import Item, Prediction, ReviewTask
from reviewapp.reviews.outcomes import OUTCOME_DECIDED, outcome_payload
from reviewapp.reviews.signals import items_routed


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


@dataclass(frozen=True, slots=True)
class PendingItem:
    """What routing needs to know of a stored item."""

    id: int
    external_id: str
    buckets: Buckets
    priority: int = 0
    due_at: Any = None


def pending_item(item: Item) -> PendingItem:
    return PendingItem(
        id=item.pk,
        external_id=item.external_id,
        buckets=Buckets(
            ramp=item.ramp_bucket,
            audit=item.audit_bucket,
            double_review=item.double_review_bucket,
        ),
        priority=item.priority,
        due_at=item.due_at,
    )


def prediction_columns(
    *,
    use_case: UseCase,
    item_ids: Sequence[int],
    model_versions: Sequence[ModelVersion],
    raws: Sequence[RawOutput],
    verdicts: Sequence[ModelOutput | NullOutput],
    now,
) -> dict[str, list[Any]]:
    """Prediction rows as columns: a valid output's label/value/confidence, or the reason a
    null output could not be used."""
    columns: dict[str, list[Any]] = {
        name: []
        for name in (
            "item_id",
            "use_case_id",
            "model_version_id",
            "label",
            "value",
            "confidence",
            "probabilities",
            "latency_ms",
            "error",
            "created_at",
        )
    }
    for item_id, version, raw, verdict in zip(
        item_ids, model_versions, raws, verdicts, strict=True
    ):
        valid = isinstance(verdict, ModelOutput)
        columns["item_id"].append(item_id)
        columns["use_case_id"].append(use_case.pk)
        columns["model_version_id"].append(version.pk)
        columns["label"].append((verdict.label or "") if valid else (raw.label or "")[:200])
        columns["value"].append(verdict.value if valid else None)
        columns["confidence"].append(verdict.confidence if valid else None)
        columns["probabilities"].append(raw.probabilities)
        columns["latency_ms"].append(raw.latency_ms)
        columns["error"].append("" if valid else verdict.reason)
        columns["created_at"].append(now)
    return columns


@dataclass
class Routed:
    item_id: int
    decision: RoutingDecision
    prediction_id: int | None = None
    verdict: ModelOutput | NullOutput | None = None
    values: dict[str, Any] = field(default_factory=dict)  # the item's new ROUTED_COLUMNS


ROUTED_COLUMNS = (
    "route",
    "policy_id",
    "prediction_id",
    "routed_at",
    "status",
    "decision_label",
    "decision_value",
    "decision_source",
    "decided_at",
)


def items_route(
    *,
    use_case: UseCase,
    policy: AutomationPolicy,
    items: Sequence[PendingItem],
    outputs: Sequence[tuple[ModelVersion | None, RawOutput] | None],
    now,
    prediction_ids: Sequence[int] | None = None,
    items_stored: bool = True,
) -> list[Routed]:
    """Route each item with its champion output (None when the model was not consulted):
    write its prediction and review tasks, and set its route, status and any model decision.

    A pair whose model version is None (no champion registered yet) routes as a null output
    without a prediction row. Call inside a transaction, with the items stored, not routed.

    A caller that holds the predictions' ids already (``prediction_ids``, one per item with a
    model version) and stores the items itself, routed (``items_stored=False``: each
    ``Routed.values`` holds the item's route), reads nothing back: inside ``writes_joined`` the
    writes are parts of one statement.
    """
    spec = policy_spec(policy)
    routed: list[Routed] = []
    scored: list[tuple[int, ModelVersion, RawOutput, ModelOutput | NullOutput]] = []
    for item, pair in zip(items, outputs, strict=True):
        verdict = None
        if pair is not None:
            model_version, raw = pair
            verdict = output_assess(use_case=use_case, raw=raw)
            if model_version is not None:
                scored.append((len(routed), model_version, raw, verdict))
        decision = route(policy=spec, output=verdict, buckets=item.buckets)
        routed.append(Routed(item_id=item.id, decision=decision, verdict=verdict))

    if scored:
        positions, versions, raws, verdicts = zip(*scored, strict=True)
        columns = prediction_columns(
            use_case=use_case,
            item_ids=[routed[p].item_id for p in positions],
            model_versions=versions,
            raws=raws,
            verdicts=verdicts,
            now=now,
        )
        if prediction_ids is None:
            ids = rows_insert(Prediction, columns)
        else:
            ids = list(prediction_ids)
            rows_append(Prediction, {"id": ids, **columns})
        for position, prediction_id in zip(positions, ids, strict=True):
            routed[position].prediction_id = prediction_id

    tasks: dict[str, list[Any]] = {
        "item_id": [],
        "use_case_id": [],
        "reason": [],
        "show_suggestion": [],
        "created_at": [],
        "priority": [],
        "due_at": [],
        "uncertainty": [],
    }
    updates: dict[str, list[Any]] = {name: [] for name in ROUTED_COLUMNS}
    for item, entry in zip(items, routed, strict=True):
        decision = entry.decision
        confidence = getattr(entry.verdict, "confidence", None)
        automated = decision.automated
        entry.values = {
            "route": decision.route.value,
            "policy_id": policy.pk,
            "prediction_id": entry.prediction_id,
            "routed_at": now,
            "status": Item.Status.DECIDED if automated else Item.Status.IN_REVIEW,
            "decision_label": (entry.verdict.label or "") if automated else "",
            "decision_value": entry.verdict.value if automated else None,
            "decision_source": Item.Source.MODEL if automated else "",
            "decided_at": now if automated else None,
        }
        for name, value in entry.values.items():
            updates[name].append(value)
        for spec_task in decision.tasks:
            tasks["item_id"].append(entry.item_id)
            tasks["use_case_id"].append(use_case.pk)
            tasks["reason"].append(spec_task.reason.value)
            tasks["show_suggestion"].append(spec_task.show_suggestion)
            tasks["created_at"].append(now)
            tasks["priority"].append(item.priority)
            tasks["due_at"].append(item.due_at)
            tasks["uncertainty"].append(1.0 if confidence is None else 1.0 - confidence)
    rows_append(ReviewTask, tasks)
    if items_stored:
        rows_update(Item, [entry.item_id for entry in routed], updates)
    items_routed.send(
        sender=Item, use_case_id=use_case.pk, item_ids=[entry.item_id for entry in routed]
    )
    events_record(
        type=OUTCOME_DECIDED,
        use_case_id=use_case.pk,
        datas=_outcomes(use_case, items, routed, outputs),
    )
    _routed_log(use_case=use_case, items=items, routed=routed, outputs=outputs)
    return routed


def _outcomes(use_case: UseCase, items, routed: list[Routed], outputs) -> list[dict]:
    """The ``outcome.decided`` payloads of the items the model decided."""
    return [
        outcome_payload(
            use_case=use_case,
            external_id=item.external_id,
            label=entry.values["decision_label"],
            value=entry.values["decision_value"],
            source=Item.Source.MODEL,
            by=None,
            model_version=pair[0].version if pair is not None and pair[0] is not None else None,
            route=entry.values["route"],
            decided_at=entry.values["decided_at"],
        )
        for item, entry, pair in zip(items, routed, outputs, strict=True)
        if entry.decision.automated
    ]


def _routed_log(*, use_case: UseCase, items, routed: list[Routed], outputs) -> None:
    if not events_enabled():
        return
    rows = []
    for item, entry, pair in zip(items, routed, outputs, strict=True):
        version, raw = pair if pair is not None else (None, None)
        rows.append(
            {
                "use_case": use_case.slug,
                "item": item.external_id,
                "model_version": version.version if version is not None else None,
                "route": entry.values["route"],
                "status": entry.values["status"],
                "null_output": isinstance(entry.verdict, NullOutput) if pair is not None else None,
                "latency_ms": raw.latency_ms if raw is not None else None,
            }
        )
    events_log("item_routed", rows)


def prediction_unsaved(
    *, prediction_id: int, model_version: ModelVersion, verdict: ModelOutput | NullOutput
) -> Prediction:
    """The stored prediction as an in-memory row, for answering without reading it back."""
    if isinstance(verdict, ModelOutput):
        return Prediction(
            pk=prediction_id,
            model_version=model_version,
            label=verdict.label or "",
            value=verdict.value,
            confidence=verdict.confidence,
        )
    return Prediction(pk=prediction_id, model_version=model_version, error=verdict.reason)
