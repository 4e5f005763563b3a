"""Telling a usable model output from a null output, before routing."""

import math
from collections.abc import Collection
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ModelOutput:
    """A valid prediction: a label (classification) or a value (regression).

    ``confidence`` is in [0, 1], or None when the model gives none (most regressors).
    """

    label: str | None = None
    value: float | None = None
    confidence: float | None = None


@dataclass(frozen=True, slots=True)
class NullOutput:
    """The model could not be used for this item: it raised, timed out, or said nonsense."""

    reason: str


def _finite(number: object) -> bool:
    return (
        isinstance(number, int | float)
        and not isinstance(number, bool)
        and math.isfinite(float(number))
    )


def assess_output(
    *,
    label: object = None,
    value: object = None,
    confidence: object = None,
    labels: Collection[str] | None,
    value_min: float | None = None,
    value_max: float | None = None,
) -> ModelOutput | NullOutput:
    """Check a raw prediction against the use case's contract.

    ``labels`` is the label set for classification and None for regression. Anything the
    router could not act on safely (a label outside the set, NaN, infinity, a value outside
    [value_min, value_max], a confidence outside [0, 1]) becomes a NullOutput that names why.
    """
    if confidence is not None:
        if not _finite(confidence):
            return NullOutput(reason=f"confidence is not a finite number: {confidence!r}")
        if not 0.0 <= float(confidence) <= 1.0:
            return NullOutput(reason=f"confidence {confidence!r} outside [0, 1]")
        confidence = float(confidence)
    if labels is not None:
        if label is None:
            return NullOutput(reason="no label")
        if not isinstance(label, str):
            label = str(label)
        if label not in labels:
            return NullOutput(reason=f"label {label!r} is not one of the use case's labels")
        return ModelOutput(label=label, confidence=confidence)
    if value is None:
        return NullOutput(reason="no value")
    if not _finite(value):
        return NullOutput(reason=f"value is not a finite number: {value!r}")
    value = float(value)
    if value_min is not None and value < value_min:
        return NullOutput(reason=f"value {value} below the minimum {value_min}")
    if value_max is not None and value > value_max:
        return NullOutput(reason=f"value {value} above the maximum {value_max}")
    return ModelOutput(value=value, confidence=confidence)
