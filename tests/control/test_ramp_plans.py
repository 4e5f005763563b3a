"""Ramp plans over real traffic: started by hand, advanced and stepped back by the watch."""

from datetime import timedelta

import pytest
from django.utils import timezone

from deployments.models import RampPlan, RampPlanEvent
from deployments.selectors import policy_current
from deployments.services.policies import policy_change
from reviewapp.control.guardrail_watch import use_case_watch
from reviewapp.control.ramp_plans import (
    ramp_plan_cancel,
    ramp_plan_pause,
    ramp_plan_resume,
    ramp_plan_start,
)
from reviewapp.core.errors import Conflict, InvalidInput
from reviewapp.core.roles import Role
from tests.control.helpers import review_all, send
from tests.factories import constant_classifier_bytes, make_use_case, make_user, register_model

pytestmark = pytest.mark.django_db

STEPS = [1, 5, 25, 50, 100]


@pytest.fixture
def team():
    manager, reviewer = make_user(Role.MANAGER), make_user(Role.REVIEWER)
    use_case = make_use_case(
        actor=manager,
        members=[reviewer],
        level="partial",
        confidence_threshold=0.9,
        audit_rate=0.0,
        guardrails={"override_rate": {"max": 0.2, "window": 50, "min_sample": 10}},
    )
    register_model(use_case, constant_classifier_bytes("office", 0.8))
    return manager, reviewer, use_case


def test_starting_a_plan_puts_traffic_on_its_first_step(team):
    manager, _, use_case = team
    plan = ramp_plan_start(
        use_case=use_case, actor=manager, steps=STEPS, advance_after_items=10, reason="new model"
    )
    policy = policy_current(use_case=use_case)
    assert (policy.traffic_percent, policy.changed_by) == (1, manager)
    assert policy.reason == "ramp plan started at 1%: new model"
    assert (plan.state, plan.current_step, plan.current_percent) == ("active", 0, 1)
    event = plan.events.get()
    assert (event.kind, event.policy, event.actor) == ("start", policy, manager)


def test_one_plan_at_a_time_and_bad_plans_are_named(team):
    manager, _, use_case = team
    with pytest.raises(InvalidInput) as caught:
        ramp_plan_start(
            use_case=use_case, actor=manager, steps=[50, 5], advance_after_items=1, reason="x"
        )
    assert "steps" in caught.value.detail
    with pytest.raises(InvalidInput) as caught:
        ramp_plan_start(use_case=use_case, actor=manager, steps=STEPS, reason="x")
    assert "advance_after_items" in caught.value.detail
    with pytest.raises(InvalidInput) as caught:
        ramp_plan_start(
            use_case=use_case, actor=manager, steps=STEPS, advance_after_items=5, reason=" "
        )
    assert "reason" in caught.value.detail
    ramp_plan_start(
        use_case=use_case, actor=manager, steps=STEPS, advance_after_items=5, reason="go"
    )
    with pytest.raises(Conflict):
        ramp_plan_start(
            use_case=use_case, actor=manager, steps=STEPS, advance_after_items=5, reason="again"
        )


def test_the_plan_advances_one_step_after_n_reviewed_items_while_guardrails_hold(team):
    manager, reviewer, use_case = team
    ramp_plan_start(
        use_case=use_case, actor=manager, steps=STEPS, advance_after_items=10, reason="go"
    )
    send(use_case, range(9))
    review_all(use_case, reviewer, lambda task: "office")
    held = use_case_watch(use_case_id=use_case.pk)
    assert held.ramp.reason == "waiting for 9 of 10 reviewed items"
    assert policy_current(use_case=use_case).traffic_percent == 1

    send(use_case, range(100, 130))  # 30 more: still only one step per watch
    review_all(use_case, reviewer, lambda task: "office")
    moved = use_case_watch(use_case_id=use_case.pk)
    policy = policy_current(use_case=use_case)
    assert (policy.traffic_percent, policy.changed_by_system) == (5, True)
    assert policy.reason == (
        "ramp plan step 2 of 5: 5% of traffic after 39 reviewed items at 1% with every "
        "guardrail holding"
    )
    assert moved.policy is None and moved.ramp.traffic_percent == 5
    plan = RampPlan.objects.get()
    assert (plan.current_step, plan.state) == (1, "active")
    # The count starts again at the new step.
    assert (
        use_case_watch(use_case_id=use_case.pk).ramp.reason == "waiting for 0 of 10 reviewed items"
    )


