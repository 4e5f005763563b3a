"""Disagreements are recorded with the right kind, whenever the challenger scores."""

import pytest

from deployments.services.model_versions import model_version_challenge
from reviewapp.core.roles import Role
from reviewapp.reviews.models import Disagreement, Prediction
from tests.factories import (
    constant_classifier_bytes,
    invoice,
    make_use_case,
    make_user,
    register_model,
)
from tests.reviews.disagreement_world import disagreement_world_build, review_all

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(api, django_capture_on_commit_callbacks):
    return disagreement_world_build(api, django_capture_on_commit_callbacks)


def test_shadow_and_challenger_disagreements_are_materialised(world):
    use_case, _, _ = world
    # champion says office (silently), human says travel: a shadow disagreement per item
    assert Disagreement.objects.filter(kind="shadow").count() == 4
    # the challenger scored in shadow (asynchronously) and agrees with the human on big amounts
    assert Prediction.objects.filter(model_version__version="v2").count() == 4
    assert not Disagreement.objects.filter(kind="challenger").exists()


def champion_and_challenger():
    """An assisted use case whose champion says office (80%) and whose challenger v2 says other
    (90%), with a caller and a reviewer."""
    caller = make_user(Role.INTEGRATION)
    reviewer = make_user(Role.REVIEWER)
    use_case = make_use_case(members=[caller, reviewer], level="assisted")
    register_model(use_case, constant_classifier_bytes("office", 0.8))
    register_model(use_case, constant_classifier_bytes("other", 0.9), version="v2")
    model_version_challenge(use_case=use_case, version="v2", actor=None)
    return caller, reviewer, use_case


def test_challenger_scoring_after_the_decision_still_records_the_disagreement(
    api, django_capture_on_commit_callbacks
):
    caller, reviewer, use_case = champion_and_challenger()
    # the decision lands before the challenger's queued scoring runs
    with django_capture_on_commit_callbacks(execute=False) as queued:
        api(caller).post(f"/api/v1/use-cases/{use_case.slug}/items/", invoice(1), format="json")
    review_all(api, reviewer, use_case, "travel")
    for callback in queued:
        callback()
    kinds = sorted(Disagreement.objects.values_list("kind", flat=True))
    assert kinds == ["challenger", "override"]


def test_a_disagreement_keeps_each_models_answer_exactly_as_stored(
    api, django_capture_on_commit_callbacks
):
    """The decision compares the answer with every prediction of its item (read with the
    item's lock); each disagreement carries that prediction's version, label and confidence
    as stored."""
    caller, reviewer, use_case = champion_and_challenger()
    with django_capture_on_commit_callbacks(execute=True):
        api(caller).post(f"/api/v1/use-cases/{use_case.slug}/items/", invoice(1), format="json")
    assert Prediction.objects.count() == 2  # the challenger scored before the decision
    review_all(api, reviewer, use_case, "travel")
    stored = {
        p.pk: (p.model_version_id, p.label, p.confidence)
        for p in Prediction.objects.select_related("model_version")
    }
    recorded = {
        d.prediction_id: (d.model_version_id, d.model_label, d.confidence, d.kind)
        for d in Disagreement.objects.all()
    }
    assert {pk: row[:3] for pk, row in recorded.items()} == stored
    assert sorted(row[3] for row in recorded.values()) == ["challenger", "override"]
