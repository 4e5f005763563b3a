"""The explorer in Chromium: filter by clicking the matrix, open an item, export, retrain."""

import re

import pytest

from reviewapp.reviews.models import Disagreement
from tests.conftest import screenshot
from tests.datasets.conftest import build_world

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize("width", [1280, 390])
def test_click_the_matrix_then_open_an_item(signed_in, width):
    world = build_world()
    page = signed_in(world.analyst, width=width)
    page.goto(f"{page.base_url}/datasets/{world.use_case.slug}/")
    page.get_by_role("heading", name="Model label × human label").wait_for()
    screenshot(page, f"datasets-explorer-{width}")

    want = Disagreement.objects.filter(model_label="office", human_label="travel").count()
    cell = page.get_by_label(f"{want} where the model said office and the human travel")
    cell.click()
    page.wait_for_url(re.compile(r"model_label=office"))
    page.get_by_role("heading", name=f"{want} disagreement").wait_for()
    rows = page.locator("#rows tr:not(#more-rows)")
    assert rows.count() == want
    for i in range(want):
        assert rows.nth(i).locator("td").nth(3).inner_text() == "office"
        assert rows.nth(i).locator("td").nth(4).inner_text() == "travel"
    assert page.get_by_label("Model said", exact=True).input_value() == "office"  # the form follows
    screenshot(page, f"datasets-explorer-filtered-{width}")

    first = rows.first.get_by_role("link")
    external_id = first.inner_text()
    first.click()
    panel = page.locator("#item-panel")
    panel.get_by_role("heading", name=external_id).wait_for()
    assert panel.get_by_role("heading", name="Predictions").is_visible()
    assert panel.get_by_role("heading", name="Human decisions").is_visible()
    assert "v1" in panel.inner_text() and "v2" in panel.inner_text()
    assert "hidden" in panel.inner_text()  # the vendor is PII this engineer may not see
    screenshot(page, f"datasets-item-{width}")
    page.keyboard.press("Escape")
    assert panel.is_hidden()

    page.get_by_role("link", name="Clear all").click()
    page.wait_for_url(re.compile(rf"/datasets/{world.use_case.slug}/$"))
    total = Disagreement.objects.count()
    page.get_by_role("heading", name=f"{total} disagreement").wait_for()


def test_export_and_retrain_from_the_pages(signed_in, settings):
    settings.RETRAIN_MIN_ITEMS = 5
    world = build_world(items_per_phase=10)
    page = signed_in(world.analyst, width=1280)
    page.goto(f"{page.base_url}/datasets/{world.use_case.slug}/?kind=override")
    page.get_by_label("Format").select_option("parquet")
    page.get_by_label("Personal data").select_option("hash")
    page.get_by_role("button", name="Start export").click()
    page.get_by_role("heading", name="Exports of").wait_for()
    page.get_by_role("link", name="Download PARQUET").wait_for()
    assert "kind = override" in page.inner_text("#exports-list")
    screenshot(page, "datasets-exports-1280")
    with page.expect_download() as download:
        page.get_by_role("link", name="Download PARQUET").click()
    assert download.value.suggested_filename.endswith(".parquet")

    page.get_by_role("link", name="Retraining").click()
    page.get_by_label("Held out for evaluation").fill("25")
    page.get_by_role("button", name="Start retraining").click()
    page.get_by_role("rowheader", name="Accuracy").wait_for()
    screenshot(page, "datasets-retraining-1280")
    narrow = signed_in(world.analyst, width=390)
    for path, name in (("exports/", "exports"), ("retraining/", "retraining")):
        narrow.goto(f"{narrow.base_url}/datasets/{world.use_case.slug}/{path}")
        screenshot(narrow, f"datasets-{name}-390")
    narrow.goto(f"{narrow.base_url}/datasets/")
    screenshot(narrow, "datasets-index-390")
