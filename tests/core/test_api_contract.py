"""The API answers as its OpenAPI schema says, so a client generated from the schema works
unchanged: what the schema calls invalid is refused with a 400 naming the field, every error
body is the declared ``Error`` shape with its ``code``, and every status and header the API
really sends is declared."""

import json
import re

import pytest

from reviewapp.core.roles import Role
from reviewapp.webhooks.models import Endpoint
from tests.factories import invoice, make_use_case, make_user, send_items

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def document(django_db_blocker):
    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.renderers import OpenApiJsonRenderer

    with django_db_blocker.unblock():
        schema = SchemaGenerator().get_schema(request=None, public=True)
    return json.loads(OpenApiJsonRenderer().render(schema))


def _operations(document):
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            yield path, method, operation


def _resolved(document, schema: dict) -> dict:
    while "$ref" in schema or len(schema.get("allOf", [])) == 1:
        if "allOf" in schema:
            schema = schema["allOf"][0]
        else:
            schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _refuses_empty(schema: dict) -> bool:
    """Whether the empty string is outside what the parameter's schema allows."""
    if "anyOf" in schema or "oneOf" in schema:
        return False
    return "enum" in schema or schema.get("type") in ("integer", "number")


@pytest.fixture
def manager_and_use_case():
    manager = make_user(Role.MANAGER)
    use_case = make_use_case(members=[manager], level="assisted")
    return manager, use_case


def _query_parameters_refusing_empty(document):
    for path, method, operation in _operations(document):
        for parameter in operation.get("parameters", []):
            if parameter["in"] == "query" and _refuses_empty(parameter["schema"]):
                yield method, path, parameter["name"]


def test_empty_values_of_enum_and_number_query_parameters_are_refused_naming_them(
    api, document, manager_and_use_case
):
    manager, use_case = manager_and_use_case
    checked = []
    for method, path, name in _query_parameters_refusing_empty(document):
        assert re.findall(r"{(\w+)}", path) == ["slug"], path  # only the use case to fill in
        url = path.replace("{slug}", use_case.slug)
        response = getattr(api(manager), method)(f"{url}?{name}=")
        assert response.status_code == 400, (method, path, name, response.content[:300])
        body = response.json()
        assert name in body and body["code"] == "invalid", (method, path, name, body)
        checked.append((path.rsplit("/", 2)[-2], name))
    assert {
        ("disagreements", "kind"),
        ("disagreements", "format"),
        ("matrix", "kind"),
        ("matrix", "confidence_min"),
        ("outcomes", "limit"),
        ("outcomes", "wait"),
    } <= set(checked)


def test_empty_date_parameters_still_mean_no_bound(api, manager_and_use_case):
    manager, use_case = manager_and_use_case
    base = f"/api/v1/use-cases/{use_case.slug}"
    for url in (f"{base}/disagreements/", f"{base}/disagreements/matrix/", f"{base}/metrics/"):
        assert api(manager).get(f"{url}?since=&until=").status_code == 200, url


@pytest.fixture
def path_values(api, manager_and_use_case):
    """A real object for every path parameter a body-taking operation is addressed by."""
    manager, use_case = manager_and_use_case
    send_items(use_case, range(2))
    claimed = api(manager).post(f"/api/v1/use-cases/{use_case.slug}/review/next/")
    assert claimed.status_code == 200, claimed.content
    endpoint = Endpoint.objects.create(
        url="https://hooks.example.com/in",
        events=["outcome.decided"],
        all_use_cases=True,
        secret="whsec_test",
        created_by=manager,
    )
    return {
        "slug": use_case.slug,
        "task_id": claimed.json()["task"],
        "webhook_id": str(endpoint.pk),
        "request_id": "1",
        "version": "1",
    }


# Values of another JSON type than the one the schema declares, by declared type.
WRONG_TYPES = {
    "string": [5, 2.5, True],
    "number": ["0.5", True],
    "integer": ["5", True],
    "boolean": ["true", 1],
}


