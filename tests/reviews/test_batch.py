"""Batch ingestion: all-or-nothing acceptance, a job with progress, safe resends, the sweeper."""

from datetime import timedelta

import pytest
from django.utils import timezone

from reviewapp.core.models import Job
from reviewapp.core.roles import Role
from reviewapp.reviews.models import Item, Prediction, ReviewTask
from reviewapp.reviews.services.scoring import unscored_sweep
from tests.factories import (
    constant_classifier_bytes,
    invoice,
    make_use_case,
    make_user,
    register_model,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def setup():
    caller = make_user(Role.INTEGRATION)
    use_case = make_use_case(
        members=[caller], level="partial", confidence_threshold=0.75, audit_rate=0.0
    )
    register_model(use_case, constant_classifier_bytes("office", 0.8))
    return caller, use_case


def post_batch(api, caller, use_case, rows):
    return api(caller).post(
        f"/api/v1/use-cases/{use_case.slug}/items/batch/", {"items": rows}, format="json"
    )


def test_batch_is_scored_routed_and_reported_by_its_job(
    api, setup, settings, django_capture_on_commit_callbacks
):
    caller, use_case = setup
    settings.BATCH_CHUNK_SIZE = 7
    with django_capture_on_commit_callbacks(execute=True):
        response = post_batch(api, caller, use_case, [invoice(n) for n in range(30)])
    assert response.status_code == 202
    job = api(caller).get(f"/api/v1/jobs/{response.json()['job']}/").json()
    assert (job["state"], job["done"], job["total"]) == ("done", 30, 30)
    assert Item.objects.filter(status="decided", route="auto").count() == 30
    assert Prediction.objects.count() == 30


def test_queued_until_a_worker_runs(api, setup, django_capture_on_commit_callbacks):
    caller, use_case = setup
    with django_capture_on_commit_callbacks(execute=False) as queued:
        response = post_batch(api, caller, use_case, [invoice(n) for n in range(3)])
    job = api(caller).get(f"/api/v1/jobs/{response.json()['job']}/").json()
    assert (job["state"], job["done"]) == ("queued", 0)
    assert Item.objects.filter(status="pending").count() == 3  # accepted is stored
    for callback in queued:
        callback()
    assert Item.objects.filter(status="pending").count() == 0


def test_a_bad_row_refuses_the_whole_batch_and_names_it(api, setup):
    caller, use_case = setup
    rows = [invoice(n) for n in range(10)]
    rows[7]["features"]["amount"] = "lots"
    response = post_batch(api, caller, use_case, rows)
    assert response.status_code == 400
    assert response.json() == {
        "items": {"7": {"features": {"amount": ["must be a number"]}}},
        "code": "invalid",
    }
    assert not Item.objects.exists() and not Job.objects.exists()


def test_resending_a_batch_adds_nothing(api, setup, django_capture_on_commit_callbacks):
    caller, use_case = setup
    rows = [invoice(n) for n in range(5)]
    with django_capture_on_commit_callbacks(execute=True):
        post_batch(api, caller, use_case, rows[:3])
        again = post_batch(api, caller, use_case, rows)
    job = api(caller).get(f"/api/v1/jobs/{again.json()['job']}/").json()
    assert job["state"] == "done" and job["done"] == 5
    assert Item.objects.count() == 5 and Prediction.objects.count() == 5


def test_scoring_twice_is_harmless(setup):
    _, use_case = setup
    from reviewapp.reviews.services.ingest import items_store_pending
    from reviewapp.reviews.services.scoring import items_score

    ids = items_store_pending(
        use_case=use_case, rows=[("a", {"amount": 1.0}, None)], now=timezone.now()
    )
    assert items_score(item_ids=ids) == 1
    assert items_score(item_ids=ids) == 0
    assert Prediction.objects.count() == 1


def test_the_sweeper_re_enqueues_items_left_pending(setup, django_capture_on_commit_callbacks):
    _, use_case = setup
    from reviewapp.reviews.services.ingest import items_store_pending

    old = timezone.now() - timedelta(minutes=10)
    items_store_pending(use_case=use_case, rows=[("lost", {"amount": 1.0}, None)], now=old)
    items_store_pending(
        use_case=use_case, rows=[("fresh", {"amount": 1.0}, None)], now=timezone.now()
    )
    # the message for these items was lost; the sweeper finds the old one, not the fresh one
    assert unscored_sweep(older_than_seconds=60) == {"pending": 1, "challenger": 0}
    assert Item.objects.get(external_id="lost").status == "decided"
    assert Item.objects.get(external_id="fresh").status == "pending"


def test_human_only_batch_creates_review_tasks(api, django_capture_on_commit_callbacks):
    caller = make_user(Role.INTEGRATION)
    use_case = make_use_case(members=[caller])
    with django_capture_on_commit_callbacks(execute=True):
        post_batch(api, caller, use_case, [invoice(n) for n in range(4)])
    assert ReviewTask.objects.filter(show_suggestion=False).count() == 4
    assert not Prediction.objects.exists()
