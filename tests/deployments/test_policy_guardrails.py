"""Guardrail parsing and evaluation, pure: counts in, verdicts out (no database, no clock)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from deployments.policy import Level
from deployments.policy.guardrails import (
    GuardrailConfig,
    GuardrailsInvalid,
    Limit,
    Reading,
    State,
    breach_reason,
    guardrail_verdict,
    guardrails_evaluate,
    guardrails_json,
    guardrails_parse,
    outcomes_reading,
    rate_reading,
    step_down_level,
)

FULL_CONFIG = {
    "fallback_level": "assisted",
    "override_rate": {"max": 0.2, "window": 200},
    "null_output_rate": {"max": 0.05, "window": 500},
    "drift_psi": {"max": 0.25, "window": 1000},
    "audit_error_rate": {"max": 0.1, "window": 100},
    "webhook_url": "https://hooks.example.com/breach",
}


def test_the_documented_example_parses_with_defaults_filled_in():
    config = guardrails_parse(FULL_CONFIG)
    assert config.fallback_level is Level.ASSISTED
    assert config.webhook_url == "https://hooks.example.com/breach"
    assert [(x.name, x.max, x.window) for x in config.limits] == [
        ("override_rate", 0.2, 200),
        ("null_output_rate", 0.05, 500),
        ("drift_psi", 0.25, 1000),
        ("audit_error_rate", 0.1, 100),
    ]
    assert config.limit("override_rate").min_sample == 30
    assert config.limit("drift_psi").min_sample == 200


def test_every_key_is_optional():
    assert guardrails_parse({}) == GuardrailConfig()
    assert guardrails_parse(None).limits == ()
    only = guardrails_parse({"override_rate": {"max": 0.3}})
    assert only.fallback_level is Level.ASSISTED  # the default fallback
    assert only.limit("override_rate").window == 200
    small = guardrails_parse({"audit_error_rate": {"max": 0.1, "window": 10}})
    assert small.limit("audit_error_rate").min_sample == 10  # never more than the window


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ({"override_rate": {"max": 1.5}}, ("override_rate", "max")),
        ({"override_rate": {"max": "high"}}, ("override_rate", "max")),
        ({"override_rate": {"window": 10}}, ("override_rate", "max")),
        ({"override_rate": {"max": 0.2, "window": 0}}, ("override_rate", "window")),
        ({"override_rate": {"max": 0.2, "window": 2.5}}, ("override_rate", "window")),
        ({"override_rate": {"max": 0.2, "window": True}}, ("override_rate", "window")),
        ({"override_rate": {"max": 0.2, "colour": 1}}, ("override_rate", "colour")),
        ({"null_output_rate": [0.1]}, ("null_output_rate", "non_field_errors")),
        ({"drift_psi": {"max": -1}}, ("drift_psi", "max")),
        (
            {"audit_error_rate": {"max": 0.1, "window": 5, "min_sample": 9}},
            ("audit_error_rate", "min_sample"),
        ),
        ({"fallback_level": "full"}, ("fallback_level",)),
        ({"fallback_level": "sometimes"}, ("fallback_level",)),
        ({"webhook_url": "ftp://x"}, ("webhook_url",)),
        ({"webhook_url": 12}, ("webhook_url",)),
        ({"latency": {"max": 1}}, ("latency",)),
        ({"override_rate": {"max": 0.2, "margin": 0}}, ("override_rate", "margin")),
        ({"override_rate": {"max": 0.6, "margin": 0.4}}, ("override_rate", "margin")),
        ({"override_rate": {"max": 0.2, "margin": "x"}}, ("override_rate", "margin")),
        ({"audit_error_rate": {"max": 0.1, "alpha": 0}}, ("audit_error_rate", "alpha")),
        ({"audit_error_rate": {"max": 0.1, "alpha": 0.5}}, ("audit_error_rate", "alpha")),
        ({"null_output_rate": {"max": 0.1, "confidence": 1}}, ("null_output_rate", "confidence")),
        ({"null_output_rate": {"max": 0.1, "confidence": 95}}, ("null_output_rate", "confidence")),
        ({"drift_psi": {"max": 0.2, "alpha": 0.01}}, ("drift_psi", "alpha")),
    ],
)
def test_a_bad_field_is_named(raw, path):
    with pytest.raises(GuardrailsInvalid) as caught:
        guardrails_parse(raw)
    errors = caught.value.errors
    for key in path:
        assert key in errors, (raw, errors)
        errors = errors[key]


def test_every_bad_field_is_named_at_once():
    with pytest.raises(GuardrailsInvalid) as caught:
        guardrails_parse({"fallback_level": "x", "override_rate": {"max": 2}, "webhook_url": "x"})
    assert set(caught.value.errors) == {"fallback_level", "override_rate", "webhook_url"}


def test_the_rate_test_keys_default_so_older_configurations_keep_their_meaning():
    limit = guardrails_parse(FULL_CONFIG).limit("override_rate")
    assert (limit.margin, limit.alpha, limit.confidence) == (0.2, 0.001, 0.95)
    tuned = guardrails_parse(
        {"audit_error_rate": {"max": 0.05, "margin": 0.03, "alpha": 0.01, "confidence": 0.9}}
    ).limit("audit_error_rate")
    assert (tuned.test.p0, tuned.test.p1, tuned.test.alpha) == (0.05, 0.08, 0.01)
    assert guardrails_parse(FULL_CONFIG).limit("drift_psi").margin is None


def test_a_bad_rate_test_key_says_what_it_means():
    with pytest.raises(GuardrailsInvalid) as caught:
        guardrails_parse({"override_rate": {"max": 0.6, "margin": 0.5, "alpha": 2}})
    assert caught.value.errors["override_rate"] == {
        "margin": ["max + margin must stay under 1"],
        "alpha": ["must be a number in (0, 0.1]: false alarms per check"],
    }


def test_canonical_json_round_trips():
    config = guardrails_parse(FULL_CONFIG)
    assert guardrails_parse(guardrails_json(config)) == config
    assert guardrails_json(GuardrailConfig()) == {}


LIMIT = Limit("override_rate", max=0.2, window=200, min_sample=30)


@pytest.mark.parametrize(
    ("events", "total", "state"),
    [
        (0, 0, State.INSUFFICIENT),
        (29, 29, State.INSUFFICIENT),  # every one overridden, but too few to judge
        (6, 30, State.INSUFFICIENT),  # 20%: exactly at the limit, neither shown over nor under
        (12, 30, State.INSUFFICIENT),  # 40% of 30 could still be bad luck at 20%
        (15, 30, State.BREACHED),  # half of 30: no longer luck
        (2, 200, State.HOLDING),  # 1%, and surely under 20% (upper bound 3.6%)
        (41, 200, State.INSUFFICIENT),  # 20.5%: over the limit, but not shown to be
        (80, 200, State.BREACHED),
    ],
)
def test_a_rate_breaches_only_when_the_evidence_says_so(events, total, state):
    verdict = guardrail_verdict(limit=LIMIT, reading=rate_reading(events=events, total=total))
    assert verdict.state is state


def test_a_watching_rate_shows_its_interval_and_what_it_waits_for():
    verdict = guardrail_verdict(limit=LIMIT, reading=rate_reading(events=41, total=200))
    assert verdict.describe() == (
        "override rate 20.5% over the last 200 reviewed items (95% CI 15.5%–26.6%): "
        "not yet shown under 20.0%"
    )


def test_a_rise_at_the_end_of_the_window_is_caught_by_the_sequential_test():
    limit = Limit("override_rate", max=0.05, window=1000, min_sample=30)
    calm = [n % 50 == 0 for n in range(900)]  # 2%
    rise = [n % 3 == 0 for n in range(100)]  # then 33%
    verdict = guardrail_verdict(limit=limit, reading=outcomes_reading(calm + rise))
    assert verdict.breached and verdict.judgement.because == "trend"
    assert verdict.reading.value < 0.06  # the window's rate alone is barely over the limit
    assert verdict.describe().startswith("override rate rising above 5.0%")
    # As many bad items spread evenly over the window are no rise, and no breach.
    events = sum(calm + rise)
    spread = [False] * 1000
    for n in range(events):
        spread[n * 1000 // events] = True
    assert not guardrail_verdict(limit=limit, reading=outcomes_reading(spread)).breached


def test_impossible_counts_are_refused():
    with pytest.raises(ValueError):
        rate_reading(events=3, total=2)


def test_evaluation_judges_every_configured_limit_and_only_those():
    config = guardrails_parse(FULL_CONFIG)
    verdicts = guardrails_evaluate(
        config=config,
        readings={
            "override_rate": rate_reading(events=80, total=200),
            "null_output_rate": rate_reading(events=1, total=500),
            "drift_psi": Reading(0.02, 1000),
            "latency": Reading(9.0, 100),  # not configured: ignored
        },
    )
    states = {v.limit.name: v.state for v in verdicts}
    assert states == {
        "override_rate": State.BREACHED,
        "null_output_rate": State.HOLDING,
        "drift_psi": State.HOLDING,
        "audit_error_rate": State.INSUFFICIENT,  # no audits yet
    }


@pytest.mark.parametrize(
    ("current", "fallback", "expected"),
    [
        ("full", "assisted", Level.ASSISTED),
        ("partial", "assisted", Level.ASSISTED),
        ("full", "partial", Level.PARTIAL),
        ("assisted", "assisted", None),
        ("shadow", "assisted", None),  # a breach never raises the level
        ("partial", "human_only", Level.HUMAN_ONLY),
    ],
)
def test_step_down_goes_to_the_fallback_but_never_up(current, fallback, expected):
    config = guardrails_parse({"fallback_level": fallback})
    assert step_down_level(current=current, config=config) == expected


def test_the_reason_says_what_broke_and_what_was_done():
    config = guardrails_parse(FULL_CONFIG)
    verdicts = guardrails_evaluate(
        config=config,
        readings={
            "override_rate": rate_reading(events=80, total=200),
            "drift_psi": Reading(0.41, 1000),
        },
    )
    reason = breach_reason(verdicts=verdicts, step_to=Level.ASSISTED)
    assert reason == (
        "guardrail breached: override rate 40.0% > 20.0% over the last 200 reviewed items "
        "(95% CI 33.5%–46.9%); "
        "input shift (worst feature) 0.41 > 0.25 over the last 1000 items; "
        "level stepped down to assisted"
    )
    assert "stepped down" not in breach_reason(verdicts=verdicts, step_to=None)


@given(
    maximum=st.floats(0, 1),
    events=st.integers(0, 500),
    extra=st.integers(0, 500),
    min_sample=st.integers(1, 200),
)
def test_a_rate_never_breaches_at_or_under_its_limit_nor_holds_at_or_over_it(
    maximum, events, extra, min_sample
):
    total = events + extra
    limit = Limit("null_output_rate", max=maximum, window=500, min_sample=min_sample)
    verdict = guardrail_verdict(limit=limit, reading=rate_reading(events=events, total=total))
    enough = total >= min_sample and total > 0
    if verdict.breached:
        assert enough and events / total > maximum
    if verdict.state is State.HOLDING:
        assert enough and (events / total < maximum or maximum == 1)
    if not enough:
        assert verdict.state is State.INSUFFICIENT
