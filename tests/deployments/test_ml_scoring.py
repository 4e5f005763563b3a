"""Scoring rows: a row whose values cannot be read is a null output of its own."""

import numpy as np
import pytest

from deployments.ml.loading import model_load
from deployments.ml.scoring import features_frame, score_rows
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


def test_numbers_are_read_in_one_pass_as_float_reads_them_one_by_one():
    schema = [{"name": n, "type": "number"} for n in ("a", "b", "c")]
    schema.append({"name": "kind", "type": "category", "categories": ["x"]})
    rows = [
        {"a": 1, "b": 2.5, "c": None, "kind": "x"},
        {"a": True, "b": "3.25", "kind": None},
        {"a": -(2**60), "b": float("inf"), "c": 0},
    ]
    frame = features_frame(rows, schema)
    expected = {
        name: [np.nan if row.get(name) is None else float(row.get(name)) for row in rows]
        for name in ("a", "b", "c")
    }
    for name, values in expected.items():
        assert frame[name].dtype == float
        np.testing.assert_array_equal(frame[name].to_numpy(), np.array(values))
    assert list(frame.columns) == ["a", "b", "c", "kind"]
    assert frame["kind"][0] == "x"
    # A value NumPy cannot read as a number is read value by value, and raises as float does.
    with pytest.raises(ValueError):
        features_frame([*rows, {"a": "twelve"}], schema)
    with pytest.raises(TypeError):
        features_frame([{"a": [1], "b": [2], "c": [3]}], schema)
