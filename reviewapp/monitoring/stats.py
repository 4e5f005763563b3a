"""Numbers that add up: fixed buckets and bins whose counts can be summed across hours and
read back as percentiles, drift and calibration. Pure NumPy, no Django."""

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from deployments.ml.reference import psi

# Latency and review-time buckets: bucket k holds (LOWEST * 2**((k-1)/4), LOWEST * 2**(k/4)]
# milliseconds, so any percentile read back is within 19% of the true one, from 1 microsecond
# to about 9 minutes; bucket 0 holds everything at or below 1 microsecond.
DURATION_LOWEST_MS = 0.001
DURATION_STEPS_PER_DOUBLING = 4
DURATION_BUCKETS = 116
CALIBRATION_BINS = 10
VALUE_BINS = 20
CLOSED_SET_COVERAGE = 0.99


def duration_bucket(ms: np.ndarray) -> np.ndarray:
    ms = np.maximum(np.asarray(ms, dtype=float), DURATION_LOWEST_MS)
    k = np.ceil(np.log2(ms / DURATION_LOWEST_MS) * DURATION_STEPS_PER_DOUBLING - 1e-9)
    return np.clip(k, 0, DURATION_BUCKETS - 1).astype(int)


def duration_bucket_bounds(k: int) -> tuple[float, float]:
    upper = DURATION_LOWEST_MS * 2 ** (k / DURATION_STEPS_PER_DOUBLING)
    lower = 0.0 if k == 0 else DURATION_LOWEST_MS * 2 ** ((k - 1) / DURATION_STEPS_PER_DOUBLING)
    return lower, upper


def duration_percentiles(
    buckets: Mapping[str, float], quantiles: Sequence[int] = (50, 95, 99)
) -> dict[str, float | None]:
    """Percentiles read back from bucket counts, interpolating inside the bucket (as
    Prometheus' histogram_quantile does)."""
    counts = sorted((int(k), float(n)) for k, n in buckets.items() if n)
    total = sum(n for _, n in counts)
    out: dict[str, float | None] = {}
    for q in quantiles:
        if not total:
            out[f"p{q}"] = None
            continue
        rank = q / 100 * total
        seen = 0.0
        for k, n in counts:
            if seen + n >= rank:
                lower, upper = duration_bucket_bounds(k)
                out[f"p{q}"] = lower + (upper - lower) * ((rank - seen) / n)
                break
            seen += n
    return out


def counts_add(target: dict, source: Mapping) -> dict:
    for key, value in source.items():
        target[key] = target.get(key, 0) + value
    return target


def counts_of(keys: np.ndarray) -> dict[str, int]:
    values, counts = np.unique(np.asarray(keys), return_counts=True)
    return {str(v): int(n) for v, n in zip(values, counts, strict=True)}


# --- predicted values (regression) -----------------------------------------------------------


def value_bin_width(*, value_min: float | None, value_max: float | None, tolerance) -> float:
    if value_min is not None and value_max is not None and value_max > value_min:
        return (value_max - value_min) / VALUE_BINS
    return 2 * tolerance if tolerance else 1.0


def value_bins(values: np.ndarray, *, value_min, value_max, tolerance) -> np.ndarray:
    """Bin index of each value: equal-width bins over the use case's value range, or bins of
    twice the tolerance when the range is open."""
    width = value_bin_width(value_min=value_min, value_max=value_max, tolerance=tolerance)
    origin = value_min if value_min is not None and value_max is not None else 0.0
    bins = np.floor((np.asarray(values, dtype=float) - origin) / width)
    if value_min is not None and value_max is not None:
        bins = np.clip(bins, 0, VALUE_BINS - 1)
    return bins.astype(int)


def value_bin_centre(index: int, *, value_min, value_max, tolerance) -> float:
    width = value_bin_width(value_min=value_min, value_max=value_max, tolerance=tolerance)
    origin = value_min if value_min is not None and value_max is not None else 0.0
    return origin + (index + 0.5) * width


def confidence_bins(confidence: np.ndarray) -> np.ndarray:
    return np.clip(np.floor(np.asarray(confidence) * CALIBRATION_BINS), 0, CALIBRATION_BINS - 1)


# --- features against a model's training reference -------------------------------------------


