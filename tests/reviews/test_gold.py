"""Gold items: items two reviewers agreed on or a manager resolved, served again blind at the
use case's rate to reviewers who never saw them, scored, and never counted as decisions."""

import re

import pytest

from deployments.services.use_cases import use_case_update
from reviewapp.core.roles import Role
from reviewapp.reviews.models import Decision, GoldCheck, Item, ReviewTask
from reviewapp.reviews.selectors import reviewers_quality
from reviewapp.reviews.services.escalations import escalation_raise, escalation_resolve
from reviewapp.reviews.services.gold import settled_answers
from reviewapp.reviews.services.queue import queue_decide, queue_gold_decide, queue_next
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
def settled():
    """40 items decided by ann (with the suggestion) and, blind, by bob, who agrees on 30."""
    manager = make_user(Role.MANAGER)
    ann, bob = make_user(Role.REVIEWER, "ann"), make_user(Role.REVIEWER, "bob")
    use_case = make_use_case(
        members=[manager, ann, bob],
        actor=manager,
        level="assisted",
        audit_rate=0,
        double_review_rate=1.0,
    )
    register_model(use_case, constant_classifier_bytes("office", 0.7))
    send_items(use_case, range(40))
    for _ in range(40):
        task = review_task_claim(use_case=use_case, user=ann)
        review_task_decide(task=task, user=ann, label="office")
    for n in range(40):
        task = review_task_claim(use_case=use_case, user=bob)
        review_task_decide(task=task, user=bob, label="office" if n < 30 else "travel")
    return use_case, manager


def test_settled_items_are_those_two_reviewers_agreed_on(settled):
    use_case, _ = settled
    answers = settled_answers(use_case=use_case, limit=100)
    assert len(answers) == 30 and {a["label"] for a in answers} == {"office"}


def test_a_managers_resolution_settles_an_item(settled):
    """An escalation a manager answered settles the item with the manager's answer, though
    the other reviewer said otherwise; one returned to the queue settles nothing."""
    use_case, manager = settled
    ann, bob = (use_case.members.get(username=name) for name in ("ann", "bob"))
    send_items(use_case, range(200, 203))
    for _ in range(3):
        task = review_task_claim(use_case=use_case, user=ann)
        review_task_decide(task=task, user=ann, label="office")
    answered, returned = [], []
    for into in (answered, answered, returned):
        task = review_task_claim(use_case=use_case, user=bob)  # the blind second review
        assert task.reason == "double_review"
        into.append(task.item_id)
        escalation = escalation_raise(task=task, user=bob, comment="cannot tell")
        if into is answered:
            escalation_resolve(
                escalation=escalation, user=manager, note="it is travel", label="travel"
            )
        else:
            escalation_resolve(escalation=escalation, user=manager, note="have another look")

    answers = {a["item_id"]: a for a in settled_answers(use_case=use_case, limit=100)}
    assert len(answers) == 32  # the 30 agreed on, and the 2 the manager answered
    assert all(answers[item]["label"] == "travel" for item in answered)
    assert returned[0] not in answers
    # Those who saw a resolved item (ann decided it, bob raised it) never get it as gold.
    for user in (ann, bob):
        assert not set(answered) & {
            a["item_id"] for a in settled_answers(use_case=use_case, user=user)
        }
    cleo = make_user(Role.REVIEWER, "cleo")
    assert set(answered) <= {a["item_id"] for a in settled_answers(use_case=use_case, user=cleo)}


def answer_queue(use_case, user, *, claims: int, gold_label="office", task_label="office"):
    """Work through ``claims`` steps of the queue as the page does; return the gold checks."""
    step = queue_next(use_case=use_case, user=user)
    for _ in range(claims):
        if step.gold is not None:
            step = queue_gold_decide(
                use_case=use_case, user=user, check_id=step.gold.pk, label=gold_label
            )
        elif step.task is not None:
            step = queue_decide(
                use_case=use_case, user=user, task_id=step.task.pk, label=task_label
            )
        else:
            break
    # (The step after the last answer may already hold the next gold item, unanswered.)
    return list(GoldCheck.objects.filter(reviewer=user, answered_at__isnull=False))


