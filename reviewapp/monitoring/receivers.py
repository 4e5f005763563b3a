"""Receivers for the facts layer's signals (``reviewapp.reviews.signals``), connected in
``MonitoringConfig.ready()``. They run in the writer's transaction, so the rollup events commit
or roll back with the facts they count."""

from reviewapp.monitoring.services import (
    rollup_decision_record,
    rollup_items_record,
    rollup_predictions_record,
)


def on_items_routed(sender, *, use_case_id, item_ids, **kwargs) -> None:
    rollup_items_record(use_case_id=use_case_id, item_ids=item_ids)


def on_decision_recorded(sender, *, decision, prediction_ids, **kwargs) -> None:
    rollup_decision_record(decision=decision, prediction_ids=prediction_ids)


def on_predictions_recorded(sender, *, use_case_id, pairs, **kwargs) -> None:
    rollup_predictions_record(use_case_id=use_case_id, pairs=pairs)
