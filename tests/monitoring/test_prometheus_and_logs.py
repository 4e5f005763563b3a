"""/metrics for Prometheus, and one JSON log line per event carrying the request id."""

import json
import logging

import pytest
from prometheus_client.parser import text_string_to_metric_families

from reviewapp.core.logs import JsonFormatter, events_log
from reviewapp.core.request_context import request_id_var
from reviewapp.core.roles import Role
from reviewapp.monitoring.services import rollups_fold
from tests.factories import (
    constant_classifier_bytes,
    invoice,
    make_use_case,
    make_user,
    register_model,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def busy(api, people):
    caller, manager = people["caller"], people["manager"]
    use_case = make_use_case(members=[caller, manager], level="full", slug="busy")
    register_model(use_case, constant_classifier_bytes("office", 0.9))
    hidden = make_use_case(members=[caller], level="human_only", slug="hidden")
    for n in range(5):
        api(caller).post(f"/api/v1/use-cases/{use_case.slug}/items/", invoice(n), format="json")
    for n in range(3):
        api(caller).post(f"/api/v1/use-cases/{hidden.slug}/items/", invoice(n), format="json")
    rollups_fold()
    return use_case, manager


def _samples(text: str) -> dict[tuple, float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_metrics_count_predictions_routes_and_the_queue_of_visible_use_cases(api, busy):
    use_case, manager = busy
    response = api(manager).get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    text = response.content.decode()
    samples = _samples(text)
    version = (("model_version", "v1"), ("shadow", "false"), ("use_case", "busy"))
    assert samples[("reviewapp_predictions_total", version)] == 5
    assert samples[("reviewapp_null_outputs_total", version)] == 0
    assert samples[("reviewapp_items_routed_total", (("route", "auto"), ("use_case", "busy")))] == 5
    assert samples[("reviewapp_queue_depth", (("use_case", "busy"),))] >= 0
    assert "reviewapp_prediction_latency_seconds_bucket" in text
    assert "reviewapp_http_request_duration_seconds_bucket" in text
    assert 'use_case="hidden"' not in text  # the manager is not a member of it


def test_a_scraper_with_the_token_sees_every_use_case(client, busy, settings):
    settings.METRICS_SCRAPE_TOKEN = "s3cret-scrape-token"
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-scrape-token")
    assert response.status_code == 200
    text = response.content.decode()
    assert 'use_case="hidden"' in text and 'use_case="busy"' in text


def test_reviewers_cannot_scrape(api, busy):
    assert api(make_user(Role.REVIEWER)).get("/metrics").status_code == 403


def _json_lines(caplog, event):
    formatter = JsonFormatter()
    return [
        json.loads(formatter.format(record))
        for record in caplog.records
        if getattr(record, "event_fields", {}).get("event") == event
    ]


def test_an_incoming_request_id_is_echoed_and_logged_with_each_routed_item(api, people, caplog):
    caller = people["caller"]
    use_case = make_use_case(members=[caller], level="full")
    register_model(use_case, constant_classifier_bytes("office", 0.9))
    caplog.set_level(logging.INFO, logger="reviewapp.events")
    response = api(caller).post(
        f"/api/v1/use-cases/{use_case.slug}/items/",
        invoice(7),
        format="json",
        HTTP_X_REQUEST_ID="req-abc-123",
    )
    assert response.status_code == 201
    assert response["X-Request-ID"] == "req-abc-123"
    [routed] = _json_lines(caplog, "item_routed")
    assert routed["request_id"] == "req-abc-123"
    assert routed["use_case"] == use_case.slug
    assert routed["item"] == "inv-7"
    assert routed["model_version"] == "v1"
    assert routed["route"] == "auto"
    [access] = _json_lines(caplog, "request")
    assert access["request_id"] == "req-abc-123" and access["status"] == 201


def test_a_batch_logs_each_item_routed_as_a_line_of_its_own(
    api, people, caplog, django_capture_on_commit_callbacks
):
    caller = people["caller"]
    use_case = make_use_case(members=[caller], level="full")
    register_model(use_case, constant_classifier_bytes("office", 0.9))
    caplog.set_level(logging.INFO, logger="reviewapp.events")
    with django_capture_on_commit_callbacks(execute=True):  # its chunk is scored (eager)
        response = api(caller).post(
            f"/api/v1/use-cases/{use_case.slug}/items/batch/",
            {"items": [invoice(n) for n in range(3)]},
            format="json",
            HTTP_X_REQUEST_ID="req-batch-1",
        )
    assert response.status_code == 202
    formatter = JsonFormatter()
    lines = [
        json.loads(line)
        for record in caplog.records
        if getattr(record, "event_rows", None)
        for line in formatter.format(record).splitlines()
    ]
    assert sorted(line["item"] for line in lines) == ["inv-0", "inv-1", "inv-2"]
    for line in lines:
        assert line["event"] == "item_routed"
        assert line["use_case"] == use_case.slug
        assert (line["model_version"], line["route"], line["status"]) == ("v1", "auto", "decided")
        assert "request_id" in line  # a worker's task carries the request's (not eager ones)
        assert line["level"] == "info" and line["time"]
    # For people (LOG_FORMAT=text): one line says how many.
    [record] = [r for r in caplog.records if getattr(r, "event_rows", None)]
    assert logging.Formatter("%(message)s").format(record) == "item_routed, 3 of them"


def test_many_events_logged_at_once_each_carry_the_request_id_of_their_work(caplog):
    caplog.set_level(logging.INFO, logger="reviewapp.events")
    token = request_id_var.set("req-chunk-7")
    try:
        events_log("item_routed", [{"item": "a", "route": "auto"}, {"item": "b", "route": "x"}])
    finally:
        request_id_var.reset(token)
    [record] = caplog.records
    lines = [json.loads(line) for line in JsonFormatter().format(record).splitlines()]
    assert [(line["item"], line["route"]) for line in lines] == [("a", "auto"), ("b", "x")]
    assert {line["request_id"] for line in lines} == {"req-chunk-7"}
    assert {line["event"] for line in lines} == {"item_routed"}


def test_a_forged_request_id_is_replaced(client, caplog):
    caplog.set_level(logging.INFO, logger="reviewapp.events")
    response = client.get("/healthz", HTTP_X_REQUEST_ID="bad id\nwith a newline")
    generated = response["X-Request-ID"]
    assert generated != "bad id\nwith a newline" and len(generated) == 32
    [access] = _json_lines(caplog, "request")
    assert access["request_id"] == generated
    line = JsonFormatter().format(caplog.records[-1])
    assert "\n" not in line


# What real scrapers send (Prometheus 3 and 2, Telegraf, curl, a browser) and what they get.
PROMETHEUS_3 = (
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,"
    "application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;"
    "escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
)
PROMETHEUS_2 = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
TELEGRAF = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.7,text/plain;version=0.0.4;q=0.3"  # noqa: E501
ACCEPTS = {
    "none": (None, "text"),
    "any": ("*/*", "text"),
    "text/plain": ("text/plain", "text"),
    "text 0.0.4": ("text/plain;version=0.0.4", "text"),
    "openmetrics first": ("application/openmetrics-text;version=1.0.0,text/plain;q=0.5", "om"),
    "prometheus 3": (PROMETHEUS_3, "om"),
    "prometheus 2": (PROMETHEUS_2, "om"),
    "telegraf": (TELEGRAF, "text"),
    "browser": ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", "text"),
    "json only": ("application/json", "text"),
}


@pytest.mark.parametrize("accept", ACCEPTS, ids=list(ACCEPTS))
def test_every_scrape_accept_header_gets_a_format_it_can_parse(api, busy, accept):
    from prometheus_client.openmetrics.parser import (
        text_string_to_metric_families as openmetrics_families,
    )

    header, expected = ACCEPTS[accept]
    _, manager = busy
    headers = {"HTTP_ACCEPT": header} if header else {}
    response = api(manager).get("/metrics", **headers)
    assert response.status_code == 200
    text = response.content.decode()
    if expected == "om":
        assert response["Content-Type"].startswith("application/openmetrics-text")
        assert text.endswith("# EOF\n")
        names = {family.name for family in openmetrics_families(text)}
        # OpenMetrics names a counter family without its _total suffix
        assert "reviewapp_predictions" in names
    else:
        assert response["Content-Type"].startswith("text/plain; version=0.0.4")
        names = {family.name for family in text_string_to_metric_families(text)}
        assert "reviewapp_predictions" in names
    assert 'shadow="false"' in text and 'shadow="False"' not in text


def test_the_grafana_dashboard_uses_only_series_the_app_exports(api, busy, monkeypatch):
    """deployments/grafana/reviewapp.json is valid JSON and every metric its PromQL names is
    declared by a scrape of /metrics."""
    import re
    from pathlib import Path

    # The broker's queues are exported when there is a Redis broker to ask: stand in for it.
    monkeypatch.setattr("reviewapp.monitoring.system.broker_queues", lambda **kwargs: [])

    dashboard = json.loads(
        (Path(__file__).parents[2] / "deployments/grafana/reviewapp.json").read_text()
    )
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs += [v["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    used = {name for expr in exprs for name in re.findall(r"\breviewapp_[a-z_]+", expr)}
    assert len(used) >= 12
    _, manager = busy
    text = api(manager).get("/metrics").content.decode()
    declared = set(re.findall(r"^# TYPE (\S+) ", text, re.M))
    for name in used:
        base = re.sub(r"_(bucket|total|count|sum)$", "", name)
        assert base in declared or name in declared, f"{name} is not exported"
    assert all(p["datasource"]["uid"] == "${datasource}" for p in dashboard["panels"])


def test_metrics_export_the_queue_against_its_due_times(api, people):
    from datetime import timedelta

    from django.utils import timezone

    from reviewapp.reviews.services.ingest import item_ingest

    manager = people["manager"]
    late = make_use_case(members=[manager], level="human_only", slug="late")
    make_use_case(members=[manager], level="human_only", slug="idle")
    hours_ago = timezone.now() - timedelta(hours=3)
    for n in range(2):
        item_ingest(
            use_case=late,
            now=hours_ago,
            due_at=(hours_ago + timedelta(hours=1)).isoformat(),
            **invoice(n),
        )
    samples = _samples(api(manager).get("/metrics").content.decode())
    assert samples[("reviewapp_queue_past_due_items", (("use_case", "late"),))] == 2
    assert samples[("reviewapp_queue_past_due_items", (("use_case", "idle"),))] == 0
    assert samples[("reviewapp_queue_oldest_age_seconds", (("use_case", "late"),))] >= 3 * 3600
    # An empty queue clears at once; a waiting one with no decisions has no forecast.
    assert samples[("reviewapp_queue_clear_forecast_seconds", (("use_case", "idle"),))] == 0
    assert ("reviewapp_queue_clear_forecast_seconds", (("use_case", "late"),)) not in samples
