"""The API tokens page in Chromium: a token made there is shown once, then never again."""

import pytest
from playwright.sync_api import expect

from reviewapp.core.models import ApiToken
from reviewapp.core.roles import Role
from tests.conftest import screenshot
from tests.factories import make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_token_made_on_the_page_is_shown_once(signed_in):
    page = signed_in(make_user(Role.ADMIN, "ada"), width=1280)
    page.goto(page.base_url + "/")
    page.get_by_role("link", name="API tokens").click()
    expect(page.get_by_role("heading", name="API tokens", exact=True)).to_be_visible()

    page.get_by_label("Name").fill("nightly export")
    page.get_by_role("button", name="Make token").click()
    key = page.locator("#new-key").inner_text()
    assert key.startswith("rvt_")
    expect(page.get_by_role("button", name="Copy")).to_be_visible()
    expect(page.get_by_role("cell", name="nightly export")).to_be_visible()
    assert not ApiToken.objects.filter(digest__contains=key).exists()
    screenshot(page, "tokens-1280")
    page.set_viewport_size({"width": 390, "height": 900})
    overflow = page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    screenshot(page, "tokens-390")
    assert overflow <= 0, f"the page is {overflow}px wider than a 390px screen"

    page.reload()
    expect(page.get_by_role("cell", name="nightly export")).to_be_visible()
    expect(page.locator("#new-key")).to_have_count(0)
    assert key not in page.content()

    page.get_by_role("button", name="Revoke").click()
    expect(page.get_by_text("Token revoked")).to_be_visible()
    assert not ApiToken.objects.exists()
