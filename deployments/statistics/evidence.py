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


# --- comparing a model with the human baseline ------------------------------------------------

# How much worse than humans still counts as "at human level": 2 points of accuracy, or 10% of
# the humans' own error for regression. Non-inferiority needs a margin: without one, a model
# exactly as good as humans could never be shown to be so, however many items were reviewed.
ACCURACY_MARGIN = 0.02
ERROR_MARGIN_SHARE = 0.10
# Past this many more items the answer is "more than this": the question is not worth asking.
MORE_NEEDED_CAP = 1_000_000

AT_HUMAN_LEVEL = "at_human_level"
BELOW_HUMAN_LEVEL = "below_human_level"
NOT_YET_KNOWN = "not_yet_known"
NO_BASELINE = "no_baseline"
NO_DATA = "no_data"


def normal_cdf(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2))


def one_sided_p(z: float | None) -> float | None:
    """P(Z >= z): the one-sided p-value of a z statistic (None stays None)."""
    return None if z is None else 1.0 - normal_cdf(z)


@dataclass(frozen=True, slots=True)
class Difference:
    """A difference (model minus baseline) with its 95% interval."""

    value: float
    low: float
    high: float
    method: str  # "newcombe" or "welch"

    def as_dict(self) -> dict:
        return {"value": self.value, "low": self.low, "high": self.high, "method": self.method}


def newcombe_difference(k1: float, n1: float, k2: float, n2: float) -> Difference | None:
    """Newcombe's hybrid score interval for p1 - p2 (method 10 of his 1998 paper): it combines
    the two Wilson intervals, so it keeps its coverage where the Wald difference does not (small
    n, rates near 1, which is where accurate models and careful humans both live)."""
    if n1 <= 0 or n2 <= 0:
        return None
    a, b = wilson(k1, n1), wilson(k2, n2)
    d = a.value - b.value
    low = d - math.sqrt((a.value - a.low) ** 2 + (b.high - b.value) ** 2)
    high = d + math.sqrt((a.high - a.value) ** 2 + (b.value - b.low) ** 2)
    return Difference(d, max(-1.0, low), min(1.0, high), "newcombe")


def welch_difference(first: "MeanSums", second: "MeanSums") -> Difference | None:
    """A Welch t interval for mean 1 - mean 2 (unequal variances)."""
    if first.n < 2 or second.n < 2:
        return None
    v1, v2 = first.variance / first.n, second.variance / second.n
    d = first.mean - second.mean
    se2 = v1 + v2
    if se2 == 0:
        return Difference(d, d, d, "welch")
    df = se2 * se2 / (v1 * v1 / (first.n - 1) + v2 * v2 / (second.n - 1))
    half = t_quantile(max(1, int(df))) * math.sqrt(se2)
    return Difference(d, d - half, d + half, "welch")


@dataclass(frozen=True, slots=True)
class MeanSums:
    """n, Σx and Σx² of a sample (what the rollups and the readiness queries keep)."""

    n: float
    total: float
    total_sq: float

    @property
    def mean(self) -> float:
        return self.total / self.n

    @property
    def variance(self) -> float:
        if self.n < 2:
            return 0.0
        return max(self.total_sq - self.n * self.mean**2, 0.0) / (self.n - 1)


@dataclass(frozen=True, slots=True)
class Comparison:
    """The model against the human baseline: the verdict and what would settle it."""

    verdict: str  # AT_HUMAN_LEVEL, BELOW_HUMAN_LEVEL, NOT_YET_KNOWN, NO_BASELINE, NO_DATA
    difference: Difference | None
    margin: float
    more_needed: int | None  # more reviewed items to settle it; None when settled or unknowable
    better: bool = False  # significantly better than humans, not merely within the margin

    def as_dict(self) -> dict:
        return {
            "verdict": self.verdict,
            "difference": self.difference.as_dict() if self.difference else None,
            "margin": self.margin,
            "more_needed": self.more_needed,
            "better": self.better,
        }


def _more_needed(
    *, n_model: float, n_human: float, var_model: float, var_human: float, half_width: float
) -> int | None:
    """Reviewed items to add so that z·sqrt(var_m/n_m + var_h/n_h) <= ``half_width``, assuming
    new items bring human-baseline observations in the share seen so far (double review is a
    fixed sample of reviewed items). None when no number of items would do."""
    share = n_human / n_model if n_model > 0 else 0.0

    def enough(extra: int) -> bool:
        se2 = var_model / (n_model + extra) + var_human / (n_human + share * extra)
        return Z95 * math.sqrt(se2) <= half_width

    if half_width <= 0 or not enough(MORE_NEEDED_CAP):
        return None
    low, high = 0, MORE_NEEDED_CAP
    while low < high:
        mid = (low + high) // 2
        if enough(mid):
            high = mid
        else:
            low = mid + 1
    return max(low, 1)


