"""Property: whatever JSON arrives at any JSON entry point (deep, huge, unicode edge cases,
extreme numbers, unknown fields), the answer is a 4xx or a success, never a 5xx, and a 4xx
leaves the database as it was.

The entry points are read from the OpenAPI schema, so an operation added later is covered
without touching this test. Bodies are either any JSON at all, or an object with the
operation's own field names (and a use case's feature names) holding any JSON, so values
reach each field's checks rather than stopping at the first unknown name.
"""

import json

import hypothesis
import pytest
from django.apps import apps
from drf_spectacular.generators import SchemaGenerator
from hypothesis import strategies as st

from deployments.services.change_requests import policy_change_or_request
from deployments.services.use_cases import use_case_update
from reviewapp.core.roles import Role
from tests.factories import (
    FEATURES,
    classifier_bytes,
    invoice,
    make_use_case,
    make_user,
    register_model,
)
from tests.passes import examples

pytestmark = pytest.mark.django_db

WRITES = ("post", "put", "patch")


def json_operations() -> list[tuple[str, str, list[str]]]:
    """(method, path, body field names) of every operation that takes a JSON body."""
    schema = SchemaGenerator().get_schema(request=None, public=True)
    components = schema["components"]["schemas"]
    found = []
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            content = operation.get("requestBody", {}).get("content", {})
            if method not in WRITES or "application/json" not in content:
                continue
            ref = content["application/json"]["schema"].get("$ref", "")
            fields = components.get(ref.rsplit("/", 1)[-1], {}).get("properties", {})
            found.append((method, path, sorted(fields)))
    return found


OPERATIONS = json_operations()

# Text a database or a UTF-8 encoder cannot take, text no field expects, and plain text.
EDGE_TEXT = st.sampled_from(
    ["\x00", "a\x00b", "\ud800", "\udfff x", "😀", "\u202e", "", " ", "x" * 100_000, "[" * 50]
)
TEXT = st.one_of(EDGE_TEXT, st.text(st.characters(codec=None, exclude_categories=()), max_size=30))
NUMBERS = st.one_of(
    st.integers(),
    st.sampled_from([10**400, -(10**400), 2**53 + 1, 10**308, -(2**63), 2**64]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e308, 5e-324, -0.0]),
)
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, TEXT)
ANY_JSON = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=4)),
    max_leaves=12,
)
FEATURE_NAMES = [spec["name"] for spec in FEATURES]


def shaped_body(fields: list[str]):
    """An object with the operation's field names, each holding any JSON (features and items
    shaped like the real ones), plus now and then an unknown name."""
    features = st.dictionaries(st.sampled_from(FEATURE_NAMES), ANY_JSON)
    item = st.fixed_dictionaries(
        {}, optional={"external_id": ANY_JSON, "features": st.one_of(features, ANY_JSON)}
    )
    value = {
        "features": st.one_of(features, ANY_JSON),
        "items": st.one_of(st.lists(item, max_size=3), ANY_JSON),
    }
    return st.fixed_dictionaries(
        {}, optional={name: value.get(name, ANY_JSON) for name in fields}
    ) | st.dictionaries(TEXT, ANY_JSON, min_size=1, max_size=2)


def deep_text():
    """A body nested far deeper than any operation takes, or just past the limit."""
    return st.builds(
        lambda depth, opening: opening * depth + "1" + ("]" if opening == "[" else "}") * depth,
        st.sampled_from([33, 1_000, 100_000]),
        st.sampled_from(["[", '{"a":']),
    )


def bodies(fields: list[str]):
    as_text = st.one_of(ANY_JSON, shaped_body(fields)).map(
        lambda body: json.dumps(body, ensure_ascii=True, allow_nan=True)
    )
    return st.one_of(as_text, deep_text())


def database_state() -> dict:
    """Every row of every table (the test database holds a few dozen)."""
    return {
        model._meta.label: list(model.objects.order_by("pk").values_list())
        for model in apps.get_models(include_auto_created=True)
    }


@pytest.fixture
def world(api, settings):
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    manager = make_user(Role.MANAGER)
    use_case = make_use_case(members=[manager], level="assisted", actor=manager)
    register_model(use_case, classifier_bytes())
    client = api(manager)
    for n in range(3):
        client.post(f"/api/v1/use-cases/{use_case.slug}/items/", invoice(n), format="json")
    task = client.post(f"/api/v1/use-cases/{use_case.slug}/review/next/").json()
    webhook = client.post(
        "/api/v1/webhooks/",
        {"url": "http://127.0.0.1:9/hooks", "events": ["outcome.decided"]},
        format="json",
    ).json()
    # A change held for a second manager (four-eyes), for the approve and reject operations.
    use_case_update(use_case=use_case, changes={"four_eyes": True})
    held = policy_change_or_request(
        use_case=use_case,
        actor=make_user(Role.MANAGER),
        changes={"level": "partial"},
        reason="automate the confident ones",
    )
    return client, {
        "slug": use_case.slug,
        "task_id": task["task"],
        "version": "v1",
        "webhook_id": webhook["id"],
        "request_id": held.pk,
    }


@pytest.mark.parametrize(
    ("method", "path", "fields"), OPERATIONS, ids=[f"{m.upper()} {p}" for m, p, _ in OPERATIONS]
)
def test_any_json_is_a_4xx_or_a_success_and_a_4xx_changes_nothing(world, method, path, fields):
    client, parameters = world
    url = path.format(**parameters)

    @hypothesis.settings(
        max_examples=examples(25),
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    @hypothesis.given(body=bodies(fields))
    def answer(body):
        before = database_state()
        response = getattr(client, method)(url, data=body, content_type="application/json")
        assert response.status_code < 500, (body[:300], response.content[:500])
        if 400 <= response.status_code < 500:
            assert database_state() == before, (body[:300], response.content[:500])

    answer()


def test_every_json_entry_point_is_covered():
    covered = {(method, path) for method, path, _ in OPERATIONS}
    assert ("post", "/api/v1/use-cases/{slug}/items/") in covered
    assert ("post", "/api/v1/use-cases/{slug}/items/batch/") in covered
    assert ("post", "/api/v1/review/tasks/{task_id}/decision/") in covered
    assert ("patch", "/api/v1/use-cases/{slug}/policy/") in covered
    assert ("post", "/api/v1/use-cases/") in covered
    assert ("post", "/api/v1/tokens/") in covered
    assert ("post", "/api/v1/webhooks/") in covered
    assert ("patch", "/api/v1/webhooks/{webhook_id}/") in covered
