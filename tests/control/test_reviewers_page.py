"""The Reviewers page: each reviewer's speed and agreement, and the flag on a reviewer who
accepts the suggestion far more often than their blind answers agree with the model."""

import pytest

from deployments.services.policies import policy_change
from reviewapp.core.roles import Role
from reviewapp.reviews.selectors import reviewers_quality
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


def decide(use_case, user, labels):
    for label in labels:
        task = review_task_claim(use_case=use_case, user=user)
        review_task_decide(task=task, user=user, label=label, time_spent_ms=4000)


@pytest.fixture
def team():
    manager = make_user(Role.MANAGER, "mona")
    stamp, careful = make_user(Role.REVIEWER, "sam"), make_user(Role.REVIEWER, "cleo")
    use_case = make_use_case(
        members=[manager, stamp, careful], level="shadow", actor=manager, audit_rate=0
    )
    register_model(use_case, constant_classifier_bytes("office", 0.7))
    # Blind (shadow): sam matches the silent model on 10 of 25, cleo on 10 of 20.
    send_items(use_case, range(45))
    decide(use_case, stamp, ["office"] * 10 + ["travel"] * 15)
    decide(use_case, careful, ["office"] * 10 + ["other"] * 10)
    policy_change(use_case=use_case, actor=manager, changes={"level": "assisted"}, reason="t")
    # With the suggestion shown: sam keeps it 25 times of 25, cleo 12 of 20.
    send_items(use_case, range(45, 90))
    decide(use_case, stamp, ["office"] * 25)
    decide(use_case, careful, ["office"] * 12 + ["travel"] * 8)
    return use_case, manager, stamp, careful


def test_a_reviewer_who_accepts_more_than_their_blind_answers_explain_is_flagged(team):
    use_case, _, stamp, careful = team
    rows = {row["reviewer"].username: row for row in reviewers_quality(use_case=use_case)["rows"]}
    assert rows["sam"]["assisted"] == {"n": 25, "agreed": 25, "rate": 1.0}
    assert rows["sam"]["blind"] == {"n": 25, "agreed": 10, "rate": 0.4}
    assert rows["sam"]["rubber_stamp"] is True
    assert rows["cleo"]["assisted"]["agreed"] == 12 and rows["cleo"]["blind"]["agreed"] == 10
    assert rows["cleo"]["rubber_stamp"] is False
    assert rows["sam"]["decisions"] == 50 and rows["sam"]["median_seconds"] == 4.0


def test_the_page_names_the_flagged_reviewer_to_managers_only(team):
    use_case, manager, stamp, _ = team
    html = logged_in_client(manager).get(f"/control/use-cases/{use_case.slug}/reviewers/")
    assert html.status_code == 200
    text = html.content.decode()
    assert "Possible rubber-stamping: <strong>sam</strong> accepts" in text
    assert "cleo" in text and 'class="flagged"' in text
    refused = logged_in_client(stamp).get(f"/control/use-cases/{use_case.slug}/reviewers/")
    assert refused.status_code == 403


def test_too_few_decisions_are_never_flagged(team):
    use_case, manager, *_ = team
    newcomer = make_user(Role.REVIEWER, "nina")
    use_case.members.add(newcomer)
    send_items(use_case, range(90, 95))
    decide(use_case, newcomer, ["office"] * 5)  # accepts all 5: too few to judge
    rows = {row["reviewer"].username: row for row in reviewers_quality(use_case=use_case)["rows"]}
    assert rows["nina"]["assisted"]["n"] == 5 and rows["nina"]["rubber_stamp"] is False


def test_the_flagged_reviewer_reads_it_on_my_work(team):
    use_case, _, stamp, careful = team
    mine = logged_in_client(stamp).get("/my-work/").content.decode()
    assert f"In {use_case.name} you keep the model's suggestion more often" in mine
    theirs = logged_in_client(careful).get("/my-work/").content.decode()
    assert "you keep the model's suggestion more often" not in theirs
