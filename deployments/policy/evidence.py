"""The evidence behind a rate: sample sizes and 95% intervals, pure Python.

Every rate or error figure the app shows comes from here with its ``n`` and its interval, so a
manager never reads a bare percentage built on three items:

- proportions (override rate, accuracy, audit error rate) get the Wilson score interval, which
  keeps its coverage near 95% for small ``n`` and rates near 0 or 1, where the textbook Wald
  interval collapses to a point;
- means (MSE, MAE) get a Student-t interval from the sums the rollups keep (n, Σx, Σx²);
- figures estimated under routing (the model's accuracy when humans only see some items) are
  stratified by how the items were sampled, each stratum weighted by its known sampling
  probability (inverse-propensity weighting), with the variance of a stratified sample.

No Django, clock or I/O here (``tests/deployments/test_policy_purity`` checks it).
"""

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

Z95 = 1.959963984540054
# Below this many observations a figure is shown as "too few items", not as a percentage.
MIN_EVIDENCE = 30

# Two-sided 97.5% quantiles of Student's t for 1..30 degrees of freedom.
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Estimate:
    """A figure with its evidence. ``value``/``low``/``high`` are None when ``n`` is 0."""

    value: float | None
    low: float | None
    high: float | None
    n: int
    method: str  # "wilson", "t", "stratified", "none"
    min_n: int = MIN_EVIDENCE

    @property
    def too_few(self) -> bool:
        return self.n < self.min_n

    def as_dict(self) -> dict:
        return {
            "value": self.value,
            "low": self.low,
            "high": self.high,
            "n": self.n,
            "method": self.method,
            "too_few": self.too_few,
        }

    def scaled(self, factor: float) -> "Estimate":
        """The same evidence for ``factor`` times the figure (e.g. a count from a rate)."""
        if self.value is None:
            return self
        return Estimate(
            self.value * factor, self.low * factor, self.high * factor, self.n, self.method
        )


def empty(method: str = "none") -> Estimate:
    return Estimate(None, None, None, 0, method)


def t_quantile(df: int) -> float:
    """The 97.5% quantile of Student's t (exact table to 30, a close expansion beyond)."""
    if df < 1:
        return math.inf
    if df <= len(_T975):
        return _T975[df - 1]
    z = Z95
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def wilson(successes: float, n: float, z: float = Z95) -> Estimate:
    """The Wilson score interval for ``successes`` out of ``n``."""
    n_int = int(round(n))
    if n_int <= 0:
        return empty("wilson")
    k = min(max(float(successes), 0.0), float(n))
    p = k / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return Estimate(p, max(0.0, centre - half), min(1.0, centre + half), n_int, "wilson")


def mean_interval(
    n: float, total: float, total_sq: float, *, floor: float | None = 0.0
) -> Estimate:
    """A Student-t interval for a mean from its sums: n, Σx and Σx² (as the rollups keep them).

    ``floor`` clips the low end (an MSE or MAE is never negative)."""
    n_int = int(round(n))
    if n_int <= 0:
        return empty("t")
    mean = total / n
    if n_int == 1:
        return Estimate(mean, floor, math.inf, 1, "t")
    variance = max(total_sq - n * mean * mean, 0.0) / (n - 1)
    half = t_quantile(n_int - 1) * math.sqrt(variance / n)
    low = mean - half if floor is None else max(floor, mean - half)
    return Estimate(mean, low, mean + half, n_int, "t")


def mean_interval_of(values: Iterable[float], *, floor: float | None = 0.0) -> Estimate:
    xs = [float(x) for x in values]
    return mean_interval(len(xs), sum(xs), sum(x * x for x in xs), floor=floor)


@dataclass(frozen=True, slots=True)
class Stratum:
    """Items sampled for human labels with one known probability.

    ``population``: items in the stratum (e.g. all automated items in the period);
    ``labelled``: those a human labelled (e.g. audited); ``successes``: labelled items where the
    model was right (or, for an error rate, wrong). The sampling probability is
    ``labelled / population`` when the sampling is deterministic by rate, as audits are."""

    population: float
    labelled: float
    successes: float


def stratified(strata: Sequence[Stratum], z: float = Z95) -> Estimate:
    """The population rate from strata sampled with known probabilities (inverse-propensity
    weighting: each labelled item stands for ``population / labelled`` items of its stratum),
    with the stratified-sample variance (finite-population corrected). A stratum with items but
    no labels leaves the estimate undefined: nothing is known of it, and pretending otherwise is
    the bias this estimator exists to avoid."""
    total = sum(s.population for s in strata)
    labelled = int(round(sum(s.labelled for s in strata)))
    if total <= 0 or labelled <= 0:
        return empty("stratified")
    if any(s.population > 0 and s.labelled <= 0 for s in strata):
        return Estimate(None, None, None, labelled, "stratified")
    value = 0.0
    variance = 0.0
    for s in strata:
        if s.population <= 0:
            continue
        share = s.population / total
        p = s.successes / s.labelled
        value += share * p
        if s.labelled > 1:
            correction = max(0.0, 1 - s.labelled / s.population)
            # Wilson-style continuity: a stratum at p = 0 or 1 still carries some variance.
            p_adj = (s.successes + z * z / 2) / (s.labelled + z * z)
            variance += share * share * p_adj * (1 - p_adj) / s.labelled * correction
    half = z * math.sqrt(variance)
    return Estimate(value, max(0.0, value - half), min(1.0, value + half), labelled, "stratified")


def two_proportion_z(k1: float, n1: float, k2: float, n2: float) -> float | None:
    """The z statistic of rate 1 minus rate 2 (pooled); None when either side is empty."""
    if n1 <= 0 or n2 <= 0:
        return None
    pooled = (k1 + k2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 0.0
    return (k1 / n1 - k2 / n2) / se


def sample_size_for_half_width(p: float, half_width: float, z: float = Z95) -> int:
    """Observations needed for a 95% interval of ±``half_width`` around a rate near ``p``."""
    p = min(max(p, 0.01), 0.99)
    return math.ceil(z * z * p * (1 - p) / (half_width * half_width))
