"""A batch's features checked a column at a time (``FeaturesValidator.many``) take no row the
one-by-one check refuses, and give the same cleaned features for every row they take."""

import math

import hypothesis
from hypothesis import strategies as st

from deployments.schema import FeaturesValidator
from reviewapp.core.errors import InvalidInput
from tests.passes import examples

SCHEMA = [
    {"name": "amount", "type": "number", "required": True, "min": -5, "max": 1e6},
    {"name": "count", "type": "integer", "required": False, "min": 0},
    {"name": "paid", "type": "boolean", "required": False},
    {"name": "note", "type": "string", "required": False},
    {"name": "kind", "type": "category", "required": True, "categories": ["a", "b"]},
]

values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-10, max_value=10),
    st.sampled_from([2**53, 2**53 + 1, -(2**53) - 1, 10**400, 3.0, 2.5, 1e300]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["a", "b", "c", "", "\x00", "\ud800", "x" * 10_001]),
    st.lists(st.integers(), max_size=2),
)
rows = st.one_of(
    st.fixed_dictionaries({spec["name"]: values for spec in SCHEMA}),
    st.fixed_dictionaries(
        {"amount": st.integers(-5, 100), "kind": st.sampled_from(["a", "b"])},
        optional={"count": st.integers(0, 9), "extra": values, "note": st.text(max_size=3)},
    ),
    st.none(),
    st.integers(),
)


def one_by_one(validate, features):
    try:
        return validate(features)
    except InvalidInput:
        return None


def same(left, right) -> bool:
    """Equal, telling 1 from 1.0 and True from 1, as stored JSON would."""
    if left.keys() != right.keys():
        return False
    return all(
        type(left[k]) is type(right[k])
        and (left[k] == right[k] or (isinstance(left[k], float) and math.isnan(left[k])))
        for k in left
    )


@hypothesis.settings(max_examples=examples(400), deadline=None)
@hypothesis.given(st.lists(rows, max_size=12))
def test_many_takes_only_what_one_by_one_takes_and_cleans_it_alike(batch):
    validate = FeaturesValidator(SCHEMA)
    for features, vouched in zip(batch, validate.many(batch), strict=True):
        if vouched is not None:
            expected = one_by_one(validate, features)
            assert expected is not None, features
            assert same(vouched, expected), (vouched, expected)


def test_a_clean_batch_is_vouched_for_whole():
    validate = FeaturesValidator(SCHEMA)
    batch = [
        {"amount": n * 1.5, "count": n, "paid": n % 2 == 0, "note": None, "kind": "ab"[n % 2]}
        for n in range(100)
    ]
    assert validate.many(batch) == [validate(features) for features in batch]


def test_a_bad_value_leaves_only_its_row_to_the_full_check():
    validate = FeaturesValidator(SCHEMA)
    batch = [{"amount": n, "kind": "a"} for n in range(5)]
    batch[2] = {"amount": -6, "kind": "a"}
    batch[3] = {"amount": 1, "kind": "a", "colour": "red"}
    cleaned = validate.many(batch)
    assert [c is None for c in cleaned] == [False, False, True, True, False]
