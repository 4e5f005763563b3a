"""Scoring feature rows with a loaded estimator, vectorised, one raw output per row.

pandas is imported where a frame is first built, not with this module: the web and worker
processes import this module at start (for ``RawOutput``) and most of them never score.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

NUMERIC_TYPES = frozenset({"number", "integer", "boolean"})


@dataclass(frozen=True, slots=True)
class RawOutput:
    """What the estimator said for one row, before the use case's contract is applied."""

    label: str | None = None
    value: float | None = None
    confidence: float | None = None
    probabilities: dict[str, float] | None = None
    error: str = ""
    latency_ms: float | None = None


def features_frame(rows: Sequence[dict[str, Any]], features: Sequence[dict]) -> pd.DataFrame:
    """A DataFrame with the use case's feature columns in order; absent values are NaN/None."""
    import pandas as pd

    names = [s["name"] for s in features if s["type"] in NUMERIC_TYPES]
    matrix = _numeric_matrix(rows, names)
    if matrix is not None and len(names) == len(features):
        # Every feature a number: one block, not a column at a time (0.05 ms against 0.3 ms for
        # a row of 64: pandas checks each column it is given on its own).
        return pd.DataFrame(matrix, columns=names)
    numbers = None if matrix is None else {name: matrix[:, j] for j, name in enumerate(names)}
    columns = {}
    for spec in features:
        name = spec["name"]
        if spec["type"] not in NUMERIC_TYPES:
            columns[name] = pd.array([row.get(name) for row in rows], dtype=object)
        elif numbers is not None:
            columns[name] = numbers[name]
        else:
            columns[name] = np.array(
                [np.nan if v is None else float(v) for v in (row.get(name) for row in rows)],
                dtype=float,
            )
    return pd.DataFrame(columns)


def _numeric_matrix(rows: Sequence[dict[str, Any]], names: list[str]) -> np.ndarray | None:
    """The numeric features as ``float`` reads each value (None as NaN), a row per row and a
    column per name, in one pass by NumPy over the rows: a batch's chunk holds 64,000 values.
    None when NumPy cannot read them all (text that is no number, a list): the columns are
    then read value by value, and an unreadable row raises there, as before."""
    if not names or not rows:
        return None
    try:
        matrix = np.array([tuple(map(row.get, names)) for row in rows], dtype=float)
    except (TypeError, ValueError, OverflowError):
        return None
    if matrix.shape != (len(rows), len(names)):
        return None
    return matrix


def _ensemble_members(estimator: Any) -> tuple[Any, list[Any]] | None:
    """For bagged ensembles (random forests, extra trees, bagging): preprocessing and members."""
    from sklearn.ensemble import BaggingRegressor
    from sklearn.ensemble._forest import BaseForest
    from sklearn.pipeline import Pipeline

    final, head = estimator, None
    if isinstance(estimator, Pipeline):
        final, head = estimator.steps[-1][1], estimator[:-1]
    if isinstance(final, BaseForest | BaggingRegressor) and hasattr(final, "estimators_"):
        return head, list(final.estimators_)
    return None


def _regression_confidence(
    estimator: Any, frame: pd.DataFrame, values: np.ndarray, tolerance: float | None
) -> np.ndarray | None:
    """Share of ensemble members whose prediction is within ``tolerance`` of the ensemble's.

    It reads as "how many of the model's voters agree with its answer", the regression
    counterpart of a class probability. Models that are not bagged ensembles give none.
    """
    members = _ensemble_members(estimator)
    if members is None or tolerance is None:
        return None
    head, trees = members
    matrix = head.transform(frame) if head is not None else frame.to_numpy()
    votes = np.vstack([tree.predict(np.asarray(matrix)) for tree in trees])
    return (np.abs(votes - values[np.newaxis, :]) <= tolerance).mean(axis=0)


