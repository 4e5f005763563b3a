"""The dashboard pages: every tab, htmx swaps, filters, and the same numbers as the API."""

import json
import re
from datetime import timedelta
from html import unescape

import pytest
from django.utils import timezone

from deployments.services.policies import policy_change
from reviewapp.core.roles import Role
from reviewapp.monitoring.services import rollups_fold
from reviewapp.reviews.services.ingest import item_ingest
from reviewapp.reviews.services.review import review_task_claim, review_task_decide
from tests.factories import (
    constant_classifier_bytes,
    invoice,
    make_use_case,
    make_user,
    register_model,
)
from tests.html import local_assets

pytestmark = pytest.mark.django_db
TABS = ("automation", "quality", "inputs", "outputs", "software")


@pytest.fixture
def world(people):
    manager, alice = people["manager"], people["alice"]
    use_case = make_use_case(
        members=[manager, alice],
        level="assisted",
        actor=manager,
        guardrails={"override_rate": {"max": 0.2, "window": 200}},
    )
    register_model(use_case, constant_classifier_bytes("office", 0.8))
    now = timezone.now() - timedelta(hours=3)
    # Enough judged suggestions (32) that the override rate is a figure, not "too few items".
    for n in range(36):
        body = invoice(n)
        item_ingest(
            use_case=use_case, external_id=body["external_id"], features=body["features"], now=now
        )
    for n in range(32):
        task = review_task_claim(use_case=use_case, user=alice, now=now)
        review_task_decide(task=task, user=alice, label="office" if n < 24 else "other", now=now)
    policy_change(use_case=use_case, actor=manager, changes={"level": "full"}, reason="ramp")
    for n in range(36, 60):
        body = invoice(n)
        item_ingest(use_case=use_case, external_id=body["external_id"], features=body["features"])
    rollups_fold()
    return use_case, manager


def _figures(html: str) -> dict[str, dict]:
    elements = re.findall(r'<div hidden id="(fig-[a-z]+)" data-json="(.*?)"></div>', html, re.S)
    return {key: json.loads(unescape(body)) for key, body in elements}


@pytest.mark.parametrize("tab", TABS)
def test_each_tab_draws_its_charts_with_titles_units_and_a_reading(client, world, tab):
    use_case, manager = world
    client.force_login(manager)
    response = client.get(f"/monitoring/{use_case.slug}/{tab}/?range=7d")
    assert response.status_code == 200
    html = response.content.decode()
    assert "/static/plotly/plotly.min.js" in local_assets(html)
    charts = response.context["panel"]["charts"]
    assert charts
    figures = _figures(html)
    for chart in charts:
        assert chart.title and chart.reading
        if chart.figure is not None:
            layout = figures[chart.element_id]["layout"]
            assert layout["xaxis"]["title"]["text"] and layout["yaxis"]["title"]["text"]
    # No inline code: the page's scripts are JSON data or static files.
    for tag in re.findall(r"<script[^>]*>", html):
        assert 'type="application/json"' in tag or "src=" in tag, tag
    assert " on" + "click=" not in html and "hx-on" not in html


def test_automation_shows_the_route_shares_and_the_policy_change(client, world):
    use_case, manager = world
    client.force_login(manager)
    html = client.get(f"/monitoring/{use_case.slug}/?range=24h").content.decode()
    figure = _figures(html)["fig-routes"]
    by_route = {trace["name"]: sum(trace["y"]) for trace in figure["data"]}
    assert by_route["auto (model decided)"] == 24
    assert by_route["assisted review"] == 36
    assert any("full" in note["text"] for note in figure["layout"]["annotations"])


def test_override_chart_draws_the_guardrail_limit(client, world):
    use_case, manager = world
    client.force_login(manager)
    response = client.get(f"/monitoring/{use_case.slug}/quality/?range=24h")
    figure = _figures(response.content.decode())["fig-override"]
    limits = [s for s in figure["layout"]["shapes"] if s.get("y0") == 0.2]
    assert limits, "the override_rate guardrail is drawn"
    override = next(c for c in response.context["panel"]["charts"] if c.key == "override")
    assert "25.0%" in override.reading and "above the 20% guardrail" in override.reading


