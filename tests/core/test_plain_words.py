"""Managers' pages speak plain words: the statistician's names for a method (Wilson, PSI, CUSUM,
sequential test, Newcombe, Welch, calibration error) appear only inside a folded "How this is
computed" line, never in the text a manager reads at a glance, nor in a chart's own words."""

import json
import re
from html import unescape

import pytest

from reviewapp.core.roles import Role
from reviewapp.monitoring.services import rollups_fold
from reviewapp.reviews.services.ingest import item_ingest
from reviewapp.reviews.services.review import review_task_claim, review_task_decide
from tests.factories import (
    classifier_bytes,
    invoice,
    logged_in_client,
    make_use_case,
    make_user,
    register_model,
)

pytestmark = pytest.mark.django_db

JARGON = re.compile(
    r"Wilson|\bPSI\b|CUSUM|sequential|Newcombe|Welch|calibration error|Student.t", re.I
)


def visible_text(html: str) -> str:
    """What a manager reads without unfolding anything: no tags or attributes (a tooltip is
    asked for), no scripts, no <details> (their summary is the only line shown, kept)."""
    html = re.sub(r"<(script|style)\b.*?</\1>", " ", html, flags=re.S | re.I)
    summaries = " ".join(re.findall(r"<summary\b[^>]*>(.*?)</summary>", html, flags=re.S))
    html = re.sub(r"<details\b.*?</details>", " ", html, flags=re.S | re.I)
    return unescape(re.sub(r"<[^>]+>", " ", html + " " + summaries))


def _drawn_text(node, key=""):
    """Strings under the keys Plotly draws as text (titles, annotations, trace names)."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _drawn_text(v, k)
    elif isinstance(node, list):
        for v in node:
            yield from _drawn_text(v, key)
    elif isinstance(node, str) and key in ("text", "title", "name", "ticktext"):
        yield node


def chart_words(html: str) -> str:
    """The words Plotly draws on the page's figures (hover text aside)."""
    words = []
    for body in re.findall(r'data-json="(.*?)"', html, flags=re.S):
        words.extend(_drawn_text(json.loads(unescape(body))))
    return " ".join(words)


def test_jargon_finder_sees_words_outside_details_only():
    html = (
        "<p>Input shift</p><details class='how'><summary>How this is computed</summary>"
        "<p>PSI, Wilson</p></details><span title='Wilson interval'>70%</span>"
    )
    assert not JARGON.search(visible_text(html))
    assert JARGON.search(visible_text("<p>all PSI &lt; 0.25</p>"))


def test_managers_pages_keep_the_method_in_a_details_line():
    manager, rita = make_user(Role.MANAGER), make_user(Role.REVIEWER, "rita")
    use_case = make_use_case(
        members=[manager, rita],
        actor=manager,
        level="assisted",
        double_review_rate=0.5,
        guardrails={
            "override_rate": {"max": 0.2, "window": 200},
            "drift_psi": {"max": 0.25, "window": 1000},
        },
    )
    register_model(use_case, classifier_bytes())
    for n in range(40):
        body = invoice(n)
        features = {**body["features"], "amount": body["features"]["amount"] * (50 if n % 2 else 1)}
        item_ingest(use_case=use_case, external_id=body["external_id"], features=features)
    for n in range(30):
        task = review_task_claim(use_case=use_case, user=rita)
        review_task_decide(task=task, user=rita, label="office" if n % 3 else "travel")
    rollups_fold()
    client = logged_in_client(manager)
    slug = use_case.slug
    paths = [
        "/control/",
        f"/control/use-cases/{slug}/",
        f"/control/use-cases/{slug}/guardrails/",
        f"/control/use-cases/{slug}/ramp/",
        f"/control/use-cases/{slug}/models/",
        f"/control/use-cases/{slug}/backtests/",
        f"/control/use-cases/{slug}/readiness/",
        f"/control/use-cases/{slug}/reviewers/",
        "/monitoring/",
        *(
            f"/monitoring/{slug}/{tab}/"
            for tab in ("automation", "quality", "inputs", "outputs", "software")
        ),
    ]
    found, methods, pages = {}, set(), {}
    for path in paths:
        response = client.get(path)
        assert response.status_code == 200, path
        html = pages[path] = response.content.decode()
        words = JARGON.findall(visible_text(html)) + JARGON.findall(chart_words(html))
        if words:
            text = visible_text(html) + chart_words(html)
            found[path] = [
                text[max(0, m.start() - 60) : m.end() + 30] for m in JARGON.finditer(text)
            ]
        if '<details class="how">' in html:
            methods.add(path)
    assert found == {}
    # The method is still there for those who ask, on the pages that use one.
    assert {
        f"/control/use-cases/{slug}/guardrails/",
        f"/control/use-cases/{slug}/readiness/",
        f"/monitoring/{slug}/inputs/",
    } <= methods
    # The plain words are there instead (the drawn charts too, not an empty page).
    assert "how far inputs moved from training" in pages[f"/monitoring/{slug}/inputs/"]
    assert "Input shift (0 = same as training" in chart_words(pages[f"/monitoring/{slug}/inputs/"])
    assert "Confidence vs. being right" in pages[f"/monitoring/{slug}/quality/"]
