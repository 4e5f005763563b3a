"""Every kind of bad input gets a 4xx naming the field; nothing accepted is lost or changed."""

import math

import pytest

from reviewapp.core.roles import Role
from reviewapp.reviews.models import Item
from tests.factories import (
    constant_classifier_bytes,
    invoice,
    make_use_case,
    make_user,
    register_model,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def setup(api):
    caller = make_user(Role.INTEGRATION)
    manager = make_user(Role.MANAGER)
    use_case = make_use_case(members=[caller, manager], level="assisted", actor=manager)
    register_model(use_case, constant_classifier_bytes("office", 0.7))
    api(caller).post(f"/api/v1/use-cases/{use_case.slug}/items/", invoice(0), format="json")
    return caller, manager, use_case


def _raw(client, url, text):
    return client.post(url, data=text, content_type="application/json")


ITEM_CASES = [
    ("missing feature", {"external_id": "x1", "features": {"kind": "a"}}, ["features", "amount"]),
    (
        "ill-typed feature",
        {"external_id": "x2", "features": {"amount": "12"}},
        ["features", "amount"],
    ),
    (
        "boolean is not a number",
        {"external_id": "x3", "features": {"amount": True}},
        ["features", "amount"],
    ),
    ("below minimum", {"external_id": "x4", "features": {"amount": -1}}, ["features", "amount"]),
    (
        "unknown feature",
        {"external_id": "x5", "features": {"amount": 1, "colour": "red"}},
        ["features", "colour"],
    ),
    (
        "category outside the set",
        {"external_id": "x6", "features": {"amount": 1, "kind": "z"}},
        ["features", "kind"],
    ),
    ("no external id", {"features": {"amount": 1}}, ["external_id"]),
    ("empty external id", {"external_id": "", "features": {"amount": 1}}, ["external_id"]),
    ("numeric external id", {"external_id": 7, "features": {"amount": 1}}, ["external_id"]),
    ("features not an object", {"external_id": "x7", "features": [1, 2]}, ["features"]),
    ("unknown top-level field", {"external_id": "x8", "features": {"amount": 1}, "x": 1}, ["x"]),
    (
        "prediction on a registry use case",
        {"external_id": "x9", "features": {"amount": 1}, "prediction": {"label": "office"}},
        ["prediction"],
    ),
]


@pytest.mark.parametrize(("case", "body", "path"), ITEM_CASES, ids=[c[0] for c in ITEM_CASES])
def test_bad_items_are_refused_naming_the_field(api, setup, case, body, path):
    caller, _, use_case = setup
    response = api(caller).post(f"/api/v1/use-cases/{use_case.slug}/items/", body, format="json")
    assert response.status_code == 400, response.content
    node = response.json()
    for key in path:
        assert key in node, (case, response.json())
        node = node[key]
    assert Item.objects.count() == 1


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_named(api, setup, literal):
    caller, _, use_case = setup
    text = '{"external_id": "n1", "features": {"amount": LITERAL}}'.replace("LITERAL", literal)
    response = _raw(api(caller), f"/api/v1/use-cases/{use_case.slug}/items/", text)
    assert response.status_code == 400
    assert "finite" in response.json()["features"]["amount"][0]


def test_malformed_json_is_a_400(api, setup):
    caller, _, use_case = setup
    response = _raw(api(caller), f"/api/v1/use-cases/{use_case.slug}/items/", '{"external_id": ')
    assert response.status_code == 400


def test_unknown_use_case_is_404_naming_it(api, setup):
    caller, _, _ = setup
    response = api(caller).post("/api/v1/use-cases/nope/items/", invoice(1), format="json")
    assert response.status_code == 404
    assert "nope" in response.json()["detail"]


def test_over_large_batch_is_refused_naming_items(api, setup, settings):
    caller, _, use_case = setup
    settings.BATCH_MAX_ITEMS = 5
    rows = [invoice(n) for n in range(1, 7)]
    response = api(caller).post(
        f"/api/v1/use-cases/{use_case.slug}/items/batch/", {"items": rows}, format="json"
    )
    assert response.status_code == 400
    assert "at most 5" in response.json()["items"][0]


def test_duplicated_batch_rows_are_named(api, setup):
    caller, _, use_case = setup
    rows = [invoice(1), invoice(2), invoice(1)]
    response = api(caller).post(
        f"/api/v1/use-cases/{use_case.slug}/items/batch/", {"items": rows}, format="json"
    )
    assert response.status_code == 400
    assert "duplicate of item 0" in response.json()["items"]["2"]["external_id"][0]
    assert Item.objects.count() == 1


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"confidence_threshold": 1.5}, "confidence_threshold"),
        ({"confidence_threshold": -0.1}, "confidence_threshold"),
        ({"traffic_percent": 101}, "traffic_percent"),
        ({"traffic_percent": -1}, "traffic_percent"),
        ({"audit_rate": 2}, "audit_rate"),
        ({"level": "fully"}, "level"),
        ({"confidence_threshold": "high"}, "confidence_threshold"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_bad_policy_values_are_named_and_change_nothing(api, setup, change, field):
    _, manager, use_case = setup
    url = f"/api/v1/use-cases/{use_case.slug}/policy/"
    before = api(manager).get(url).json()
    response = api(manager).patch(url, {**change, "reason": "try"}, format="json")
    assert response.status_code == 400
    assert field in response.json()
    assert api(manager).get(url).json() == before


def test_policy_change_without_reason_is_refused(api, setup):
    _, manager, use_case = setup
    url = f"/api/v1/use-cases/{use_case.slug}/policy/"
    response = api(manager).patch(url, {"level": "full"}, format="json")
    assert response.status_code == 400 and "reason" in response.json()


def test_nan_threshold_is_named(api, setup):
    _, manager, use_case = setup
    url = f"/api/v1/use-cases/{use_case.slug}/policy/"
    response = _raw(api(manager).__class__(), url, "{}")  # anonymous first: no data
    assert response.status_code == 401
    client = api(manager)
    response = client.patch(
        url, data='{"confidence_threshold": NaN, "reason": "x"}', content_type="application/json"
    )
    assert response.status_code == 400
    assert "confidence_threshold" in response.json()
    assert not math.isnan(client.get(url).json()["confidence_threshold"])


def test_decision_with_a_label_outside_the_set_is_named(api, setup):
    _, manager, use_case = setup
    task = api(manager).post(f"/api/v1/use-cases/{use_case.slug}/review/next/").json()
    response = api(manager).post(
        f"/api/v1/review/tasks/{task['task']}/decision/", {"label": "party"}, format="json"
    )
    assert response.status_code == 400
    assert "label" in response.json()
    # the task is still open and can be decided properly
    ok = api(manager).post(
        f"/api/v1/review/tasks/{task['task']}/decision/", {"label": "office"}, format="json"
    )
    assert ok.status_code == 201


def test_use_case_with_bad_features_and_labels_is_refused(api, setup):
    _, manager, _ = setup
    response = api(manager).post(
        "/api/v1/use-cases/",
        {
            "slug": "bad",
            "name": "Bad",
            "task_type": "classification",
            "labels": ["a", "a"],
            "features": [{"name": "amount", "type": "money"}],
        },
        format="json",
    )
    assert response.status_code == 400
    assert "labels" in response.json() or "features" in response.json()
