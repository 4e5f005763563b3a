"""A use case's feature schema: checking the schema itself and the items sent against it.

Errors are collected per field and raised together as InvalidInput, so one response names every
problem: ``{"features": {"amount": ["must be >= 0"], "colour": ["unknown feature"]}}``.
"""

import math
from collections.abc import Sequence
from typing import Any

from reviewapp.core.errors import InvalidInput
from reviewapp.core.json_input import number_problem, text_problem, texts_storable

FEATURE_TYPES = ("number", "integer", "boolean", "string", "category")
# Display-only keys: how a feature reads to a person. Scoring, exports and the items API
# ignore them; each is a short string with a bound on its length.
FEATURE_DISPLAY_KEYS = {"label": 80, "description": 300, "unit": 20, "group": 60}
FEATURE_KEYS = frozenset(
    {
        "name",
        "type",
        "required",
        "min",
        "max",
        "categories",
        "pii",
        "identifier",
        *FEATURE_DISPLAY_KEYS,
    }
)
MAX_STRING_LENGTH = 10_000


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def feature_schema_clean(features: Any) -> list[dict[str, Any]]:
    """Normalise a feature schema, or raise InvalidInput naming each bad entry."""
    if not isinstance(features, list) or not features:
        raise InvalidInput({"features": ["a non-empty list of feature definitions is required"]})
    errors: dict[str, list[str]] = {}
    cleaned, seen = [], set()
    for index, spec in enumerate(features):
        where = f"{index}"
        if not isinstance(spec, dict):
            errors[where] = ["must be an object"]
            continue
        problems = []
        name = spec.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > 100:
            problems.append("name: a non-empty string of at most 100 characters is required")
        elif name in seen:
            problems.append(f"name: {name!r} is defined twice")
        else:
            seen.add(name)
        kind = spec.get("type")
        if kind not in FEATURE_TYPES:
            problems.append(f"type: must be one of {', '.join(FEATURE_TYPES)}")
        unknown = set(spec) - FEATURE_KEYS
        if unknown:
            problems.append(f"unknown keys: {', '.join(sorted(unknown))}")
        for bound in ("min", "max"):
            if spec.get(bound) is not None and (
                not _is_number(spec[bound]) or not math.isfinite(spec[bound])
            ):
                problems.append(f"{bound}: must be a finite number")
        if (
            _is_number(spec.get("min"))
            and _is_number(spec.get("max"))
            and spec["min"] > spec["max"]
        ):
            problems.append("min: must not exceed max")
        categories = spec.get("categories")
        if kind == "category":
            if (
                not isinstance(categories, list)
                or not categories
                or not all(isinstance(c, str) for c in categories)
            ):
                problems.append("categories: a non-empty list of strings is required")
        elif categories is not None:
            problems.append("categories: only for features of type category")
        for flag in ("required", "pii", "identifier"):
            if flag in spec and not isinstance(spec[flag], bool):
                problems.append(f"{flag}: must be true or false")
        for key, limit in FEATURE_DISPLAY_KEYS.items():
            text = spec.get(key)
            if text is not None and (not isinstance(text, str) or len(text) > limit):
                problems.append(f"{key}: must be a string of at most {limit} characters")
        if problems:
            errors[where] = problems
            continue
        entry = {
            "name": name,
            "type": kind,
            "required": spec.get("required", True),
            "pii": spec.get("pii", False),
        }
        if spec.get("identifier"):
            entry["identifier"] = True  # an ID: never judged for drift
        for key in ("min", "max"):
            if spec.get(key) is not None:
                entry[key] = spec[key]
        if kind == "category":
            entry["categories"] = list(dict.fromkeys(categories))
        for key in FEATURE_DISPLAY_KEYS:
            if (spec.get(key) or "").strip():  # null or blank: not shown
                entry[key] = spec[key].strip()
        cleaned.append(entry)
    if errors:
        raise InvalidInput({"features": errors})
    return cleaned


_NUMBER_TYPES = (int, float)


