"""What each confidence threshold costs a day, in people and in errors, and the threshold to
recommend. Pure: counts and costs in, figures out (no Django, no clock).

The inputs are a backtest's curve (for each threshold, how many of the window's items the model
would have decided alone, and what it got wrong), the recent arrival rate, what a wrong automated
decision costs, what a human review costs and how many reviews the team can do a day.

For a threshold ``t``, with ``n`` items in the window and ``A_t`` of them automated:

* model items a day = arrivals × traffic × A_t / n; the rest go to people (a double-reviewed
  share of them twice), and an audited share of the automated ones comes back to them too;
* error cost a day = arrivals × (the window's error cost at ``t``) / n. Its 95% interval: for
  classification, the wider of two: the Wilson interval of the window's share of wrong
  automated items times the mean cost of one of those errors (Wilson stays honest with few or
  no errors, where a normal approximation collapses to a width of zero), and the normal
  interval on the mean cost per item from the counts of each kind of mistake (which also
  carries the uncertainty of the mix when some mistakes cost far more than others); for
  regression, the normal interval on the mean cost per item from the sums of absolute and
  squared errors;
* review cost a day = human reviews a day × minutes per review / 60 × the hourly cost.

The recommendation is the threshold with the least expected total cost among those whose error
rate stays under the ceiling and whose human work fits the team; ties go to the higher
threshold (less automation). It is advice: nothing here changes a policy.

Where a use case stands today depends on its level as well as its threshold: below ``partial``
the model decides nothing, at ``full`` it decides whatever it scores (``position_now``).
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from deployments.policy.routing import Level

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
    double_review_rate: float = 0.0  # share of reviewed items a second person reviews blind


@dataclass(frozen=True)
class ThresholdCosts:
    thresholds: list[float]
    model_per_day: list[float]
    human_per_day: list[float]  # reviews a day: items for people plus audits
    error_rate: list[float | None]  # of automated items (None where none is automated)
    error_cost: list[float]
    error_cost_low: list[float]
    error_cost_high: list[float]
    review_cost: list[float]
    total: list[float]
    fits_capacity: list[bool]  # all True when capacity is unknown
    meets_ceiling: list[bool]  # all True without a ceiling
    note: str = ""  # what the figures had to assume

    def at(self, threshold: float) -> int:
        """The index of the curve's threshold nearest to ``threshold``."""
        return min(range(len(self.thresholds)), key=lambda i: abs(self.thresholds[i] - threshold))


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


def _wilson(successes: float, n: int) -> tuple[float, float]:
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    z2 = Z95**2
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 * math.sqrt(max(p * (1 - p) / n + z2 / (4 * n * n), 0.0)) / (1 + z2 / n)
    return max(centre - half, 0.0), min(centre + half, 1.0)


def _classification_window_costs(curve: BacktestCurve, settings: CostSettings):
    """Per threshold: the window's total error cost, and the note on what was assumed."""
    base = settings.error_cost if settings.error_cost is not None else 0.0
    totals = [e * base for e in curve.errors]
    if settings.pair_costs and curve.wrong_pairs is None:
        return (
            totals,
            "this backtest has no label pairs: every error costs error_cost; run a new one",
        )
    for pair, cost in settings.pair_costs.items():
        counts = (curve.wrong_pairs or {}).get(tuple(pair))
        if counts is not None:
            totals = [t + c * (cost - base) for t, c in zip(totals, counts, strict=True)]
    if settings.error_cost is None:
        return totals, "mistakes without a pair cost count as free (error_cost is empty)"
    return totals, ""


def _classification_window_squares(curve: BacktestCurve, settings: CostSettings) -> list[float]:
    """Per threshold: the sum over the window's wrong automated items of their cost squared
    (priced as ``_classification_window_costs`` prices them)."""
    base = settings.error_cost if settings.error_cost is not None else 0.0
    squares = [e * base * base for e in curve.errors]
    for pair, cost in settings.pair_costs.items():
        counts = (curve.wrong_pairs or {}).get(tuple(pair))
        if counts is not None:
            squares = [
                q + c * (cost * cost - base * base) for q, c in zip(squares, counts, strict=True)
            ]
    return squares


