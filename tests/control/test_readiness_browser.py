"""The readiness page in Chromium: the verdict, then slices picked from the feature list (htmx
swaps the section and the address follows it); screenshots for a human to look at."""

import pytest

from reviewapp.core.roles import Role
from tests.conftest import screenshot
from tests.control.test_readiness import history, labelled
from tests.factories import constant_classifier_bytes, make_use_case, make_user, register_model

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_pick_a_feature_and_see_the_worse_slice_flagged(signed_in):
    manager = make_user(Role.MANAGER)
    reviewers = [make_user(Role.REVIEWER), make_user(Role.REVIEWER)]
    use_case = make_use_case(actor=manager, slug="invoices", level="shadow", members=[manager])
    version = register_model(use_case, constant_classifier_bytes())
    rows = labelled(600, double=200, humans_differ_every=30, kind=lambda i: "abc"[i % 3])
    rows = [
        (f, "other" if (f["kind"] == "c" and i % 10 < 3) or i % 50 == 0 else m, h, s)
        for i, (f, m, h, s) in enumerate(rows)
    ]
    history(use_case, version, rows, reviewers)

    page = signed_in(manager)
    page.goto(f"{page.base_url}/control/use-cases/invoices/readiness/")
    assert page.get_by_role("link", name="Readiness").get_attribute("aria-current") == "page"
    assert page.locator(".readiness .verdict .badge").inner_text() in {
        "Below human level",
        "Not yet known",
    }
    page.select_option("#feature", "kind")
    flagged = page.locator("#slices tr.flagged th")
    flagged.wait_for()
    assert flagged.inner_text() == "c"
    assert page.url.endswith("?feature=kind")
    assert "kind = c" in page.locator("#slices .warn-box").inner_text()
    screenshot(page, "readiness-slices")