def _typed_body_fields(document):
    """(method, path, field, declared type) for every top-level text, choice, number, whole
    number or true/false field of a JSON body."""
    for path, method, operation in _operations(document):
        content = operation.get("requestBody", {}).get("content", {})
        if "application/json" not in content:
            continue
        body = _resolved(document, content["application/json"]["schema"])
        for name, field in body.get("properties", {}).items():
            declared = _resolved(document, field).get("type")
            if declared in WRONG_TYPES:
                yield method, path, name, declared


# What else a body needs so that the field tried is the only thing wrong with it.
VALID_REST = {
    ("post", "/api/v1/review/tasks/{task_id}/decision/"): {"label": "office"},
    ("post", "/api/v1/use-cases/{slug}/items/"): invoice(99),
    ("patch", "/api/v1/use-cases/{slug}/policy/"): {"reason": "tried"},
}


def test_json_body_fields_refuse_values_of_another_type_naming_the_field(
    api, document, manager_and_use_case, path_values
):
    manager, _ = manager_and_use_case
    checked = set()
    for method, path, name, declared in _typed_body_fields(document):
        url = path.format(**path_values)
        for wrong in WRONG_TYPES[declared]:
            body = {**VALID_REST.get((method, path), {}), name: wrong}
            response = getattr(api(manager), method)(url, body, format="json")
            assert response.status_code == 400, (method, path, name, wrong, response.content)
            body = response.json()
            assert name in body and isinstance(body["code"], str), (method, path, name, body)
        checked.add((method, path.rsplit("/", 2)[-2], name))
    assert {
        ("put", "policy", "reason"),
        ("patch", "policy", "reason"),
        ("put", "policy", "confidence_threshold"),
        ("post", "promote", "reason"),
        ("post", "use-cases", "slug"),
        ("patch", "{slug}", "four_eyes"),
        ("patch", "{slug}", "capacity_reviewers"),
        ("post", "tokens", "name"),
        ("post", "decision", "comment"),
        ("post", "decision", "time_spent_ms"),
        ("post", "items", "external_id"),
        ("post", "items", "priority"),
        ("post", "retrainings", "holdout_fraction"),
    } <= checked


def test_export_filters_refuse_values_of_another_type(api, manager_and_use_case):
    manager, use_case = manager_and_use_case
    url = f"/api/v1/use-cases/{use_case.slug}/exports/"
    for name, wrong in (("confidence_min", "0.5"), ("kind", 5), ("since", 20260101)):
        response = api(manager).post(url, {"filters": {name: wrong}}, format="json")
        assert response.status_code == 400, (name, response.content)
        assert list(response.json()["filters"]) == [name]
    fine = {"kind": "override", "confidence_min": 0.5, "since": "", "model_label": None}
    assert api(manager).post(url, {"filters": fine}, format="json").status_code == 202


def test_a_reason_that_is_a_number_changes_no_policy(api, manager_and_use_case):
    manager, use_case = manager_and_use_case
    policy = f"/api/v1/use-cases/{use_case.slug}/policy/"
    before = api(manager).get(policy).json()
    body = {key: before[key] for key in ("level", "confidence_threshold", "traffic_percent")}
    body.update(audit_rate=0.0, double_review_rate=0.0, reason=0)
    response = api(manager).put(policy, body, format="json")
    assert response.status_code == 400 and list(response.json()) == ["reason", "code"]
    assert api(manager).get(policy).json()["version"] == before["version"]


# --- every error body has its code -------------------------------------------------------------


def _assert_error_shape(response, code: str):
    body = response.json()
    assert isinstance(body, dict), body
    assert body.get("code") == code, body
    if "detail" in body:
        assert isinstance(body["detail"], str), body


