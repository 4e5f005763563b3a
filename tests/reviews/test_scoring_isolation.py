"""One item that cannot be scored must not hold back the others in its chunk: it becomes a
null output (to a human, with the reason), or is retried apart and then parked as one.

Poison items are stored as a batch stores them, without the checks a request now gets: data
accepted before those checks existed, or a case no check foresaw.
"""

import threading
from datetime import timedelta

import pytest
from django.utils import timezone

from deployments.models import UseCase
from deployments.services.model_versions import model_version_challenge
from deployments.services.use_cases import use_case_update
from reviewapp.core.jobs import job_create
from reviewapp.core.models import Job
from reviewapp.core.roles import Role
from reviewapp.reviews.models import Item, Prediction, ReviewTask
from reviewapp.reviews.services.ingest import items_store_pending
from reviewapp.reviews.services.scoring import items_score, unscored_sweep
from reviewapp.reviews.tasks import score_items
from tests.factories import classifier_bytes, invoice, make_use_case, make_user, register_model

pytestmark = pytest.mark.django_db

HUGE = 10**400


def _store(use_case, rows, *, job=None, now=None) -> list[int]:
    now = now or timezone.now()
    return items_store_pending(use_case=use_case, rows=rows, now=now, job=job)


def _rows(numbers, *, poison=(), prediction=None):
    rows = []
    for n in numbers:
        row = invoice(n)
        if n in poison:
            row["features"]["amount"] = HUGE
        rows.append((row["external_id"], row["features"], prediction))
    return rows


@pytest.fixture
def use_case():
    manager = make_user(Role.MANAGER)
    use_case = make_use_case(members=[manager], level="partial", confidence_threshold=0.6)
    register_model(use_case, classifier_bytes())
    return use_case


def test_an_item_the_model_cannot_read_is_a_null_output_and_the_chunk_is_scored(use_case):
    job = job_create(kind=Job.Kind.BATCH_INGEST, total=200, use_case=use_case)
    ids = _store(use_case, _rows(range(200), poison={57}), job=job)

    assert items_score(item_ids=ids) == 200

    assert not Item.objects.filter(status=Item.Status.PENDING).exists()
    poison = Item.objects.get(external_id="inv-57")
    assert (poison.status, poison.route) == ("in_review", "human")
    assert "features could not be read: OverflowError" in poison.prediction.error
    assert ReviewTask.objects.filter(item=poison).exists()
    scored = Prediction.objects.exclude(item=poison)
    assert scored.count() == 199 and not scored.exclude(error="").exists()
    job.refresh_from_db()
    assert (job.state, job.done) == ("done", 200)


def test_lost_messages_and_a_poison_item_are_all_routed_by_one_sweep(use_case, settings):
    # The worker was away and the batch's messages were lost: only the sweeper finds them.
    settings.BATCH_CHUNK_SIZE = 1000
    received = timezone.now() - timedelta(minutes=5)
    _store(use_case, _rows(range(200), poison={0, 199}), now=received)

    assert unscored_sweep(older_than_seconds=60) == {"pending": 200, "challenger": 0}

    assert not Item.objects.filter(status=Item.Status.PENDING).exists()
    nulls = Prediction.objects.exclude(error="").values_list("item__external_id", flat=True)
    assert sorted(nulls) == ["inv-0", "inv-199"]


@pytest.fixture
def external_use_case():
    use_case = make_use_case(level="partial", confidence_threshold=0.6)
    return use_case_update(
        use_case=use_case, changes={"prediction_source": UseCase.PredictionSource.EXTERNAL}
    )


def _external_rows(numbers, *, poison=()):
    """Items with their caller's prediction; a poison one's label is a number no double
    holds, which reading the stored prediction chokes on (it raises, it does not refuse)."""
    return [
        (
            f"inv-{n}",
            invoice(n)["features"],
            {"label": HUGE if n in poison else "office", "confidence": 0.9, "model_version": "e1"},
        )
        for n in numbers
    ]


def test_a_chunk_that_fails_is_split_until_the_failing_item_is_alone(external_use_case):
    job = job_create(kind=Job.Kind.BATCH_INGEST, total=100, use_case=external_use_case)
    ids = _store(external_use_case, _external_rows(range(100), poison={10, 73}), job=job)

    assert items_score(item_ids=ids) == 98

    pending = Item.objects.filter(status=Item.Status.PENDING)
    assert sorted(pending.values_list("external_id", flat=True)) == ["inv-10", "inv-73"]
    first = pending.get(external_id="inv-10")
    assert first.scoring_failures == 1
    assert first.scoring_error.startswith("scoring failed: OverflowError")
    job.refresh_from_db()
    assert (job.state, job.done) == ("running", 98) and job.started_at is not None


def test_after_the_last_attempt_a_failing_item_is_parked_as_a_null_output(
    external_use_case, settings
):
    assert settings.SCORING_MAX_ATTEMPTS == 2
    job = job_create(kind=Job.Kind.BATCH_INGEST, total=3, use_case=external_use_case)
    ids = _store(external_use_case, _external_rows(range(3), poison={1}), job=job)
    items_score(item_ids=ids)

    later = timezone.now() + timedelta(minutes=5)
    assert unscored_sweep(older_than_seconds=60, now=later)["pending"] == 1

    parked = Item.objects.get(external_id="inv-1")
    assert (parked.status, parked.route, parked.scoring_failures) == ("in_review", "human", 2)
    assert "OverflowError" in parked.scoring_error
    assert ReviewTask.objects.filter(item=parked).exists()
    job.refresh_from_db()
    assert (job.state, job.done) == ("done", 3) and job.finished_at is not None
    # Nothing is left for the next sweep.
    assert unscored_sweep(older_than_seconds=60, now=later)["pending"] == 0


