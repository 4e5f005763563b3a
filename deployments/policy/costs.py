"""What each confidence threshold costs a day, in people and in errors, and the threshold to
recommend. Pure: counts and costs in, figures out (no Django, no clock).

The inputs are a backtest's curve (for each threshold, how many of the window's items the model
would have decided alone, and what it got wrong), the recent arrival rate, what a wrong automated
decision costs, what a human review costs and how many reviews the team can do a day.

For a threshold ``t``, with ``n`` items in the window and ``A_t`` of them automated:

* model items a day = arrivals × traffic × A_t / n; the rest go to people, and an audited share
  of the automated ones comes back to them too;
* error cost a day = arrivals × (the window's error cost at ``t``) / n. Its 95% interval: for
  classification, the Wilson interval of the window's share of wrong automated items times the
  mean cost of one of those errors (the counts are what is uncertain; Wilson stays honest with
  few or no errors, where a normal approximation collapses to a width of zero); for regression,
  a normal interval on the mean cost per item from the sums of absolute and squared errors;
* review cost a day = human reviews a day × minutes per review / 60 × the hourly cost.

The recommendation is the threshold with the least expected total cost among those whose error
rate stays under the ceiling and whose human work fits the team; ties go to the higher
threshold (less automation). It is advice: nothing here changes a policy.
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

Z95 = 1.959963984540054


@dataclass(frozen=True)
class BacktestCurve:
    """A backtest's counts per threshold (thresholds ascending, counts non-increasing)."""

    thresholds: Sequence[float]
    items: int  # items in the window
    automated: Sequence[int]  # decided by the model alone at each threshold
    errors: Sequence[int]  # of those, wrong (beyond the tolerance, for regression)
    # Classification: wrong automated items per (true, predicted) label pair and threshold.
    wrong_pairs: Mapping[tuple[str, str], Sequence[int]] | None = None
    # Regression: sums of |error| and of error² over the automated items, per threshold.
    abs_error: Sequence[float] | None = None
    abs_error_sq: Sequence[float] | None = None


@dataclass(frozen=True)
class CostSettings:
    regression: bool
    error_cost: float | None  # per wrong decision, or per unit of absolute error (regression)
    pair_costs: Mapping[tuple[str, str], float] = field(default_factory=dict)
    review_minutes: float | None = None
    hourly_cost: float | None = None
    arrivals_per_day: float = 0.0
    capacity_per_day: float | None = None  # human reviews a day the team can do
    error_rate_ceiling: float | None = None
    traffic_share: float = 1.0  # the policy's traffic percent / 100
    audit_rate: float = 0.0  # share of automated items a person reviews afterwards


@dataclass(frozen=True)
class ThresholdCosts:
    thresholds: np.ndarray
    model_per_day: np.ndarray
    human_per_day: np.ndarray  # reviews a day: items for people plus audits
    error_rate: np.ndarray  # of automated items (nan where none is automated)
    error_cost: np.ndarray
    error_cost_low: np.ndarray
    error_cost_high: np.ndarray
    review_cost: np.ndarray
    total: np.ndarray
    fits_capacity: np.ndarray  # bool (all True when capacity is unknown)
    meets_ceiling: np.ndarray  # bool (all True without a ceiling)
    note: str = ""  # what the figures had to assume

    def at(self, threshold: float) -> int:
        """The index of the curve's threshold nearest to ``threshold``."""
        return int(np.argmin(np.abs(self.thresholds - threshold)))


@dataclass(frozen=True)
class Recommendation:
    threshold: float | None
    index: int | None
    reason: str


def costs_missing(settings: CostSettings) -> list[str]:
    """The settings the figures cannot do without (field names), in the order to fill them."""
    missing = []
    if settings.error_cost is None and not settings.pair_costs:
        missing.append("error_cost")
    if settings.review_minutes is None:
        missing.append("review_minutes")
    if settings.hourly_cost is None:
        missing.append("hourly_cost")
    return missing


def _wilson(successes: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    if n <= 0:
        zeros = np.zeros_like(successes, dtype=float)
        return zeros, np.ones_like(zeros)
    p = successes / n
    z2 = Z95**2
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 * np.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1)


def _classification_error_cost(curve: BacktestCurve, settings: CostSettings):
    """Per threshold: the window's total error cost, and the note on what was assumed."""
    errors = np.asarray(curve.errors, dtype=float)
    base = settings.error_cost if settings.error_cost is not None else 0.0
    note = ""
    if settings.pair_costs and curve.wrong_pairs is None:
        note = "this backtest has no label pairs: every error costs error_cost; run a new one"
        return errors * base, note
    total = errors * base
    for pair, cost in settings.pair_costs.items():
        counts = (curve.wrong_pairs or {}).get(tuple(pair))
        if counts is not None:
            total = total + np.asarray(counts, dtype=float) * (cost - base)
    if settings.error_cost is None:
        note = "mistakes without a pair cost count as free (error_cost is empty)"
    return total, note


