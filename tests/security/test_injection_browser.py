"""Markup and script sent in as data stay text on every page, in Chromium.

Items, comments and names carry the classic payloads; every page that shows them is opened
with a real browser. No dialog may fire, no element the payloads would create may exist, and
the Content-Security-Policy must not have had to block anything (a blocked script would mean a
page still tried to run inline code, and Plotly's charts must draw under the policy).
"""

from urllib.parse import quote

import pytest

from deployments.models import UseCase
from reviewapp.control.backtests import backtest_start
from reviewapp.core.models import Job
from reviewapp.core.roles import Role
from reviewapp.monitoring.services import rollups_fold
from reviewapp.reviews.services.escalations import escalation_raise
from reviewapp.reviews.services.ingest import item_ingest
from reviewapp.reviews.services.review import review_task_claim, review_task_decide
from tests.conftest import screenshot, settled
from tests.error_urls import BROKEN_PATH
from tests.factories import classifier_bytes, make_use_case, make_user, register_model

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

IMG = "<img src=x onerror=alert(1)>"
SCRIPT = "</script><script>alert(2)</script>"
LINK = "javascript:alert(3)"
PAYLOAD = f"{IMG} {SCRIPT} {LINK}"


def hostile_data():
    manager = make_user(Role.MANAGER, "maria")
    reviewer = make_user(Role.REVIEWER, "rita")
    use_case = make_use_case(slug="hostile", members=[manager, reviewer], level="assisted")
    UseCase.objects.filter(pk=use_case.pk).update(name=f"Invoices {IMG}", description=PAYLOAD)
    use_case.refresh_from_db()
    register_model(use_case, classifier_bytes())
    for n in range(6):
        item_ingest(
            use_case=use_case,
            external_id=f"{IMG}-{n}",
            features={"amount": 20.0 + n, "kind": "abc"[n % 3], "vendor": PAYLOAD},
        )
    for _ in range(3):
        task = review_task_claim(use_case=use_case, user=reviewer)
        review_task_decide(task=task, user=reviewer, label="travel", comment=PAYLOAD)
    task = review_task_claim(use_case=use_case, user=reviewer)
    escalation_raise(task=task, user=reviewer, comment=PAYLOAD)  # open on /escalations/
    backtest_start(use_case=use_case, actor=manager, model_version="v1")  # runs on commit
    rollups_fold()
    return use_case, manager, reviewer


# Pages answered with an error status on purpose; every other page must answer 200. The 500
# page needs the URL conf with a failing page in it: the ``error_pages`` fixture.
NOT_FOUND_PATH = "/no-such-page/"
EXPECTED_STATUS = {NOT_FOUND_PATH: 404, BROKEN_PATH: 500}


@pytest.fixture
def error_pages(settings):
    settings.ROOT_URLCONF = "tests.error_urls"


def pages(use_case) -> list[str]:
    slug = use_case.slug
    item = use_case.items.order_by("pk").first()
    external_id = quote(item.external_id, safe="")
    backtest = Job.objects.get(use_case=use_case, kind=Job.Kind.BACKTEST)
    return [
        "/",
        "/accounts/login/",
        NOT_FOUND_PATH,
        BROKEN_PATH,
        f"/queue/{slug}/",
        "/my-work/",
        "/escalations/",
        "/control/",
        "/control/models/",
        f"/control/use-cases/{slug}/",
        f"/control/use-cases/{slug}/guardrails/",
        f"/control/use-cases/{slug}/ramp/",
        f"/control/use-cases/{slug}/models/",
        f"/control/use-cases/{slug}/items/{external_id}/",
        f"/control/use-cases/{slug}/backtests/",
        f"/control/use-cases/{slug}/backtests/{backtest.pk}/",
        f"/control/use-cases/{slug}/readiness/",
        f"/control/use-cases/{slug}/reviewers/",
        "/monitoring/",
        "/monitoring/system/",
        f"/monitoring/{slug}/",
        *(f"/monitoring/{slug}/{tab}/" for tab in ("quality", "inputs", "outputs", "software")),
        "/datasets/",
        f"/datasets/{slug}/",
        f"/datasets/{slug}/items/{external_id}",
        f"/datasets/{slug}/exports/",
        f"/datasets/{slug}/retraining/",
        "/webhooks/",
        "/tokens/",
    ]


def watched(page):
    """Record on ``page`` every dialog that opens and every load the policy blocks."""
    page.dialogs, page.blocked = [], []
    page.on("dialog", lambda dialog: (page.dialogs.append(dialog.message), dialog.dismiss()))

    def on_console(message):
        if "Content Security Policy" in message.text:
            page.blocked.append(message.text)

    page.on("console", on_console)
    return page


def visit(page, path: str) -> dict:
    page.dialogs.clear()
    page.blocked.clear()
    response = page.goto(page.base_url + path)
    settled(page)
    injected = page.evaluate(
        """() => ({
            images: document.querySelectorAll('img[src="x"], img[onerror]').length,
            scripts: [...document.scripts].filter(s => s.textContent.includes('alert(')).length,
            links: document.querySelectorAll('a[href^="javascript:" i]').length,
            handlers: [...document.querySelectorAll('*')].filter(
                el => [...el.attributes].some(a => a.name.startsWith('on'))).length,
            payloadShownAsText: document.body.innerText.includes('onerror=alert(1)'),
        })"""
    )
    return {"status": response.status, "dialogs": page.dialogs, "blocked": page.blocked, **injected}


def test_every_page_shows_hostile_data_as_inert_text(signed_in, error_pages):
    use_case, manager, reviewer = hostile_data()
    reviewer_page = watched(signed_in(reviewer))
    manager_page = watched(signed_in(manager))
    shown_somewhere = False
    for path in pages(use_case):
        page = reviewer_page if path.startswith(("/queue/", "/my-work/")) else manager_page
        result = visit(page, path)
        assert result["status"] == EXPECTED_STATUS.get(path, 200), path
        assert result["dialogs"] == [], path
        assert result["blocked"] == [], path
        assert (result["images"], result["scripts"], result["links"]) == (0, 0, 0), path
        assert result["handlers"] == 0, path
        shown_somewhere |= result["payloadShownAsText"]
    assert shown_somewhere  # the payloads did reach the pages, as text


def test_plotly_draws_under_the_policy(signed_in):
    use_case, manager, _ = hostile_data()
    page = watched(signed_in(manager))
    result = visit(page, f"/monitoring/{use_case.slug}/")
    assert result["blocked"] == []
    assert page.locator(".js-plotly-plot .main-svg").count() > 0
    screenshot(page, "security-dashboard-under-csp")


def test_the_api_docs_work_under_the_policy(signed_in):
    page = watched(signed_in(make_user(Role.ADMIN)))
    result = visit(page, "/api/docs/")
    page.locator(".opblock").first.wait_for()
    assert result["blocked"] == []
    assert page.locator(".opblock").count() > 20  # every operation listed
