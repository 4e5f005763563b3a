"""How one item's features read on every page that shows an item (queue, manager, datasets).

Pure: a feature schema (list of dicts, as ``deployments.schema`` cleans it) and the item's
features in, a plain dict out; no Django, no database. The ``item_features`` template tag draws it.
"""

import math
from typing import Any

LONG_TEXT = 200  # longer text is folded behind a <details>


def value_display(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return f"{int(value):,}"
        if abs(value) < 1:
            return f"{value:.6g}"
        return f"{value:,.4f}".rstrip("0").rstrip(".")
    return str(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def feature_row(spec: dict, value: Any, *, hidden: bool) -> dict[str, Any]:
    """One feature: its label (the raw name when there is none), and its value aligned as a
    number (right, tabular digits, unit after) or as text (left, wrapped, long text folded)."""
    name = spec["name"]
    label = spec.get("label") or name.replace("_", " ")
    number = _is_number(value) or (value is None and spec.get("type") in ("number", "integer"))
    display = "" if hidden or value is None else value_display(value)
    return {
        "name": name,
        "label": label,
        "show_name": label != name,
        "description": spec.get("description", ""),
        "unit": spec.get("unit", "") if number else "",
        "display": display,
        "align": "num" if number else "text",
        "long": not number and len(display) > LONG_TEXT,
        "hidden": hidden,
        "missing": value is None and not hidden,
    }


def pixel_grid(features: dict, *, schema: list[dict]) -> dict | None:
    """A square grid of numbers as grey cells, darker for larger values, on the range the
    schema declares (else the item's own range); None when the features are not one."""
    side = math.isqrt(len(schema))
    if side < 2 or side * side != len(schema):
        return None
    values = [features.get(spec["name"]) for spec in schema]
    numbers = [v for v in values if _is_number(v)]
    if len(numbers) + values.count(None) != len(values):
        return None
    declared = [(s.get("min"), s.get("max")) for s in schema]
    if all(lo is not None and hi is not None for lo, hi in declared):
        low, high = min(lo for lo, _ in declared), max(hi for _, hi in declared)
    else:
        low, high = min([0, *numbers]), max([1, *numbers])
    span = (high - low) or 1
    cells = []
    for index, value in enumerate(values):
        cell = {"x": index % side, "y": index // side, "value": value, "fill": None}
        if value is not None:
            share = min(1.0, max(0.0, (value - low) / span))
            grey = round(255 * (1 - share))
            cell["fill"] = f"#{grey:02x}{grey:02x}{grey:02x}"
        cells.append(cell)
    rows = [
        [value_display(v) if v is not None else "–" for v in values[r * side : (r + 1) * side]]
        for r in range(side)
    ]
    return {
        "side": side,
        "cells": cells,
        "rows": rows,
        "missing": values.count(None),
        "low": value_display(low),
        "high": value_display(high),
    }


def item_display(
    features: dict,
    *,
    schema: list[dict],
    image: bool = False,
    masked: frozenset | set = frozenset(),
) -> dict[str, Any]:
    """The item as groups of feature rows in the schema's order (features without a group
    form one untitled group), or as an image when the use case draws items as a pixel grid
    and nothing in it is hidden. Features sent but absent from the schema come last."""
    schema = list(schema) or [{"name": name} for name in features]
    grid = None
    if image and not masked:
        grid = pixel_grid(features, schema=schema)
    groups: dict[str, list[dict]] = {}
    for spec in schema:
        row = feature_row(spec, features.get(spec["name"]), hidden=spec["name"] in masked)
        groups.setdefault(spec.get("group", ""), []).append(row)
    known = {spec["name"] for spec in schema}
    extra = [
        feature_row({"name": n}, v, hidden=n in masked)
        for n, v in features.items()
        if n not in known
    ]
    if extra:
        groups.setdefault("", []).extend(extra)
    return {
        "image": grid,
        "groups": [{"title": title, "rows": rows} for title, rows in groups.items()],
    }
