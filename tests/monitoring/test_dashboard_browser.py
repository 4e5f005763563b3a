"""The dashboards in Chromium: every chart drawn with data, tabs and filters swapped by htmx."""

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from deployments.services.model_versions import model_version_challenge
from deployments.services.policies import policy_change
from reviewapp.core.roles import Role
from reviewapp.monitoring.services import rollups_fold
from reviewapp.reviews.services.ingest import item_ingest
from reviewapp.reviews.services.review import review_task_claim, review_task_decide
from tests.conftest import screenshot
from tests.factories import classifier_bytes, invoice, make_use_case, make_user, register_model

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
TABS = ("Automation", "Quality", "Inputs", "Outputs", "Software")


def seeded():
    manager = make_user(Role.MANAGER, "maria")
    alice = make_user(Role.REVIEWER, "alice")
    bob = make_user(Role.REVIEWER, "bob")
    use_case = make_use_case(
        members=[manager, alice, bob],
        slug="invoices",
        level="assisted",
        double_review_rate=0.3,
        actor=manager,
        guardrails={"override_rate": {"max": 0.2, "window": 200}},
    )
    register_model(use_case, classifier_bytes())
    register_model(use_case, classifier_bytes(seed=2), version="v2")
    model_version_challenge(use_case=use_case, version="v2", actor=manager)
    start = timezone.now() - timedelta(days=2)
    for n in range(60):
        at = start + timedelta(minutes=40 * n)
        body = invoice(n, kind=None if n % 7 == 0 else "abc"[n % 3], amount=10.0 + 7 * n)
        item_ingest(
            use_case=use_case, external_id=body["external_id"], features=body["features"], now=at
        )
        if n == 30:
            policy_change(
                use_case=use_case,
                actor=manager,
                changes={"level": "partial", "confidence_threshold": 0.6},
                reason="ramp up",
                now=at,
            )
    for step in range(80):
        reviewer = alice if step % 2 else bob
        task = review_task_claim(use_case=use_case, user=reviewer)
        if task is None:
            continue
        review_task_decide(
            task=task, user=reviewer, label=["travel", "office", "other"][step % 4 % 3]
        )
    rollups_fold()
    return use_case, manager


def _charts_drawn(page) -> list[dict]:
    return page.evaluate(
        """() => Array.from(document.querySelectorAll('.chart')).map(chart => {
            const plot = chart.querySelector('.plot');
            return {
                key: chart.dataset.chart,
                drawn: !!(plot && plot.classList.contains('js-plotly-plot')
                          && plot.querySelector('svg.main-svg')),
                traces: plot && plot._fullData ? plot._fullData.length : 0,
                points: plot && plot._fullData ? plot._fullData.reduce(
                    (n, t) => n + ((t.x || t.z || []).length || 0), 0) : 0,
            };
        })"""
    )


def test_every_dashboard_draws_its_charts_with_data(signed_in):
    use_case, manager = seeded()
    page = signed_in(manager)
    page.goto(f"{page.base_url}/monitoring/{use_case.slug}/?range=7d")
    for tab in TABS:
        if tab != "Automation":
            page.get_by_role("link", name=tab, exact=True).click()
            page.wait_for_url(f"**/monitoring/{use_case.slug}/{tab.lower()}/**")
        # Locators, not wait_for_function: the page's CSP forbids evaluating strings.
        expect(page.locator(".chart .plot").first).to_be_attached()
        expect(page.locator(".chart .plot:not(.js-plotly-plot)")).to_have_count(0)
        charts = _charts_drawn(page)
        assert charts, tab
        for chart in charts:
            if chart["key"] == "breaches":  # none were breached: says so instead
                assert not chart["drawn"]
                continue
            assert chart["drawn"] and chart["traces"] > 0 and chart["points"] > 0, (tab, chart)
        for caption in page.locator(".chart figcaption").all_inner_texts():
            assert caption.strip()
        screenshot(page, f"dashboard-{tab.lower()}")
    # The filter swaps the panel in place and keeps the tab.
    page.select_option("select[name=version]", "v2")
    page.wait_for_url("**version=v2**")
    page.wait_for_selector(".chart .plot.js-plotly-plot")
    assert "model v2" in page.locator(".window").inner_text()


def test_dashboard_at_phone_width(signed_in):
    use_case, manager = seeded()
    page = signed_in(manager, width=390)
    page.goto(f"{page.base_url}/monitoring/{use_case.slug}/quality/?range=7d")
    page.wait_for_selector(".chart .plot.js-plotly-plot")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, "nothing overflows the phone's width"
    screenshot(page, "dashboard-quality-390")


def test_the_inputs_tab_names_the_features_left_out_of_drift(signed_in):
    use_case, manager = seeded()  # its vendor feature is personal data
    page = signed_in(manager)
    page.goto(f"{page.base_url}/monitoring/{use_case.slug}/inputs/?range=7d")
    page.wait_for_selector(".chart .plot.js-plotly-plot")
    note = page.locator(".feature-table p.reading", has_text="Not judged for drift")
    expect(note).to_contain_text("vendor (personal data)")
    row = page.locator(".feature-table tbody tr", has=page.locator("th", has_text="vendor"))
    expect(row.locator("td").last).to_have_text("not judged")
    drift = page.locator(".chart[data-chart=drift] .plot")
    labels = drift.evaluate("plot => plot._fullData.flatMap(trace => trace.y || [])")
    assert labels and "vendor" not in labels and "amount" in labels


def test_a_regression_use_case_shows_its_errors_not_a_confusion_matrix(signed_in):
    manager, alice = make_user(Role.MANAGER, "maria"), make_user(Role.REVIEWER, "alice")
    use_case = make_use_case(
        members=[manager, alice],
        slug="amounts",
        task_type="regression",
        level="assisted",
        audit_rate=0,
        actor=manager,
    )
    use_case.prediction_source = "external"
    use_case.save(update_fields=["prediction_source"])
    at = timezone.now() - timedelta(hours=2)
    for n in range(12):
        item_ingest(
            use_case=use_case,
            external_id=f"r-{n}",
            features={"x": float(n), "y": 1.0},
            prediction={"value": 10.0 + n, "model_version": "edge-1"},
            now=at,
        )
    for n in range(12):
        task = review_task_claim(use_case=use_case, user=alice, now=at)
        review_task_decide(task=task, user=alice, value=10.0 + n + (150 if n % 4 == 0 else 0))
    rollups_fold()
    page = signed_in(manager)
    page.goto(f"{page.base_url}/monitoring/{use_case.slug}/quality/?range=7d")
    page.wait_for_selector(".chart .plot.js-plotly-plot")
    keys = page.locator(".chart").evaluate_all("charts => charts.map(c => c.dataset.chart)")
    assert "residuals" in keys and "confusion" not in keys
    residuals = page.locator(".chart[data-chart=residuals]")
    expect(residuals.locator("h2")).to_have_text("Errors (human value − model's value)")
    expect(residuals.locator(".plot svg.main-svg").first).to_be_visible()
    bars = residuals.locator(".plot").evaluate("plot => plot._fullData[0].y")
    assert sum(bars) == 12  # every judged item in one bar or another
    expect(residuals.locator("figcaption")).to_contain_text("Of 12 labelled items")