def _settle(
    difference: Difference,
    *,
    margin: float,
    higher_is_better: bool,
    var_model,
    var_human,
    n_model,
    n_human,
) -> Comparison:
    # Orient so that positive means "model better": accuracy as is, errors negated.
    sign = 1.0 if higher_is_better else -1.0
    d = sign * difference.value
    low = min(sign * difference.low, sign * difference.high)
    high = max(sign * difference.low, sign * difference.high)
    if low >= -margin:
        return Comparison(AT_HUMAN_LEVEL, difference, margin, None, better=low > 0)
    if high < 0:
        return Comparison(BELOW_HUMAN_LEVEL, difference, margin, None)
    # The interval must shrink until it clears one boundary; aim for the nearer one to the
    # estimate's far side (-margin when the model looks close enough, 0 when it looks worse).
    target = max(d + margin, -d)
    more = _more_needed(
        n_model=n_model,
        n_human=n_human,
        var_model=var_model,
        var_human=var_human,
        half_width=target,
    )
    return Comparison(NOT_YET_KNOWN, difference, margin, more)


def proportion_vs_baseline(
    *, model_right: float, model_n: float, human_agree: float, human_n: float,
    margin: float = ACCURACY_MARGIN,
) -> Comparison:  # fmt: skip
    """Is the model's accuracy (against human labels) at least the humans' agreement with each
    other, less ``margin``? At human level when the Newcombe interval of the difference lies
    above -margin; below when it lies under 0; otherwise not yet known."""
    if model_n <= 0:
        return Comparison(NO_DATA, None, margin, None)
    if human_n <= 0:
        return Comparison(NO_BASELINE, None, margin, None)
    difference = newcombe_difference(model_right, model_n, human_agree, human_n)
    p_m, p_h = model_right / model_n, human_agree / human_n
    # Variances floored away from 0 and 1: a perfect record so far is not a zero variance.
    return _settle(
        difference,
        margin=margin,
        higher_is_better=True,
        var_model=_bernoulli_variance(p_m),
        var_human=_bernoulli_variance(p_h),
        n_model=model_n,
        n_human=human_n,
    )


def _bernoulli_variance(p: float) -> float:
    p = min(max(p, 0.01), 0.99)
    return p * (1 - p)


def mean_vs_baseline(
    *, model: MeanSums, human: MeanSums, margin_share: float = ERROR_MARGIN_SHARE
) -> Comparison:
    """Is the model's mean error (MAE or MSE against human labels) at most the humans' own
    (between double reviewers), plus ``margin_share`` of it? Welch interval of the difference."""
    if model.n <= 0:
        return Comparison(NO_DATA, None, 0.0, None)
    if human.n <= 0:
        return Comparison(NO_BASELINE, None, 0.0, None)
    margin = margin_share * human.mean
    difference = welch_difference(model, human)
    if difference is None:
        return Comparison(NOT_YET_KNOWN, None, margin, None)
    return _settle(
        difference,
        margin=margin,
        higher_is_better=False,
        var_model=model.variance,
        var_human=human.variance,
        n_model=model.n,
        n_human=human.n,
    )


# --- slices -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SliceCounts:
    """One slice's errors (wrong items, or a sum of errors) against everything outside it."""

    key: str
    errors: float  # classification: items the model got wrong; regression: Σ|error|
    n: float
    sq_errors: float = 0.0  # regression only: Σ error²


@dataclass(frozen=True, slots=True)
class SliceTest:
    p_value: float | None  # one-sided: this slice's error is above the rest's
    flagged: bool


def slices_flag(
    slices: Sequence[SliceCounts], *, regression: bool = False, alpha: float = 0.05
) -> dict[str, SliceTest]:
    """The one-sided p-value of "this slice's error is worse than the rest's", per slice key;
    a slice is flagged when its p-value is below ``alpha / m`` (Bonferroni over the m slices
    tested, so checking 40 regions does not flag two of them by chance)."""
    total_errors = sum(s.errors for s in slices)
    total_n = sum(s.n for s in slices)
    total_sq = sum(s.sq_errors for s in slices)
    tested = [s for s in slices if 0 < s.n < total_n]
    threshold = alpha / max(len(tested), 1)
    out: dict[str, SliceTest] = {}
    for s in slices:
        rest_n = total_n - s.n
        if s.n <= 0 or rest_n <= 0:
            out[s.key] = SliceTest(None, False)
            continue
        rest_errors = total_errors - s.errors
        if regression:
            inside = MeanSums(s.n, s.errors, s.sq_errors)
            outside = MeanSums(rest_n, rest_errors, total_sq - s.sq_errors)
            se2 = inside.variance / inside.n + outside.variance / outside.n
            if inside.n < 2 or outside.n < 2:
                z = None
            elif se2 == 0:
                z = 0.0
            else:
                z = (inside.mean - outside.mean) / math.sqrt(se2)
        else:
            z = two_proportion_z(s.errors, s.n, rest_errors, rest_n)
        p = one_sided_p(z)
        out[s.key] = SliceTest(p, p is not None and p < threshold)
    return out
