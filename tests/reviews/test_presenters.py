"""How a task reads on the queue page: label keys, numbers, pixel grids."""

import pytest

from reviewapp.core.item_display import pixel_grid
from reviewapp.reviews.presenters import label_shortcuts, number_display


def test_digit_labels_are_picked_by_their_own_digit_others_by_position():
    digits = [str(d) for d in range(10)]
    assert label_shortcuts(digits) == {d: d for d in digits}
    assert label_shortcuts(["travel", "office"]) == {"travel": "1", "office": "2"}
    many = [f"l{i}" for i in range(12)]
    keys = label_shortcuts(many)
    assert keys["l8"] == "9" and keys["l9"] == "0" and "l10" not in keys
    # Digits out of order or repeated positions would mislead: positional keys then.
    assert label_shortcuts(["1", "2", "10"]) == {"1": "1", "2": "2", "10": "3"}


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (3, "3"),
        (1234567, "1,234,567"),
        (12.0, "12"),
        (12.5, "12.5"),
        (0.078712, "0.078712"),
        (1234.56789, "1,234.5679"),
        (True, "yes"),
        ("ACME", "ACME"),
    ],
)
def test_numbers_read_as_a_person_writes_them(value, shown):
    assert number_display(value) == shown


def _schema(n, **spec):
    return [{"name": f"p{i}", "type": "number", **spec} for i in range(n)]


def test_a_square_grid_of_numbers_becomes_grey_levels_on_the_declared_range():
    grid = pixel_grid({"p0": 0, "p1": 10, "p2": 5, "p3": None}, schema=_schema(4, min=0, max=10))
    assert grid["side"] == 2 and grid["missing"] == 1
    assert [c["fill"] for c in grid["cells"]] == ["#ffffff", "#000000", "#808080", None]
    assert grid["rows"] == [["0", "10"], ["5", "–"]]


def test_without_a_declared_range_the_items_own_range_is_used():
    grid = pixel_grid({"p0": 0, "p1": 4, "p2": 2, "p3": 4}, schema=_schema(4))
    assert [c["fill"] for c in grid["cells"]] == ["#ffffff", "#000000", "#808080", "#000000"]


def test_what_is_not_a_square_grid_of_numbers_falls_back_to_the_table():
    assert pixel_grid({f"p{i}": 1 for i in range(3)}, schema=_schema(3)) is None
    assert pixel_grid({"p0": "a", "p1": 1, "p2": 1, "p3": 1}, schema=_schema(4)) is None