def threshold_costs(curve: BacktestCurve, settings: CostSettings) -> ThresholdCosts | None:
    """Every threshold's daily figures, or None when a needed cost is missing or the curve
    cannot price errors (a regression backtest without error sums)."""
    if costs_missing(settings):
        return None
    thresholds = np.asarray(curve.thresholds, dtype=float)
    n = max(int(curve.items), 0)
    automated = np.asarray(curve.automated, dtype=float)
    errors = np.asarray(curve.errors, dtype=float)
    per_item = settings.arrivals_per_day / n if n else 0.0
    share = settings.traffic_share
    model = automated * per_item * share
    human = settings.arrivals_per_day - model + model * settings.audit_rate
    with np.errstate(invalid="ignore", divide="ignore"):
        error_rate = np.where(automated > 0, errors / automated, np.nan)
    note = ""
    if settings.regression:
        if curve.abs_error is None or curve.abs_error_sq is None:
            return None
        unit = settings.error_cost or 0.0
        sums = np.asarray(curve.abs_error, dtype=float) * unit
        squares = np.asarray(curve.abs_error_sq, dtype=float) * unit * unit
        mean = sums / n if n else np.zeros_like(sums)
        variance = np.maximum(squares / n - mean**2, 0.0) / n if n else np.zeros_like(sums)
        spread = Z95 * np.sqrt(variance)
        window_cost = sums
        low = np.maximum(mean - spread, 0.0) * settings.arrivals_per_day * share
        high = (mean + spread) * settings.arrivals_per_day * share
    else:
        window_cost, note = _classification_error_cost(curve, settings)
        low_share, high_share = _wilson(errors, n)
        fallback = settings.error_cost
        if fallback is None:
            fallback = max(settings.pair_costs.values(), default=0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            per_error = np.where(errors > 0, window_cost / errors, fallback)
        low = low_share * per_error * settings.arrivals_per_day * share
        high = high_share * per_error * settings.arrivals_per_day * share
    error_cost = window_cost * per_item * share
    review = human * settings.review_minutes / 60.0 * settings.hourly_cost
    if settings.capacity_per_day is None:
        fits = np.ones_like(thresholds, dtype=bool)
    else:
        fits = human <= settings.capacity_per_day + 1e-9
    if settings.error_rate_ceiling is None:
        meets = np.ones_like(thresholds, dtype=bool)
    else:
        meets = np.where(automated > 0, errors <= settings.error_rate_ceiling * automated, True)
    return ThresholdCosts(
        thresholds=thresholds,
        model_per_day=model,
        human_per_day=human,
        error_rate=error_rate,
        error_cost=error_cost,
        error_cost_low=np.minimum(low, error_cost),
        error_cost_high=np.maximum(high, error_cost),
        review_cost=review,
        total=error_cost + review,
        fits_capacity=fits,
        meets_ceiling=meets,
        note=note,
    )


def _money(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 10 else f"{value:,.2f}"


def _per_day(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 else f"{value:,.1f}"


def recommend(costs: ThresholdCosts, settings: CostSettings) -> Recommendation:
    """The threshold to suggest, with its reason in one sentence (see the module's doc)."""
    meets = costs.meets_ceiling
    ceiling = settings.error_rate_ceiling
    under = f"whose error rate stays under {ceiling:.1%}" if ceiling is not None else ""
    if not meets.any():
        return Recommendation(
            None,
            None,
            f"No threshold keeps the error rate under {ceiling:.1%} in this backtest: "
            "keep people deciding, or improve the model.",
        )
    allowed = meets & costs.fits_capacity
    if not allowed.any():
        # Over capacity everywhere: the least human work that still meets the ceiling.
        candidates = np.flatnonzero(meets)
        best = int(candidates[np.argmin(costs.human_per_day[candidates])])
        return Recommendation(
            float(costs.thresholds[best]),
            best,
            f"The team cannot keep up at any threshold {under or 'on this curve'}: "
            f"{costs.thresholds[best]:.2f} leaves the least human work, "
            f"{_per_day(costs.human_per_day[best])} reviews a day against a capacity of "
            f"{_per_day(settings.capacity_per_day or 0)}.",
        )
    candidates = np.flatnonzero(allowed)
    totals = costs.total[candidates]
    # The least total; among equals (to a cent), the highest threshold.
    least = totals.min()
    best = int(candidates[np.flatnonzero(totals <= least + 0.005)[-1]])
    conditions = [c for c in (under, _fits_clause(costs, settings, best)) if c]
    return Recommendation(
        float(costs.thresholds[best]),
        best,
        f"{costs.thresholds[best]:.2f} costs {_money(costs.total[best])} a day "
        f"(errors {_money(costs.error_cost[best])}, reviews {_money(costs.review_cost[best])}), "
        f"the least of the {len(candidates)} thresholds"
        + (f" {' and '.join(conditions)}" if conditions else "")
        + ".",
    )


def _fits_clause(costs: ThresholdCosts, settings: CostSettings, index: int) -> str:
    if settings.capacity_per_day is None:
        return ""
    return (
        f"whose human work fits the team ({_per_day(costs.human_per_day[index])} reviews a day "
        f"of {_per_day(settings.capacity_per_day)})"
    )


def capacity_fit(costs: ThresholdCosts, settings: CostSettings, current: float) -> dict | None:
    """When the human work at the ``current`` threshold exceeds capacity: the figures, and the
    nearest threshold that would fit (None when none does). None when it fits."""
    if settings.capacity_per_day is None:
        return None
    index = costs.at(current)
    if costs.fits_capacity[index]:
        return None
    fitting = np.flatnonzero(costs.fits_capacity & costs.meets_ceiling)
    nearest = None
    if fitting.size:
        nearest = float(costs.thresholds[fitting[np.argmin(np.abs(fitting - index))]])
    return {
        "threshold": float(costs.thresholds[index]),
        "human_per_day": float(costs.human_per_day[index]),
        "capacity_per_day": float(settings.capacity_per_day),
        "fitting_threshold": nearest,
    }


def finite_or_none(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)
