"""A regression use case's Quality tab shows its errors, not a "confusion matrix" of value
bins: how far the human's value was from the model's, counted per bin width."""

from datetime import timedelta

import pytest

from reviewapp.core.roles import Role
from reviewapp.monitoring.dashboards import filters_clean, panel_build
from tests.factories import make_user
from tests.monitoring.test_rollups import T0, regression_judged

pytestmark = pytest.mark.django_db


def test_a_regression_quality_tab_counts_errors_by_bin_width():
    alice, manager = make_user(Role.REVIEWER, "alice"), make_user(Role.MANAGER)
    predicted = [10.0 + n for n in range(10)]
    # The value range -1000..1000 makes bins 100 wide. Six humans land in the model's bin,
    # three a bin higher (the model too low), one a bin lower (too high).
    shifts = [0, 0, 0, 0, 0, 0, 1, 1, 1, -1]
    human = [p + 100.0 * s for p, s in zip(predicted, shifts, strict=True)]
    use_case = regression_judged([alice, manager], alice, predicted, human)
    now = T0 + timedelta(hours=2)
    filters = filters_clean(use_case=use_case, params={"range": "24h"}, now=now)
    panel = panel_build(use_case=use_case, tab="quality", filters=filters, now=now)
    keys = [chart.key for chart in panel["charts"]]
    assert "confusion" not in keys and "residuals" in keys
    (chart,) = [c for c in panel["charts"] if c.key == "residuals"]
    bars = dict(zip(chart.figure["data"][0]["x"], chart.figure["data"][0]["y"], strict=True))
    assert bars == {-100.0: 1, 0.0: 6, 100.0: 3}
    assert chart.reading == (
        "Of 10 labelled items, 60.0% had the model's value in the same bin (100 wide) as the "
        "human's; the model was too low on 30.0% and too high on 10.0%."
    )
