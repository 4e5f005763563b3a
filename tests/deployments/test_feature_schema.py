"""The feature schema: what a use case may declare about its inputs, and what drift judges."""

import pytest

from deployments.schema import feature_schema_clean
from reviewapp.core.errors import InvalidInput
from reviewapp.core.roles import Role
from tests.factories import make_user

pytestmark = pytest.mark.django_db


def test_an_identifier_is_declared_and_left_out_of_drift_with_pii_and_free_text(api):
    manager = make_user(Role.MANAGER)
    response = api(manager).post(
        "/api/v1/use-cases/",
        {
            "slug": "claims",
            "name": "Claims",
            "task_type": "classification",
            "labels": ["pay", "refuse"],
            "features": [
                {"name": "claim_id", "type": "category", "categories": ["a"], "identifier": True},
                {"name": "holder", "type": "category", "categories": ["x"], "pii": True},
                {"name": "note", "type": "string", "required": False},
                {"name": "amount", "type": "number"},
            ],
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    features = {f["name"]: f for f in response.json()["features"]}
    assert features["claim_id"]["identifier"] is True and "identifier" not in features["amount"]
    from deployments.models import UseCase

    assert UseCase.objects.get(slug="claims").drift_exclusions == {
        "claim_id": "an identifier",
        "holder": "personal data",
        "note": "free text",
    }


def test_the_identifier_flag_is_true_or_false():
    with pytest.raises(InvalidInput) as error:
        feature_schema_clean([{"name": "id", "type": "string", "identifier": "yes"}])
    assert error.value.detail == {"features": {"0": ["identifier: must be true or false"]}}
