"""The simulation study in miniature (``benchmarks/bench_statistics.py`` at a few dozen streams).

Bands are wide enough to hold for any seed at these sizes and narrow enough that a broken
estimator falls out: the naive accuracy from reviewed items only is checked to lie outside the
bias band that the weighted estimate must stay in.
"""

import numpy as np
import pytest

from benchmarks.bench_statistics import (
    LIMITS,
    detection_study,
    estimation_study,
    quiet_study,
)


@pytest.mark.parametrize("error", [0.02, 0.10])
def test_intervals_cover_and_the_weighted_accuracy_is_unbiased(error):
    study = estimation_study(error, streams=60, items=1000, seed=7)
    assert 0.85 <= study.wilson_audit <= 1.0
    assert 0.85 <= study.wilson_override <= 1.0
    assert 0.85 <= study.stratified <= 1.0
    band = 0.25 * error  # a quarter of the error rate, in accuracy
    assert abs(study.weighted_bias) < band
    # Reviewed items are the doubtful ones: judged on them alone the model looks worse.
    assert study.naive_bias < -band


def test_guardrails_stay_quiet_when_nothing_changes():
    quiet = quiet_study(0.02, streams=5, items=10_000, seed=11)
    assert quiet.alarms == {"override_rate": 0, "audit_error_rate": 0}
    assert quiet.checks["override_rate"] > 2_000  # every 10 observations of ~5,000 each


def test_a_jump_is_caught_about_as_fast_as_the_page_says():
    found = detection_study(streams=10, horizon=20_000, seed=13)
    for name in LIMITS:
        assert found[name].early == 0 and found[name].missed == 0, name
        median = float(np.median(found[name].delays))
        assert 0.6 * found[name].stated_median <= median <= 1.6 * found[name].stated_median
    # The routing feeds each guardrail its own share of the items: half of them are reviewed,
    # one in ten is an audit (half automated, a fifth of those audited).
    items_per_observation = {
        name: np.median(np.divide(found[name].delays_items, found[name].delays)) for name in LIMITS
    }
    assert 1.5 < items_per_observation["override_rate"] < 2.7
    assert 7 < items_per_observation["audit_error_rate"] < 14
