"""Ramp-plan stepping, pure: reviewed counts and elapsed seconds are passed in, never slept."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from deployments.policy.ramp import (
    Move,
    RampPlanSpec,
    StepProgress,
    ramp_next,
    ramp_plan_problems,
    step_requirements,
)

STEPS = (1, 5, 25, 50, 100)
BY_ITEMS = RampPlanSpec(steps=STEPS, advance_after_items=500)
BY_TIME = RampPlanSpec(steps=STEPS, advance_after_seconds=86_400)
BY_BOTH = RampPlanSpec(steps=STEPS, advance_after_items=500, advance_after_seconds=3600)


def at(index, reviewed=0, seconds=0.0):
    return StepProgress(index=index, reviewed=reviewed, elapsed_seconds=seconds)


def test_holds_until_enough_items_were_reviewed_then_advances_one_step():
    held = ramp_next(plan=BY_ITEMS, progress=at(0, reviewed=499), guardrails_hold=True)
    assert (held.move, held.index, held.traffic_percent) == (Move.HOLD, 0, 1)
    assert held.reason == "waiting for 499 of 500 reviewed items"
    moved = ramp_next(plan=BY_ITEMS, progress=at(0, reviewed=500), guardrails_hold=True)
    assert (moved.move, moved.index, moved.traffic_percent) == (Move.ADVANCE, 1, 5)
    assert moved.reason == (
        "ramp plan step 2 of 5: 5% of traffic after 500 reviewed items at 1% "
        "with every guardrail holding"
    )
    # Many more items than needed still move only one step.
    assert (
        ramp_next(plan=BY_ITEMS, progress=at(1, reviewed=10_000), guardrails_hold=True).index == 2
    )


def test_interval_plans_advance_on_time_alone():
    assert ramp_next(plan=BY_TIME, progress=at(2, seconds=86_399), guardrails_hold=True).move is (
        Move.HOLD
    )
    moved = ramp_next(plan=BY_TIME, progress=at(2, seconds=86_400), guardrails_hold=True)
    assert (moved.move, moved.traffic_percent) == (Move.ADVANCE, 50)
    assert "after 1 d at 25%" in moved.reason


def test_with_both_criteria_both_are_needed():
    assert step_requirements(plan=BY_BOTH, progress=at(0, reviewed=600, seconds=120)) == [
        "2 min of 1 h"
    ]
    assert ramp_next(plan=BY_BOTH, progress=at(0, 600, 120), guardrails_hold=True).move is Move.HOLD
    assert ramp_next(plan=BY_BOTH, progress=at(0, 10, 7200), guardrails_hold=True).move is Move.HOLD
    assert (
        ramp_next(plan=BY_BOTH, progress=at(0, 500, 3600), guardrails_hold=True).move
        is Move.ADVANCE
    )


def test_reaching_the_last_step_finishes_the_plan():
    last = ramp_next(plan=BY_ITEMS, progress=at(3, reviewed=500), guardrails_hold=True)
    assert (last.move, last.traffic_percent, last.finished) == (Move.ADVANCE, 100, True)
    done = ramp_next(plan=BY_ITEMS, progress=at(4, reviewed=10**6), guardrails_hold=True)
    assert (done.move, done.finished) == (Move.HOLD, True)


def test_a_broken_guardrail_steps_back_one_step_whatever_the_evidence():
    back = ramp_next(plan=BY_ITEMS, progress=at(3, reviewed=10**6), guardrails_hold=False)
    assert (back.move, back.index, back.traffic_percent) == (Move.STEP_BACK, 2, 25)
    assert back.reason == "ramp plan back to step 3 of 5 (25% of traffic)"
    first = ramp_next(plan=BY_ITEMS, progress=at(0), guardrails_hold=False)
    assert (first.move, first.index, first.traffic_percent) == (Move.STEP_BACK, 0, 1)


def test_a_step_outside_the_plan_is_a_bug():
    with pytest.raises(ValueError):
        ramp_next(plan=BY_ITEMS, progress=at(5), guardrails_hold=True)


@pytest.mark.parametrize(
    ("steps", "items", "seconds", "field"),
    [
        ([], 10, None, "steps"),
        ([5, 1], 10, None, "steps"),
        ([1, 1, 5], 10, None, "steps"),
        ([0, 50], 10, None, "steps"),
        ([50, 101], 10, None, "steps"),
        (["1", 5], 10, None, "steps"),
        ([1, 5], None, None, "advance_after_items"),
        ([1, 5], 0, None, "advance_after_items"),
        ([1, 5], None, 59, "advance_after_seconds"),
        ([1, 5], 2.5, None, "advance_after_items"),
    ],
)
def test_bad_plans_are_named_by_field(steps, items, seconds, field):
    problems = ramp_plan_problems(
        steps=steps, advance_after_items=items, advance_after_seconds=seconds
    )
    assert field in problems
    with pytest.raises(ValueError):
        RampPlanSpec(steps=tuple(steps), advance_after_items=items, advance_after_seconds=seconds)


@given(
    steps=st.lists(st.integers(1, 100), min_size=1, max_size=20, unique=True).map(sorted),
    items=st.integers(1, 1000),
    reviewed=st.integers(0, 5000),
    hold=st.booleans(),
    data=st.data(),
)
def test_a_plan_moves_at_most_one_step_and_only_up_while_guardrails_hold(
    steps, items, reviewed, hold, data
):
    plan = RampPlanSpec(steps=tuple(steps), advance_after_items=items)
    index = data.draw(st.integers(0, len(steps) - 1))
    move = ramp_next(plan=plan, progress=at(index, reviewed=reviewed), guardrails_hold=hold)
    assert abs(move.index - index) <= 1
    assert move.traffic_percent == steps[move.index]
    if hold:
        assert move.index >= index
        assert (move.move is Move.ADVANCE) == (reviewed >= items and index < len(steps) - 1)
    else:
        assert move.index == max(index - 1, 0) and move.move is Move.STEP_BACK
