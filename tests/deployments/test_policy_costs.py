"""What each threshold costs a day and which one to recommend: checked against a plain,
threshold-by-threshold computation on random curves, and on cases a manager would recognise."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deployments.policy.costs import (
    BacktestCurve,
    CostSettings,
    capacity_fit,
    costs_missing,
    position_now,
    recommend,
    threshold_costs,
)

THRESHOLDS = [round(0.01 * i, 2) for i in range(1, 101)]


def _curve_from_items(items: list[tuple[float, bool, str, str]]) -> BacktestCurve:
    """Items as (confidence, wrong, true, predicted), tallied the slow way."""
    automated, errors, pairs = [], [], {}
    for t in THRESHOLDS:
        chosen = [i for i in items if i[0] >= t]
        automated.append(len(chosen))
        errors.append(sum(1 for i in chosen if i[1]))
    for _, wrong, true, predicted in items:
        if wrong:
            pairs.setdefault((true, predicted), None)
    wrong_pairs = {
        pair: [
            sum(1 for i in items if i[0] >= t and i[1] and (i[2], i[3]) == pair) for t in THRESHOLDS
        ]
        for pair in pairs
    }
    return BacktestCurve(THRESHOLDS, len(items), automated, errors, wrong_pairs=wrong_pairs)


LABELS = ["a", "b", "c"]
item = st.tuples(
    st.floats(0, 1, allow_nan=False),
    st.booleans(),
    st.sampled_from(LABELS),
    st.sampled_from(LABELS),
).map(lambda i: (i[0], i[1] and i[2] != i[3], i[2], i[3]))


@settings(max_examples=60, deadline=None)
@given(
    items=st.lists(item, min_size=1, max_size=60),
    error_cost=st.floats(0, 500),
    pair_cost=st.floats(0, 5000),
    minutes=st.floats(0.1, 30),
    hourly=st.floats(0, 200),
    arrivals=st.floats(0, 10_000),
    capacity=st.one_of(st.none(), st.floats(0, 10_000)),
    ceiling=st.one_of(st.none(), st.floats(0, 0.5)),
    traffic=st.sampled_from([1.0, 0.5, 0.05]),
    audit=st.sampled_from([0.0, 0.05]),
    double=st.sampled_from([0.0, 0.1]),
)
def test_the_figures_and_the_recommendation_match_a_plain_computation(
    items,
    error_cost,
    pair_cost,
    minutes,
    hourly,
    arrivals,
    capacity,
    ceiling,
    traffic,
    audit,
    double,
):
    curve = _curve_from_items(items)
    pair = ("a", "b")
    cost_settings = CostSettings(
        regression=False,
        error_cost=error_cost,
        pair_costs={pair: pair_cost},
        review_minutes=minutes,
        hourly_cost=hourly,
        arrivals_per_day=arrivals,
        capacity_per_day=capacity,
        error_rate_ceiling=ceiling,
        traffic_share=traffic,
        audit_rate=audit,
        double_review_rate=double,
    )
    figures = threshold_costs(curve, cost_settings)
    n = len(items)
    rows = []
    for k, t in enumerate(THRESHOLDS):
        chosen = [i for i in items if i[0] >= t]
        window_cost = sum(
            (pair_cost if (i[2], i[3]) == pair else error_cost) for i in chosen if i[1]
        )
        model = arrivals * traffic * len(chosen) / n
        human = (arrivals - model) * (1 + double) + model * audit
        error_day = arrivals * traffic * window_cost / n
        review_day = human * minutes / 60 * hourly
        wrong = sum(1 for i in chosen if i[1])
        # The interval holds at least the normal one on the mean cost per item.
        per_item = [
            (pair_cost if (i[2], i[3]) == pair else error_cost) if i[0] >= t and i[1] else 0.0
            for i in items
        ]
        mean = sum(per_item) / n
        spread = 1.959963984540054 * math.sqrt(sum((x - mean) ** 2 for x in per_item) / n / n)
        scale = arrivals * traffic
        assert figures.error_cost_high[k] >= scale * (mean + spread) * (1 - 1e-9) - 1e-6
        assert figures.error_cost_low[k] <= scale * max(mean - spread, 0.0) * (1 + 1e-9) + 1e-6
        meets = ceiling is None or not chosen or wrong <= ceiling * len(chosen)
        fits = capacity is None or human <= capacity + 1e-9
        rows.append((t, error_day + review_day, human, meets, fits))
        assert figures.model_per_day[k] == pytest.approx(model, rel=1e-9, abs=1e-9)
        assert figures.human_per_day[k] == pytest.approx(human, rel=1e-9, abs=1e-9)
        assert figures.error_cost[k] == pytest.approx(error_day, rel=1e-9, abs=1e-6)
        assert figures.review_cost[k] == pytest.approx(review_day, rel=1e-9, abs=1e-6)
        assert figures.error_cost_low[k] <= figures.error_cost[k] + 1e-6
        assert figures.error_cost[k] <= figures.error_cost_high[k] + 1e-6
        assert bool(figures.meets_ceiling[k]) == meets
        assert bool(figures.fits_capacity[k]) == fits

    chosen = recommend(figures, cost_settings)
    allowed = [r for r in rows if r[3] and r[4]]
    if not any(r[3] for r in rows):
        assert chosen.threshold is None
    elif not allowed:
        least_work = min(r[2] for r in rows if r[3])
        assert chosen.threshold in [r[0] for r in rows if r[3] and r[2] == least_work]
    else:
        least = min(r[1] for r in allowed)
        assert chosen.threshold == max(r[0] for r in allowed if r[1] <= least + 0.005)
        assert "costs" in chosen.reason and chosen.reason.endswith(".")


def _simple(**overrides) -> CostSettings:
    values = {
        "regression": False,
        "error_cost": 50.0,
        "review_minutes": 2.0,
        "hourly_cost": 30.0,  # a review costs 1.00
        "arrivals_per_day": 1000.0,
    }
    values.update(overrides)
    return CostSettings(**values)


def _two_step_curve() -> BacktestCurve:
    """1,000 items: at 0.5 the model decides 800 with 40 wrong; at 0.9, 500 with 2 wrong."""
    automated = [800 if t <= 0.5 else 500 if t <= 0.9 else 0 for t in THRESHOLDS]
    errors = [40 if t <= 0.5 else 2 if t <= 0.9 else 0 for t in THRESHOLDS]
    return BacktestCurve(THRESHOLDS, 1000, automated, errors)


def test_cheap_reviews_and_costly_errors_recommend_the_careful_threshold():
    figures = threshold_costs(_two_step_curve(), _simple())
    advice = recommend(figures, _simple())
    # 0.9: 2 errors × 50 + 500 reviews × 1 = 600 a day; 0.5: 2,000 + 200; 1.0: 1,000.
    assert advice.threshold == 0.9
    assert advice.reason.startswith("0.90 costs 600 a day (errors 100, reviews 500)")


def test_a_team_too_small_for_the_careful_threshold_gets_the_one_that_fits():
    cost_settings = _simple(capacity_per_day=300.0)
    figures = threshold_costs(_two_step_curve(), cost_settings)
    advice = recommend(figures, cost_settings)
    assert advice.threshold == 0.5  # 200 reviews a day fit; 500 do not
    assert "fits the team (200 reviews a day of 300)" in advice.reason
    warning = capacity_fit(figures, cost_settings, current=0.9)
    assert warning == {
        "threshold": 0.9,
        "level": "partial",
        "human_per_day": 500.0,
        "capacity_per_day": 300.0,
        "fitting_threshold": 0.5,
    }
    assert capacity_fit(figures, cost_settings, current=0.3) is None


def test_the_error_ceiling_rules_out_cheap_but_sloppy_thresholds():
    cost_settings = _simple(error_cost=1.0, error_rate_ceiling=0.01)
    figures = threshold_costs(_two_step_curve(), cost_settings)
    # 0.5 would be cheapest (40 + 200) but errs 5% of the time.
    advice = recommend(figures, cost_settings)
    assert advice.threshold == 0.9 and "under 1.0%" in advice.reason


def test_nothing_under_the_ceiling_means_no_recommendation():
    cost_settings = _simple(error_rate_ceiling=0.001)
    automated = [800 if t <= 0.99 else 10 for t in THRESHOLDS]
    errors = [40 if t <= 0.99 else 1 for t in THRESHOLDS]
    figures = threshold_costs(BacktestCurve(THRESHOLDS, 1000, automated, errors), cost_settings)
    advice = recommend(figures, cost_settings)
    assert advice.threshold is None and "No threshold" in advice.reason


def test_no_error_at_all_still_has_an_upper_bound():
    figures = threshold_costs(
        BacktestCurve(THRESHOLDS, 200, [100] * 100, [0] * 100), _simple(arrivals_per_day=200.0)
    )
    assert figures.error_cost[50] == 0
    assert figures.error_cost_high[50] > 0  # Wilson: 0 of 200 is not proof of 0


def test_what_is_missing_is_named():
    assert costs_missing(_simple(error_cost=None, hourly_cost=None)) == [
        "error_cost",
        "hourly_cost",
    ]
    assert threshold_costs(_two_step_curve(), _simple(review_minutes=None)) is None


def test_label_pair_costs_need_a_backtest_that_counted_pairs():
    cost_settings = _simple(pair_costs={("fraud", "legit"): 400.0})
    figures = threshold_costs(_two_step_curve(), cost_settings)
    assert "no label pairs" in figures.note
    assert figures.error_cost[49] == pytest.approx(40 * 50.0)


def test_regression_prices_each_unit_of_error_with_a_normal_interval():
    # 100 items, all automated at every threshold, each 2.0 off: cost 2 × 3 a unit.
    curve = BacktestCurve(
        THRESHOLDS,
        100,
        [100] * 100,
        [0] * 100,
        abs_error=[200.0] * 100,
        abs_error_sq=[400.0] * 100,
    )
    cost_settings = _simple(regression=True, error_cost=3.0, arrivals_per_day=100.0)
    figures = threshold_costs(curve, cost_settings)
    assert figures.error_cost[0] == pytest.approx(600.0)
    assert figures.error_cost_low[0] == pytest.approx(600.0)  # no spread in the errors
    assert math.isclose(figures.review_cost[0], 0.0, abs_tol=1e-9)
    assert (
        threshold_costs(BacktestCurve(THRESHOLDS, 100, [1] * 100, [0] * 100), cost_settings) is None
    )


def test_below_partial_people_review_every_item_whatever_the_threshold():
    cost_settings = _simple(capacity_per_day=600.0, double_review_rate=0.1)
    figures = threshold_costs(_two_step_curve(), cost_settings)
    now = position_now(figures, cost_settings, threshold=0.5, level="shadow")
    # 1,000 items a day, a tenth of them twice: 1,100 reviews at 1.00 each, no model errors.
    assert (now.model_per_day, now.human_per_day, now.error_cost) == (0.0, 1100.0, 0.0)
    assert now.total == pytest.approx(1100.0) and not now.fits_capacity
    # The same threshold at partial would leave people 200 (+ a tenth) and fit.
    assert capacity_fit(figures, cost_settings, current=0.5, level="partial") is None
    warning = capacity_fit(figures, cost_settings, current=0.5, level="shadow")
    assert warning["human_per_day"] == pytest.approx(1100.0)
    assert warning["fitting_threshold"] == 0.5 and warning["level"] == "shadow"


def test_at_full_the_model_decides_whatever_it_scores():
    cost_settings = _simple(capacity_per_day=300.0)
    figures = threshold_costs(_two_step_curve(), cost_settings)
    now = position_now(figures, cost_settings, threshold=0.95, level="full")
    # The threshold of 0.95 would leave every item to people; at full it does not route.
    assert (now.index, now.model_per_day, now.human_per_day) == (0, 800.0, 200.0)
    assert capacity_fit(figures, cost_settings, current=0.95, level="full") is None
    assert capacity_fit(figures, cost_settings, current=0.95, level="partial") is not None


@settings(max_examples=60, deadline=None)
@given(
    items=st.lists(
        st.tuples(st.floats(0, 1, allow_nan=False), st.floats(0, 100, allow_nan=False)),
        min_size=1,
        max_size=60,
    ),
    unit_cost=st.floats(0, 50),
    arrivals=st.floats(0, 10_000),
    tolerance=st.sampled_from([0.0, 5.0]),
)
def test_regression_figures_and_their_interval_match_a_plain_computation(
    items, unit_cost, arrivals, tolerance
):
    """Items as (confidence, |error|): each day's error cost is the mean cost of one item of the
    window (zero when people decide it) times the arrivals, with a normal 95% interval."""
    n = len(items)
    chosen_at = [[e for c, e in items if c >= t] for t in THRESHOLDS]
    curve = BacktestCurve(
        THRESHOLDS,
        n,
        [len(chosen) for chosen in chosen_at],
        [sum(1 for e in chosen if e > tolerance) for chosen in chosen_at],
        abs_error=[sum(chosen) for chosen in chosen_at],
        abs_error_sq=[sum(e * e for e in chosen) for chosen in chosen_at],
    )
    cost_settings = _simple(regression=True, error_cost=unit_cost, arrivals_per_day=arrivals)
    figures = threshold_costs(curve, cost_settings)
    for k, chosen in enumerate(chosen_at):
        per_item = [e * unit_cost for e in chosen] + [0.0] * (n - len(chosen))
        mean = sum(per_item) / n
        spread = 1.959963984540054 * math.sqrt(sum((x - mean) ** 2 for x in per_item) / n / n)
        assert figures.error_cost[k] == pytest.approx(arrivals * mean, rel=1e-9, abs=1e-6)
        assert figures.error_cost_high[k] == pytest.approx(
            arrivals * (mean + spread), rel=1e-6, abs=1e-4
        )
        assert figures.error_cost_low[k] == pytest.approx(
            arrivals * max(mean - spread, 0.0), rel=1e-6, abs=1e-4
        )


def test_one_rare_costly_mistake_widens_the_interval():
    # 1,000 items a day, all automated: 9 cheap mistakes (10 each) and one costing 1,000.
    curve = BacktestCurve(
        THRESHOLDS,
        1000,
        [1000] * 100,
        [10] * 100,
        wrong_pairs={("a", "b"): [9] * 100, ("fraud", "legit"): [1] * 100},
    )
    cost_settings = _simple(error_cost=10.0, pair_costs={("fraud", "legit"): 1000.0})
    figures = threshold_costs(curve, cost_settings)
    assert figures.error_cost[0] == pytest.approx(1090.0)
    # Ten errors in a thousand at their mean cost (109) would say at most about 2,000 a day;
    # one mistake in a thousand costing 1,000 could as well have been three.
    assert figures.error_cost_high[0] > 3000 and figures.error_cost_low[0] < 600
