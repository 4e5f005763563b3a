"""Blind answers are independent: whoever has seen an item in any form (a task of it claimed,
skipped, escalated, left to expire or decided) is never handed a blind task of that item, so a
double review always comes from a second person and an audit from someone who never saw the
suggestion. Checked for every route that makes tasks, through the services and the API."""

import importlib
from datetime import timedelta

import pytest
from django.apps import apps as django_apps
from django.utils import timezone

from reviewapp.core.roles import Role
from reviewapp.reviews.models import ItemSeen, ReviewTask
from reviewapp.reviews.services.escalations import escalation_raise, escalation_resolve
from reviewapp.reviews.services.review import (
    review_task_claim,
    review_task_decide,
    review_task_skip,
)
from tests.factories import constant_classifier_bytes, make_use_case, make_user, register_model
from tests.factories import send_items as send

pytestmark = pytest.mark.django_db

# Each route with the tasks it makes for one item (a constant model: "office" at 0.7).
ROUTES = {
    # reviewed with the suggestion, plus a blind double review
    "assisted": {"level": "assisted", "double_review_rate": 1.0},
    # reviewed blind in shadow, plus a double review
    "shadow": {"level": "shadow", "double_review_rate": 1.0},
    # no model at all, plus a double review
    "human": {"level": "human_only", "double_review_rate": 1.0},
    # decided by the model, audited blind
    "audit": {"level": "partial", "confidence_threshold": 0.5, "audit_rate": 1.0},
}


@pytest.fixture
def people():
    return make_user(Role.REVIEWER, "rosa"), make_user(Role.REVIEWER, "bob")


def one_item(route: str, members):
    use_case = make_use_case(members=members, **ROUTES[route])
    register_model(use_case, constant_classifier_bytes("office", 0.7))
    (item,) = send(use_case, [1])
    blind = ReviewTask.objects.filter(item=item, show_suggestion=False)
    assert blind.exists(), "every route here makes at least one blind task"
    return use_case, item


def assert_no_blind_task_of(item, *, use_case, user, now=None):
    """Claim everything the user is offered: none of it is a blind task of ``item``."""
    offered = []
    while (task := review_task_claim(use_case=use_case, user=user, now=now)) is not None:
        if task.pk in offered:
            break  # a task with the suggestion they skipped, offered again: allowed
        offered.append(task.pk)
        assert not (task.item_id == item.pk and task.blind), (task.reason, task.show_suggestion)
        review_task_skip(task=task, user=user, now=now)


def assert_someone_else_gets_every_blind_task(item, *, use_case, other):
    blind = set(
        ReviewTask.objects.filter(item=item, show_suggestion=False, state="open").values_list(
            "pk", flat=True
        )
    )
    got = set()
    while (task := review_task_claim(use_case=use_case, user=other)) is not None:
        if task.pk in got or task.item_id != item.pk:
            break
        got.add(task.pk)
        if task.blind:
            review_task_decide(task=task, user=other, label="travel")
            break  # one blind answer per person per item: the next one needs a third person
        review_task_skip(task=task, user=other)
    assert got & blind, "the second reviewer is handed a blind task of the item"


@pytest.mark.parametrize("route", ROUTES)
def test_after_a_skip_no_blind_task_of_that_item(people, route):
    rosa, bob = people
    use_case, item = one_item(route, [rosa, bob])
    first = review_task_claim(use_case=use_case, user=rosa)
    assert first.item_id == item.pk
    review_task_skip(task=first, user=rosa)
    assert_no_blind_task_of(item, use_case=use_case, user=rosa)
    assert_someone_else_gets_every_blind_task(item, use_case=use_case, other=bob)


@pytest.mark.parametrize("route", ROUTES)
def test_after_a_lease_expired_no_blind_task_of_that_item(people, route):
    rosa, bob = people
    use_case, item = one_item(route, [rosa, bob])
    start = timezone.now()
    first = review_task_claim(use_case=use_case, user=rosa, now=start, lease_seconds=60)
    assert first.item_id == item.pk
    later = start + timedelta(minutes=5)  # rosa walked away; her lease is long gone
    assert_no_blind_task_of(item, use_case=use_case, user=rosa, now=later)


