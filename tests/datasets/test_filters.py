"""One filter parser for pages, API and commands: every bad value named."""

from datetime import UTC, datetime

import pytest

from reviewapp.core.errors import InvalidInput
from reviewapp.datasets.export_tables import RowFilters
from reviewapp.datasets.filters import filters_as_json, filters_clean, filters_from_json
from tests.factories import constant_classifier_bytes, make_use_case, register_model

pytestmark = pytest.mark.django_db


@pytest.fixture
def classification():
    use_case = make_use_case()
    register_model(use_case, constant_classifier_bytes())
    return use_case


def test_good_filters_round_trip_through_json(classification):
    raw = {
        "model_version": "v1",
        "kind": "override",
        "since": "2024-01-01",
        "until": "2024-02-01T12:00:00Z",
        "model_label": "office",
        "human_label": "travel",
        "confidence_min": "0.25",
        "confidence_max": 1,
    }
    filters = filters_clean(use_case=classification, raw=raw)
    assert filters.since == datetime(2024, 1, 1, tzinfo=UTC)
    assert filters.confidence_min == 0.25
    assert filters_from_json(filters_as_json(filters)) == filters
    assert filters_clean(use_case=classification, raw={}) == RowFilters()


@pytest.mark.parametrize(
    ("raw", "fields"),
    [
        ({"model_version": "v9"}, {"model_version"}),
        ({"kind": "sideways"}, {"kind"}),
        ({"since": "soon", "until": 5}, {"since", "until"}),
        ({"since": "2024-02-01", "until": "2024-01-01"}, {"until"}),
        ({"model_label": "banana", "human_label": ""}, {"model_label"}),
        ({"confidence_min": "x", "confidence_max": "nan"}, {"confidence_min", "confidence_max"}),
        ({"confidence_min": 0.9, "confidence_max": 0.1}, {"confidence_max"}),
        ({"confidence_min": 1.5}, {"confidence_min"}),
        ({"model_value_min": 1, "human_value_max": True}, {"model_value_min", "human_value_max"}),
    ],
)
def test_every_bad_filter_is_named(classification, raw, fields):
    with pytest.raises(InvalidInput) as refused:
        filters_clean(use_case=classification, raw=raw)
    assert set(refused.value.detail) == fields


def test_regression_use_cases_take_value_ranges_not_labels():
    use_case = make_use_case(task_type="regression")
    filters = filters_clean(
        use_case=use_case, raw={"model_value_min": "-3", "human_value_max": "10.5"}
    )
    assert (filters.model_value_min, filters.human_value_max) == (-3.0, 10.5)
    with pytest.raises(InvalidInput) as refused:
        filters_clean(use_case=use_case, raw={"model_label": "office"})
    assert set(refused.value.detail) == {"model_label"}
