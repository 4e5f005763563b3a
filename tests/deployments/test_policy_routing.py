"""The routing policy, exhaustively and by properties. No database: the module is pure."""

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deployments.policy import (
    BUCKETS,
    Buckets,
    Level,
    ModelOutput,
    NullOutput,
    PolicySpec,
    Route,
    TaskReason,
    consults_model,
    item_buckets,
    route,
)

LEVELS = list(Level)
levels = st.sampled_from(LEVELS)
unit = st.floats(min_value=0, max_value=1, allow_nan=False)
percent = st.floats(min_value=0, max_value=100, allow_nan=False)
bucket = st.integers(min_value=0, max_value=BUCKETS - 1)
buckets_st = st.builds(Buckets, ramp=bucket, audit=bucket, double_review=bucket)
policies = st.builds(
    PolicySpec,
    level=levels,
    confidence_threshold=unit,
    traffic_percent=percent,
    audit_rate=unit,
    double_review_rate=unit,
)
valid_outputs = st.builds(ModelOutput, label=st.sampled_from(["a", "b"]), confidence=unit)
outputs = st.one_of(valid_outputs, st.builds(NullOutput, reason=st.text(min_size=1)))

B = Buckets(ramp=0, audit=0, double_review=0)
LAST = Buckets(ramp=BUCKETS - 1, audit=BUCKETS - 1, double_review=BUCKETS - 1)
CONFIDENT = ModelOutput(label="a", confidence=0.99)
UNSURE = ModelOutput(label="a", confidence=0.5)


def spec(level, **kw) -> PolicySpec:
    kw.setdefault("audit_rate", 0.0)
    return PolicySpec(level=level, **kw)


# --- the table, case by case ------------------------------------------------------------


@pytest.mark.parametrize(
    ("level", "output", "buckets", "expected"),
    [
        (Level.HUMAN_ONLY, None, B, Route.HUMAN),
        (Level.SHADOW, CONFIDENT, B, Route.BLIND),
        (Level.SHADOW, CONFIDENT, LAST, Route.BLIND),
        (Level.ASSISTED, UNSURE, B, Route.ASSISTED),
        (Level.PARTIAL, CONFIDENT, B, Route.AUTO),
        (Level.PARTIAL, UNSURE, B, Route.ASSISTED),
        (Level.FULL, UNSURE, B, Route.AUTO),
        (Level.FULL, NullOutput("boom"), B, Route.HUMAN),
        (Level.PARTIAL, NullOutput("NaN"), B, Route.HUMAN),
        (Level.ASSISTED, NullOutput("label outside the set"), B, Route.HUMAN),
        (Level.SHADOW, NullOutput("raised"), B, Route.HUMAN),
    ],
)
def test_route_per_level(level, output, buckets, expected):
    decision = route(policy=spec(level, confidence_threshold=0.9), output=output, buckets=buckets)
    assert decision.route is expected


def test_outside_the_ramp_partial_and_full_are_assisted_shadow_and_assisted_are_human():
    out = Buckets(ramp=5000, audit=0, double_review=0)
    for level, expected in [
        (Level.SHADOW, Route.HUMAN),
        (Level.ASSISTED, Route.HUMAN),
        (Level.PARTIAL, Route.ASSISTED),
        (Level.FULL, Route.ASSISTED),
    ]:
        decision = route(policy=spec(level, traffic_percent=50), output=CONFIDENT, buckets=out)
        assert decision.route is expected, level
        assert not decision.in_ramp


def test_audit_sampled_only_on_automated_items_and_always_blind():
    always = spec(Level.FULL, audit_rate=1.0)
    decision = route(policy=always, output=CONFIDENT, buckets=B)
    assert decision.automated
    assert [(t.reason, t.show_suggestion) for t in decision.tasks] == [(TaskReason.AUDIT, False)]
    never = spec(Level.FULL, audit_rate=0.0)
    assert route(policy=never, output=CONFIDENT, buckets=B).tasks == ()