@pytest.mark.parametrize("route", ["assisted", "shadow", "human"])
def test_after_a_decision_the_double_review_goes_to_someone_else(people, route):
    rosa, bob = people
    use_case, item = one_item(route, [rosa, bob])
    first = review_task_claim(use_case=use_case, user=rosa)
    assert first.reason == "review"
    review_task_decide(task=first, user=rosa, label="office")
    assert review_task_claim(use_case=use_case, user=rosa) is None
    double = review_task_claim(use_case=use_case, user=bob)
    assert double.reason == "double_review" and double.item_id == item.pk


def test_after_an_escalation_returned_to_the_queue(people):
    rosa, bob = people
    manager = make_user(Role.MANAGER)
    use_case, item = one_item("audit", [rosa, bob, manager])
    task = review_task_claim(use_case=use_case, user=rosa)
    escalation = escalation_raise(task=task, user=rosa, comment="not sure what this is")
    escalation_resolve(escalation=escalation, user=manager, note="looks fine, anyone may take it")
    assert review_task_claim(use_case=use_case, user=rosa) is None
    assert review_task_claim(use_case=use_case, user=bob).pk == task.pk


def test_the_api_obeys_the_same_rule(api, people):
    rosa, bob = people
    use_case, item = one_item("audit", [rosa, bob])
    url = f"/api/v1/use-cases/{use_case.slug}/review/next/"
    claimed = api(rosa).post(url).json()
    review_task_skip(task=ReviewTask.objects.get(pk=claimed["task"]), user=rosa)  # queue page
    assert api(rosa).post(url).status_code == 204
    again = api(bob).post(url)
    assert again.status_code == 200 and again.json()["task"] == claimed["task"]


def test_a_seen_record_is_written_with_each_claim_once(people):
    rosa, _ = people
    use_case, item = one_item("assisted", [rosa])
    start = timezone.now()
    first = review_task_claim(use_case=use_case, user=rosa, now=start)
    review_task_skip(task=first, user=rosa, now=start)
    review_task_claim(use_case=use_case, user=rosa, now=start + timedelta(seconds=5))
    seen = ItemSeen.objects.get(item=item, user=rosa)
    assert seen.first_seen_at == start


def test_the_migration_backfills_who_saw_what(people):
    rosa, bob = people
    manager = make_user(Role.MANAGER)
    use_case = make_use_case(members=[rosa, bob, manager], level="assisted")
    register_model(use_case, constant_classifier_bytes("office", 0.7))
    decided, skipped, escalated = send(use_case, [1, 2, 3])
    by_item = {t.item_id: t for t in ReviewTask.objects.filter(use_case=use_case)}
    for item, user in ((decided, rosa), (skipped, bob), (escalated, bob)):
        task = by_item[item.pk]
        ReviewTask.objects.filter(pk=task.pk).update(
            claimed_by=user, claimed_at=timezone.now(), lease_token=None, lease_expires_at=None
        )
        task.refresh_from_db()
        if item is decided:
            review_task_decide(task=task, user=user, label="office")
        elif item is skipped:
            review_task_skip(task=task, user=user)
        else:
            escalation = escalation_raise(task=task, user=user, comment="unsure")
            escalation_resolve(
                escalation=escalation, user=manager, note="it is office", label="office"
            )
    ItemSeen.objects.all().delete()  # as before the table existed

    migration = importlib.import_module("reviewapp.reviews.migrations.0004_item_seen")
    migration.seen_backfill(django_apps, None)

    pairs = set(ItemSeen.objects.values_list("item_id", "user__username"))
    assert pairs == {
        (decided.pk, "rosa"),
        (skipped.pk, "bob"),
        (escalated.pk, "bob"),
        (escalated.pk, manager.username),
    }
