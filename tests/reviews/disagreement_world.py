"""A shadow use case with a challenger, four items the champion and a reviewer disagree on:
the world the disagreement tests (recording, streaming) start from."""

from deployments.services.model_versions import model_version_challenge
from reviewapp.core.roles import Role
from tests.factories import (
    classifier_bytes,
    constant_classifier_bytes,
    invoice,
    make_use_case,
    make_user,
    register_model,
)


def review_all(api, reviewer, use_case, label):
    while True:
        response = api(reviewer).post(f"/api/v1/use-cases/{use_case.slug}/review/next/")
        if response.status_code == 204:
            return
        task = response.json()["task"]
        api(reviewer).post(
            f"/api/v1/review/tasks/{task}/decision/", {"label": label}, format="json"
        )


def disagreement_world_build(api, django_capture_on_commit_callbacks):
    caller = make_user(Role.INTEGRATION)
    reviewer = make_user(Role.REVIEWER, "rita")
    analyst = make_user(Role.ML_ENGINEER)
    use_case = make_use_case(members=[caller, reviewer, analyst], level="shadow")
    register_model(use_case, constant_classifier_bytes("office", 0.8))
    register_model(use_case, classifier_bytes(), version="v2")
    model_version_challenge(use_case=use_case, version="v2", actor=analyst)
    with django_capture_on_commit_callbacks(execute=True):
        for n in range(4):
            api(caller).post(
                f"/api/v1/use-cases/{use_case.slug}/items/", invoice(n, amount=500.0), format="json"
            )
    review_all(api, reviewer, use_case, "travel")
    return use_case, analyst, reviewer