class FeaturesValidator:
    """Checks items' features against one schema; built once, called per item.

    Batches call it tens of thousands of times with dozens of features each, so the schema is
    compiled into plain tuples and the common case (a present, valid number) takes a few
    comparisons.
    """

    def __init__(self, schema: list[dict[str, Any]]):
        self.names = frozenset(spec["name"] for spec in schema)
        self.specs = [
            (
                spec["name"],
                spec["type"],
                spec.get("required", True),
                spec.get("min"),
                spec.get("max"),
                frozenset(spec["categories"]) if spec["type"] == "category" else None,
                spec.get("categories"),
            )
            for spec in schema
        ]

    def __call__(self, features: Any, *, field: str = "features") -> dict[str, Any]:
        """The cleaned features, or InvalidInput naming each bad field.

        An absent optional feature (or an explicit null) is kept as None: it is a missing
        value, which monitoring counts, not an error.
        """
        if not isinstance(features, dict):
            raise InvalidInput({field: ["must be an object mapping feature names to values"]})
        errors: dict[str, list[str]] = {}
        cleaned: dict[str, Any] = {}
        for name, kind, required, low, high, categories, ordered in self.specs:
            value = features.get(name)
            if value is None:
                if required:
                    errors[name] = ["required"]
                cleaned[name] = None
                continue
            if kind == "number" or kind == "integer":
                # the type test first: exact int/float is the common case; bool is not a number
                if type(value) not in _NUMBER_TYPES and not _is_number(value):
                    errors[name] = [f"must be a {kind}"]
                    continue
                if value != value or value in (math.inf, -math.inf):
                    errors[name] = ["must be a finite number (not NaN or infinity)"]
                elif problem := number_problem(value):
                    errors[name] = [problem]
                elif kind == "integer" and value != int(value):
                    errors[name] = ["must be a whole number"]
                elif low is not None and value < low:
                    errors[name] = [f"must be >= {low}"]
                elif high is not None and value > high:
                    errors[name] = [f"must be <= {high}"]
                else:
                    cleaned[name] = int(value) if kind == "integer" else value
            elif kind == "boolean":
                if isinstance(value, bool):
                    cleaned[name] = value
                else:
                    errors[name] = ["must be true or false"]
            elif not isinstance(value, str):
                errors[name] = ["must be a string"]
            elif len(value) > MAX_STRING_LENGTH:
                errors[name] = [f"must be at most {MAX_STRING_LENGTH} characters"]
            elif problem := text_problem(value):
                errors[name] = [problem]
            elif categories is not None and value not in categories:
                errors[name] = [f"must be one of {', '.join(ordered[:20])}"]
            else:
                cleaned[name] = value
        if not self.names.issuperset(features):
            for name in features:
                if name not in self.names:
                    errors[str(name)[:100]] = ["unknown feature"]
        if errors:
            raise InvalidInput({field: errors})
        return cleaned

    def many(self, batch: Sequence[Any]) -> list[dict[str, Any] | None]:
        """Each row's cleaned features as ``__call__`` gives them, or None for a row this pass
        does not vouch for: ``__call__`` then checks it alone and names what is wrong.

        A batch of 10,000 items with 64 features holds 640,000 values; checked one by one in
        Python that was a third of the time a batch took to accept. Here a row qualifies when
        it names no feature the schema does not; then each feature's column is checked at once by
        built-ins running in C (the set of types, finiteness, the smallest and largest value),
        and only a column that fails is read value by value, to find its rows.
        """
        names = [spec[0] for spec in self.specs]
        rows = [i for i, f in enumerate(batch) if type(f) is dict and f.keys() <= self.names]
        if not rows:
            return [None] * len(batch)
        held = [tuple(map(batch[i].get, names)) for i in rows]  # an absent feature is None
        vouched = [True] * len(rows)
        for spec, column in zip(self.specs, zip(*held, strict=True), strict=True):
            if not _column_clean(spec, column):
                for position, value in enumerate(column):
                    if vouched[position] and not _column_clean(spec, (value,)):
                        vouched[position] = False
        cleaned: list[dict[str, Any] | None] = [None] * len(batch)
        for position, index in enumerate(rows):
            if vouched[position]:
                # Every name sent: the row is its own cleaned copy (key order aside, which no
                # reader of features depends on); otherwise the absent ones are added as None.
                features = batch[index]
                if len(features) < len(names):
                    features = dict(zip(names, held[position], strict=True))
                cleaned[index] = features
        return cleaned


_NUMBER_COLUMN_TYPES = {"number": frozenset({int, float}), "integer": frozenset({int})}


def _column_clean(spec: tuple, column: Sequence[Any]) -> bool:
    """Whether every value of one feature's column passes ``FeaturesValidator.__call__`` as it
    is (an integer feature's value is an int already). False may be a false alarm: a value the
    full check would take (2.0 for an integer, a float beyond 2**53); the full check decides."""
    _, kind, required, low, high, categories, _ = spec
    types = set(map(type, column))
    if type(None) in types:
        if required:
            return False
        types.discard(type(None))
        column = [value for value in column if value is not None]
    if not column:
        return True
    if kind in _NUMBER_COLUMN_TYPES:
        if not types <= _NUMBER_COLUMN_TYPES[kind]:
            return False  # bool, text, anything else: the full check names it
        if float in types:
            try:
                if not all(map(math.isfinite, column)):
                    return False
            except OverflowError:  # an int beyond a double
                return False
        smallest, largest = min(column), max(column)
        if int in types and not -_EXACT_INTEGERS <= smallest <= largest <= _EXACT_INTEGERS:
            return False
        return (low is None or smallest >= low) and (high is None or largest <= high)
    if kind == "boolean":
        return types <= {bool}
    if not types <= {str} or max(map(len, column)) > MAX_STRING_LENGTH:
        return False
    if categories is not None and not categories.issuperset(column):
        return False
    return texts_storable(column)


_EXACT_INTEGERS = 2**53  # as ``number_problem``: every integer up to it is a double exactly


def item_features_clean(
    *, schema: list[dict[str, Any]], features: Any, field: str = "features"
) -> dict[str, Any]:
    """Check one item's features against the schema (see FeaturesValidator)."""
    return FeaturesValidator(schema)(features, field=field)


def schema_example_rows(schema: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A few plausible rows built from the schema alone (bounds, categories), for checking
    that a model can score this use case's items when no reference data is at hand."""
    rows = []
    for position in (0.0, 0.5, 1.0):
        row: dict[str, Any] = {}
        for spec in schema:
            kind = spec["type"]
            if kind in ("number", "integer"):
                low = spec.get("min", 0.0 if spec.get("max", 1.0) >= 0 else spec["max"] - 1)
                high = spec.get("max", low + 1.0)
                value = low + (high - low) * position
                row[spec["name"]] = int(round(value)) if kind == "integer" else float(value)
            elif kind == "boolean":
                row[spec["name"]] = position >= 0.5
            elif kind == "category":
                cats = spec["categories"]
                row[spec["name"]] = cats[int(position * (len(cats) - 1))]
            else:
                row[spec["name"]] = "example"
        rows.append(row)
    return rows