def test_htmx_gets_only_the_panel(client, world):
    use_case, manager = world
    client.force_login(manager)
    response = client.get(f"/monitoring/{use_case.slug}/outputs/", HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in html and 'id="dashboard"' in html


def test_a_bad_filter_is_named(client, world):
    use_case, manager = world
    client.force_login(manager)
    response = client.get(f"/monitoring/{use_case.slug}/?range=week")
    assert response.status_code == 400
    assert "range" in response.content.decode()
    response = client.get(f"/monitoring/{use_case.slug}/?version=nope")
    assert response.status_code == 400
    assert "version" in response.content.decode()


def test_the_api_returns_the_dashboard_numbers(client, api, world):
    use_case, manager = world
    client.force_login(manager)
    for tab in TABS:
        response = client.get(f"/monitoring/{use_case.slug}/{tab}/?range=7d")
        summary = response.context["panel"]["summary"]
        window = summary["window"]
        body = (
            api(manager)
            .get(
                f"/api/v1/use-cases/{use_case.slug}/metrics/",
                {"since": window["since"].isoformat()},
            )
            .json()
        )
        for key in (
            "items",
            "routes",
            "automation_rate",
            "override_rate",
            "accuracy",
            "decisions",
            "null_outputs",
            "null_output_rate",
            "in_review",
            "pending",
        ):
            assert body[key] == summary[key], (tab, key)
        assert body["latency_ms"] == pytest.approx(summary["latency_ms"])
    assert body["automation_rate"] == pytest.approx(24 / 60)
    assert body["override_rate"] == pytest.approx(8 / 32)
    assert body["in_review"] == 4


def test_overview_lists_the_use_cases_with_their_figures(client, world):
    use_case, manager = world
    client.force_login(manager)
    html = client.get("/monitoring/").content.decode()
    assert use_case.name in html and f"/monitoring/{use_case.slug}/" in html
    assert "40.0%" in html and "n=60" in html  # 24 of 60 items automated


def test_reviewers_are_refused(client, world):
    use_case, _ = world
    client.force_login(make_user(Role.REVIEWER))
    assert client.get(f"/monitoring/{use_case.slug}/").status_code == 403


def test_quality_charts_draw_the_95_percent_interval_as_a_band(client, world):
    use_case, manager = world
    client.force_login(manager)
    response = client.get(f"/monitoring/{use_case.slug}/quality/?range=7d")
    figures = _figures(response.content.decode())
    for key in ("fig-override", "fig-accuracy"):
        traces = figures[key]["data"]
        upper, lower = traces[0], traces[1]
        assert upper["name"].endswith("upper") and lower["fill"] == "tonexty"
        line = traces[2]
        for low, value, high in zip(lower["y"], line["y"], upper["y"], strict=True):
            if value is not None:
                assert low <= value <= high
    html = response.content.decode()
    # The cards carry their evidence: 8 of 32 suggestions overridden.
    assert "25.0%" in html and "n=32" in html
    assert "Model accuracy, weighted estimate" in html
    assert "Agreement among reviewed items" in html


def test_a_chart_on_too_few_items_says_so(client, people):
    manager, alice = people["manager"], people["alice"]
    use_case = make_use_case(members=[manager, alice], level="assisted", actor=manager)
    register_model(use_case, constant_classifier_bytes("office", 0.8))
    for n in range(12):
        body = invoice(n)
        item_ingest(use_case=use_case, external_id=body["external_id"], features=body["features"])
    for n in range(12):
        task = review_task_claim(use_case=use_case, user=alice)
        review_task_decide(task=task, user=alice, label="office" if n % 4 else "other")
    rollups_fold()
    client.force_login(manager)
    response = client.get(f"/monitoring/{use_case.slug}/quality/")
    html = response.content.decode()
    assert "fig-override" not in _figures(html) and "fig-accuracy" not in _figures(html)
    assert "Too few items (n=12) for an override rate" in html
    assert "too few items (n=12)" in html  # the cards too, instead of "25.0%"
    assert "25.0%" not in html


def test_personal_data_and_identifiers_are_left_out_of_drift_and_the_page_says_so(client, world):
    use_case, manager = world
    client.force_login(manager)
    html = client.get(f"/monitoring/{use_case.slug}/inputs/?range=7d").content.decode()
    assert "Not judged for drift" in html and "<strong>vendor</strong> (personal data)" in html
    drift = next(c for c in _figures(html).values() if "Input shift" in json.dumps(c))
    assert "vendor" not in json.dumps(drift)