def test_a_parked_item_of_a_use_case_scored_here_counts_as_its_champions_null_output(
    use_case, settings, monkeypatch
):
    settings.SCORING_MAX_ATTEMPTS = 1
    ids = _store(use_case, _rows(range(3)))

    def unreadable(**kwargs):
        raise ValueError("the policy could not be read")

    # A failure outside the model, the same on every attempt.
    monkeypatch.setattr("reviewapp.reviews.services.scoring.champion_outputs", unreadable)
    assert items_score(item_ids=ids) == 3

    predictions = Prediction.objects.filter(item_id__in=ids)
    assert predictions.count() == 3
    assert all("parked after 1 failed attempts" in p.error for p in predictions)
    assert set(Item.objects.values_list("route", flat=True)) == {"human"}


def test_jobs_report_running_with_a_start_while_their_chunks_are_scored(use_case):
    job = job_create(kind=Job.Kind.BATCH_INGEST, total=4, use_case=use_case)
    ids = _store(use_case, _rows(range(4)), job=job)
    assert (job.state, job.started_at) == ("queued", None)

    items_score(item_ids=ids[:2])
    job.refresh_from_db()
    assert (job.state, job.done, job.finished_at) == ("running", 2, None)
    started = job.started_at
    assert started is not None

    items_score(item_ids=ids[2:])
    job.refresh_from_db()
    assert (job.state, job.done, job.started_at) == ("done", 4, started)


def test_a_batch_of_one_chunk_shows_running_before_it_is_done(use_case, monkeypatch):
    """Scoring and progress commit together, so the job is seen running from before."""
    from reviewapp.reviews.services import scoring

    job = job_create(kind=Job.Kind.BATCH_INGEST, total=3, use_case=use_case)
    ids = _store(use_case, _rows(range(3)), job=job)
    seen = []
    score = scoring.items_score

    def observed(**kwargs):
        seen.append(Job.objects.values_list("state", "started_at").get(pk=job.pk))
        return score(**kwargs)

    monkeypatch.setattr(scoring, "items_score", observed)
    assert score_items(item_ids=ids) == 3
    assert seen[0][0] == "running" and seen[0][1] is not None
    job.refresh_from_db()
    assert (job.state, job.done, job.started_at) == ("done", 3, seen[0][1])


HANGS_ON = 424242.0  # the amount the model "hangs" on until the task's soft time limit fires


@pytest.fixture
def hangs_on_one_row(monkeypatch):
    """The model runs past the task's soft time limit on one row: Celery raises
    SoftTimeLimitExceeded in the task's thread (the signal is outside the system)."""
    from celery.exceptions import SoftTimeLimitExceeded

    from deployments.ml import scoring

    score = scoring._score
    calls = []
    own = threading.get_ident()

    def hanging(estimator, frame, **kwargs):
        if threading.get_ident() == own:  # the tasks run here (eager), nothing else counts
            calls.append(len(frame))
        if (frame["amount"] == HANGS_ON).any():
            raise SoftTimeLimitExceeded()
        return score(estimator, frame, **kwargs)

    monkeypatch.setattr(scoring, "_score", hanging)
    return calls


def test_a_chunk_that_runs_out_of_time_is_split_in_tasks_until_the_hanging_item_is_alone(
    use_case, settings, hangs_on_one_row
):
    settings.SCORING_MAX_ATTEMPTS = 2
    rows = _rows(range(64))
    rows[37] = (rows[37][0], {**rows[37][1], "amount": HANGS_ON}, None)
    ids = _store(use_case, rows)

    score_items(item_ids=ids)  # each split half is a task of its own (eager here)

    pending = Item.objects.filter(status=Item.Status.PENDING)
    assert list(pending.values_list("external_id", flat=True)) == ["inv-37"]
    hanging = pending.get()
    assert hanging.scoring_failures == 1
    assert "time limit" in hanging.scoring_error
    assert Prediction.objects.filter(error="").count() == 63
    # Halves only, never row by row past the limit: 64, then two calls at 32, 16, 8, 4, 2, 1.
    assert sorted(hangs_on_one_row) == sorted([64, 32, 32, 16, 16, 8, 8, 4, 4, 2, 2, 1, 1])

    score_items(item_ids=[hanging.pk])  # the sweeper sends it again: the last attempt
    hanging.refresh_from_db()
    assert (hanging.status, hanging.route, hanging.scoring_failures) == ("in_review", "human", 2)
    assert "time limit" in hanging.prediction.error


def test_a_challenger_that_runs_out_of_time_records_a_null_output_for_that_item_alone(
    use_case, hangs_on_one_row
):
    from reviewapp.reviews.tasks import score_challenger

    rows = _rows(range(16))
    rows[5] = (rows[5][0], {**rows[5][1], "amount": HANGS_ON}, None)
    ids = _store(use_case, rows)
    register_model(use_case, classifier_bytes(), version="v2")
    challenger = model_version_challenge(
        use_case=use_case, version="v2", actor=make_user(Role.ML_ENGINEER)
    )

    score_challenger(model_version_id=challenger.pk, item_ids=ids)
    shadow = Prediction.objects.filter(model_version=challenger)
    assert shadow.count() == 16
    assert list(shadow.exclude(error="").values_list("item__external_id", "error")) == [
        ("inv-5", "scoring took longer than the task's time limit")
    ]