def test_every_kind_of_client_error_names_its_code(api, client, manager_and_use_case, settings):
    manager, use_case = manager_and_use_case
    reviewer = make_user(Role.REVIEWER)
    base = f"/api/v1/use-cases/{use_case.slug}"
    cases = [
        (api(manager).put(f"{base}/policy/", {}, format="json"), 400, "invalid"),
        (api(manager).get(f"{base}/metrics/?since=yesterday"), 400, "invalid"),
        (api(manager).get(f"{base}/metrics/?model_version=%00"), 400, "invalid"),
        (
            api(manager).post(f"{base}/backtests/", "{", content_type="application/json"),
            400,
            "parse_error",
        ),
        (api().get(f"{base}/policy/"), 401, "not_authenticated"),
        (
            client.get(f"{base}/policy/", HTTP_AUTHORIZATION="Token nope"),
            401,
            "authentication_failed",
        ),
        (api(reviewer).put(f"{base}/policy/", {}, format="json"), 403, "permission_denied"),
        (api(manager).get("/api/v1/use-cases/nope/"), 404, "not_found"),
        (api(manager).get("/api/v1/no-such-endpoint/"), 404, "not_found"),
        (api(manager).delete(f"{base}/policy/"), 405, "method_not_allowed"),
        (api(manager).get(f"{base}/policy/", HTTP_ACCEPT="application/xml"), 406, "not_acceptable"),
        (
            api(manager).post(f"{base}/backtests/", "x", content_type="text/plain"),
            415,
            "unsupported_media_type",
        ),
    ]
    for response, status, code in cases:
        assert response.status_code == status, (status, response.content[:300])
        _assert_error_shape(response, code)
        if status == 401:
            assert response["WWW-Authenticate"] == "Bearer"
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 2  # a request Django itself refuses
    fields = {f"field{n}": "x" for n in range(5)}
    too_many = api(manager).post(f"{base}/models/", fields)
    assert too_many.status_code == 400
    _assert_error_shape(too_many, "bad_request")
    settings.API_MAX_BODY_BYTES = 10
    too_large = api(manager).post(f"{base}/backtests/", {"model_version": "v1"}, format="json")
    assert too_large.status_code == 413
    _assert_error_shape(too_large, "too_large")


def test_a_file_comes_in_the_media_type_a_client_asks_for(api, manager_and_use_case):
    manager, use_case = manager_and_use_case
    url = f"/api/v1/use-cases/{use_case.slug}/disagreements/"
    for fmt, accept in (("csv", "text/csv"), ("jsonl", "application/x-ndjson")):
        response = api(manager).get(f"{url}?format={fmt}", HTTP_ACCEPT=accept)
        assert response.status_code == 200 and response["Content-Type"].startswith(accept)
        assert response["Content-Disposition"].endswith(f'-disagreements.{fmt}"')
    refused = api(manager).get(f"{url}?kind=", HTTP_ACCEPT="text/csv")
    assert refused.status_code == 400 and refused.json()["kind"]


def test_a_conflict_keeps_its_own_code(api, manager_and_use_case):
    manager, use_case = manager_and_use_case
    send_items(use_case, range(1))
    task = api(manager).post(f"/api/v1/use-cases/{use_case.slug}/review/next/").json()["task"]
    decision = f"/api/v1/review/tasks/{task}/decision/"
    assert api(manager).post(decision, {"label": "office"}, format="json").status_code == 201
    again = api(manager).post(decision, {"label": "travel"}, format="json")
    assert again.status_code == 409
    _assert_error_shape(again, "decided")  # the raiser's own code is kept


def test_a_throttled_caller_gets_the_code_and_retry_after(api, manager_and_use_case, settings):
    from django.core.cache import cache

    manager, use_case = manager_and_use_case
    settings.INGEST_RATE_LIMIT = "1/minute"
    cache.clear()
    url = f"/api/v1/use-cases/{use_case.slug}/items/"
    try:
        responses = [
            api(manager).post(url, {"external_id": f"t-{n}", "features": {}}, format="json")
            for n in range(3)
        ]
    finally:
        cache.clear()
    throttled = [r for r in responses if r.status_code == 429]
    assert throttled, [r.status_code for r in responses]
    _assert_error_shape(throttled[0], "throttled")
    assert throttled[0]["Retry-After"]


