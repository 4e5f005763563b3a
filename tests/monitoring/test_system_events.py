"""A system alert that is raised or cleared is an event in the outbox, so webhooks publish it."""

import pytest
from django.utils import timezone

from reviewapp.core.models import Event
from reviewapp.monitoring.models import SystemAlert
from reviewapp.monitoring.system import ALERT_CLEARED, ALERT_RAISED, alerts_sync
from reviewapp.webhooks.models import EVENT_TYPES

pytestmark = pytest.mark.django_db

STALLED = {"key": "queue:celery", "kind": "queue_stalled", "message": "celery: 40 s old"}


def test_raising_and_clearing_an_alert_each_append_one_event():
    now = timezone.now()
    assert alerts_sync(alerts=[STALLED], now=now) == (1, 0)
    assert alerts_sync(alerts=[STALLED], now=now) == (0, 0)  # still open: nothing new
    raised = Event.objects.get(type=ALERT_RAISED)
    assert raised.use_case_id is None
    assert raised.data == {
        "key": "queue:celery",
        "kind": "queue_stalled",
        "message": STALLED["message"],
    }

    assert alerts_sync(alerts=[], now=now) == (0, 1)
    cleared = Event.objects.get(type=ALERT_CLEARED)
    assert cleared.data["key"] == "queue:celery" and cleared.data["kind"] == "queue_stalled"
    assert SystemAlert.objects.get().cleared_at == now


def test_webhook_endpoints_may_subscribe_to_system_alerts():
    assert {ALERT_RAISED, ALERT_CLEARED} <= set(EVENT_TYPES)
