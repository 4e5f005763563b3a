"""Four-eyes: raising automation or promoting a champion waits for a second manager."""

import pytest

from deployments.models import ModelVersion
from deployments.selectors import policy_current
from deployments.services.policies import policy_change
from reviewapp.core.models import Event
from reviewapp.core.roles import Role
from tests.factories import classifier_bytes, make_use_case, make_user, register_model

pytestmark = pytest.mark.django_db


@pytest.fixture
def team(api):
    asker, second = make_user(Role.MANAGER, "ann"), make_user(Role.MANAGER, "bob")
    use_case = make_use_case(actor=asker, members=[asker, second], level="assisted")
    patched = api(asker).patch(
        f"/api/v1/use-cases/{use_case.slug}/", {"four_eyes": True}, format="json"
    )
    assert patched.status_code == 200 and patched.json()["four_eyes"] is True
    return asker, second, use_case


def base(use_case) -> str:
    return f"/api/v1/use-cases/{use_case.slug}/"


def ask_for_partial(api, asker, use_case):
    response = api(asker).patch(
        f"{base(use_case)}policy/", {"level": "partial", "reason": "ready"}, format="json"
    )
    assert response.status_code == 202, response.content
    return response.json()["change_request"]


def test_raising_the_level_waits_and_a_second_manager_applies_it(api, team):
    asker, second, use_case = team
    held = ask_for_partial(api, asker, use_case)
    assert held["state"] == "pending" and held["requested_by"] == "ann"
    assert policy_current(use_case=use_case).level == "assisted"
    approve = f"{base(use_case)}change-requests/{held['id']}/approve/"
    own = api(asker).post(approve, {"reason": "fine"}, format="json")
    assert own.status_code == 403 and policy_current(use_case=use_case).level == "assisted"
    assert api(second).post(approve, {}, format="json").json().keys() == {"reason", "code"}
    events_before = Event.objects.filter(type="policy.changed").count()
    approved = api(second).post(approve, {"reason": "readiness is green"}, format="json")
    assert approved.status_code == 200 and approved.json()["state"] == "approved"
    policy = policy_current(use_case=use_case)
    assert (policy.level, policy.changed_by) == ("partial", second)
    assert "ready" in policy.reason and "readiness is green" in policy.reason
    assert Event.objects.filter(type="policy.changed").count() == events_before + 1
    listed = api(asker).get(f"{base(use_case)}change-requests/").json()
    assert [(r["state"], r["decided_by"]) for r in listed] == [("approved", "bob")]
    again = api(second).post(approve, {"reason": "twice"}, format="json")
    assert again.status_code == 409


def test_a_rejected_request_changes_nothing(api, team):
    asker, second, use_case = team
    held = ask_for_partial(api, asker, use_case)
    reject = f"{base(use_case)}change-requests/{held['id']}/reject/"
    rejected = api(second).post(reject, {"reason": "override rate too high"}, format="json")
    assert rejected.json()["state"] == "rejected"
    assert rejected.json()["decision_reason"] == "override rate too high"
    assert policy_current(use_case=use_case).level == "assisted"


def test_a_stale_request_cannot_be_approved(api, team):
    asker, second, use_case = team
    held = ask_for_partial(api, asker, use_case)
    policy_change(use_case=use_case, actor=second, changes={"audit_rate": 0.2}, reason="audit")
    approve = f"{base(use_case)}change-requests/{held['id']}/approve/"
    stale = api(second).post(approve, {"reason": "ok"}, format="json")
    assert stale.status_code == 409 and "changed since" in stale.json()["detail"]
    assert policy_current(use_case=use_case).level == "assisted"


def test_lowering_the_level_is_immediate_even_with_four_eyes(api, team):
    asker, _, use_case = team
    response = api(asker).patch(
        f"{base(use_case)}policy/", {"level": "shadow", "reason": "drift"}, format="json"
    )
    assert response.status_code == 200 and policy_current(use_case=use_case).level == "shadow"


def test_promoting_waits_for_a_second_manager(api, team):
    asker, second, use_case = team
    register_model(use_case, classifier_bytes())
    register_model(use_case, classifier_bytes(seed=3), version="v2")
    held = api(asker).post(
        f"{base(use_case)}models/v2/promote/", {"reason": "better"}, format="json"
    )
    assert held.status_code == 202 and held.json()["change_request"]["changes"] == {"version": "v2"}
    assert ModelVersion.objects.get(role="champion").version == "v1"
    request_id = held.json()["change_request"]["id"]
    approve = f"{base(use_case)}change-requests/{request_id}/approve/"
    assert api(second).post(approve, {"reason": "agreed"}, format="json").status_code == 200
    assert ModelVersion.objects.get(role="champion").version == "v2"
    assert Event.objects.filter(type="model.changed", data__version="v2").exists()


def test_restoring_a_version_that_raises_the_level_waits_too(api, team):
    asker, second, use_case = team
    policy_change(use_case=use_case, actor=second, changes={"level": "partial"}, reason="go")
    policy_change(use_case=use_case, actor=second, changes={"level": "assisted"}, reason="back")
    partial = policy_current(use_case=use_case).version - 1
    restore = f"{base(use_case)}policy/history/{partial}/restore/"
    held = api(asker).post(restore, {"reason": "breach was a false alarm"}, format="json")
    assert held.status_code == 202 and policy_current(use_case=use_case).level == "assisted"
    request_id = held.json()["change_request"]["id"]
    approve = f"{base(use_case)}change-requests/{request_id}/approve/"
    assert api(second).post(approve, {"reason": "agreed"}, format="json").status_code == 200
    assert policy_current(use_case=use_case).level == "partial"
