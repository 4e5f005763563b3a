"""The System page in Chromium: every chart drawn, nothing wider than a phone's screen."""

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from reviewapp.core.roles import Role
from tests.conftest import screenshot
from tests.factories import make_user
from tests.monitoring.system_seed import fleet_seed

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
CHARTS = ("memory", "cpu", "load", "requests", "request-latency", "tasks")


@pytest.mark.parametrize("width", [1280, 390])
def test_the_system_page_draws_every_chart_and_fits_the_screen(signed_in, width):
    fleet_seed(now=timezone.now(), web=3, workers=2, minutes=180, hosts=2)
    page = signed_in(make_user(Role.MANAGER, "maria"), width=width)
    page.goto(page.base_url + "/monitoring/system/")
    expect(page.get_by_role("heading", name="System", exact=True)).to_be_visible()
    for key in CHARTS:
        expect(page.locator(f'[data-chart="{key}"] .plot .main-svg').first).to_be_attached()
    expect(page.get_by_role("cell", name="celery@app-1").first).to_be_visible()
    overflow = page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"the page is {overflow}px wider than the {width}px screen"
    screenshot(page, f"system-{width}")

    page.select_option("select[name=range]", "1h")  # htmx swaps the panel
    expect(page).to_have_url(page.base_url + "/monitoring/system/?range=1h")
    expect(page.locator('[data-chart="memory"] .reading')).to_contain_text("last 1 min")


def test_the_software_tab_draws_the_process_charts_on_a_phone(signed_in):
    from tests.factories import make_use_case

    fleet_seed(now=timezone.now(), web=2, workers=1, minutes=90)
    manager = make_user(Role.MANAGER, "maria")
    make_use_case(members=[manager], slug="invoices")
    page = signed_in(manager, width=390)
    page.goto(page.base_url + "/monitoring/invoices/software/")
    for key in ("memory", "cpu", "load", "requests", "request-latency", "tasks"):
        chart = page.locator(f'[data-chart="process-{key}"] .plot .main-svg').first
        expect(chart).to_be_attached()
    expect(page.get_by_text("Web processes")).to_be_visible()
    expect(page.get_by_role("heading", name="Requests by view")).to_be_visible()
    overflow = page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"the page is {overflow}px wider than the screen"
    screenshot(page, "software-tab-390")
