"""Reviewers through the API: claiming under leases, deciding, conflicts, what they see."""

from datetime import timedelta

import pytest
from django.utils import timezone

from reviewapp.core.models import Event
from reviewapp.core.roles import Role
from reviewapp.monitoring.models import RollupEvent
from reviewapp.reviews.models import Decision, Disagreement, Item, ReviewTask
from reviewapp.reviews.services.review import review_task_claim, review_task_decide
from tests.factories import (
    constant_classifier_bytes,
    invoice,
    make_use_case,
    make_user,
    register_model,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def team():
    caller = make_user(Role.INTEGRATION)
    alice = make_user(Role.REVIEWER, "alice")
    bob = make_user(Role.REVIEWER, "bob")
    return caller, alice, bob


def seeded(api, caller, members, *, level="assisted", n=3, **policy):
    use_case = make_use_case(members=[caller, *members], level=level, **policy)
    register_model(use_case, constant_classifier_bytes("office", 0.7))
    for i in range(n):
        api(caller).post(f"/api/v1/use-cases/{use_case.slug}/items/", invoice(i), format="json")
    return use_case


def claim(api, user, use_case):
    return api(user).post(f"/api/v1/use-cases/{use_case.slug}/review/next/")


def decide(api, user, task, body, **headers):
    return api(user).post(f"/api/v1/review/tasks/{task}/decision/", body, format="json", **headers)


def test_next_claims_the_oldest_task_with_the_suggestion_on_assisted(api, team):
    caller, alice, _ = team
    use_case = seeded(api, caller, [alice])
    response = claim(api, alice, use_case)
    assert response.status_code == 200
    body = response.json()
    assert body["external_id"] == "inv-0"
    assert body["suggestion"]["label"] == "office"
    assert body["suggestion"]["confidence"] == pytest.approx(0.7)
    assert set(body["suggestion"]["probabilities"]) == {"travel", "office", "other"}
    assert body["lease_token"] and body["lease_expires_at"]


def test_blind_tasks_never_carry_the_suggestion(api, team):
    caller, alice, _ = team
    use_case = seeded(api, caller, [alice], level="shadow")
    body = claim(api, alice, use_case).json()
    assert body["suggestion"] is None
    # (A timestamp such as "…:10.7…" holds "0.7" too: only the rest is searched.)
    rest = {k: v for k, v in body.items() if not k.endswith("_at")}
    assert "office" not in str(rest) and "0.7" not in str(rest)


def test_pii_is_masked_for_reviewers_without_the_right(api, team):
    caller, alice, bob = team
    use_case = seeded(api, caller, [alice, bob])
    from deployments.models import UseCaseMembership

    UseCaseMembership.objects.filter(use_case=use_case, user=bob).update(can_view_pii=True)
    masked = claim(api, alice, use_case).json()
    assert masked["features"]["vendor"] is None and masked["pii_masked"] == ["vendor"]
    assert "Vendor 0" not in str(masked)
    shown = claim(api, bob, use_case).json()
    assert shown["features"]["vendor"] == "Vendor 1" and shown["pii_masked"] == []


def test_two_reviewers_get_different_tasks_and_nothing_when_empty(api, team):
    caller, alice, bob = team
    use_case = seeded(api, caller, [alice, bob], n=2)
    first = claim(api, alice, use_case).json()
    second = claim(api, bob, use_case).json()
    assert first["task"] != second["task"]
    assert claim(api, make_user(Role.MANAGER), use_case).status_code == 404  # not a member
    assert claim(api, alice, use_case).json()["task"] == first["task"]  # still hers


def test_next_returns_the_task_already_held_so_a_closed_tab_loses_nothing(api, team):
    caller, alice, _ = team
    use_case = seeded(api, caller, [alice])
    first = claim(api, alice, use_case).json()
    again = claim(api, alice, use_case).json()
    assert again["task"] == first["task"] and again["lease_token"] == first["lease_token"]


def test_deciding_records_kind_and_disagreement(api, team):
    caller, alice, _ = team
    use_case = seeded(api, caller, [alice], n=2)
    task = claim(api, alice, use_case).json()
    accepted = decide(api, alice, task["task"], {"label": "office"})
    assert accepted.status_code == 201
    assert accepted.json()["kind"] == "accepted" and accepted.json()["disagreement"] is False
    task = claim(api, alice, use_case).json()
    overridden = decide(api, alice, task["task"], {"label": "travel", "comment": "hotel bill"})
    assert overridden.json()["kind"] == "overridden" and overridden.json()["disagreement"] is True
    assert claim(api, alice, use_case).status_code == 204


def test_deciding_twice_is_409(api, team):
    caller, alice, _ = team
    use_case = seeded(api, caller, [alice], n=1)
    task = claim(api, alice, use_case).json()
    assert decide(api, alice, task["task"], {"label": "office"}).status_code == 201
    second = decide(api, alice, task["task"], {"label": "office"})
    assert second.status_code == 409
    assert "already decided" in second.json()["detail"]
    assert Decision.objects.count() == 1


def test_a_lost_lease_is_409_and_the_new_holder_decides(api, team):
    caller, alice, bob = team
    use_case = seeded(api, caller, [alice, bob], n=1)
    past = timezone.now() - timedelta(hours=1)
    task = review_task_claim(use_case=use_case, user=alice, now=past, lease_seconds=60)
    old_token = str(task.lease_token)
    bobs = claim(api, bob, use_case).json()  # alice's lease expired: bob re-claims
    assert bobs["task"] == str(task.pk)
    late = decide(api, alice, task.pk, {"label": "travel", "lease_token": old_token})
    assert late.status_code == 409 and "lease" in late.json()["detail"]
    assert (
        decide(
            api, bob, bobs["task"], {"label": "office", "lease_token": bobs["lease_token"]}
        ).status_code
        == 201
    )
    assert Decision.objects.get().reviewer == bob


def test_a_stale_token_from_the_same_reviewer_is_refused(api, team):
    caller, alice, _ = team
    use_case = seeded(api, caller, [alice], n=1)
    past = timezone.now() - timedelta(hours=1)
    old = review_task_claim(use_case=use_case, user=alice, now=past, lease_seconds=60)
    fresh = claim(api, alice, use_case).json()
    assert fresh["lease_token"] != str(old.lease_token)
    assert (
        decide(
            api, alice, fresh["task"], {"label": "office", "lease_token": str(old.lease_token)}
        ).status_code
        == 409
    )


def test_an_expired_lease_nobody_took_can_still_be_decided(api, team):
    caller, alice, _ = team
    use_case = seeded(api, caller, [alice], n=1)
    past = timezone.now() - timedelta(hours=1)
    task = review_task_claim(use_case=use_case, user=alice, now=past, lease_seconds=60)
    response = decide(
        api, alice, task.pk, {"label": "office", "lease_token": str(task.lease_token)}
    )
    assert response.status_code == 201


def test_deciding_without_a_claim_is_409(api, team):
    caller, alice, bob = team
    use_case = seeded(api, caller, [alice, bob], n=1)
    task = claim(api, alice, use_case).json()
    response = decide(api, bob, task["task"], {"label": "office"})
    assert response.status_code == 409


def test_idempotency_key_replays_the_same_answer_and_refuses_a_different_body(api, team):
    caller, alice, _ = team
    use_case = seeded(api, caller, [alice], n=1)
    task = claim(api, alice, use_case).json()
    key = {"HTTP_IDEMPOTENCY_KEY": "k-123"}
    first = decide(api, alice, task["task"], {"label": "travel"}, **key)
    again = decide(api, alice, task["task"], {"label": "travel"}, **key)
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    different = decide(api, alice, task["task"], {"label": "other"}, **key)
    assert different.status_code == 409 and "idempotency_key" in different.json()
    assert Decision.objects.count() == 1


def test_a_key_already_used_on_another_task_refuses_the_decision_and_records_nothing_of_it(
    api, team
):
    """The decision and everything recorded with it (its outcome event, its disagreement, the
    rollup event) are written together: when the stored key refuses the decision, none of
    them is left behind and the task stays with the reviewer."""
    caller, alice, _ = team
    use_case = seeded(api, caller, [alice], n=2)
    key = {"HTTP_IDEMPOTENCY_KEY": "k-once"}
    first = claim(api, alice, use_case).json()
    assert decide(api, alice, first["task"], {"label": "travel"}, **key).status_code == 201
    events, rollups = Event.objects.count(), RollupEvent.objects.count()
    disagreements = Disagreement.objects.count()
    second = claim(api, alice, use_case).json()
    refused = decide(api, alice, second["task"], {"label": "travel"}, **key)
    assert refused.status_code == 409 and "idempotency_key" in refused.json()
    assert Decision.objects.count() == 1
    assert ReviewTask.objects.get(pk=second["task"]).state == "open"
    assert ReviewTask.objects.get(pk=second["task"]).item.status == "in_review"
    assert Event.objects.count() == events and RollupEvent.objects.count() == rollups
    assert Disagreement.objects.count() == disagreements
    # The same answer without the key is taken, with what goes with it.
    assert decide(api, alice, second["task"], {"label": "travel"}).status_code == 201
    assert Event.objects.count() == events + 1
    assert Disagreement.objects.count() == disagreements + 1


@pytest.mark.parametrize(
    "bad_key",
    ["k" * 201, "has space", "tab\tinside", "", "caf\u00e9"],
    ids=["too-long", "space", "control", "empty", "non-ascii"],
)
def test_a_malformed_idempotency_key_is_a_400_naming_the_header(api, team, bad_key):
    caller, alice, _ = team
    use_case = seeded(api, caller, [alice], n=1)
    task = claim(api, alice, use_case).json()
    response = decide(api, alice, task["task"], {"label": "travel"}, HTTP_IDEMPOTENCY_KEY=bad_key)
    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()
    # nothing was written: the task is still held, and a good key decides it
    assert not Decision.objects.exists()
    fixed = decide(api, alice, task["task"], {"label": "travel"}, HTTP_IDEMPOTENCY_KEY="k" * 200)
    assert fixed.status_code == 201


def test_skip_gives_the_task_to_someone_else_first(api, team):
    caller, alice, bob = team
    use_case = seeded(api, caller, [alice, bob], n=2)
    first = claim(api, alice, use_case).json()
    skip = api(alice).post(
        f"/api/v1/review/tasks/{first['task']}/skip/",
        {"lease_token": first["lease_token"]},
        format="json",
    )
    assert skip.status_code == 204
    assert claim(api, alice, use_case).json()["task"] != first["task"]
    assert claim(api, bob, use_case).json()["task"] == first["task"]


def test_double_review_needs_two_different_reviewers(api, team):
    caller, alice, bob = team
    use_case = seeded(api, caller, [alice, bob], n=1, double_review_rate=1.0)
    assert ReviewTask.objects.count() == 2
    task = claim(api, alice, use_case).json()
    assert decide(api, alice, task["task"], {"label": "office"}).status_code == 201
    assert claim(api, alice, use_case).status_code == 204  # the second task is not for her
    second = claim(api, bob, use_case).json()
    assert second["suggestion"] is None  # the double review is blind
    assert decide(api, bob, second["task"], {"label": "travel"}).status_code == 201
    item = Item.objects.get()
    assert item.decision_label == "office"  # the first human answer is the item's decision
    assert Decision.objects.filter(item=item).count() == 2


def test_audit_decision_replaces_the_model_decision_and_records_an_audit_disagreement(api, team):
    caller, alice, _ = team
    use_case = seeded(api, caller, [alice], level="full", n=1, audit_rate=1.0)
    item = Item.objects.get()
    assert item.decision_source == "model" and item.route == "auto"
    task = claim(api, alice, use_case).json()
    assert task["reason"] == "audit" and task["suggestion"] is None
    decide(api, alice, task["task"], {"label": "travel"})
    item.refresh_from_db()
    assert (item.decision_source, item.decision_label) == ("human", "travel")
    assert item.disagreements.get().kind == "audit"


def test_regression_decisions_take_a_value_and_count_disagreement_beyond_tolerance(api, team):
    caller, alice, _ = team
    from tests.factories import regressor_bytes

    use_case = make_use_case(members=[caller, alice], task_type="regression", level="assisted")
    register_model(use_case, regressor_bytes())
    for n, x in enumerate([1.0, 2.0]):
        api(caller).post(
            f"/api/v1/use-cases/{use_case.slug}/items/",
            {"external_id": f"r{n}", "features": {"x": x, "y": 0.0}},
            format="json",
        )
    task = claim(api, alice, use_case).json()
    model_value = task["suggestion"]["value"]
    close = decide(api, alice, task["task"], {"value": model_value + 1.5})
    assert close.json()["kind"] == "accepted" and close.json()["disagreement"] is False
    task = claim(api, alice, use_case).json()
    far = decide(api, alice, task["task"], {"value": task["suggestion"]["value"] + 10})
    assert far.json()["kind"] == "overridden" and far.json()["disagreement"] is True
    assert decide(api, alice, task["task"], {"label": "x"}).status_code in (400, 409)


def test_time_spent_is_recorded(team):
    caller, alice, _ = team
    use_case = make_use_case(members=[alice], level="human_only")
    from reviewapp.reviews.services.ingest import item_ingest

    item_ingest(use_case=use_case, external_id="a", features={"amount": 1.0})
    start = timezone.now()
    task = review_task_claim(use_case=use_case, user=alice, now=start)
    result = review_task_decide(
        task=task, user=alice, label="office", now=start + timedelta(seconds=7)
    )
    assert result.decision.time_spent_ms == 7000
