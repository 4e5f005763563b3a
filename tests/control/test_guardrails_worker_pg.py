"""Guardrails with a real Celery worker on Redis: the checks queued after decisions run in the
worker, which steps the level down and retries the webhook later (a countdown, not at once)."""

import pytest

from deployments.models import GuardrailBreach
from deployments.selectors import policy_current
from reviewapp.core.roles import Role
from tests.control.helpers import overriding, review_all, send
from tests.factories import constant_classifier_bytes, make_use_case, make_user, register_model
from tests.reviews.test_worker_pg import worker  # noqa: F401 (a fixture)
from tests.waiting import wait_for

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.worker,
    pytest.mark.django_db(transaction=True),
    pytest.mark.xdist_group("celery-worker"),
]


@pytest.fixture
def every_decision_checked(monkeypatch, settings):
    """No throttle and a local receiver allowed, here and in the worker (which reads the
    environment when it starts)."""
    monkeypatch.setenv("GUARDRAIL_CHECK_INTERVAL_SECONDS", "0")
    monkeypatch.setenv("WEBHOOK_ALLOWED_HOSTS", "127.0.0.1")
    settings.GUARDRAIL_CHECK_INTERVAL_SECONDS = 0
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]


def test_the_worker_steps_down_and_retries_the_webhook(
    every_decision_checked,
    worker,  # noqa: F811 (the fixture imported above)
    webhook_server,
):
    receiver = webhook_server(statuses=(503, 200))
    manager, reviewer = make_user(Role.MANAGER), make_user(Role.REVIEWER)
    use_case = make_use_case(
        actor=manager,
        members=[reviewer],
        level="partial",
        confidence_threshold=0.9,
        audit_rate=0.0,
        guardrails={
            "fallback_level": "assisted",
            "override_rate": {"max": 0.2, "window": 50, "min_sample": 10},
            "webhook_url": receiver.url,
        },
    )
    register_model(use_case, constant_classifier_bytes("office", 0.8))
    # Half overridden: from about 30 decisions on, clearly over the 20% limit.
    send(use_case, range(30))
    review_all(use_case, reviewer, overriding(every=2))

    from deployments.models import GuardrailStatus

    ok = wait_for(lambda: policy_current(use_case=use_case).level == "assisted")
    print(list(GuardrailStatus.objects.values()), policy_current(use_case=use_case).reason)
    assert ok
    step_down = policy_current(use_case=use_case)
    assert step_down.changed_by_system and step_down.reason.startswith("guardrail breached")
    assert wait_for(lambda: GuardrailBreach.objects.filter(notified_at__isnull=False).exists())
    breach = GuardrailBreach.objects.get()
    assert breach.notify_attempts == 2 and breach.policy == step_down
    assert [r["body"]["policy"]["level"] for r in receiver.received] == ["assisted", "assisted"]
    # Many decisions queued many checks, and the step-down still happened exactly once.
    assert use_case.policies.filter(changed_by_system=True).count() == 1