def test_an_interval_plan_moves_with_injected_time_and_finishes(team):
    manager, _, use_case = team
    start = timezone.now()
    ramp_plan_start(
        use_case=use_case,
        actor=manager,
        steps=[10, 100],
        advance_after_seconds=3600,
        reason="overnight",
        now=start,
    )
    early = use_case_watch(use_case_id=use_case.pk, now=start + timedelta(minutes=59))
    assert early.ramp.reason == "waiting for 59 min of 1 h"
    done = use_case_watch(use_case_id=use_case.pk, now=start + timedelta(minutes=61))
    assert done.ramp.finished and policy_current(use_case=use_case).traffic_percent == 100
    plan = RampPlan.objects.get()
    assert (plan.state, plan.finished_at) == ("done", start + timedelta(minutes=61))
    assert [e.kind for e in plan.events.order_by("id")] == ["start", "advance", "finish"]


def test_a_broken_guardrail_steps_the_plan_back_and_pauses_it(team):
    manager, reviewer, use_case = team
    ramp_plan_start(
        use_case=use_case, actor=manager, steps=STEPS, advance_after_items=10, reason="go"
    )
    for batch in range(2):  # two good steps: 1% -> 5% -> 25%
        send(use_case, range(batch * 100, batch * 100 + 10))
        review_all(use_case, reviewer, lambda task: "office")
        use_case_watch(use_case_id=use_case.pk)
    assert policy_current(use_case=use_case).traffic_percent == 25

    send(use_case, range(500, 520))
    # Every one overridden: 20 of the last 40 (50%), clearly over the 20% limit.
    review_all(use_case, reviewer, lambda task: "travel")
    result = use_case_watch(use_case_id=use_case.pk)
    policy = policy_current(use_case=use_case)
    assert (policy.level, policy.traffic_percent, policy.changed_by_system) == ("assisted", 5, True)
    assert policy.reason.endswith(
        "level stepped down to assisted; ramp plan back to step 2 of 5 (5% of traffic)"
    )
    plan = RampPlan.objects.get()
    assert (plan.state, plan.current_step) == ("paused", 1)
    assert plan.paused_reason.startswith(
        "paused after a guardrail breach: guardrail breached: override rate"
    )
    back = plan.events.get(kind="step_back")
    assert back.policy == result.policy == policy


def test_traffic_changed_by_hand_pauses_the_plan_and_resume_puts_it_back(team):
    manager, reviewer, use_case = team
    ramp_plan_start(
        use_case=use_case, actor=manager, steps=STEPS, advance_after_items=5, reason="go"
    )
    policy_change(use_case=use_case, actor=manager, changes={"traffic_percent": 40}, reason="hurry")
    send(use_case, range(10))
    review_all(use_case, reviewer, lambda task: "office")
    use_case_watch(use_case_id=use_case.pk)
    plan = RampPlan.objects.get()
    assert plan.state == "paused"
    assert plan.paused_reason.startswith("traffic was set to 40% outside the plan")
    assert policy_current(use_case=use_case).traffic_percent == 40  # the manager's word stands

    ramp_plan_resume(use_case=use_case, actor=manager, reason="back to the plan")
    policy = policy_current(use_case=use_case)
    assert (policy.traffic_percent, policy.changed_by) == (1, manager)
    assert policy.reason == "ramp plan resumed at 1%: back to the plan"
    # Evidence from before the resume does not count.
    assert (
        use_case_watch(use_case_id=use_case.pk).ramp.reason == "waiting for 0 of 5 reviewed items"
    )


def test_a_paused_plan_does_not_move_and_a_cancelled_one_is_gone(team):
    manager, reviewer, use_case = team
    ramp_plan_start(
        use_case=use_case, actor=manager, steps=STEPS, advance_after_items=5, reason="go"
    )
    ramp_plan_pause(use_case=use_case, actor=manager, reason="holiday")
    send(use_case, range(10))
    review_all(use_case, reviewer, lambda task: "office")
    assert use_case_watch(use_case_id=use_case.pk).ramp is None
    assert policy_current(use_case=use_case).traffic_percent == 1
    ramp_plan_cancel(use_case=use_case, actor=manager, reason="not needed")
    plan = RampPlan.objects.get()
    assert plan.state == "cancelled" and plan.finished_at is not None
    assert [e.kind for e in plan.events.order_by("id")] == ["start", "pause", "cancel"]
    assert RampPlanEvent.objects.filter(kind="pause").get().actor == manager
    with pytest.raises(Conflict):
        ramp_plan_pause(use_case=use_case, actor=manager)
