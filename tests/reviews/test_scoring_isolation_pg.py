"""Property on a real worker (PostgreSQL, Redis): any batch that was accepted ends with every
item scored, or routed to a human as a null output, within two sweeps of the sweeper, however
many poison items are mixed in.

Two kinds of poison: items whose prediction the database refuses (a trigger stands in for any
failure outside the model: the whole chunk fails until the item is alone), and items stored
with a feature no double holds whose messages were lost (the model cannot read them).
"""

from datetime import timedelta

import hypothesis
import pytest
from django.db import connection
from django.utils import timezone
from hypothesis import strategies as st

from reviewapp.core.models import Job
from reviewapp.core.roles import Role
from reviewapp.reviews.models import Item, Prediction
from reviewapp.reviews.services.ingest import items_store_pending
from reviewapp.reviews.services.scoring import unscored_sweep
from tests.factories import classifier_bytes, invoice, make_use_case, make_user, register_model
from tests.reliability.processes import wait_until
from tests.reviews.test_worker_pg import worker  # noqa: F401  (the real worker fixture)

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.worker,
    pytest.mark.django_db(transaction=True),
    pytest.mark.xdist_group("celery-worker"),
]

REFUSED = "poison-"


@pytest.fixture
def database_refuses_poison_predictions():
    """The database refuses a model's real prediction for items named ``poison-...``; a null
    output (with an error) still goes in, as parking one needs."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            CREATE FUNCTION refuse_poison() RETURNS trigger AS $$
            BEGIN
                IF NEW.error = '' AND EXISTS (
                    SELECT 1 FROM reviews_item
                    WHERE id = NEW.item_id AND external_id LIKE 'poison-%') THEN
                    RAISE EXCEPTION 'prediction refused for item %', NEW.item_id;
                END IF;
                RETURN NEW;
            END $$ LANGUAGE plpgsql;
            CREATE TRIGGER refuse_poison BEFORE INSERT ON reviews_prediction
                FOR EACH ROW EXECUTE FUNCTION refuse_poison();
            """
        )
    yield
    with connection.cursor() as cursor:
        cursor.execute(
            "DROP TRIGGER IF EXISTS refuse_poison ON reviews_prediction; "
            "DROP FUNCTION IF EXISTS refuse_poison();"
        )


def _sweep_and_wait(use_case, *, attempts: int) -> None:
    # Time is passed in: every pending item is older than the sweeper's threshold.
    unscored_sweep(older_than_seconds=60, now=timezone.now() + timedelta(minutes=5))
    wait_until(
        lambda: (
            not Item.objects.filter(
                use_case=use_case, status=Item.Status.PENDING, scoring_failures__lt=attempts
            ).exists()
        ),
        timeout=120,
        what=f"sweep {attempts - 1} to be worked off",
    )


@pytest.mark.usefixtures("worker", "database_refuses_poison_predictions")
@hypothesis.settings(
    max_examples=2,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(hypothesis.HealthCheck),
)
@hypothesis.given(
    normal=st.integers(min_value=1, max_value=60),
    refused=st.integers(min_value=0, max_value=3),
    unreadable=st.integers(min_value=0, max_value=3),
)
@hypothesis.example(normal=40, refused=3, unreadable=2)
def test_an_accepted_batch_is_routed_within_two_sweeps_whatever_poison_it_holds(
    api, normal, refused, unreadable
):
    caller = make_user(Role.INTEGRATION)
    use_case = make_use_case(members=[caller], level="partial", confidence_threshold=0.8)
    register_model(use_case, classifier_bytes())
    rows = [invoice(n) for n in range(normal)]
    for n in range(refused):
        rows.insert((n * 7) % (len(rows) + 1), {**invoice(1000 + n), "external_id": f"poison-{n}"})
    response = api(caller).post(
        f"/api/v1/use-cases/{use_case.slug}/items/batch/", {"items": rows}, format="json"
    )
    assert response.status_code == 202
    # Stored before the checks a request now gets; their messages were lost.
    items_store_pending(
        use_case=use_case,
        rows=[
            (f"unreadable-{n}", {**invoice(n)["features"], "amount": 10**400}, None)
            for n in range(unreadable)
        ],
        now=timezone.now(),
    )

    # The batch's own tasks: every item is routed but the refused ones, tried once each.
    wait_until(
        lambda: (
            not Item.objects.filter(
                use_case=use_case,
                status=Item.Status.PENDING,
                job__isnull=False,
                scoring_failures=0,
            ).exists()
        ),
        timeout=120,
        what="the batch's tasks",
    )
    _sweep_and_wait(use_case, attempts=2)
    _sweep_and_wait(use_case, attempts=3)

    assert not Item.objects.filter(use_case=use_case, status=Item.Status.PENDING).exists()
    predictions = Prediction.objects.filter(use_case=use_case)
    assert predictions.filter(error="").count() == normal
    parked = predictions.filter(item__external_id__startswith=REFUSED)
    assert parked.count() == refused
    assert all("parked after 2 failed attempts" in p.error for p in parked)
    null = predictions.filter(item__external_id__startswith="unreadable-")
    assert null.count() == unreadable
    assert all("features could not be read" in p.error for p in null)
    job = Job.objects.get(pk=response.json()["job"])
    assert (job.state, job.done, job.total) == ("done", normal + refused, normal + refused)
    assert job.started_at is not None
