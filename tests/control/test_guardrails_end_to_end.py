"""End to end: a model turns bad mid-stream and the system steps down by itself.

Items arrive through the API, reviewers decide them through the API, and nothing calls the
guardrail watch by hand: the checks queued after each decision find the breach, write the
system's policy version, record the breach and POST the webhook to a real local HTTP server.
"""

import time

import pytest

from deployments.models import GuardrailBreach
from deployments.services.model_versions import model_version_promote
from reviewapp.core.roles import Role
from reviewapp.webhooks.tasks import sweep
from tests.control.helpers import truth
from tests.factories import (
    classifier_bytes,
    constant_classifier_bytes,
    make_use_case,
    make_user,
    register_model,
    training_frame,
)

pytestmark = pytest.mark.django_db(transaction=True)


def stream(api, caller, reviewer, use_case, rows, start: int) -> None:
    """Send each row as an item, then have the reviewer decide whatever waits, truthfully."""
    base = f"/api/v1/use-cases/{use_case.slug}/"
    for n, row in enumerate(rows):
        sent = api(caller).post(
            f"{base}items/", {"external_id": f"live-{start + n}", "features": row}, format="json"
        )
        assert sent.status_code == 201, sent.content
        while True:
            claimed = api(reviewer).post(f"{base}review/next/")
            if claimed.status_code == 204:
                break
            task = claimed.json()
            decided = api(reviewer).post(
                f"/api/v1/review/tasks/{task['task']}/decision/",
                {"label": truth(task["features"]), "lease_token": task["lease_token"]},
                format="json",
            )
            assert decided.status_code == 201, decided.content


def test_a_model_that_turns_bad_is_stepped_down_by_the_system(api, settings, webhook_server):
    settings.GUARDRAIL_CHECK_INTERVAL_SECONDS = 0  # check after every decision
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    receiver = webhook_server()
    manager, reviewer = make_user(Role.MANAGER), make_user(Role.REVIEWER)
    caller, engineer = make_user(Role.INTEGRATION), make_user(Role.ML_ENGINEER)
    use_case = make_use_case(
        actor=manager,
        members=[reviewer, caller, engineer],
        level="partial",
        confidence_threshold=0.9,
        audit_rate=0.0,
        guardrails={
            "fallback_level": "assisted",
            "override_rate": {"max": 0.2, "window": 40, "min_sample": 15},
            "webhook_url": receiver.url,
        },
    )
    register_model(use_case, classifier_bytes(), version="good")
    frame, _ = training_frame(n=80, seed=11)
    rows = frame.to_dict(orient="records")

    stream(api, caller, reviewer, use_case, rows[:40], start=0)
    assert not GuardrailBreach.objects.exists()
    assert use_case.policies.filter(changed_by_system=True).count() == 0

    # Mid-stream the champion is swapped for a model that always says "other" at 0.8:
    # under the 0.9 threshold, so reviewers see it and override it about two times in three.
    register_model(use_case, constant_classifier_bytes("other", 0.8), version="broken")
    model_version_promote(use_case=use_case, version="broken", actor=engineer, reason="retrained")
    stream(api, caller, reviewer, use_case, rows[40:], start=40)

    history = api(manager).get(f"/api/v1/use-cases/{use_case.slug}/policy/history/").json()
    system = [h for h in history if h["changed_by"] == "system"]
    assert len(system) == 1, [h["reason"] for h in history]
    step_down = system[0]
    assert step_down["level"] == "assisted"
    assert step_down["reason"].startswith("guardrail breached: override rate ")
    assert step_down["reason"].endswith("level stepped down to assisted")
    current = api(manager).get(f"/api/v1/use-cases/{use_case.slug}/policy/").json()
    assert current["level"] == "assisted" and current["version"] == step_down["version"]

    # The breach reaches the webhook through the event outbox, readable once every older
    # transaction has ended: on PostgreSQL other tests' transactions may hold it back a moment,
    # and the beat's sweep (run here) delivers it then.
    deadline = time.monotonic() + 30
    while not receiver.received and time.monotonic() < deadline:
        sweep()
        time.sleep(0.1)
    breach = GuardrailBreach.objects.get()
    assert breach.guardrail == "override_rate" and breach.observed > 0.2
    assert breach.sample_size >= 15 and breach.model_version.version == "broken"
    assert breach.policy.version == step_down["version"]
    assert breach.notified_at is not None and breach.notify_attempts == 1

    assert len(receiver.received) == 1
    posted = receiver.received[0]["body"]
    assert posted["use_case"] == use_case.slug and posted["guardrail"] == "override_rate"
    assert posted["model_version"] == "broken"
    assert posted["policy"] == {
        "version": step_down["version"],
        "level": "assisted",
        "traffic_percent": 100.0,
        "reason": step_down["reason"],
    }

    # A manager can always override by hand.
    restored = api(manager).patch(
        f"/api/v1/use-cases/{use_case.slug}/policy/",
        {"level": "partial", "reason": "rolled the model back; resume automation"},
        format="json",
    )
    assert restored.status_code == 200 and restored.json()["level"] == "partial"
