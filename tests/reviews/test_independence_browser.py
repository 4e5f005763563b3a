"""Blind review stays independent in the queue page itself: a reviewer who skipped an item's
task with the suggestion is never shown that item's blind double review; another reviewer is."""

import pytest

from reviewapp.core.roles import Role
from reviewapp.reviews.models import ReviewTask
from tests.factories import make_user
from tests.reviews.test_queue_browser import invoices, shown_task

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_skipped_item_never_comes_back_blind_to_the_same_reviewer(signed_in):
    rosa, bob = make_user(Role.REVIEWER, "rosa"), make_user(Role.REVIEWER, "bob")
    use_case = invoices([rosa, bob], level="assisted", n=1, double_review_rate=1.0)
    assisted = ReviewTask.objects.get(use_case=use_case, show_suggestion=True)
    blind = ReviewTask.objects.get(use_case=use_case, show_suggestion=False)
    assert blind.reason == "double_review" and blind.item_id == assisted.item_id

    page = signed_in(rosa)
    page.goto(page.base_url + "/queue/invoices/")
    assert shown_task(page) == str(assisted.pk)
    assert page.locator("#task .suggestion").count() == 1  # she saw the model's answer
    page.keyboard.press("s")
    page.locator("#task .notice", has_text="Skipped").wait_for()
    assert shown_task(page) in (None, str(assisted.pk))
    # What she is offered next is at most the same task with the suggestion, never the blind one.
    for _ in range(2):
        page.goto(page.base_url + "/queue/invoices/")
        assert shown_task(page) in (None, str(assisted.pk))
    assert not ReviewTask.objects.filter(pk=blind.pk, claimed_by=rosa).exists()

    other = signed_in(bob)
    other.goto(other.base_url + "/queue/invoices/")
    assert shown_task(other) == str(blind.pk)
    assert other.locator("#task .suggestion").count() == 0
    assert "No suggestion for this item" in other.locator("#task").inner_text()