def test_gold_appears_at_the_rate_and_scores_the_reviewer(settled):
    use_case, manager = settled
    cleo = make_user(Role.REVIEWER, "cleo")
    use_case.members.add(cleo)
    send_items(use_case, range(100, 180))  # ordinary work beside the gold
    use_case_update(use_case=use_case, changes={"gold_rate": 0.25})
    use_case.refresh_from_db()
    decisions_before = Decision.objects.count()
    fields = ("decision_label", "decision_source", "status", "decided_at")
    items_before = {row[0]: row[1:] for row in Item.objects.values_list("id", *fields)}

    checks = answer_queue(use_case, cleo, claims=80, gold_label="travel")
    served = len(checks)
    assert 5 <= served <= 35, served  # a quarter of 80 claims, about 20; these bounds are 4 sd
    assert all(c.answered_at and c.correct is False for c in checks)  # settled: office
    # Gold answers are not decisions: the 80 claims gave 80 - served decisions.
    assert Decision.objects.count() - decisions_before == 80 - served
    # The gold items' own answers did not move: a gold answer is never an item's decision.
    after = {row[0]: row[1:] for row in Item.objects.values_list("id", *fields)}
    assert all(after[c.item_id] == items_before[c.item_id] for c in checks)
    row = {r["reviewer"].username: r for r in reviewers_quality(use_case=use_case)["rows"]}
    assert row["cleo"]["gold"] == {"n": served, "agreed": 0, "rate": 0.0}
    page = logged_in_client(manager).get(f"/control/use-cases/{use_case.slug}/reviewers/")
    assert "Gold items right" in page.content.decode()
    mine = logged_in_client(cleo).get("/my-work/").content.decode()
    assert "0.0%" in mine and f"n={served}" in mine


def test_no_gold_at_rate_zero_and_never_an_item_the_reviewer_saw(settled):
    use_case, _ = settled
    ann = use_case.members.get(username="ann")
    send_items(use_case, range(100, 110))
    assert answer_queue(use_case, ann, claims=10) == []  # rate 0: no gold
    use_case_update(use_case=use_case, changes={"gold_rate": 0.5})
    use_case.refresh_from_db()
    send_items(use_case, range(110, 130))
    # ann decided every settled item herself: none can be gold for her.
    assert answer_queue(use_case, ann, claims=20) == []


def test_a_gold_item_looks_like_any_blind_task_in_the_page(settled):
    use_case, _ = settled
    dora = make_user(Role.REVIEWER, "dora")
    use_case.members.add(dora)
    send_items(use_case, range(100, 130))  # her own work, until a claim is gold
    use_case_update(use_case=use_case, changes={"gold_rate": 0.5})
    client = logged_in_client(dora)
    for _ in range(25):  # claims until one is gold (half are: 25 misses would be 1 in 3e7)
        html = client.get(f"/queue/{use_case.slug}/").content.decode()
        check = GoldCheck.objects.filter(reviewer=dora, answered_at__isnull=True).first()
        if check is not None:
            break
        task = ReviewTask.objects.get(claimed_by=dora, state="open")
        client.post(
            f"/queue/{use_case.slug}/tasks/{task.pk}/decide/",
            {"label": "office", "lease_token": str(task.lease_token)},
        )
    assert check is not None
    shown = re.sub(r"<[^>]+>", " ", html)  # what the reviewer reads
    assert "Model suggestion" not in html and "No suggestion for this item" in shown
    assert "gold" not in shown.lower() and "settled" not in shown.lower()
    assert check.item.external_id in html
    answered = client.post(f"/queue/{use_case.slug}/gold/{check.pk}/decide/", {"label": "office"})
    assert answered.status_code in (200, 303)
    check.refresh_from_db()
    assert check.correct is True and check.label == "office"


def test_the_api_refuses_a_gold_rate_out_of_range(api, settled):
    use_case, manager = settled
    url = f"/api/v1/use-cases/{use_case.slug}/"
    bad = api(manager).patch(url, {"gold_rate": 0.9}, format="json")
    assert bad.status_code == 400 and "gold_rate" in bad.json()
    good = api(manager).patch(url, {"gold_rate": 0.1}, format="json")
    assert good.status_code == 200 and good.json()["gold_rate"] == 0.1
