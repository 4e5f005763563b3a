"""The home page: the use cases a user works on, their level and their queues."""

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from reviewapp.core.roles import Role
from reviewapp.reviews.models import ReviewTask
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


def cell(page: str, label: str) -> list[str]:
    """The first words of the first table cell labelled ``label``."""
    html = re.search(rf'<td data-label="{label}"[^>]*>(.*?)</td>', page, re.S).group(1)
    return re.sub(r"<[^>]+>", " ", html).split()[0:3]


def test_home_lists_my_use_cases_with_waiting_counts_and_the_oldest_age():
    rosa = make_user(Role.REVIEWER, "rosa")
    invoices = make_use_case(members=[rosa], level="assisted", slug="invoices")
    register_model(invoices, constant_classifier_bytes("office", 0.7))
    send_items(invoices, range(4))
    ReviewTask.objects.filter(use_case=invoices).update(
        created_at=timezone.now() - timedelta(hours=3, minutes=5)
    )
    task = review_task_claim(use_case=invoices, user=rosa)
    review_task_decide(task=task, user=rosa, label="office")
    review_task_claim(use_case=invoices, user=rosa)
    make_use_case(slug="not-mine", level="shadow")

    page = logged_in_client(rosa).get("/").content.decode()
    assert "Invoice category" in page and "not-mine" not in page
    assert '<span class="badge badge-assisted">assisted</span>' in page
    assert cell(page, "Waiting") == ["3"]
    assert cell(page, "Oldest waiting") == ["3", "h", "05"]  # 3 h 05 min
    assert cell(page, "Being reviewed") == ["1"]
    assert cell(page, "Yours today") == ["1"]
    assert f'href="/queue/{invoices.slug}/"' in page


def test_people_who_do_not_review_see_the_queues_without_a_review_button():
    engineer = make_user(Role.ML_ENGINEER)
    use_case = make_use_case(members=[engineer])
    page = logged_in_client(engineer).get("/").content.decode()
    assert "Invoice category" in page and f"/queue/{use_case.slug}/" not in page
    assert "Yours today" not in page


def test_navigation_follows_the_role():
    reviewer_nav = logged_in_client(make_user(Role.REVIEWER)).get("/").content.decode()
    assert ">My work<" in reviewer_nav and ">Escalations<" not in reviewer_nav
    assert ">API docs<" not in reviewer_nav
    manager_nav = logged_in_client(make_user(Role.MANAGER)).get("/").content.decode()
    assert ">My work<" in manager_nav and ">Escalations<" in manager_nav
    assert 'href="/" aria-current="page"' in manager_nav
