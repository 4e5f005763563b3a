"""One 31-feature item and one digit, opened on the queue, the manager's and the datasets page."""

import pytest

from deployments.models import UseCaseMembership
from deployments.services.use_cases import use_case_create
from reviewapp.core.roles import Role
from reviewapp.demo.datasets import breast_cancer, digits
from reviewapp.reviews.services.ingest import item_ingest
from tests.conftest import screenshot
from tests.factories import make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

OVERLAP = """els => {
  const boxes = els.map(e => e.getBoundingClientRect());
  const cells = [];
  for (let i = 0; i < boxes.length; i += 2) cells.push([boxes[i], boxes[i + 1]]);
  const columns = new Set(cells.map(([dt]) => Math.round(dt.left)));
  const overlapping = cells.filter(([dt, dd]) =>
    dt.right > dd.left + 0.5 && dd.right > dt.left + 0.5 &&
    dt.bottom > dd.top + 0.5 && dd.bottom > dt.top + 0.5).length;
  return {columns: columns.size, overlapping};
}"""


def _world():
    manager, reviewer = make_user(Role.MANAGER), make_user(Role.REVIEWER)
    made = {}
    for dataset in (breast_cancer(), digits()):
        use_case = use_case_create(
            actor=manager,
            slug=dataset.slug,
            name=dataset.name,
            task_type=dataset.task_type,
            labels=dataset.labels,
            features=dataset.features,
            item_view=dataset.item_view,
        )
        for user in (manager, reviewer):
            UseCaseMembership.objects.get_or_create(use_case=use_case, user=user)
        row = dataset.frame.iloc[0].to_dict()
        features = {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
        item_ingest(use_case=use_case, external_id="x-1", features=features)
        made[dataset.slug] = use_case
    return manager, reviewer, made


def _pages(base, slug):
    return {
        "queue": f"{base}/queue/{slug}/",
        "control": f"{base}/control/use-cases/{slug}/items/x-1/",
        "datasets": f"{base}/datasets/{slug}/items/x-1",
    }


def test_an_item_reads_in_columns_and_fits_a_phone_on_every_page(signed_in):
    manager, reviewer, _ = _world()
    for width in (1280, 390):
        pages = {
            "reviewer": signed_in(reviewer, width=width),
            "manager": signed_in(manager, width=width),
        }
        for where, url in _pages(pages["manager"].base_url, "breast-cancer").items():
            page = pages["reviewer" if where == "queue" else "manager"]
            page.goto(url)
            page.locator(".feat").first.wait_for()
            assert page.locator(".feat").count() == 31
            assert "Radius" in page.locator(".item-features").inner_text()
            layout = (
                page.locator(".feat-group:has(h3)").first.locator("dt, dd").evaluate_all(OVERLAP)
            )
            assert layout["overlapping"] == 0, (where, width)
            if width == 1280:
                assert layout["columns"] >= 2, where
            else:
                assert page.evaluate("document.documentElement.scrollWidth") <= 390, where
            screenshot(page, f"item-{where}-{width}")
        for where, url in _pages(pages["manager"].base_url, "digits").items():
            page = pages["reviewer" if where == "queue" else "manager"]
            page.goto(url)
            page.locator(".item-image svg").wait_for()
            assert page.locator(".feat").count() == 0  # an image, not 64 numbers
            screenshot(page, f"item-digits-{where}-{width}")
