"""Intervals checked against hand-computed values and against a known sampling design."""

import math
import random

import pytest

from deployments.policy import evidence
from deployments.policy.evidence import Stratum


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
