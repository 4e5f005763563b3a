"""Reading row filters from a request (query string or JSON body) and keeping them as JSON.

One parser for the pages, the API and the commands, so they refuse the same input with the
same words.
"""

import math
from collections.abc import Mapping
from dataclasses import asdict, fields
from datetime import datetime
from typing import Any

from deployments.models import ModelVersion, UseCase
from reviewapp.core.api import datetime_param
from reviewapp.core.errors import InvalidInput
from reviewapp.datasets.export_tables import DISAGREEMENT_KINDS, RowFilters

FILTER_NAMES = tuple(field.name for field in fields(RowFilters))
_NUMBERS = (
    "confidence_min",
    "confidence_max",
    "model_value_min",
    "model_value_max",
    "human_value_min",
    "human_value_max",
)


def _number(raw: Any, name: str, errors: dict) -> float | None:
    if raw is None or raw == "":
        return None
    if isinstance(raw, bool):
        errors[name] = ["must be a number"]
        return None
    try:
        value = float(raw)
    except (TypeError, ValueError):
        errors[name] = ["must be a number"]
        return None
    if not math.isfinite(value):
        errors[name] = ["must be a finite number"]
        return None
    return value


def _text(raw: Any, name: str, errors: dict) -> str | None:
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str) or len(raw) > 200:
        errors[name] = ["must be a string of at most 200 characters"]
        return None
    return raw


def filters_clean(*, use_case: UseCase, raw: Mapping[str, Any]) -> RowFilters:
    """RowFilters from ``raw`` (unknown keys are ignored here; bodies check them), or
    InvalidInput naming every bad one."""
    errors: dict[str, list[str]] = {}
    values: dict[str, Any] = {}
    for name in ("since", "until"):
        values[name] = None
        if raw.get(name) not in (None, "") and not isinstance(raw.get(name), str):
            errors[name] = ["an ISO 8601 date or date-time is required"]
            continue
        try:
            values[name] = datetime_param(raw, name)
        except InvalidInput as exc:
            errors.update(exc.detail)
    if values["since"] and values["until"] and values["since"] >= values["until"]:
        errors["until"] = ["must be after since"]
    for name in ("model_version", "kind", "model_label", "human_label"):
        values[name] = _text(raw.get(name), name, errors)
    for name in _NUMBERS:
        values[name] = _number(raw.get(name), name, errors)

    if values["kind"] and values["kind"] not in DISAGREEMENT_KINDS:
        errors["kind"] = [f"must be one of {', '.join(DISAGREEMENT_KINDS)}"]
    version = values["model_version"]
    if version and not ModelVersion.objects.filter(use_case=use_case, version=version).exists():
        errors["model_version"] = [f"no model version {version!r} in {use_case.slug}"]
    for name in ("model_label", "human_label"):
        if values[name] is None:
            continue
        if not use_case.is_classification:
            errors[name] = ["only classification use cases have labels"]
        elif values[name] not in use_case.labels:
            errors[name] = [f"must be one of {', '.join(use_case.labels)}"]
    for name in ("confidence_min", "confidence_max"):
        if values[name] is not None and not 0 <= values[name] <= 1:
            errors[name] = ["must be between 0 and 1"]
    if use_case.is_classification:
        for name in _NUMBERS[2:]:
            if values[name] is not None:
                errors[name] = ["only regression use cases have values"]
    for low, high in (
        ("confidence_min", "confidence_max"),
        ("model_value_min", "model_value_max"),
        ("human_value_min", "human_value_max"),
    ):
        if (
            values[low] is not None
            and values[high] is not None
            and values[low] > values[high]
            and high not in errors
        ):
            errors[high] = [f"must not be below {low}"]
    if errors:
        raise InvalidInput(errors)
    return RowFilters(**values)


def filters_as_json(filters: RowFilters) -> dict[str, Any]:
    """The filters that are set, as JSON values (ISO 8601 for times)."""
    out = {}
    for name, value in asdict(filters).items():
        if value is None:
            continue
        out[name] = value.isoformat() if isinstance(value, datetime) else value
    return out


def filters_from_json(data: Mapping[str, Any]) -> RowFilters:
    values = {name: data.get(name) for name in FILTER_NAMES}
    for name in ("since", "until"):
        if values[name]:
            values[name] = datetime.fromisoformat(values[name])
    return RowFilters(**values)


def filters_as_query(filters: RowFilters, **changes: Any) -> dict[str, str]:
    """Query-string parameters for the filters, with ``changes`` applied (None removes)."""
    data = filters_as_json(filters)
    data.update(changes)
    return {k: str(v) for k, v in data.items() if v not in (None, "")}
