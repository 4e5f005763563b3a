"""My work: a reviewer's own counts, time per item and agreement with the model and peers."""

from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client

from reviewapp.core.roles import Role
from reviewapp.reviews.selectors import reviewer_work_summary
from reviewapp.reviews.services.review import review_task_claim, review_task_decide
from tests.factories import (
    constant_classifier_bytes,
    make_use_case,
    make_user,
    register_model,
    send_items,
)

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)  # a Wednesday


def queue(members, n, **policy):
    use_case = make_use_case(members=members, **policy)
    register_model(use_case, constant_classifier_bytes("office", 0.7))
    send_items(use_case, range(n))
    return use_case


def decide_at(use_case, user, label, *, ago, spent=None):
    at = NOW - ago
    task = review_task_claim(use_case=use_case, user=user, now=at)
    review_task_decide(task=task, user=user, label=label, time_spent_ms=spent, now=at)


@pytest.fixture
def history():
    rosa, bob = make_user(Role.REVIEWER, "rosa"), make_user(Role.REVIEWER, "bob")
    assisted = queue([rosa], 3, level="assisted")
    decide_at(assisted, rosa, "office", ago=timedelta(hours=1), spent=2000)  # accepted
    decide_at(assisted, rosa, "travel", ago=timedelta(days=2), spent=4000)  # overridden
    decide_at(assisted, rosa, "office", ago=timedelta(days=8), spent=6000)  # last week
    shadow = queue([rosa], 2, level="shadow")
    decide_at(shadow, rosa, "office", ago=timedelta(hours=2), spent=1000)  # blind, agrees
    decide_at(shadow, rosa, "other", ago=timedelta(hours=3), spent=3000)  # blind, differs
    doubled = queue([rosa, bob], 2, level="assisted", double_review_rate=1.0)
    for _ in range(2):
        decide_at(doubled, rosa, "office", ago=timedelta(minutes=30), spent=5000)
    decide_at(doubled, bob, "office", ago=timedelta(minutes=20))
    decide_at(doubled, bob, "travel", ago=timedelta(minutes=20))
    return rosa, assisted, shadow, doubled


def test_counts_time_and_agreement(history):
    rosa, assisted, shadow, doubled = history
    summary = reviewer_work_summary(user=rosa, now=NOW)
    totals = summary["totals"]
    assert (totals["today"], totals["week"]) == (5, 6)
    assert totals["median_seconds"] == 4.0
    assert (totals["assisted"]["agreed"], totals["assisted"]["n"]) == (4, 5)
    assert (totals["blind"]["agreed"], totals["blind"]["n"]) == (1, 2)
    assert (totals["model"]["agreed"], totals["model"]["n"]) == (5, 7)
    assert totals["model"]["rate"] == pytest.approx(5 / 7)
    assert (totals["peers"]["agreed"], totals["peers"]["n"]) == (1, 2)

    rows = {row["use_case"].pk: row for row in summary["by_use_case"]}
    assert (rows[assisted.pk]["today"], rows[assisted.pk]["week"]) == (1, 2)
    assert rows[shadow.pk]["blind"]["rate"] == 0.5
    assert rows[shadow.pk]["assisted"]["rate"] is None  # nothing to say, not 0%
    assert rows[doubled.pk]["peers"]["rate"] == 0.5
    assert [day["count"] for day in summary["days"]] == [0, 0, 0, 0, 1, 0, 5]
    assert summary["week_start"].date().isoformat() == "2026-11-23"


def test_someone_elses_work_is_not_counted(history):
    summary = reviewer_work_summary(user=make_user(Role.REVIEWER), now=NOW)
    assert summary["totals"]["week"] == 0 and summary["by_use_case"] == []
    assert summary["totals"]["model"]["rate"] is None


def test_the_page_shows_the_reviewers_own_figures():
    rosa = make_user(Role.REVIEWER, "rosa")
    use_case = queue([rosa], 2, level="assisted")
    for label in ("office", "travel"):
        task = review_task_claim(use_case=use_case, user=rosa)
        review_task_decide(task=task, user=rosa, label=label, time_spent_ms=3000)
    client = Client()
    client.force_login(rosa)
    page = client.get("/my-work/").content.decode()
    assert "decided today" in page and "3.0 s" in page
    # Two decisions are no basis for a percentage: the page says so and shows the count.
    assert "too few items (n=2)" in page and "50%" not in page
    assert "Invoice category" in page
    assert "no double-reviewed items yet" in page