def _class_probabilities(estimator: Any, frame: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    if not hasattr(estimator, "predict_proba"):
        raise TypeError("a classifier needs predict_proba")
    proba = np.asarray(estimator.predict_proba(frame), dtype=float)
    return proba, [str(c) for c in estimator.classes_]


def _classify(estimator: Any, frame: pd.DataFrame) -> list[RawOutput]:
    proba, classes = _class_probabilities(estimator, frame)
    best = proba.argmax(axis=1)
    outputs = []
    for row, index in zip(proba, best, strict=True):
        outputs.append(
            RawOutput(
                label=classes[index],
                confidence=float(row[index]),
                probabilities={c: round(float(p), 6) for c, p in zip(classes, row, strict=True)},
            )
        )
    return outputs


def _regression_arrays(
    estimator: Any, frame: pd.DataFrame, tolerance: float | None
) -> tuple[np.ndarray, np.ndarray | None]:
    values = np.asarray(estimator.predict(frame), dtype=float).reshape(-1)
    return values, _regression_confidence(estimator, frame, values, tolerance)


def _regress(estimator: Any, frame: pd.DataFrame, tolerance: float | None) -> list[RawOutput]:
    values, confidence = _regression_arrays(estimator, frame, tolerance)
    return [
        RawOutput(
            value=float(v),
            confidence=None if confidence is None else float(confidence[i]),
        )
        for i, v in enumerate(values)
    ]


def _score(estimator, frame, *, task_type: str, tolerance: float | None) -> list[RawOutput]:
    if task_type == "classification":
        return _classify(estimator, frame)
    return _regress(estimator, frame, tolerance)


def score_frame(
    estimator: Any,
    frame: pd.DataFrame,
    *,
    task_type: str,
    tolerance: float | None = None,
    interrupts: tuple[type[BaseException], ...] = (),
) -> list[RawOutput]:
    """Score every row. One call for the whole frame; if it raises, rows are retried one by one
    so that only the rows the model cannot handle become null outputs.

    ``interrupts`` are raised, never read as the model's failure: the caller's time ran out (a
    task's soft time limit), and scoring row by row would only run further past it.
    """
    started = time.perf_counter()
    try:
        outputs = _score(estimator, frame, task_type=task_type, tolerance=tolerance)
        per_row = (time.perf_counter() - started) * 1000 / max(len(frame), 1)
        return [_with_latency(o, per_row) for o in outputs]
    except Exception as batch_error:
        if isinstance(batch_error, interrupts):
            raise
        if len(frame) == 1:
            elapsed = (time.perf_counter() - started) * 1000
            return [RawOutput(error=_describe(batch_error), latency_ms=elapsed)]
    outputs = []
    for i in range(len(frame)):
        outputs.extend(
            score_frame(
                estimator,
                frame.iloc[i : i + 1],
                task_type=task_type,
                tolerance=tolerance,
                interrupts=interrupts,
            )
        )
    return outputs


def score_rows(
    estimator: Any,
    rows: Sequence[dict[str, Any]],
    features: Sequence[dict],
    *,
    task_type: str,
    tolerance: float | None = None,
    interrupts: tuple[type[BaseException], ...] = (),
) -> list[RawOutput]:
    """Score feature dicts as stored on items: the frame is built the way live traffic is.

    A row whose values cannot be read as its features' types (a number beyond a double, text
    where a number belongs, stored before the schema said otherwise) is a null output naming
    why; the other rows are scored as usual.
    """
    try:
        frame = features_frame(rows, features)
    except Exception:
        return _score_readable_rows(
            estimator,
            rows,
            features,
            task_type=task_type,
            tolerance=tolerance,
            interrupts=interrupts,
        )
    return score_frame(
        estimator, frame, task_type=task_type, tolerance=tolerance, interrupts=interrupts
    )


def _score_readable_rows(
    estimator: Any,
    rows: Sequence[dict[str, Any]],
    features: Sequence[dict],
    *,
    task_type: str,
    tolerance: float | None,
    interrupts: tuple[type[BaseException], ...],
) -> list[RawOutput]:
    outputs: list[RawOutput | None] = []
    readable: list[dict[str, Any]] = []
    for row in rows:
        try:
            features_frame([row], features)
        except Exception as exc:
            outputs.append(RawOutput(error=f"features could not be read: {_describe(exc)}"))
        else:
            outputs.append(None)
            readable.append(row)
    scored = iter(
        score_frame(
            estimator,
            features_frame(readable, features),
            task_type=task_type,
            tolerance=tolerance,
            interrupts=interrupts,
        )
        if readable
        else []
    )
    return [output if output is not None else next(scored) for output in outputs]


def _with_latency(output: RawOutput, latency_ms: float) -> RawOutput:
    return RawOutput(
        label=output.label,
        value=output.value,
        confidence=output.confidence,
        probabilities=output.probabilities,
        error=output.error,
        latency_ms=round(latency_ms, 4),
    )


def _describe(error: Exception) -> str:
    text = f"{type(error).__name__}: {error}"
    return text[:1000]


def finite_or_none(number: float | None) -> float | None:
    if number is None or not math.isfinite(number):
        return None
    return number


@dataclass(frozen=True)
class ScoredColumns:
    """A whole frame's outputs as columns (for backtests over many rows): ``labels`` (objects)
    or ``values`` (floats), ``confidence`` (NaN where the model gives none) and ``errors``
    (an empty string where the row scored)."""

    labels: np.ndarray | None
    values: np.ndarray | None
    confidence: np.ndarray
    errors: np.ndarray


def score_columns(
    estimator: Any, frame: pd.DataFrame, *, task_type: str, tolerance: float | None = None
) -> ScoredColumns:
    """Score every row in one vectorised call without building an output object per row;
    when the call raises, fall back to ``score_frame`` so only the failing rows are lost."""
    n = len(frame)
    no_errors = np.full(n, "", dtype=object)
    try:
        if task_type == "classification":
            proba, classes = _class_probabilities(estimator, frame)
            best = proba.argmax(axis=1)
            return ScoredColumns(
                labels=np.asarray(classes, dtype=object)[best],
                values=None,
                confidence=proba[np.arange(n), best],
                errors=no_errors,
            )
        values, confidence = _regression_arrays(estimator, frame, tolerance)
        return ScoredColumns(
            labels=None,
            values=values,
            confidence=np.full(n, np.nan) if confidence is None else confidence.astype(float),
            errors=no_errors,
        )
    except Exception:
        outputs = score_frame(estimator, frame, task_type=task_type, tolerance=tolerance)
    classification = task_type == "classification"
    return ScoredColumns(
        labels=np.asarray([o.label for o in outputs], dtype=object) if classification else None,
        values=None
        if classification
        else np.asarray([np.nan if o.value is None else o.value for o in outputs], dtype=float),
        confidence=np.asarray(
            [np.nan if o.confidence is None else o.confidence for o in outputs], dtype=float
        ),
        errors=np.asarray([o.error for o in outputs], dtype=object),
    )
