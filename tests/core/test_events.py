"""The outbox records each change's event in the change's own transaction."""

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from deployments.services.model_versions import model_version_challenge
from deployments.services.policies import policy_change
from reviewapp.core.events import events_record
from reviewapp.core.models import Event
from reviewapp.core.roles import Role
from reviewapp.reviews.services.escalations import escalation_raise
from reviewapp.reviews.services.review import review_task_claim
from tests.factories import (
    classifier_bytes,
    constant_classifier_bytes,
    make_use_case,
    make_user,
    register_model,
    send_items,
)

pytestmark = pytest.mark.django_db


def types(use_case) -> list[str]:
    return list(
        Event.objects.filter(use_case=use_case).order_by("id").values_list("type", flat=True)
    )


def test_changes_record_their_events():
    manager = make_user(Role.MANAGER, "mona")
    reviewer = make_user(Role.REVIEWER)
    use_case = make_use_case(members=[reviewer], actor=manager, level="assisted")
    register_model(use_case, constant_classifier_bytes("office", 0.8))
    register_model(use_case, classifier_bytes(), version="v2")
    model_version_challenge(use_case=use_case, version="v2", actor=manager, reason="try it")
    send_items(use_case, [1])
    task = review_task_claim(use_case=use_case, user=reviewer)
    escalation_raise(task=task, user=reviewer, comment="unsure")
    assert types(use_case) == [
        "policy.changed",
        "model.changed",
        "model.changed",
        "model.changed",
        "model.changed",
        "item.escalated",
    ]
    policy = Event.objects.filter(use_case=use_case, type="policy.changed").get()
    assert policy.data["by"] == "mona" and policy.data["level"] == "assisted"
    actions = [
        e.data["action"] for e in Event.objects.filter(use_case=use_case, type="model.changed")
    ]
    assert actions == ["register", "promote", "register", "challenge"]


def test_a_rolled_back_change_records_nothing():
    manager = make_user(Role.MANAGER)
    use_case = make_use_case(actor=manager)

    class Abandon(Exception):
        pass

    with pytest.raises(Abandon), transaction.atomic():
        policy_change(use_case=use_case, actor=manager, changes={"level": "shadow"}, reason="r")
        raise Abandon
    assert types(use_case) == []


def test_a_batch_of_events_is_one_statement_with_the_transaction_id_on_each():
    use_case = make_use_case()
    postgresql = connection.vendor == "postgresql"
    with transaction.atomic():
        with CaptureQueriesContext(connection) as captured:
            datas = [{"n": n} for n in range(300)]
            assert events_record(type="test.batch", use_case_id=use_case.pk, datas=datas) == 300
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_current_xact_id()::text::bigint" if postgresql else "SELECT 0"
            )
            (txid,) = cursor.fetchone()
    if postgresql:
        assert len(captured.captured_queries) == 1
    events = list(Event.objects.filter(type="test.batch").order_by("id"))
    assert [e.data["n"] for e in events] == list(range(300))
    assert {e.txid for e in events} == {txid} and {e.use_case_id for e in events} == {use_case.pk}
