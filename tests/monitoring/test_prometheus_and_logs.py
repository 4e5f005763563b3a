"""/metrics for Prometheus, and one JSON log line per event carrying the request id."""

import json
import logging

import pytest
from prometheus_client.parser import text_string_to_metric_families

from reviewapp.core.logs import JsonFormatter
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
    version = (("model_version", "v1"), ("shadow", "False"), ("use_case", "busy"))
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


def test_a_forged_request_id_is_replaced(client, caplog):
    caplog.set_level(logging.INFO, logger="reviewapp.events")
    response = client.get("/healthz", HTTP_X_REQUEST_ID="bad id\nwith a newline")
    generated = response["X-Request-ID"]
    assert generated != "bad id\nwith a newline" and len(generated) == 32
    [access] = _json_lines(caplog, "request")
    assert access["request_id"] == generated
    line = JsonFormatter().format(caplog.records[-1])
    assert "\n" not in line
