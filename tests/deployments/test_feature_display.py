"""A use case's features may carry a label, description, unit and group for people to read."""

import pytest

from reviewapp.core.roles import Role
from tests.factories import make_user

pytestmark = pytest.mark.django_db


def _create(api, manager, features):
    return api(manager).post(
        "/api/v1/use-cases/",
        {
            "slug": "clinic",
            "name": "Clinic",
            "task_type": "regression",
            "tolerance": 5,
            "features": features,
        },
        format="json",
    )


def test_display_metadata_is_accepted_and_returned(api):
    manager = make_user(Role.MANAGER)
    features = [
        {
            "name": "bmi",
            "type": "number",
            "label": "Body mass index",
            "description": "Weight over height squared",
            "unit": "kg/m²",
            "group": "Body",
        },
        {"name": "age", "type": "integer"},
    ]
    created = _create(api, manager, features)
    assert created.status_code == 201, created.json()
    read = api(manager).get("/api/v1/use-cases/clinic/").json()["features"]
    assert read[0]["label"] == "Body mass index"
    assert read[0]["description"] == "Weight over height squared"
    assert read[0]["unit"] == "kg/m²"
    assert read[0]["group"] == "Body"
    assert "label" not in read[1]


@pytest.mark.parametrize(
    ("key", "value"),
    [("label", "x" * 81), ("unit", 5), ("group", ["a"]), ("description", "d" * 301)],
)
def test_bad_display_metadata_is_refused_naming_the_key(api, key, value):
    manager = make_user(Role.MANAGER)
    response = _create(api, manager, [{"name": "bmi", "type": "number", key: value}])
    assert response.status_code == 400
    assert key in str(response.json()["features"])


def test_schema_declares_the_display_keys(api):
    manager = make_user(Role.MANAGER)
    text = api(manager).get("/api/schema/").content.decode()
    block = text[text.index("    Feature:\n") :][:2000]
    for key in ("label", "description", "unit", "group"):
        assert f"        {key}:" in block


@pytest.mark.parametrize("empty", [None, "", "  "])
def test_a_null_or_blank_display_key_is_no_display_key(api, empty):
    manager = make_user(Role.MANAGER)
    keys = {"label": empty, "description": empty, "unit": empty, "group": empty}

    response = _create(api, manager, [{"name": "bmi", "type": "number", **keys, "min": None}])

    assert response.status_code == 201, response.content
    assert response.json()["features"] == [
        {"name": "bmi", "type": "number", "required": True, "pii": False}
    ]