def _normal(total: float, squares: float, n: int) -> tuple[float, float]:
    """The normal 95% interval of the mean cost per item, from the sums of the item costs and
    of their squares over ``n`` items (zero for items without an error)."""
    if n <= 0:
        return 0.0, 0.0
    mean = total / n
    spread = Z95 * math.sqrt(max(squares / n - mean * mean, 0.0) / n)
    return max(mean - spread, 0.0), mean + spread


def _error_intervals(curve: BacktestCurve, settings: CostSettings, window: list[float]):
    """The 95% interval of each threshold's daily error cost (see the module's doc)."""
    n = curve.items
    scale = settings.arrivals_per_day * settings.traffic_share
    if settings.regression:
        unit = settings.error_cost or 0.0
        intervals = []
        for sums, squares in zip(curve.abs_error, curve.abs_error_sq, strict=True):
            low, high = _normal(sums * unit, squares * unit * unit, n)
            intervals.append((low * scale, high * scale))
        return intervals
    fallback = settings.error_cost
    if fallback is None:
        fallback = max(settings.pair_costs.values(), default=0.0)
    squares = _classification_window_squares(curve, settings)
    intervals = []
    for errors, cost, square in zip(curve.errors, window, squares, strict=True):
        per_error = cost / errors if errors else fallback
        low, high = _wilson(errors, n)
        normal_low, normal_high = _normal(cost, square, n)
        intervals.append(
            (
                min(low * per_error, normal_low) * scale,
                max(high * per_error, normal_high) * scale,
            )
        )
    return intervals


def threshold_costs(curve: BacktestCurve, settings: CostSettings) -> ThresholdCosts | None:
    """Every threshold's daily figures, or None when a needed cost is missing or the curve
    cannot price errors (a regression backtest without error sums)."""
    if costs_missing(settings):
        return None
    if settings.regression and (curve.abs_error is None or curve.abs_error_sq is None):
        return None
    n = max(int(curve.items), 0)
    per_item = settings.arrivals_per_day / n if n else 0.0
    share = settings.traffic_share
    if settings.regression:
        window = [a * (settings.error_cost or 0.0) for a in curve.abs_error]
        note = ""
    else:
        window, note = _classification_window_costs(curve, settings)
    intervals = _error_intervals(curve, settings, window)
    review_each = settings.review_minutes / 60.0 * settings.hourly_cost
    ceiling, capacity = settings.error_rate_ceiling, settings.capacity_per_day
    columns: dict[str, list] = {name: [] for name in ThresholdCosts.__dataclass_fields__}
    columns.pop("note")
    for k, threshold in enumerate(curve.thresholds):
        automated, errors = curve.automated[k], curve.errors[k]
        model = automated * per_item * share
        human = (settings.arrivals_per_day - model) * (
            1 + settings.double_review_rate
        ) + model * settings.audit_rate
        error_cost = window[k] * per_item * share
        low, high = intervals[k]
        review = human * review_each
        row = {
            "thresholds": float(threshold),
            "model_per_day": model,
            "human_per_day": human,
            "error_rate": errors / automated if automated else None,
            "error_cost": error_cost,
            "error_cost_low": min(low, error_cost),
            "error_cost_high": max(high, error_cost),
            "review_cost": review,
            "total": error_cost + review,
            "fits_capacity": capacity is None or human <= capacity + 1e-9,
            "meets_ceiling": ceiling is None or not automated or errors <= ceiling * automated,
        }
        for name, value in row.items():
            columns[name].append(value)
    return ThresholdCosts(**columns, note=note)


