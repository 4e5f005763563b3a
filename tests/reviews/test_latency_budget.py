"""A realtime item whose model misses the use case's latency budget is answered "in review".

The slow model here is a stand-in estimator put in the model cache (skops never loads such a
type): it blocks until the test lets it go, so the tests prove the order of events (the answer
came back while the model was still running) instead of timing anything.
"""

import threading

import numpy as np
import pytest

from deployments.ml.latency import budget_timeouts
from deployments.ml.loading import model_cache
from reviewapp.core.roles import Role
from reviewapp.monitoring.services import rollups_fold
from reviewapp.reviews.models import Item, Prediction, ReviewTask
from tests.factories import LABELS, constant_classifier_bytes, invoice, make_use_case, make_user
from tests.factories import register_model as upload_model

pytestmark = pytest.mark.django_db


class GatedClassifier:
    """Answers "office" with 0.95, but only once ``release`` is set."""

    classes_ = np.array(LABELS)

    def __init__(self):
        self.started, self.release, self.finished = (threading.Event() for _ in range(3))

    def predict(self, frame):
        return np.array(["office"] * len(frame))

    def predict_proba(self, frame):
        self.started.set()
        try:
            self.release.wait(30)
            row = [0.95 if label == "office" else 0.025 for label in LABELS]
            return np.array([row] * len(frame))
        finally:
            self.finished.set()


@pytest.fixture
def world(api):
    caller, manager, analyst = (
        make_user(Role.INTEGRATION),
        make_user(Role.MANAGER),
        make_user(Role.ML_ENGINEER),
    )
    use_case = make_use_case(
        members=[caller, manager, analyst],
        level="partial",
        confidence_threshold=0.9,
        audit_rate=0.0,
    )
    champion = upload_model(use_case, constant_classifier_bytes("office", 0.95))
    gated = GatedClassifier()
    model_cache.put((champion.pk, champion.artifact_sha256), gated)

    def budget(ms):
        response = api(manager).patch(
            f"/api/v1/use-cases/{use_case.slug}/", {"latency_budget_ms": ms}, format="json"
        )
        assert response.status_code == 200

    def send(n):
        return api(caller).post(
            f"/api/v1/use-cases/{use_case.slug}/items/", invoice(n), format="json"
        )

    yield use_case, gated, budget, send, api(analyst)
    gated.release.set()


def test_a_slow_model_is_answered_in_review_within_the_budget(world):
    use_case, gated, budget, send, analyst = world
    budget(200)
    before = budget_timeouts.snapshot().get(use_case.slug, 0)
    response = send(1)
    # the answer is back while the model is still working: the caller did not wait for it
    assert not gated.finished.is_set()
    assert response.status_code == 201
    body = response.json()
    assert (body["status"], body["route"], body["prediction"]) == ("in_review", "human", None)
    assert body["decision"] is None

    # the late answer arrives and changes nothing: it was dropped, not written
    gated.release.set()
    if gated.started.wait(5):
        assert gated.finished.wait(30)
    item = Item.objects.get()
    assert (item.status, item.route, item.decision_source) == ("in_review", "human", "")
    prediction = Prediction.objects.get()
    assert prediction.error == "latency budget exceeded: no answer within 200 ms"
    assert item.prediction_id == prediction.pk and prediction.label == ""
    assert ReviewTask.objects.get(item=item).show_suggestion is False  # nothing is lost

    assert budget_timeouts.snapshot()[use_case.slug] == before + 1
    rollups_fold()  # the test's transaction never commits, so nothing folded the rollups yet
    metrics = analyst.get(f"/api/v1/use-cases/{use_case.slug}/metrics/").json()
    assert metrics["latency_budget_exceeded"] == 1
    assert metrics["null_outputs"] == 1


def test_a_model_within_the_budget_decides_as_usual(world):
    use_case, gated, budget, send, _ = world
    budget(60_000)
    gated.release.set()
    body = send(1).json()
    assert body["decision"] == {"label": "office", "source": "model"}
    assert not Prediction.objects.get().error


def test_without_a_budget_the_caller_waits_for_the_model(world):
    use_case, gated, _, send, _ = world
    threading.Thread(target=lambda: gated.started.wait(30) and gated.release.set()).start()
    body = send(1).json()
    assert gated.finished.is_set()
    assert body["route"] == "auto" and body["prediction"]["label"] == "office"


def test_batch_scoring_is_not_cut_off_by_the_realtime_budget(
    world, api, django_capture_on_commit_callbacks
):
    use_case, gated, budget, _, _ = world
    budget(1)
    caller = make_user(Role.INTEGRATION)
    from deployments.models import UseCaseMembership

    UseCaseMembership.objects.create(use_case=use_case, user=caller)
    threading.Thread(target=lambda: gated.started.wait(30) and gated.release.set()).start()
    with django_capture_on_commit_callbacks(execute=True):
        response = api(caller).post(
            f"/api/v1/use-cases/{use_case.slug}/items/batch/",
            {"items": [invoice(n) for n in range(3)]},
            format="json",
        )
    assert response.status_code == 202
    assert Item.objects.filter(route="auto", decision_label="office").count() == 3
    assert not Prediction.objects.exclude(error="").exists()
