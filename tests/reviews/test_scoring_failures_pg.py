"""Row locks that leave the use case's row alone (PostgreSQL, committed data): an item that fails
to score has its attempt counted, and is parked at the limit, while other work on its use case
commits; a manager resolves an escalation without holding up those commits.

Every insert that refers to a use case (an item, a prediction, a task, a decision) checks that
reference as it commits, and holds a share lock on the use case's row while it does. Locking
the pending item used to lock its use case's row too, skipping the item when that row was
locked: with other chunks of the same use case committing beside it, a failed attempt was
sometimes not counted, and the item waited a whole sweep more before it was parked. Resolving
an escalation locked the use case's row outright: every commit that referred to the use case
waited for it, and it waited for each of them.
"""

import psycopg
import pytest
from django.db import connection, transaction
from django.utils import timezone

from reviewapp.core.roles import Role
from reviewapp.reviews.models import Item, ReviewTask
from reviewapp.reviews.services.escalations import escalation_raise, escalation_resolve
from reviewapp.reviews.services.ingest import items_store_pending
from reviewapp.reviews.services.review import review_task_claim
from reviewapp.reviews.services.scoring import item_scoring_failed
from tests.factories import (
    classifier_bytes,
    constant_classifier_bytes,
    make_use_case,
    make_user,
    register_model,
    send_items,
)

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def use_case_row_share_locked():
    """Another session holds what a commit's reference checks hold on a use case's row."""
    other = psycopg.connect(**connection.get_connection_params(), autocommit=False)

    def lock(use_case) -> None:
        other.execute(
            "SELECT id FROM deployments_usecase WHERE id = %s FOR KEY SHARE", [use_case.pk]
        )

    try:
        yield lock
    finally:
        other.rollback()
        other.close()


def test_a_failed_attempt_is_counted_and_the_item_parked_while_its_use_case_row_is_share_locked(
    settings, use_case_row_share_locked
):
    settings.SCORING_MAX_ATTEMPTS = 2
    use_case = make_use_case(level="partial", confidence_threshold=0.8)
    register_model(use_case, classifier_bytes())
    with transaction.atomic():
        [item_id] = items_store_pending(
            use_case=use_case,
            rows=[("poison-1", {"amount": 1.0, "kind": "a", "vendor": "V"}, None)],
            now=timezone.now(),
        )
    use_case_row_share_locked(use_case)

    error = RuntimeError("prediction refused")
    assert item_scoring_failed(item_id=item_id, error=error, now=timezone.now()) == 0
    item = Item.objects.get(pk=item_id)
    assert (item.status, item.scoring_failures) == (Item.Status.PENDING, 1)

    assert item_scoring_failed(item_id=item_id, error=error, now=timezone.now()) == 1
    item = Item.objects.get(pk=item_id)
    assert item.status != Item.Status.PENDING
    assert "parked after 2 failed attempts: scoring failed: RuntimeError" in item.prediction.error


def test_a_manager_returns_an_escalation_while_the_use_case_row_is_share_locked(
    use_case_row_share_locked,
):
    rosa, manager = make_user(Role.REVIEWER, "rosa"), make_user(Role.MANAGER, "maria")
    use_case = make_use_case(members=[rosa], pii_members=[manager], level="assisted")
    register_model(use_case, constant_classifier_bytes("office", 0.7))
    send_items(use_case, range(1))
    task = review_task_claim(use_case=use_case, user=rosa)
    escalation = escalation_raise(task=task, user=rosa, comment="is a taxi travel?")
    use_case_row_share_locked(use_case)
    with connection.cursor() as cursor:
        cursor.execute("SET lock_timeout = '2s'")  # waiting for the row fails the test
    try:
        escalation_resolve(escalation=escalation, user=manager, note="Yes: taxis are travel.")
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET lock_timeout")
    task.refresh_from_db()
    assert task.state == ReviewTask.State.OPEN
