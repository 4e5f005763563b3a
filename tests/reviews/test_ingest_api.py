"""Realtime ingestion through the API: scoring, routing, the response, idempotency."""

import pytest

from deployments.policy import Route
from reviewapp.core.roles import Role
from reviewapp.reviews.models import Item, Prediction, ReviewTask
from tests.factories import (
    classifier_bytes,
    constant_classifier_bytes,
    invoice,
    make_use_case,
    make_user,
    register_model,
    regressor_bytes,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def caller():
    return make_user(Role.INTEGRATION)


def send(api, user, use_case, body):
    return api(user).post(f"/api/v1/use-cases/{use_case.slug}/items/", body, format="json")


def test_human_only_never_consults_the_model(api, caller):
    use_case = make_use_case(members=[caller])
    register_model(use_case, classifier_bytes())
    response = send(api, caller, use_case, invoice(1))
    assert response.status_code == 201
    assert response.json() == {
        "external_id": "inv-1",
        "status": "in_review",
        "route": "human",
        "decision": None,
        "prediction": None,
        "priority": 0,
        "due_at": None,
    }
    assert not Prediction.objects.exists()
    task = ReviewTask.objects.get()
    assert task.reason == "review" and not task.show_suggestion


def test_shadow_scores_silently_and_sends_to_a_blind_review(api, caller):
    use_case = make_use_case(members=[caller], level="shadow")
    register_model(use_case, constant_classifier_bytes("office", 0.97))
    body = send(api, caller, use_case, invoice(1)).json()
    assert body["route"] == "blind" and body["status"] == "in_review"
    assert body["decision"] is None
    assert body["prediction"] == {"label": "office", "confidence": 0.97, "model_version": "v1"}
    assert not ReviewTask.objects.get().show_suggestion


def test_partial_decides_confident_items_in_the_response(api, caller):
    use_case = make_use_case(
        members=[caller], level="partial", confidence_threshold=0.9, audit_rate=0.0
    )
    register_model(use_case, constant_classifier_bytes("office", 0.95))
    response = send(api, caller, use_case, invoice(1))
    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "decided" and body["route"] == "auto"
    assert body["decision"] == {"label": "office", "source": "model"}
    assert not ReviewTask.objects.exists()


def test_partial_sends_unsure_items_to_an_assisted_review(api, caller):
    use_case = make_use_case(members=[caller], level="partial", confidence_threshold=0.9)
    register_model(use_case, constant_classifier_bytes("office", 0.6))
    body = send(api, caller, use_case, invoice(1)).json()
    assert body["route"] == "assisted" and body["decision"] is None
    assert ReviewTask.objects.get().show_suggestion


def test_sending_twice_returns_the_stored_item_with_200(api, caller):
    use_case = make_use_case(members=[caller], level="partial", confidence_threshold=0.5)
    register_model(use_case, constant_classifier_bytes("office", 0.8))
    first = send(api, caller, use_case, invoice(1))
    again = send(api, caller, use_case, invoice(1, amount=99999.0))
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json() == again.json()
    assert Item.objects.count() == 1
    assert Item.objects.get().features["amount"] == 11.0  # the resend changed nothing


def test_a_model_that_fails_sends_the_item_to_a_human(api, caller, monkeypatch):
    use_case = make_use_case(members=[caller], level="full")
    register_model(use_case, classifier_bytes())

    def explode(*args, **kwargs):
        raise RuntimeError("model server on fire")

    monkeypatch.setattr("deployments.ml.scoring._classify", explode)
    body = send(api, caller, use_case, invoice(1)).json()
    assert body["route"] == Route.HUMAN and body["prediction"] is None
    assert body["status"] == "in_review"
    prediction = Prediction.objects.get()
    assert "model server on fire" in prediction.error


def test_regression_use_case_returns_value_and_ensemble_confidence(api, caller):
    use_case = make_use_case(members=[caller], task_type="regression", level="full")
    register_model(use_case, regressor_bytes())
    response = send(api, caller, use_case, {"external_id": "r1", "features": {"x": 1.0, "y": 0.0}})
    body = response.json()
    assert response.status_code == 201
    assert body["route"] == "auto"
    assert body["decision"]["source"] == "model"
    assert abs(body["decision"]["value"] - 3.0) < 0.6
    assert 0 <= body["prediction"]["confidence"] <= 1


def test_get_item_shows_the_human_decision_once_made(api, caller):
    reviewer = make_user(Role.REVIEWER)
    use_case = make_use_case(members=[caller, reviewer], level="assisted")
    register_model(use_case, constant_classifier_bytes("office", 0.7))
    send(api, caller, use_case, invoice(1))
    task = api(reviewer).post(f"/api/v1/use-cases/{use_case.slug}/review/next/").json()
    api(reviewer).post(
        f"/api/v1/review/tasks/{task['task']}/decision/", {"label": "travel"}, format="json"
    )
    body = api(caller).get(f"/api/v1/use-cases/{use_case.slug}/items/inv-1/").json()
    assert body["status"] == "decided"
    assert body["decision"] == {"label": "travel", "source": "human"}
    assert body["prediction"]["label"] == "office"


def test_no_champion_yet_routes_to_a_human(api, caller):
    use_case = make_use_case(members=[caller], level="full")
    body = send(api, caller, use_case, invoice(1)).json()
    assert body["route"] == "human" and body["prediction"] is None
