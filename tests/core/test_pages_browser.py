"""Signing in through the real login page, in Chromium."""

import pytest

from reviewapp.core.roles import Role
from tests.conftest import screenshot
from tests.factories import make_use_case, make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_sign_in_with_the_form_and_see_your_queues(browser, live_server):
    reviewer = make_user(Role.REVIEWER, "rosa")
    make_use_case(members=[reviewer], slug="invoices")
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.goto(live_server.url + "/")
    assert "/accounts/login/" in page.url
    page.get_by_label("Username").fill("rosa")
    page.get_by_label("Password").fill("wrong")
    page.get_by_role("button", name="Sign in").click()
    assert page.get_by_role("alert").is_visible()
    assert page.get_by_label("Username").input_value() == "rosa"  # kept for the retry
    page.get_by_label("Password").fill("test-pass-123")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Your queues").wait_for()
    assert page.get_by_text("Invoice category").is_visible()
    screenshot(page, "home")
    context.close()
