"""A prediction committed while a decision waits for its item's lock is compared with the
decision: the decision, second to commit, records its disagreement and the monitoring pair
(the prediction's writer, first, saw no decision to pair with)."""

import threading

import pytest
from django.db import connection, transaction
from django.utils import timezone

from deployments.models import ModelVersion
from reviewapp.core.roles import Role
from reviewapp.monitoring.models import RollupEvent
from reviewapp.monitoring.services import rollups_deferred
from reviewapp.reviews.models import Disagreement, Item, Prediction
from reviewapp.reviews.services.ingest import item_ingest
from reviewapp.reviews.services.review import review_task_claim, review_task_decide
from tests.factories import (
    constant_classifier_bytes,
    invoice,
    make_use_case,
    make_user,
    register_model,
)

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def _waiting_for_a_lock(pid: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE pid = %s AND NOT granted)", [pid]
        )
        return cursor.fetchone()[0]


def test_a_prediction_committed_while_the_decision_waits_for_the_item_is_compared_with_it():
    reviewer = make_user(Role.REVIEWER)
    use_case = make_use_case(members=[reviewer], level="assisted")
    register_model(use_case, constant_classifier_bytes("office", 0.7))
    register_model(use_case, constant_classifier_bytes("other", 0.9), version="v2")
    challenger = ModelVersion.objects.get(use_case=use_case, version="v2")
    body = invoice(1)
    item = item_ingest(
        use_case=use_case, external_id=body["external_id"], features=body["features"]
    ).item
    task = review_task_claim(use_case=use_case, user=reviewer)
    assert task is not None and task.item_id == item.pk

    decider: dict = {}

    def decide() -> None:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                decider["pid"] = cursor.fetchone()[0]
            with rollups_deferred():
                review_task_decide(
                    task=task, user=reviewer, label="travel", lease_token=task.lease_token
                )
        except Exception as exc:  # reported below, in the test's thread
            decider["error"] = exc
        finally:
            connection.close()

    # A writer of predictions holds the item, as the challenger's scoring does, and stores its
    # prediction; it sees no decision, so it pairs with none.
    with transaction.atomic():
        Item.objects.select_for_update().get(pk=item.pk)
        late = Prediction.objects.create(
            item=item,
            use_case=use_case,
            model_version=challenger,
            label="other",
            confidence=0.9,
            created_at=timezone.now(),
        )
        thread = threading.Thread(target=decide)
        thread.start()
        for _ in range(3000):  # until the decision waits for the item (at most 30 s)
            if "pid" in decider and _waiting_for_a_lock(decider["pid"]):
                break
            if not thread.is_alive():
                break
            threading.Event().wait(0.01)
        assert "pid" in decider and thread.is_alive(), decider
    thread.join(timeout=60)
    assert "error" not in decider, decider.get("error")

    kinds = dict(Disagreement.objects.filter(item=item).values_list("prediction_id", "kind"))
    assert kinds == {item.prediction_id: "override", late.pk: "challenger"}
    (paired,) = RollupEvent.objects.filter(kind=RollupEvent.Kind.DECISION)
    assert paired.detail == {"predictions": sorted([item.prediction_id, late.pk])}
