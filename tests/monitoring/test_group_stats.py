"""The fold's per-hour feature statistics (``monitoring.stats``) against a plain-Python count."""

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from reviewapp.monitoring import stats

CATEGORIES = ["FR", "DE", "ES"]
# What a categorical column can hold: the training categories, other strings, missing values
# of every kind, and values of other types that the schema would refuse but history may hold.
CELLS = st.one_of(
    st.sampled_from(CATEGORIES),
    st.sampled_from(["NL", "fr", "", " DE"]),
    st.sampled_from([None, math.nan]),
    st.sampled_from([1, 1.0, True, 0]),
)


def _counted(values, groups, n_groups, categories):
    rows, missing = [0] * n_groups, [0] * n_groups
    hist = [[0] * (len(categories) + 1) for _ in range(n_groups)]
    for value, group in zip(values, groups, strict=True):
        rows[group] += 1
        if value is None or (isinstance(value, float) and math.isnan(value)):
            missing[group] += 1
            continue
        in_categories = isinstance(value, str) and value in categories
        hist[group][categories.index(value) if in_categories else len(categories)] += 1
    return rows, missing, hist


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(CELLS, st.integers(min_value=0, max_value=4)), max_size=60),
)
def test_each_hour_counts_its_rows_missing_values_and_categories_like_a_plain_count(cells):
    values = [value for value, _ in cells]
    groups = np.asarray([group for _, group in cells], dtype=np.int64)
    out = stats.categorical_group_stats(np.asarray(values, dtype=object), groups, 5, CATEGORIES)
    rows, missing, hist = _counted(values, groups.tolist(), 5, CATEGORIES)
    assert out["rows"].tolist() == rows
    assert out["missing"].tolist() == missing
    assert out["hist"].tolist() == hist


def test_without_training_categories_only_rows_and_missing_values_are_counted():
    values = np.asarray(["FR", None, "XX", math.nan], dtype=object)
    out = stats.categorical_group_stats(values, np.asarray([0, 0, 1, 1]), 2, None)
    assert out["rows"].tolist() == [2, 2]
    assert out["missing"].tolist() == [1, 1]
    assert "hist" not in out