def test_a_field_named_like_the_error_keys_is_still_named(api, manager_and_use_case):
    manager, use_case = manager_and_use_case
    response = api(manager).post(
        f"/api/v1/use-cases/{use_case.slug}/backtests/",
        {"model_version": "v1", "code": 1, "detail": 2},
        format="json",
    )
    assert response.status_code == 400
    body = response.json()
    _assert_error_shape(response, "invalid")
    assert "code" in str(body["non_field_errors"]) and "detail" in str(body["non_field_errors"])


# --- the schema declares what is sent ------------------------------------------------------------


def test_the_error_component_requires_its_code(document):
    error = document["components"]["schemas"]["Error"]
    assert error["required"] == ["code"]
    assert error["properties"]["code"]["type"] == "string"


# Answered in their own media type whatever the Accept header says: never a 406.
ANY_ACCEPT = {
    "/metrics",
    "/api/v1/use-cases/{slug}/disagreements/",
    "/api/v1/use-cases/{slug}/exports/{export_id}/download/",
    "/api/v1/use-cases/{slug}/models/{version}/artifact/",
}


def test_every_operation_declares_the_statuses_any_request_can_get(document):
    for path, method, operation in _operations(document):
        responses = operation["responses"]
        # A path or query holding NUL is refused before any view; an Accept header a JSON
        # answer cannot satisfy is a 406 (a file is sent whatever the Accept header says).
        assert "400" in responses, (method, path)
        assert ("406" in responses) is (path not in ANY_ACCEPT), (method, path)
        content = operation.get("requestBody", {}).get("content", {})
        if "application/json" in content:
            assert "413" in responses, (method, path)
        for code in ("400", "406", "413"):
            if code in responses:
                schema = responses[code]["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Error"}


def test_headers_really_sent_are_declared(document):
    paths = document["paths"]
    artifact = paths["/api/v1/use-cases/{slug}/models/{version}/artifact/"]["get"]
    assert {"X-Content-SHA256", "Repr-Digest", "Content-Disposition"} <= set(
        artifact["responses"]["200"]["headers"]
    )
    download = paths["/api/v1/use-cases/{slug}/exports/{export_id}/download/"]["get"]
    assert {"X-Content-SHA256", "Content-Disposition"} <= set(
        download["responses"]["200"]["headers"]
    )
    stream = paths["/api/v1/use-cases/{slug}/disagreements/"]["get"]
    assert "Content-Disposition" in stream["responses"]["200"]["headers"]
    for path, _method, operation in _operations(document):
        for code in ("429", "503"):
            if code in operation["responses"]:
                assert "Retry-After" in operation["responses"][code]["headers"], (path, code)
        if "401" in operation["responses"]:
            assert "WWW-Authenticate" in operation["responses"]["401"]["headers"], path


def test_export_filters_and_guardrails_declare_their_keys(document):
    from deployments.policy.guardrails import KINDS, TOP_LEVEL_KEYS
    from reviewapp.datasets.filters import FILTER_NAMES

    schemas = document["components"]["schemas"]
    paths = document["paths"]

    def body_of(path, method):
        content = paths[path][method]["requestBody"]["content"]["application/json"]
        return _resolved(document, content["schema"])

    filters = _resolved(
        document, body_of("/api/v1/use-cases/{slug}/exports/", "post")["properties"]["filters"]
    )
    assert set(filters["properties"]) == set(FILTER_NAMES)
    assert filters["additionalProperties"] is False
    for method in ("put", "patch"):
        guardrails = _resolved(
            document,
            body_of("/api/v1/use-cases/{slug}/policy/", method)["properties"]["guardrails"],
        )
        assert set(guardrails["properties"]) == TOP_LEVEL_KEYS
        assert guardrails["additionalProperties"] is False
        for kind in KINDS:
            limit = _resolved(document, guardrails["properties"][kind.name])
            assert limit["required"] == ["max"] and limit["additionalProperties"] is False
            assert limit["properties"]["max"]["maximum"] == kind.max_limit
            assert ("alpha" in limit["properties"]) is kind.is_rate
    assert any(name.startswith("Guardrail") for name in schemas)
