"""Intervals checked against hand-computed values and against a known sampling design."""

import math
import random

import pytest

from deployments.statistics import evidence
from deployments.statistics.evidence import Stratum


def test_wilson_matches_the_textbook_values():
    # 8 of 10: the Wilson interval is (0.4902, 0.9433); the Wald one would be (0.552, 1.048).
    estimate = evidence.wilson(8, 10)
    assert estimate.value == pytest.approx(0.8)
    assert estimate.low == pytest.approx(0.4902, abs=1e-4)
    assert estimate.high == pytest.approx(0.9433, abs=1e-4)
    assert estimate.n == 10 and estimate.too_few


def test_wilson_at_zero_successes_still_has_an_upper_bound():
    estimate = evidence.wilson(0, 100)
    assert estimate.low == pytest.approx(0.0)
    assert estimate.high == pytest.approx(0.0370, abs=1e-4)
    assert not estimate.too_few


def test_no_observations_give_no_figure():
    for estimate in (evidence.wilson(0, 0), evidence.mean_interval(0, 0, 0)):
        assert estimate.value is None and estimate.n == 0 and estimate.too_few


def test_mean_interval_from_sums_matches_a_t_interval():
    values = [1.0, 2.0, 3.0, 4.0, 5.0]
    estimate = evidence.mean_interval_of(values)
    # mean 3, sd sqrt(2.5), t(4) = 2.776: 3 ± 2.776 * sqrt(2.5 / 5)
    half = 2.776 * math.sqrt(0.5)
    assert estimate.value == pytest.approx(3.0)
    assert estimate.low == pytest.approx(3 - half)
    assert estimate.high == pytest.approx(3 + half)


def test_t_quantile_beyond_the_table_approaches_the_normal():
    assert evidence.t_quantile(40) == pytest.approx(2.021, abs=2e-3)
    assert evidence.t_quantile(1000) == pytest.approx(1.962, abs=2e-3)


def test_stratified_estimate_removes_the_bias_of_reviewed_items_only():
    # 900 automated items (model 98% right), 5% audited; 100 reviewed items (model 70% right).
    rng = random.Random(7)
    covered = 0
    runs = 300
    true = (900 * 0.98 + 100 * 0.70) / 1000
    for _ in range(runs):
        audited = [rng.random() < 0.98 for _ in range(45)]
        reviewed = [rng.random() < 0.70 for _ in range(100)]
        estimate = evidence.stratified(
            [Stratum(900, 45, sum(audited)), Stratum(100, 100, sum(reviewed))]
        )
        covered += estimate.low <= true <= estimate.high
    naive = 0.70
    assert abs(naive - true) > 0.2  # reading the reviewed items alone is badly biased
    assert covered / runs > 0.88


def test_a_stratum_with_items_but_no_labels_leaves_the_figure_undefined():
    estimate = evidence.stratified([Stratum(900, 0, 0), Stratum(100, 100, 70)])
    assert estimate.value is None and estimate.n == 100


def test_two_proportion_z_and_sample_size():
    assert evidence.two_proportion_z(30, 100, 10, 100) == pytest.approx(3.54, abs=0.01)
    assert evidence.sample_size_for_half_width(0.1, 0.02) == 865


def test_newcombe_difference_matches_the_published_example():
    # Newcombe (1998), Table II: 56/70 vs 48/80 -> 0.2000, 95% CI (0.0524, 0.3339).
    d = evidence.newcombe_difference(56, 70, 48, 80)
    assert d.value == pytest.approx(0.2)
    assert d.low == pytest.approx(0.0524, abs=1e-4)
    assert d.high == pytest.approx(0.3339, abs=1e-4)


def test_a_model_as_accurate_as_humans_on_many_items_is_at_human_level():
    verdict = evidence.proportion_vs_baseline(
        model_right=4850, model_n=5000, human_agree=970, human_n=1000
    )
    assert verdict.verdict == evidence.AT_HUMAN_LEVEL
    assert verdict.more_needed is None


def test_a_model_clearly_worse_than_humans_is_below_human_level():
    verdict = evidence.proportion_vs_baseline(
        model_right=800, model_n=1000, human_agree=190, human_n=200
    )
    assert verdict.verdict == evidence.BELOW_HUMAN_LEVEL
    assert verdict.difference.high < 0


def test_too_few_items_say_how_many_more_would_settle_it():
    verdict = evidence.proportion_vs_baseline(model_right=19, model_n=20, human_agree=9, human_n=10)
    assert verdict.verdict == evidence.NOT_YET_KNOWN
    # The model looks better; the interval must clear -2 points, which at these rates (95% and
    # 90%, half the items double-reviewed) takes some hundreds of items, not 3 and not millions.
    assert 100 < verdict.more_needed < 5000
    # Adding that many items at the same rates does settle it.
    n = verdict.more_needed
    settled = evidence.proportion_vs_baseline(
        model_right=0.95 * (20 + n),
        model_n=20 + n,
        human_agree=0.9 * (10 + n / 2),
        human_n=10 + n / 2,
    )
    assert settled.verdict == evidence.AT_HUMAN_LEVEL


def test_without_double_review_there_is_no_baseline():
    verdict = evidence.proportion_vs_baseline(model_right=90, model_n=100, human_agree=0, human_n=0)
    assert verdict.verdict == evidence.NO_BASELINE


def test_regression_error_against_the_humans_own_disagreement():
    rng = random.Random(3)
    model = [abs(rng.gauss(0, 10)) for _ in range(2000)]
    human_close = [abs(rng.gauss(0, 10)) for _ in range(500)]
    human_sharp = [abs(rng.gauss(0, 4)) for _ in range(500)]

    def sums(xs):
        return evidence.MeanSums(len(xs), sum(xs), sum(x * x for x in xs))

    assert (
        evidence.mean_vs_baseline(model=sums(model), human=sums(human_close)).verdict
        != evidence.BELOW_HUMAN_LEVEL
    )
    assert (
        evidence.mean_vs_baseline(model=sums(model), human=sums(human_sharp)).verdict
        == evidence.BELOW_HUMAN_LEVEL
    )
    few = evidence.mean_vs_baseline(model=sums(model[:8]), human=sums(human_close[:4]))
    assert few.verdict == evidence.NOT_YET_KNOWN and few.more_needed > 0


def test_slices_flag_only_a_slice_significantly_worse_than_the_rest():
    slices = [evidence.SliceCounts(f"region-{i}", errors=10, n=200) for i in range(9)]
    slices.append(evidence.SliceCounts("north", errors=40, n=200))
    tests = evidence.slices_flag(slices)
    assert tests["north"].flagged
    assert not any(tests[f"region-{i}"].flagged for i in range(9))


def test_bonferroni_keeps_a_borderline_slice_unflagged_among_many():
    # 9/100 against 5% elsewhere: p ~ 0.03 alone, but not below 0.05 / 20.
    slices = [evidence.SliceCounts(f"s{i}", errors=5, n=100) for i in range(19)]
    slices.append(evidence.SliceCounts("edge", errors=9, n=100))
    test = evidence.slices_flag(slices)["edge"]
    assert 0.0025 < test.p_value < 0.05
    assert not test.flagged
