"""Scoring rows: a row whose values cannot be read is a null output of its own."""

from deployments.ml.loading import model_load
from deployments.ml.scoring import score_rows
from tests.factories import FEATURES, classifier_bytes, invoice


def test_a_row_that_cannot_be_read_is_a_null_output_and_the_others_are_scored():
    estimator = model_load(
        data=classifier_bytes(),
        max_bytes=10**8,
        max_uncompressed_bytes=10**9,
        timeout_seconds=60,
    ).estimator
    rows = [invoice(n)["features"] for n in range(5)]
    rows[1]["amount"] = 10**400
    rows[3]["amount"] = "twelve"

    outputs = score_rows(estimator, rows, FEATURES, task_type="classification")

    assert [bool(o.error) for o in outputs] == [False, True, False, True, False]
    assert "OverflowError" in outputs[1].error and "ValueError" in outputs[3].error
    alone = score_rows(estimator, [rows[0], rows[2], rows[4]], FEATURES, task_type="classification")
    assert [o.label for o in alone] == [outputs[i].label for i in (0, 2, 4)]
