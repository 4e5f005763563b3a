"""When a rate guardrail may say "breached" or "holding": a sequential test, pure Python.

A rate guardrail watches a stream of yes/no observations (overridden or not, null or not, the
audit found the model wrong or not) against a limit ``p0``. Two rules may call a breach, and
each is given half of the false-alarm budget ``alpha``, so that **a check of a window whose
true rate is at or under the limit breaches with probability at most ``alpha``** (per check;
below the limit far less):

- a one-sided Bernoulli CUSUM over the window's observations in arrival order (the repeated
  SPRT of H0: rate = ``p0`` against H1: rate = ``p1`` = limit + margin). Each observation adds
  its log-likelihood ratio, the sum never goes below 0, and a breach is the sum reaching ``h``.
  It catches a *change* inside the window quickly, because it forgets the good traffic before
  the change instead of averaging it in. ``h`` is set from Siegmund's approximation of the
  in-control average run length (ARL0 ~ (e^h - h - 1) / KL(p0 || p1), which ignores the
  overshoot and so errs on the safe side) such that a window of ``window`` observations at the
  limit crosses it with probability ``alpha / 2`` (run lengths are close to geometric);
- a fixed-sample rule: the one-sided ``1 - alpha / 2`` Wilson lower bound of the window's
  rate is above the limit.

A guardrail *holds* (vouches for a ramp step) only when the Wilson upper bound at
``confidence`` is under the limit; between the two it is *watching*: not shown to be over, not
shown to be under. A handful of bad items can never breach: neither rule moves far on a few
observations, and callers refuse to judge below ``min_sample``.

The detection delay shown next to each guardrail is the median (and 90th percentile) number of
observations the CUSUM takes to reach ``h`` once the rate sits at ``p1``, starting from 0 (where
it rests while the rate is under the limit). It is computed exactly on a fine grid of the CUSUM
statistic (a Markov chain, no random draws), once per configuration.

No Django, clock, I/O or random numbers here (``tests/deployments/test_policy_purity``).
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from statistics import NormalDist

from deployments.statistics.evidence import Estimate, wilson

DEFAULT_ALPHA = 0.001
DEFAULT_CONFIDENCE = 0.95
# The CUSUM statistic is tracked on this many cells between 0 and the threshold.
GRID_CELLS = 120
# The delay computation stops here: a change this slow to show is reported as "more than".
DELAY_HORIZON = 20_000


def default_margin(limit: float) -> float:
    """H1 is twice the limit (at least one point above a zero limit), kept well under 1."""
    return min(max(limit, 0.01), (1.0 - limit) / 2)


def one_sided_z(alpha: float) -> float:
    return NormalDist().inv_cdf(1.0 - alpha)


def two_sided_z(confidence: float) -> float:
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


def _xlogy(x: float, y: float) -> float:
    return 0.0 if x == 0 else x * math.log(y)


def kl_bernoulli(p: float, q: float) -> float:
    """Kullback-Leibler divergence of Bernoulli(q) from Bernoulli(p), in nats."""
    return _xlogy(p, p) - _xlogy(p, q) + _xlogy(1 - p, 1 - p) - _xlogy(1 - p, 1 - q)


def llr_steps(p0: float, p1: float) -> tuple[float, float]:
    """The CUSUM's step for an event and for a non-event (log p1/p0, log q1/q0), for
    0 <= p0 < p1 < 1; with p0 = 0 one event proves the rate is above the limit (an infinite
    step)."""
    up = math.inf if p0 == 0 else math.log(p1 / p0)
    return up, math.log((1 - p1) / (1 - p0))


@lru_cache(maxsize=256)
def cusum_threshold(p0: float, p1: float, alpha: float, window: int) -> float:
    """``h`` such that a window of ``window`` observations at rate ``p0`` reaches it with
    probability about ``alpha`` (see the module docstring)."""
    if p0 == 0:
        return 1.0  # one event is decisive (an infinite step); any finite h will do
    arl0 = window / -math.log1p(-alpha)
    target = arl0 * kl_bernoulli(p0, p1)
    low, high = 0.0, 1.0
    while math.expm1(high) - high < target:
        high *= 2
    for _ in range(60):
        middle = (low + high) / 2
        if math.expm1(middle) - middle < target:
            low = middle
        else:
            high = middle
    return high


def cusum_peak(outcomes: Sequence[bool], *, p0: float, p1: float) -> float:
    """The highest value the CUSUM reaches over ``outcomes`` (oldest first), starting at 0."""
    up, down = llr_steps(p0, p1)
    statistic = peak = 0.0
    for event in outcomes:
        statistic = max(0.0, statistic + (up if event else down))
        peak = max(peak, statistic)
    return peak


@dataclass(frozen=True, slots=True)
class Delay:
    """Observations from a change to the rate ``p1`` until the CUSUM breaches."""

    median: int | None  # None: not within DELAY_HORIZON
    p90: int | None


def _spread(position: float, cells: int) -> tuple[tuple[int, float], ...]:
    """Mass landing at ``position`` (in cells), split between the two nearest cells so that
    the mean move is kept; -1 stands for the alarm (at or past the threshold)."""
    if position >= cells:
        return ((-1, 1.0),)
    position = max(position, 0.0)
    below = math.floor(position)
    share = position - below
    parts = [(below, 1.0 - share)]
    if share > 0:
        parts.append((-1 if below + 1 >= cells else below + 1, share))
    return tuple(parts)


@lru_cache(maxsize=256)
def detection_delay(p0: float, p1: float, threshold: float, rate: float | None = None) -> Delay:
    """The run length of the CUSUM (``p0`` against ``p1``, threshold ``h``) from 0 when every
    observation is an event with probability ``rate`` (``p1`` unless given)."""
    rate = p1 if rate is None else rate
    up, down = llr_steps(p0, p1)
    if math.isinf(up):
        # Decisive events: the run length is geometric in the rate.
        return _geometric_delay(rate)
    cells = GRID_CELLS
    width = threshold / cells
    moves = []
    for cell in range(cells):
        on_event = _spread(cell + up / width, cells)
        on_other = _spread(cell + down / width, cells)
        moves.append(
            tuple((to, rate * w) for to, w in on_event)
            + tuple((to, (1 - rate) * w) for to, w in on_other)
        )
    mass = [0.0] * cells
    mass[0] = 1.0
    alarmed = 0.0
    median = p90 = None
    for step in range(1, DELAY_HORIZON + 1):
        following = [0.0] * cells
        now = 0.0
        for cell, weight in enumerate(mass):
            if weight < 1e-15:
                continue
            for to, share in moves[cell]:
                if to < 0:
                    now += weight * share
                else:
                    following[to] += weight * share
        mass = following
        alarmed += now
        if median is None and alarmed >= 0.5:
            median = step
        if alarmed >= 0.9:
            p90 = step
            break
    return Delay(median, p90)


def _geometric_delay(rate: float) -> Delay:
    if rate <= 0:
        return Delay(None, None)
    if rate >= 1:
        return Delay(1, 1)
    median, p90 = (max(1, math.ceil(math.log1p(-q) / math.log1p(-rate))) for q in (0.5, 0.9))
    return Delay(median, p90)


# --- the rule ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RateTest:
    """One rate guardrail's test: limit ``p0``, the rate ``p1`` it is tuned to catch fast, the
    per-check false-alarm budget ``alpha`` and the confidence a hold needs."""

    p0: float
    p1: float
    alpha: float
    confidence: float
    window: int

    @property
    def threshold(self) -> float:
        return cusum_threshold(self.p0, self.p1, self.alpha / 2, self.window)

    def delay(self) -> Delay:
        return detection_delay(self.p0, self.p1, self.threshold)


@dataclass(frozen=True, slots=True)
class RateJudgement:
    verdict: str  # "breached", "holding" or "watching"
    estimate: Estimate  # the rate with its interval at ``confidence``
    because: str  # which rule breached ("trend" for the CUSUM, "level" for Wilson), or ""


def rate_judge(test: RateTest, outcomes: Sequence[bool] | None, events: int, total: int):
    """Judge a window of ``total`` observations, ``events`` of them events; ``outcomes`` (oldest
    first) when the order is known, so the CUSUM can run (without it only Wilson judges)."""
    shown = wilson(events, total, two_sided_z(test.confidence))
    if test.p0 >= 1:
        return RateJudgement("holding", shown, "")  # no rate can be above 1
    strict = wilson(events, total, one_sided_z(test.alpha / 2))
    if strict.low is not None and strict.low > test.p0:
        return RateJudgement("breached", shown, "level")
    if outcomes is not None and cusum_peak(outcomes, p0=test.p0, p1=test.p1) >= test.threshold:
        return RateJudgement("breached", shown, "trend")
    if shown.high is not None and shown.high < test.p0:
        return RateJudgement("holding", shown, "")
    return RateJudgement("watching", shown, "")
