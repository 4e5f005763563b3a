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
        (6, 30, State.HOLDING),  # exactly at the limit holds
        (7, 30, State.BREACHED),
        (40, 200, State.HOLDING),
        (41, 200, State.BREACHED),
    ],
)
def test_a_rate_breaches_only_above_its_limit_on_enough_observations(events, total, state):
    verdict = guardrail_verdict(limit=LIMIT, reading=rate_reading(events=events, total=total))
    assert verdict.state is state


def test_impossible_counts_are_refused():
    with pytest.raises(ValueError):
        rate_reading(events=3, total=2)


def test_evaluation_judges_every_configured_limit_and_only_those():
    config = guardrails_parse(FULL_CONFIG)
    verdicts = guardrails_evaluate(
        config=config,
        readings={
            "override_rate": rate_reading(events=50, total=200),
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
            "override_rate": rate_reading(events=62, total=200),
            "drift_psi": Reading(0.41, 1000),
        },
    )
    reason = breach_reason(verdicts=verdicts, step_to=Level.ASSISTED)
    assert reason == (
        "guardrail breached: override rate 31.0% > 20.0% over the last 200 reviewed items; "
        "input drift (worst feature PSI) 0.41 > 0.25 over the last 1000 items; "
        "level stepped down to assisted"
    )
    assert "stepped down" not in breach_reason(verdicts=verdicts, step_to=None)


@given(
    maximum=st.floats(0, 1),
    events=st.integers(0, 500),
    extra=st.integers(0, 500),
    min_sample=st.integers(1, 200),
)
def test_breach_is_exactly_rate_above_max_with_enough_sample(maximum, events, extra, min_sample):
    total = events + extra
    limit = Limit("null_output_rate", max=maximum, window=500, min_sample=min_sample)
    verdict = guardrail_verdict(limit=limit, reading=rate_reading(events=events, total=total))
    enough = total >= min_sample and total > 0
    assert verdict.breached == (enough and events / total > maximum)
    assert (verdict.state is State.INSUFFICIENT) == (not enough)
