"""Escalations: a reviewer hands an item to the managers; a manager answers it or returns it to
the queue with a note the next reviewer reads."""

import re

import pytest
from django.db import IntegrityError

from deployments.models import UseCaseMembership
from reviewapp.core.errors import Conflict, InvalidInput
from reviewapp.core.roles import Role
from reviewapp.reviews.models import Decision, Escalation, Item, ReviewTask
from reviewapp.reviews.services.escalations import escalation_raise, escalation_resolve
from reviewapp.reviews.services.review import review_task_claim, review_task_decide
from tests.factories import (
    constant_classifier_bytes,
    logged_in_client,
    make_use_case,
    make_user,
    register_model,
    send_items,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def setting():
    rosa = make_user(Role.REVIEWER, "rosa")
    manager = make_user(Role.MANAGER, "maria")
    use_case = make_use_case(members=[rosa], pii_members=[manager], level="assisted")
    register_model(use_case, constant_classifier_bytes("office", 0.7))
    send_items(use_case, range(2))
    task = review_task_claim(use_case=use_case, user=rosa)
    return rosa, manager, use_case, task


def test_only_the_holder_can_escalate_and_only_with_a_reason(setting):
    rosa, manager, use_case, task = setting
    with pytest.raises(InvalidInput) as missing:
        escalation_raise(task=task, user=rosa, comment="   ")
    assert "comment" in missing.value.detail
    with pytest.raises(Conflict):
        escalation_raise(task=task, user=manager, comment="not mine")
    escalation_raise(task=task, user=rosa, comment="unsure")
    with pytest.raises(Conflict):  # no longer held: it is with the managers
        escalation_raise(task=task, user=rosa, comment="again")
    with pytest.raises(Conflict):  # and it cannot be decided behind the managers' back
        review_task_decide(task=task, user=rosa, label="office")


def test_the_database_refuses_a_second_open_escalation_or_an_empty_comment(setting):
    rosa, _, _, task = setting
    escalation_raise(task=task, user=rosa, comment="unsure")
    fields = {"task": task, "item_id": task.item_id, "use_case_id": task.use_case_id}
    with pytest.raises(IntegrityError):
        Escalation.objects.create(
            **fields, raised_by=rosa, comment="twice", created_at=task.created_at
        )


def test_returning_it_puts_it_back_in_its_place_with_the_note_for_the_next_reviewer(setting):
    rosa, manager, use_case, task = setting
    escalation = escalation_raise(task=task, user=rosa, comment="is a taxi travel?")
    escalation_resolve(escalation=escalation, user=manager, note="Yes: taxis are travel.")
    task.refresh_from_db()
    assert task.state == "open" and task.claimed_by is None
    escalation.refresh_from_db()
    assert (escalation.outcome, escalation.resolved_by) == ("returned", manager)

    bob = make_user(Role.REVIEWER, "bob")
    UseCaseMembership.objects.create(use_case=use_case, user=bob)
    html = logged_in_client(bob).get(f"/queue/{use_case.slug}/").content.decode()
    assert task.item.external_id in html  # the oldest item again, first in line
    assert "Note from maria:" in html and "Yes: taxis are travel." in html
    assert "is a taxi travel?" in html


def test_the_note_comes_with_a_returned_item_swapped_in_after_a_decision(setting):
    rosa, manager, use_case, task = setting
    escalation = escalation_raise(task=task, user=rosa, comment="is a taxi travel?")
    bob = make_user(Role.REVIEWER, "bob")
    UseCaseMembership.objects.create(use_case=use_case, user=bob)
    client = logged_in_client(bob)
    # While the first item is with the managers, bob takes the other one; the first comes
    # back to the queue, and to bob after his decision.
    client.get(f"/queue/{use_case.slug}/")
    first = ReviewTask.objects.get(use_case=use_case, claimed_by=bob, state="open")
    assert first.pk != task.pk
    escalation_resolve(escalation=escalation, user=manager, note="Yes: taxis are travel.")
    html = client.get(f"/queue/{use_case.slug}/").content.decode()
    assert "Note from maria:" not in html  # an item never escalated has no note
    lease = re.search(r'name="lease_token" value="([^"]+)"', html).group(1)
    swapped = client.post(
        f"/queue/{use_case.slug}/tasks/{first.pk}/decide/",
        {"label": "office", "lease_token": lease},
        HTTP_HX_REQUEST="true",
    ).content.decode()
    assert task.item.external_id in swapped
    assert "Note from maria:" in swapped and "Yes: taxis are travel." in swapped


def test_answering_it_records_the_managers_decision_through_the_decision_service(setting):
    rosa, manager, use_case, task = setting
    escalation = escalation_raise(task=task, user=rosa, comment="is a taxi travel?")
    escalation_resolve(escalation=escalation, user=manager, note="Taxi: travel.", label="travel")
    decision = Decision.objects.get(task=task)
    assert (decision.reviewer, decision.label, decision.kind, decision.comment) == (
        manager,
        "travel",
        "overridden",
        "Taxi: travel.",
    )
    item = Item.objects.get(pk=task.item_id)
    assert (item.status, item.decision_label, item.decision_source) == (
        "decided",
        "travel",
        "human",
    )
    assert ReviewTask.objects.get(pk=task.pk).state == "done"
    with pytest.raises(Conflict):
        escalation_resolve(escalation=escalation, user=manager, note="again")


def test_a_bad_answer_leaves_the_escalation_open(setting):
    rosa, manager, _, task = setting
    escalation = escalation_raise(task=task, user=rosa, comment="unsure")
    with pytest.raises(InvalidInput):
        escalation_resolve(escalation=escalation, user=manager, note="x", label="nonsense")
    with pytest.raises(InvalidInput):
        escalation_resolve(escalation=escalation, user=manager, note=" ")
    escalation.refresh_from_db()
    assert escalation.is_open
    assert ReviewTask.objects.get(pk=task.pk).state == "escalated"


def test_the_managers_page_lists_open_escalations_and_resolves_them(setting):
    rosa, manager, use_case, task = setting
    escalation_raise(task=task, user=rosa, comment="is a taxi travel?")
    client = logged_in_client(manager)
    page = client.get("/escalations/").content.decode()
    assert "is a taxi travel?" in page and task.item.external_id in page and "rosa" in page
    assert "Model suggestion: <strong>office</strong>" in page  # an assisted task
    assert "Vendor 0" in page  # this manager may see personal data; rosa may not

    url = f"/escalations/{Escalation.objects.get().pk}/resolve/"
    refused = client.post(url, {"note": ""})
    assert (
        refused.status_code == 422 and "write a note for the reviewer" in refused.content.decode()
    )
    response = client.post(url, {"note": "Taxis are travel.", "label": "travel"})
    assert response.status_code == 303
    page = client.get(response["Location"]).content.decode()
    assert "Resolved the escalation" in page and "No open escalations" in page
    assert "Decided by a manager" in page
    again = client.post(url, {"note": "twice"})
    assert "already resolved" in client.get(again["Location"]).content.decode()

    mine = logged_in_client(rosa).get("/my-work/").content.decode()
    assert "maria answered: “Taxis are travel.”" in mine


def test_blind_escalations_do_not_show_the_model_to_the_manager_either():
    rosa = make_user(Role.REVIEWER)
    manager = make_user(Role.MANAGER)
    use_case = make_use_case(members=[rosa, manager], level="shadow")
    register_model(use_case, constant_classifier_bytes("office", 0.7))
    send_items(use_case, range(1))
    task = review_task_claim(use_case=use_case, user=rosa)
    escalation_raise(task=task, user=rosa, comment="unsure")
    page = logged_in_client(manager).get("/escalations/").content.decode()
    assert "Model suggestion" not in page and "70%" not in page
    assert "keep the model's answer out of your note" in page


def test_managers_see_only_their_use_cases_escalations(setting):
    rosa, _, _, task = setting
    escalation = escalation_raise(task=task, user=rosa, comment="a taxi receipt")
    stranger = make_user(Role.MANAGER)
    client = logged_in_client(stranger)
    assert "a taxi receipt" not in client.get("/escalations/").content.decode()
    response = client.post(f"/escalations/{escalation.pk}/resolve/", {"note": "mine now"})
    assert response.status_code == 404
    assert (
        logged_in_client(rosa).post(f"/escalations/{escalation.pk}/resolve/", {}).status_code == 403
    )
