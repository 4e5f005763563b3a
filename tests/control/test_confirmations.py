"""What a confirmation dialog says will happen: rounded figures from the last week."""

import pytest

from deployments.models import ModelVersion
from deployments.selectors import policy_current
from deployments.services.policies import policy_change
from reviewapp.control.confirmations import about, promote_effect, recent_traffic, restore_effect
from reviewapp.core.roles import Role
from tests.factories import classifier_bytes, make_use_case, make_user, register_model

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("count", "shown"), [(0, "0"), (0.6, "1"), (87.4, "87"), (2093.6, "2,100"), (12_449, "12,000")]
)
def test_figures_are_rounded_to_what_a_week_can_claim(count, shown):
    assert about(count) == shown


def test_under_full_automation_every_arrival_on_the_ramp_is_decided_by_the_new_champion():
    manager = make_user(Role.MANAGER)
    use_case = make_use_case(actor=manager, level="full", traffic_percent=50)
    register_model(use_case, classifier_bytes())
    effect = promote_effect(
        use_case=use_case,
        policy=policy_current(use_case=use_case),
        model_version=ModelVersion.objects.get(),
        traffic=recent_traffic(use_case=use_case),
    )
    assert "about 0 items a day will be decided by it alone (50% of traffic)" in effect


def test_restoring_names_each_setting_that_moves():
    manager = make_user(Role.MANAGER)
    use_case = make_use_case(actor=manager, level="assisted")
    first = policy_current(use_case=use_case)
    policy_change(
        use_case=use_case,
        actor=manager,
        changes={"level": "partial", "traffic_percent": 1},
        reason="start",
    )
    effect = restore_effect(
        current=policy_current(use_case=use_case),
        earlier=first,
        traffic=recent_traffic(use_case=use_case),
    )
    assert f"Version {first.version} becomes current again" in effect
    assert "level Partial → Assisted" in effect and "traffic 1% → 100%" in effect