def test_double_review_adds_a_second_blind_task_to_reviewed_items():
    policy = spec(Level.ASSISTED, double_review_rate=1.0)
    decision = route(policy=policy, output=UNSURE, buckets=B)
    assert [(t.reason, t.show_suggestion) for t in decision.tasks] == [
        (TaskReason.REVIEW, True),
        (TaskReason.DOUBLE_REVIEW, False),
    ]


def test_exact_threshold_automates():
    at = ModelOutput(label="a", confidence=0.9)
    assert route(
        policy=spec(Level.PARTIAL, confidence_threshold=0.9), output=at, buckets=B
    ).automated


def test_regression_without_confidence_is_never_automated_at_partial_but_is_at_full():
    value = ModelOutput(value=3.0, confidence=None)
    assert (
        route(policy=spec(Level.PARTIAL, confidence_threshold=0.0), output=value, buckets=B).route
        is Route.ASSISTED
    )
    assert route(policy=spec(Level.FULL), output=value, buckets=B).route is Route.AUTO


@pytest.mark.parametrize(
    ("level", "percent", "ramp_bucket"),
    list(itertools.product(LEVELS, [0, 1, 50, 100], [0, 99, 100, 9999])),
)
def test_grid_of_levels_ramps_and_buckets(level, percent, ramp_bucket):
    buckets = Buckets(ramp=ramp_bucket, audit=9999, double_review=9999)
    for output in (CONFIDENT, UNSURE, NullOutput("x"), None):
        if output is None and level is not Level.HUMAN_ONLY:
            continue
        d = route(policy=spec(level, traffic_percent=percent), output=output, buckets=buckets)
        in_ramp = ramp_bucket < percent * 100
        assert d.in_ramp == in_ramp
        # a single review task, or none when automated (no audit at this bucket)
        assert len(d.tasks) == (0 if d.automated else 1)


def test_policy_refuses_out_of_range_values():
    with pytest.raises(ValueError):
        PolicySpec(level=Level.FULL, confidence_threshold=1.5)
    with pytest.raises(ValueError):
        PolicySpec(level=Level.FULL, traffic_percent=101)
    with pytest.raises(ValueError):
        PolicySpec(level="fully")


# --- properties ---------------------------------------------------------------------------


@given(policy=policies, buckets=buckets_st)
def test_human_only_never_consults_the_model_nor_automates(policy, buckets):
    human = PolicySpec(
        level=Level.HUMAN_ONLY,
        confidence_threshold=policy.confidence_threshold,
        traffic_percent=policy.traffic_percent,
        audit_rate=policy.audit_rate,
        double_review_rate=policy.double_review_rate,
    )
    assert not consults_model(human.level)
    decision = route(policy=human, output=None, buckets=buckets)
    assert decision.route is Route.HUMAN
    assert not any(t.show_suggestion for t in decision.tasks)


@given(policy=policies, output=outputs, buckets=buckets_st)
def test_shadow_never_decides_alone_and_never_shows_the_suggestion(policy, output, buckets):
    shadow = PolicySpec(
        level=Level.SHADOW,
        confidence_threshold=policy.confidence_threshold,
        traffic_percent=policy.traffic_percent,
        audit_rate=policy.audit_rate,
        double_review_rate=policy.double_review_rate,
    )
    decision = route(policy=shadow, output=output, buckets=buckets)
    assert not decision.automated
    assert decision.tasks and not any(t.show_suggestion for t in decision.tasks)


