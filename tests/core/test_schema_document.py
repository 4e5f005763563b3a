"""The OpenAPI document is what client generators read: JSON on request, operations grouped
by area with readable names, and every error response the one declared error shape."""

import json

import pytest

AREAS = {
    "use cases",
    "policy",
    "models",
    "items",
    "review",
    "outcomes",
    "datasets",
    "monitoring",
    "webhooks",
    "jobs",
    "tokens",
}


@pytest.fixture(scope="module")
def document():
    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.renderers import OpenApiJsonRenderer

    # Through the JSON renderer, as /api/schema/?format=json serves it.
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return json.loads(OpenApiJsonRenderer().render(schema))


def _operations(document):
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            yield path, method, operation


def test_operations_are_grouped_by_area_with_unique_readable_names(document):
    ids = []
    for path, method, operation in _operations(document):
        assert operation["tags"] and set(operation["tags"]) <= AREAS, (method, path)
        assert not operation["operationId"].startswith("api_v1_"), (method, path)
        ids.append(operation["operationId"])
    assert len(ids) == len(set(ids))
    tags = {path: operation["tags"][0] for path, method, operation in _operations(document)}
    assert tags["/api/v1/use-cases/{slug}/items/"] == "items"
    assert tags["/api/v1/use-cases/{slug}/exports/"] == "datasets"
    assert tags["/api/v1/use-cases/"] == "use cases"


def test_every_error_response_is_the_one_error_shape(document):
    error = document["components"]["schemas"]["Error"]
    assert set(error["properties"]) == {"detail", "code"}
    seen = set()
    for path, method, operation in _operations(document):
        for code, response in operation["responses"].items():
            if int(code) >= 400:
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Error"}, (method, path, code)
                seen.add(code)
    assert {"400", "401", "403", "404", "409", "415", "429", "503"} <= seen


@pytest.mark.django_db
def test_the_document_is_yaml_unless_json_is_asked_for(client):
    assert client.get("/api/schema/").content.startswith(b"openapi:")
    assert client.get("/api/schema/?format=json").content.startswith(b"{")


def test_file_responses_declare_the_media_types_really_sent(document):
    from reviewapp.datasets.export_formats import FORMATS

    sent = {content_type.split(";")[0] for content_type, _ in FORMATS.values()}
    for path in (
        "/api/v1/use-cases/{slug}/disagreements/",
        "/api/v1/use-cases/{slug}/exports/{export_id}/download/",
    ):
        content = document["paths"][path]["get"]["responses"]["200"]["content"]
        assert set(content) == sent, path
        # Text formats are strings (a generated client reads text/* as text), Parquet bytes.
        assert {media: schema["schema"].get("format") for media, schema in content.items()} == {
            "text/csv": None,
            "application/x-ndjson": None,
            "application/vnd.apache.parquet": "binary",
        }


def test_who_made_something_is_declared_as_it_is_sent(document):
    # An export, and its manifest, always name its author (a user, or the command line);
    # training runs, backtests and model versions made by a command or the system have no
    # user: nullable.
    schemas = document["components"]["schemas"]
    made_by = {
        name: schema["properties"]["created_by"]
        for name, schema in schemas.items()
        if "created_by" in schema.get("properties", {})
    }
    for export in (made_by.pop("ExportOutput"), made_by.pop("ExportManifest")):
        assert export["type"] == "string" and not export.get("nullable", False)
    assert made_by and all(field.get("nullable") for field in made_by.values())


def test_a_started_backtest_declares_the_job_it_answers_with(document):
    response = document["paths"]["/api/v1/use-cases/{slug}/backtests/"]["post"]["responses"]
    schema = response["202"]["content"]["application/json"]["schema"]
    started = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    assert started["properties"]["job"]["format"] == "uuid"