def feature_bins(reference: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The bins a feature is counted on, from one feature's reference statistics.

    Numbers: the inner edges are the training minimum, the PSI decile edges, the reference
    quantiles and (just above) the training maximum, so the first bin is "below the training
    range", the last "above it", the deciles are unions of bins (PSI) and the finer bins give
    better quantiles. Categories: the training categories, then one bin for any other value.
    """
    if not reference:
        return None
    if reference.get("kind") == "numeric" and reference.get("bin_edges") is not None:
        low, high = reference.get("min"), reference.get("max")
        if low is None or high is None:
            return None
        inner = [low, *reference["bin_edges"], *(reference.get("quantiles") or {}).values()]
        inner = [x for x in inner if x is not None and low <= x <= high]
        edges = sorted({float(x) for x in inner} | {float(np.nextafter(high, math.inf))})
        return {"kind": "numeric", "edges": edges, "deciles": list(reference["bin_edges"])}
    if reference.get("kind") == "categorical":
        categories = list(reference.get("categories") or {})
        coverage = sum((reference.get("categories") or {}).values())
        return {
            "kind": "categorical",
            "categories": categories,
            "closed": coverage >= CLOSED_SET_COVERAGE,
        }
    return None


def numeric_group_stats(
    values: np.ndarray, groups: np.ndarray, n_groups: int, edges: Sequence[float] | None
) -> dict[str, np.ndarray]:
    """Per group: rows, missing, sum, sum of squares, min, max and the histogram on ``edges``
    (len(edges) + 1 bins). ``values`` holds NaN for missing."""
    values = np.asarray(values, dtype=float)
    missing = np.isnan(values)
    present = ~missing
    x, g = values[present], groups[present]
    mins = np.full(n_groups, np.inf)
    maxs = np.full(n_groups, -np.inf)
    np.minimum.at(mins, g, x)
    np.maximum.at(maxs, g, x)
    out = {
        "rows": np.bincount(groups, minlength=n_groups),
        "missing": np.bincount(groups[missing], minlength=n_groups),
        "sum": np.bincount(g, weights=x, minlength=n_groups),
        "sum_sq": np.bincount(g, weights=x * x, minlength=n_groups),
        "min": mins,
        "max": maxs,
    }
    if edges is not None:
        width = len(edges) + 1
        index = np.searchsorted(np.asarray(edges, dtype=float), x, side="right")
        out["hist"] = np.bincount(g * width + index, minlength=n_groups * width).reshape(
            n_groups, width
        )
    return out


def categorical_group_stats(
    values: Sequence[Any], groups: np.ndarray, n_groups: int, categories: Sequence[str] | None
) -> dict[str, np.ndarray]:
    """Per group: rows, missing, and the histogram on ``categories`` plus one bin for others."""
    import pandas as pd

    values = np.asarray(values, dtype=object)
    # One pass of hashing gives each row the index of its distinct value (-1 when missing:
    # None, NaN); the few distinct values are then looked up among the categories. Looking
    # every row up among the categories took four times as long.
    codes, distinct = pd.factorize(values, use_na_sentinel=True)
    missing = codes < 0
    out = {
        "rows": np.bincount(groups, minlength=n_groups),
        "missing": np.bincount(groups[missing], minlength=n_groups),
    }
    if categories is not None:
        width = len(categories) + 1
        # Feature values are strings (the schema checks them), so they are looked up as they
        # are; anything else simply matches no training category.
        category_of = pd.Index([str(c) for c in categories], dtype=object).get_indexer(
            np.asarray(distinct, dtype=object)
        )
        category_of[category_of < 0] = len(categories)
        present = ~missing
        g = groups[present]
        out["hist"] = np.bincount(
            g * width + category_of[codes[present]], minlength=n_groups * width
        ).reshape(n_groups, width)
    return out


def numeric_quantiles(
    hist: Sequence[float], edges: Sequence[float], low: float, high: float, qs=(5, 25, 50, 75, 95)
) -> dict[str, float | None]:
    """Quantiles read back from the histogram, interpolating linearly inside each bin; the
    open end bins are closed by the observed minimum and maximum."""
    counts = np.asarray(hist, dtype=float)
    total = counts.sum()
    if not total or low is None or high is None:
        return {f"p{q:02d}": None for q in qs}
    bounds = [low, *edges, high]
    out = {}
    cumulative = np.cumsum(counts)
    for q in qs:
        rank = q / 100 * total
        j = int(np.searchsorted(cumulative, rank, side="left"))
        j = min(j, len(counts) - 1)
        before = cumulative[j - 1] if j else 0.0
        lo = min(max(bounds[j], low), high)
        hi = min(max(bounds[j + 1], low), high)
        share = (rank - before) / counts[j] if counts[j] else 0.0
        out[f"p{q:02d}"] = float(lo + (hi - lo) * share)
    return out


def psi_numeric(hist: Sequence[float], bins: Mapping[str, Any], reference: Mapping) -> float | None:
    """PSI on the reference deciles: each fine bin falls inside exactly one decile."""
    counts = np.asarray(hist, dtype=float)
    if counts.sum() == 0:
        return None
    deciles = np.asarray(bins["deciles"], dtype=float)
    lower_edges = np.asarray([-math.inf, *bins["edges"]])
    decile_of_bin = np.searchsorted(deciles, lower_edges, side="right")
    actual = np.bincount(decile_of_bin, weights=counts, minlength=len(deciles) + 1)
    return psi(reference["bin_fractions"], actual / counts.sum())


def psi_categorical(hist: Sequence[float], reference: Mapping) -> float | None:
    counts = np.asarray(hist, dtype=float)
    if counts.sum() == 0:
        return None
    frequencies = list((reference.get("categories") or {}).values())
    expected = [*frequencies, max(0.0, 1 - sum(frequencies))]
    return psi(expected, counts / counts.sum())
