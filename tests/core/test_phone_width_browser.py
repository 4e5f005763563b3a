"""Every page fits a 390 px phone: nothing wider than the viewport, wide tables scroll inside
their card. Checked in Chromium on the pages with long, hostile data in them."""

import pytest

from tests.security.test_injection_browser import hostile_data, pages

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE = 390


def test_no_page_is_wider_than_a_phone(signed_in):
    use_case, manager, reviewer = hostile_data()
    reviewer_page = signed_in(reviewer, width=PHONE)
    manager_page = signed_in(manager, width=PHONE)
    too_wide = {}
    for path in pages(use_case):
        page = reviewer_page if path.startswith(("/queue/", "/my-work/")) else manager_page
        response = page.goto(page.base_url + path)
        assert response.status == 200, path
        page.wait_for_load_state("networkidle")
        width = page.evaluate("document.documentElement.scrollWidth")
        if width > PHONE:
            too_wide[path] = width
    assert too_wide == {}
