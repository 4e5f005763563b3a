"""The webhooks page in Chromium: an endpoint with its deliveries, readable on a phone too."""

import pytest
from playwright.sync_api import expect

from reviewapp.core.roles import Role
from tests.conftest import screenshot
from tests.factories import logged_in_client, make_user
from tests.webhooks.receiver import start_receiver

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize("width", [1280, 390])
def test_the_webhooks_page_shows_deliveries_and_fits_the_screen(signed_in, settings, width):
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    server, stop = start_receiver()
    try:
        manager = make_user(Role.MANAGER, "maria")
        client = logged_in_client(manager)
        response = client.post(
            "/webhooks/new/", {"url": server.url, "events": ["outcome.decided", "model.changed"]}
        )
        assert response.status_code == 303
        page = signed_in(manager, width=width)
        page.goto(page.base_url + "/webhooks/")
        page.get_by_role("button", name="Send a test event").first.click()
        expect(page.get_by_role("cell", name="webhook.test").first).to_be_visible()
        expect(page.get_by_role("button", name="Retry").first).to_be_attached()
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"the page is {overflow}px wider than the {width}px screen"
        screenshot(page, f"webhooks-{width}")
    finally:
        stop()
