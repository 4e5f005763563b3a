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


@pytest.mark.parametrize("debug", [False, True])
def test_a_missing_page_is_the_friendly_404_in_every_mode(signed_in, settings, debug):
    """The demo runs with DEBUG on: even then a missing page says so in plain words and links
    home, with none of Django's technical page (its list of every URL pattern)."""
    settings.DEBUG = debug
    manager = make_user(Role.MANAGER, "maria")
    page = signed_in(manager)
    response = page.goto(page.base_url + "/control/use-cases/no-such-use-case/")
    assert response.status == 404
    page.get_by_role("heading", name="Nothing here").wait_for()
    text = page.locator("body").inner_text()
    assert "URLconf" not in text and "Using the URLconf" not in text
    assert "admin/" not in text and "api/v1/" not in text and "Page not found (404)" not in text
    page.get_by_role("link", name="Back to your queues").click()
    page.wait_for_url(page.base_url + "/")