def _money(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 10 else f"{value:,.2f}"


def _per_day(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 else f"{value:,.1f}"


def recommend(costs: ThresholdCosts, settings: CostSettings) -> Recommendation:
    """The threshold to suggest, with its reason in one sentence (see the module's doc)."""
    indices = range(len(costs.thresholds))
    ceiling = settings.error_rate_ceiling
    under = f"whose error rate stays under {ceiling:.1%}" if ceiling is not None else ""
    meeting = [i for i in indices if costs.meets_ceiling[i]]
    if not meeting:
        return Recommendation(
            None,
            None,
            f"No threshold keeps the error rate under {ceiling:.1%} in this backtest: "
            "keep people deciding, or improve the model.",
        )
    allowed = [i for i in meeting if costs.fits_capacity[i]]
    if not allowed:
        # Over capacity everywhere: the least human work that still meets the ceiling.
        best = min(meeting, key=lambda i: costs.human_per_day[i])
        return Recommendation(
            costs.thresholds[best],
            best,
            f"The team cannot keep up at any threshold {under or 'on this curve'}: "
            f"{costs.thresholds[best]:.2f} leaves the least human work, "
            f"{_per_day(costs.human_per_day[best])} reviews a day against a capacity of "
            f"{_per_day(settings.capacity_per_day or 0)}.",
        )
    # The least total; among equals (to a cent), the highest threshold.
    least = min(costs.total[i] for i in allowed)
    best = max(i for i in allowed if costs.total[i] <= least + 0.005)
    conditions = [c for c in (under, _fits_clause(costs, settings, best)) if c]
    return Recommendation(
        costs.thresholds[best],
        best,
        f"{costs.thresholds[best]:.2f} costs {_money(costs.total[best])} a day "
        f"(errors {_money(costs.error_cost[best])}, reviews {_money(costs.review_cost[best])}), "
        f"the least of the {len(allowed)} thresholds"
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


@dataclass(frozen=True)
class Position:
    """A use case's daily figures where it stands today."""

    threshold: float
    index: int | None  # the curve's row; None when the level keeps every item with people
    model_per_day: float
    human_per_day: float
    error_cost: float
    error_cost_low: float
    error_cost_high: float
    review_cost: float
    total: float
    fits_capacity: bool


def position_now(
    costs: ThresholdCosts, settings: CostSettings, *, threshold: float, level: str
) -> Position:
    """Today's figures at ``level`` and ``threshold``: at ``partial``, the curve's row nearest the
    threshold; at ``full`` the model decides whatever it scores, whatever its confidence, so the
    curve's lowest threshold; below ``partial`` people review every item."""
    level = Level(level)
    if level in (Level.PARTIAL, Level.FULL):
        index = 0 if level is Level.FULL else costs.at(threshold)
        return Position(
            threshold=float(threshold),
            index=index,
            model_per_day=costs.model_per_day[index],
            human_per_day=costs.human_per_day[index],
            error_cost=costs.error_cost[index],
            error_cost_low=costs.error_cost_low[index],
            error_cost_high=costs.error_cost_high[index],
            review_cost=costs.review_cost[index],
            total=costs.total[index],
            fits_capacity=costs.fits_capacity[index],
        )
    human = settings.arrivals_per_day * (1 + settings.double_review_rate)
    review = human * (settings.review_minutes or 0.0) / 60.0 * (settings.hourly_cost or 0.0)
    capacity = settings.capacity_per_day
    return Position(
        threshold=float(threshold),
        index=None,
        model_per_day=0.0,
        human_per_day=human,
        error_cost=0.0,
        error_cost_low=0.0,
        error_cost_high=0.0,
        review_cost=review,
        total=review,
        fits_capacity=capacity is None or human <= capacity + 1e-9,
    )


def capacity_fit(
    costs: ThresholdCosts, settings: CostSettings, current: float, level: str = Level.PARTIAL
) -> dict | None:
    """When the human work where the use case stands today (``position_now``) exceeds capacity:
    the figures, and the threshold nearest ``current`` at which people would keep up (at
    ``partial``; None when none does within the error ceiling). None when it fits."""
    if settings.capacity_per_day is None:
        return None
    now = position_now(costs, settings, threshold=current, level=level)
    if now.fits_capacity:
        return None
    fitting = [
        i for i in range(len(costs.thresholds)) if costs.fits_capacity[i] and costs.meets_ceiling[i]
    ]
    index = costs.at(current)
    nearest = costs.thresholds[min(fitting, key=lambda i: abs(i - index))] if fitting else None
    return {
        "threshold": float(current),
        "level": str(Level(level)),
        "human_per_day": float(now.human_per_day),
        "capacity_per_day": float(settings.capacity_per_day),
        "fitting_threshold": nearest,
    }
