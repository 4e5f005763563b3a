"""Reference statistics of a model's training data, and drift against them (PSI).

The snapshot is stored with the model version as JSON so drift can be checked later without
the training data: per feature the missing rate, moments, quantiles and a histogram on
quantile bins (numeric), or category frequencies (categorical); plus a few sample rows that
the upload check scores to prove the model runs in this environment.

pandas is imported by the one function that needs it (an upload's statistics): drift is read
from plain arrays by processes that never see a DataFrame.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from deployments.ml.scoring import NUMERIC_TYPES

if TYPE_CHECKING:
    import pandas as pd

QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
PSI_BINS = 10
PSI_EPSILON = 1e-4
MAX_CATEGORIES = 50


def _json_number(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _numeric_stats(series: pd.Series) -> dict[str, Any]:
    import pandas as pd

    values = pd.to_numeric(series, errors="coerce").to_numpy(dtype=float)
    present = values[~np.isnan(values)]
    stats: dict[str, Any] = {
        "kind": "numeric",
        "missing_rate": 1 - len(present) / len(values) if len(values) else None,
    }
    if len(present) == 0:
        return stats
    edges = np.unique(np.quantile(present, np.linspace(0, 1, PSI_BINS + 1)[1:-1]))
    stats.update(
        mean=_json_number(present.mean()),
        std=_json_number(present.std(ddof=1) if len(present) > 1 else 0.0),
        min=_json_number(present.min()),
        max=_json_number(present.max()),
        quantiles={
            f"p{round(q * 100):02d}": _json_number(np.quantile(present, q)) for q in QUANTILES
        },
        bin_edges=[float(e) for e in edges],
        bin_fractions=numeric_bin_fractions(present, edges).tolist(),
    )
    return stats


def _categorical_stats(series: pd.Series) -> dict[str, Any]:
    present = series.dropna().astype(str)
    frequencies = present.value_counts(normalize=True).head(MAX_CATEGORIES)
    return {
        "kind": "categorical",
        "missing_rate": 1 - len(present) / len(series) if len(series) else None,
        "categories": {str(k): float(v) for k, v in frequencies.items()},
    }


def reference_stats_compute(
    frame: pd.DataFrame, features: Sequence[dict], *, sample_rows: int = 20
) -> dict[str, Any]:
    stats: dict[str, Any] = {"rows": len(frame), "features": {}}
    for spec in features:
        name = spec["name"]
        if name not in frame:
            continue
        if spec["type"] in NUMERIC_TYPES:
            stats["features"][name] = _numeric_stats(frame[name])
        else:
            stats["features"][name] = _categorical_stats(frame[name])
    sample = frame.head(sample_rows).astype(object).where(frame.head(sample_rows).notna(), None)
    stats["sample"] = [
        {
            k: (_json_number(v) if isinstance(v, int | float | np.number) else v)
            for k, v in row.items()
        }
        for row in sample.to_dict(orient="records")
    ]
    return stats


def numeric_bin_fractions(values: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """Share of values in each of the len(edges) + 1 bins that the inner edges make."""
    values = values[~np.isnan(values)]
    counts = np.bincount(
        np.searchsorted(np.asarray(edges), values, side="right"), minlength=len(edges) + 1
    )
    return counts / max(len(values), 1)


def psi(expected: Sequence[float], actual: Sequence[float]) -> float:
    """Population stability index between two binned distributions.

    Both are clipped at a small epsilon so an empty bin does not make the index infinite.
    The usual reading: < 0.1 stable, 0.1-0.25 moderate shift, > 0.25 major shift.
    """
    e = np.clip(np.asarray(expected, dtype=float), PSI_EPSILON, None)
    a = np.clip(np.asarray(actual, dtype=float), PSI_EPSILON, None)
    return float(np.sum((a - e) * np.log(a / e)))


def feature_psi(spec: dict, present: Sequence[Any], reference: dict | None) -> float | None:
    """PSI of one feature's present (non-missing) values against its reference statistics;
    None when there is no reference for it or no value to compare."""
    if not reference or not present:
        return None
    if spec["type"] in NUMERIC_TYPES and "bin_edges" in reference:
        actual = numeric_bin_fractions(np.asarray(present, dtype=float), reference["bin_edges"])
        return psi(reference["bin_fractions"], actual)
    if reference.get("kind") != "categorical":
        return None
    categories = list(reference["categories"])
    counts = dict.fromkeys(categories, 0)
    other = 0
    for value in present:
        if str(value) in counts:
            counts[str(value)] += 1
        else:
            other += 1
    # Categories beyond the reference's top ones share one "other" bin on both sides.
    expected = [reference["categories"][c] for c in categories] + [
        max(0.0, 1 - sum(reference["categories"].values()))
    ]
    actual = [counts[c] / len(present) for c in categories] + [other / len(present)]
    return psi(expected, actual)


def features_psi(
    rows: Sequence[dict], features: Sequence[dict], reference_stats: dict
) -> dict[str, float | None]:
    """PSI per feature of ``rows`` (feature dicts) against a model's reference statistics."""
    by_name = reference_stats.get("features", {}) if reference_stats else {}
    result = {}
    for spec in features:
        name = spec["name"]
        present = [value for row in rows if (value := row.get(name)) is not None]
        result[name] = feature_psi(spec, present, by_name.get(name))
    return result
