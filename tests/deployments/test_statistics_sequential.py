"""The sequential test behind rate guardrails, pure: observations in, a verdict out."""

import pytest

from deployments.statistics.sequential import (
    RateTest,
    cusum_peak,
    cusum_threshold,
    default_margin,
    detection_delay,
    kl_bernoulli,
    rate_judge,
)

TEST = RateTest(p0=0.05, p1=0.10, alpha=0.001, confidence=0.95, window=1000)


def judged(outcomes):
    return rate_judge(TEST, outcomes, sum(outcomes), len(outcomes))


def test_a_handful_of_bad_items_never_breaches():
    # Five failures in a row, after and amid good traffic, are bad luck at a 5% limit.
    # (Fewer observations than min_sample are never judged at all: see test_policy_guardrails.)
    for outcomes in ([True] * 5 + [False] * 25, [False] * 300 + [True] * 5):
        assert judged(outcomes).verdict != "breached", outcomes


def test_a_sustained_bad_rate_breaches():
    every_fifth = [n % 5 == 0 for n in range(300)]  # 20% against a 5% limit
    assert judged(every_fifth).verdict == "breached"


def test_a_rate_just_over_the_limit_is_watched_not_breached():
    # 6% of 1000 is over the limit, but well within what a 5% rate produces by chance.
    six_percent = [n % 50 in (0, 17, 33) for n in range(1000)]
    assert judged(six_percent).verdict == "watching"


def test_a_rate_holds_only_once_its_interval_is_under_the_limit():
    assert judged([False] * 40).verdict == "watching"  # 0 of 40: the upper bound is 8.8%
    assert judged([False] * 80).verdict == "holding"  # 0 of 80: 4.6%
    assert judged([n % 100 == 0 for n in range(1000)]).verdict == "holding"  # 1%


def test_the_trend_rule_catches_a_recent_rise_the_window_average_hides():
    outcomes = [n % 50 == 0 for n in range(900)] + [n % 4 == 0 for n in range(100)]
    judgement = judged(outcomes)
    assert (judgement.verdict, judgement.because) == ("breached", "trend")
    assert judgement.estimate.low < TEST.p0  # the whole window is not shown over the limit


def test_the_cusum_forgets_good_traffic_and_never_goes_below_zero():
    assert cusum_peak([False] * 1000, p0=0.05, p1=0.10) == 0.0
    one_event = cusum_peak([True], p0=0.05, p1=0.10)
    assert one_event == pytest.approx(0.6931, abs=1e-4)  # log 2
    assert cusum_peak([False] * 1000 + [True], p0=0.05, p1=0.10) == one_event


def test_a_zero_limit_breaches_on_the_first_event_only():
    zero = RateTest(p0=0.0, p1=0.01, alpha=0.001, confidence=0.95, window=100)
    assert rate_judge(zero, [False] * 50, 0, 50).verdict != "breached"
    assert rate_judge(zero, [False] * 50 + [True], 1, 51).verdict == "breached"


def test_the_threshold_grows_with_a_stricter_alpha_and_a_longer_window():
    base = cusum_threshold(0.05, 0.10, 0.001, 1000)
    assert cusum_threshold(0.05, 0.10, 0.0001, 1000) > base
    assert cusum_threshold(0.05, 0.10, 0.001, 10_000) > base
    assert cusum_threshold(0.05, 0.10, 0.01, 1000) < base


def test_the_stated_delay_shrinks_with_the_size_of_the_rise():
    h = TEST.threshold
    at_p1 = detection_delay(0.05, 0.10, h)
    bigger = detection_delay(0.05, 0.10, h, rate=0.2)
    assert bigger.median < at_p1.median < at_p1.p90
    # The CUSUM climbs by KL(p1 || p0) per observation on average: h over that, roughly.
    assert at_p1.median == pytest.approx(h / kl_bernoulli(0.10, 0.05), rel=0.25)
    # At the limit itself a window rarely reaches the threshold: that is the false-alarm budget.
    assert detection_delay(0.05, 0.10, h, rate=0.05).median is None


def test_the_default_margin_doubles_the_limit_and_stays_under_one():
    assert default_margin(0.05) == 0.05
    assert default_margin(0.0) == 0.01
    assert 0.9 + default_margin(0.9) < 1