@given(policy=policies, output=outputs, buckets=buckets_st)
def test_partial_automates_iff_in_ramp_confident_and_valid(policy, output, buckets):
    partial = PolicySpec(
        level=Level.PARTIAL,
        confidence_threshold=policy.confidence_threshold,
        traffic_percent=policy.traffic_percent,
        audit_rate=policy.audit_rate,
        double_review_rate=policy.double_review_rate,
    )
    decision = route(policy=partial, output=output, buckets=buckets)
    valid = isinstance(output, ModelOutput)
    confident = (
        valid
        and output.confidence is not None
        and (output.confidence >= partial.confidence_threshold)
    )
    in_ramp = buckets.ramp < round(partial.traffic_percent * 100)
    assert decision.automated == (in_ramp and confident and valid)


@given(policy=policies, output=outputs, buckets=buckets_st)
def test_invariants_for_every_level(policy, output, buckets):
    if policy.level is Level.HUMAN_ONLY:
        output = None
    decision = route(policy=policy, output=output, buckets=buckets)
    if not isinstance(output, ModelOutput):
        # A null output (or no model) always goes to a human, with nothing shown.
        assert decision.route is Route.HUMAN
        assert not any(t.show_suggestion for t in decision.tasks)
    if decision.automated:
        assert all(t.reason is TaskReason.AUDIT and not t.show_suggestion for t in decision.tasks)
    else:
        assert decision.tasks[0].reason is TaskReason.REVIEW
        # the suggestion is shown exactly on the assisted route's main review
        assert decision.tasks[0].show_suggestion == (decision.route is Route.ASSISTED)
        assert all(not t.show_suggestion for t in decision.tasks[1:])


@given(policy=policies, output=outputs, buckets=buckets_st)
def test_routing_is_deterministic(policy, output, buckets):
    if policy.level is Level.HUMAN_ONLY:
        output = None
    assert route(policy=policy, output=output, buckets=buckets) == route(
        policy=policy, output=output, buckets=buckets
    )


@settings(max_examples=200)
@given(
    low=st.floats(min_value=0, max_value=100, allow_nan=False),
    high=st.floats(min_value=0, max_value=100, allow_nan=False),
    buckets=buckets_st,
)
def test_raising_the_ramp_only_adds_items(low, high, buckets):
    low, high = sorted((low, high))
    before = route(policy=spec(Level.FULL, traffic_percent=low), output=CONFIDENT, buckets=buckets)
    after = route(policy=spec(Level.FULL, traffic_percent=high), output=CONFIDENT, buckets=buckets)
    if before.automated:
        assert after.automated


@given(salt=st.text(max_size=20), key=st.text(max_size=50))
def test_buckets_are_sticky_and_in_range(salt, key):
    first = item_buckets(salt=salt, key=key)
    assert first == item_buckets(salt=salt, key=key)
    assert all(0 <= b < BUCKETS for b in (first.ramp, first.audit, first.double_review))


@pytest.mark.parametrize("percent", [0, 1, 5, 25, 50, 75, 99, 100])
def test_automated_share_over_10000_keys_is_the_ramp_within_two_points(percent):
    policy = spec(Level.FULL, traffic_percent=percent)
    automated = sum(
        route(
            policy=policy, output=CONFIDENT, buckets=item_buckets(salt="invoices", key=f"inv-{n}")
        ).automated
        for n in range(10_000)
    )
    assert abs(automated / 100 - percent) <= 2


@pytest.mark.parametrize("rate", [0.01, 0.05, 0.2])
def test_audit_share_follows_the_audit_rate_and_is_independent_of_the_ramp(rate):
    policy = spec(Level.FULL, traffic_percent=50, audit_rate=rate)
    audited = automated = 0
    for n in range(10_000):
        d = route(policy=policy, output=CONFIDENT, buckets=item_buckets(salt="s", key=str(n)))
        automated += d.automated
        audited += any(t.reason is TaskReason.AUDIT for t in d.tasks)
    assert abs(audited / automated - rate) <= 0.02


def test_a_different_use_case_salt_buckets_the_same_key_differently():
    same_key = [item_buckets(salt=f"uc-{i}", key="inv-1").ramp for i in range(20)]
    assert len(set(same_key)) > 15
