"""The control room's pages with Django's test client: what managers see and can do."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from deployments.models import GuardrailBreach, ModelVersion, RampPlan
from deployments.policy.guardrails import guardrails_parse
from deployments.selectors import policy_current
from deployments.services.change_requests import change_request_reject, policy_change_or_request
from deployments.services.model_versions import model_version_challenge
from deployments.services.policies import policy_change
from deployments.services.use_cases import use_case_update
from reviewapp.control.guardrail_watch import use_case_watch
from reviewapp.core.roles import Role
from tests.control.helpers import review_all, send
from tests.factories import (
    classifier_bytes,
    constant_classifier_bytes,
    make_use_case,
    make_user,
    register_model,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def manager(client):
    user = make_user(Role.MANAGER, "maria")
    client.force_login(user)
    return user


@pytest.fixture
def use_case(manager):
    use_case = make_use_case(actor=manager, slug="invoices", level="assisted")
    register_model(use_case, classifier_bytes())
    return use_case


def url(name, *args):
    return reverse(name, args=args)


def form(use_case, **overrides):
    policy = policy_current(use_case=use_case)
    body = {
        "level": policy.level,
        "confidence_threshold": policy.confidence_threshold,
        "traffic_percent": policy.traffic_percent,
        "audit_rate": policy.audit_rate * 100,
        "double_review_rate": policy.double_review_rate * 100,
        "reason": "",
    }
    body.update(overrides)
    return body


def test_the_overview_places_every_use_case_on_the_spectrum(client, manager, use_case):
    other = make_use_case(actor=manager, slug="claims", level="partial", traffic_percent=25)
    register_model(other, classifier_bytes())
    register_model(other, classifier_bytes(seed=2), version="v2")
    model_version_challenge(use_case=other, version="v2", actor=manager)
    send(use_case, range(4))
    page = client.get(url("control-overview"))
    assert page.status_code == 200
    html = page.content.decode()
    assert "Invoice category" in html and 'aria-label="Level: Assisted"' in html
    assert 'aria-label="Level: Partial"' in html and "threshold 0.9" in html
    assert "★ v1" in html and ">v2</span>" in html  # champion and challenger
    # Today's figures: four items are too few for a rate, and the page says so.
    assert "too few items (n=4)</span></span> automated" in html


def test_the_overview_query_count_does_not_grow_with_use_cases(
    client, manager, django_assert_max_num_queries
):
    for n in range(6):
        make_use_case(actor=manager, slug=f"case-{n}", level="shadow")
    # 17: the queue health (two) and the past-due banner (one) are fixed costs too.
    with django_assert_max_num_queries(17):
        assert client.get(url("control-overview")).status_code == 200


def test_changing_the_level_needs_a_reason_and_writes_a_version(client, manager, use_case):
    change = url("control-policy-change", "invoices")
    refused = client.post(change, form(use_case, level="partial"))
    assert refused.status_code == 400
    assert "a reason is required" in refused.content.decode()
    assert policy_current(use_case=use_case).level == "assisted"

    done = client.post(change, form(use_case, level="partial", reason="ready"), follow=True)
    assert done.redirect_chain[-1][0] == url("control-policy", "invoices")
    policy = policy_current(use_case=use_case)
    assert (policy.level, policy.reason, policy.changed_by) == ("partial", "ready", manager)
    html = done.content.decode()
    assert "Saved as version 3." in html
    assert "Assisted → <strong>Partial</strong>" in html  # the diff in the history


def test_the_editor_converts_percentages_and_names_bad_fields(client, manager, use_case):
    change = url("control-policy-change", "invoices")
    client.post(
        change, form(use_case, audit_rate="12.5", traffic_percent="40", reason="more audits")
    )
    policy = policy_current(use_case=use_case)
    assert (policy.audit_rate, policy.traffic_percent) == (0.125, 40)
    bad = client.post(change, form(use_case, confidence_threshold="1.5", reason="x"))
    assert bad.status_code == 400 and "must be a number in [0, 1]" in bad.content.decode()
    same = client.post(change, form(use_case, reason="again"))
    assert "Nothing changed" in same.content.decode()


def test_htmx_changes_swap_the_panel(client, manager, use_case):
    response = client.post(
        url("control-policy-change", "invoices"),
        form(use_case, level="shadow", reason="benchmark first"),
        HTTP_HX_REQUEST="true",
    )
    html = response.content.decode()
    assert response.status_code == 200 and '<div id="policy-panel"' in html
    assert "<html" not in html and "Saved as version 3." in html
    # The header outside the panel follows, out of band.
    assert 'id="uc-meta" hx-swap-oob="true"' in html and "policy v3" in html


def test_restoring_an_earlier_version_is_one_click(client, manager, use_case):
    policy_change(use_case=use_case, actor=manager, changes={"level": "full"}, reason="go")
    refused = client.post(url("control-policy-restore", "invoices", 2), follow=True)
    assert "a reason is required" in refused.content.decode()
    assert policy_current(use_case=use_case).level == "full"
    restore = url("control-policy-restore", "invoices", 2)
    response = client.post(restore, {"reason": "too early"}, follow=True)
    policy = policy_current(use_case=use_case)
    assert (policy.level, policy.restored_from.version, policy.reason) == (
        "assisted",
        2,
        "too early",
    )
    assert "Version 2 restored as version 4." in response.content.decode()
    missing = url("control-policy-restore", "invoices", 99)
    assert client.post(missing, {"reason": "x"}).status_code == 404


def test_the_what_if_reads_the_latest_backtest(
    client, manager, use_case, django_capture_on_commit_callbacks
):
    reviewer = make_user(Role.REVIEWER)
    use_case.memberships.create(user=reviewer)
    send(use_case, range(20))
    review_all(use_case, reviewer, lambda task: "office")
    assert "No backtest yet" in client.get(url("control-policy", "invoices")).content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        client.post(url("control-backtests", "invoices"), {"model_version": "v1", "since": ""})
    html = client.get(url("control-policy", "invoices")).content.decode()
    assert 'id="whatif-curve"' in html and "of the 20 labelled items" in html


def test_guardrails_are_saved_from_the_form_in_percent(client, manager, use_case):
    page = url("control-guardrails", "invoices")
    response = client.post(
        page,
        {
            "fallback_level": "shadow",
            "override_rate-enabled": "1",
            "override_rate-max": "20",
            "override_rate-window": "200",
            "drift_psi-max": "0.3",  # not enabled: ignored
            "webhook_url": "https://hooks.example.com/x",
            "reason": "protect the ramp",
        },
    )
    assert response.status_code == 302
    assert policy_current(use_case=use_case).guardrails == {
        "fallback_level": "shadow",
        "override_rate": {"max": 0.2, "window": 200},
        "webhook_url": "https://hooks.example.com/x",
    }
    bad = client.post(
        page,
        {
            "override_rate-enabled": "1",
            "override_rate-max": "150",
            "override_rate-window": "0",
            "reason": "x",
        },
    )
    assert bad.status_code == 400
    html = bad.content.decode()
    assert "must be a number in [0, 1]" in html and "must be a whole number in [1, 100000]" in html


def test_the_guardrails_page_states_false_alarms_and_detection_delay(client, manager, use_case):
    page = url("control-guardrails", "invoices")
    form = {
        "override_rate-enabled": "1",
        "override_rate-max": "5",
        "override_rate-window": "1000",
        "override_rate-margin": "5",
        "override_rate-alpha": "0.1",
        "reason": "tune the override guardrail",
    }
    assert client.post(page, form).status_code == 302
    saved = policy_current(use_case=use_case).guardrails
    assert saved["override_rate"] == {"max": 0.05, "window": 1000, "margin": 0.05, "alpha": 0.001}
    delay = guardrails_parse(saved).limit("override_rate").test.delay()
    html = client.get(page).content.decode()
    assert (
        "False alarms: ≤0.1% of checks while the rate is at or under 5.0%. A rise to 10.0% is "
        f"caught within ~{delay.median} reviewed items (median; 90% within {delay.p90})."
    ) in html
    bad = client.post(page, {**form, "override_rate-confidence": "100"})
    assert bad.status_code == 400
    assert "confidence: must be a number in [0.5, 0.9999]" in bad.content.decode()


def test_a_breach_shows_a_banner_and_can_be_resolved(client, manager):
    reviewer = make_user(Role.REVIEWER)
    use_case = make_use_case(
        actor=manager,
        slug="invoices",
        members=[reviewer],
        level="partial",
        confidence_threshold=0.9,
        audit_rate=0,
        guardrails={"override_rate": {"max": 0.2, "window": 50, "min_sample": 10}},
    )
    register_model(use_case, constant_classifier_bytes("office", 0.8))
    send(use_case, range(10))
    review_all(use_case, reviewer, lambda task: "travel")
    use_case_watch(use_case_id=use_case.pk)
    for page in ("control-overview",):
        html = client.get(url(page)).content.decode()
        assert "1 guardrail breach open" in html and "override rate 100.0% &gt; 20.0%" in html
    html = client.get(url("control-policy", "invoices")).content.decode()
    assert "stepped the level down to <strong>Assisted</strong>" in html
    breach = GuardrailBreach.objects.get()
    client.post(url("control-breach-resolve", "invoices", breach.pk), {"note": "model replaced"})
    breach.refresh_from_db()
    assert breach.resolved_by == manager and breach.resolution == "model replaced"
    assert "guardrail breach open" not in client.get(url("control-overview")).content.decode()


def test_a_ramp_plan_is_started_paused_resumed_and_cancelled_from_the_page(
    client, manager, use_case
):
    page = url("control-ramp", "invoices")
    bad = client.post(page, {"steps": "50, 5", "items": "100", "reason": "go"})
    assert bad.status_code == 400 and "steps must rise" in bad.content.decode()
    client.post(page, {"steps": "1, 5, 25, 50, 100", "items": "100", "hours": "24", "reason": "go"})
    plan = RampPlan.objects.get()
    assert (plan.steps, plan.advance_after_items, plan.advance_after_seconds) == (
        [1, 5, 25, 50, 100],
        100,
        86_400,
    )
    html = client.get(page).content.decode()
    assert "waiting for 0 of 100 reviewed items" in html and 'aria-current="step"' in html
    assert "Traffic stays at 1% (step 1 of 5); the plan stops advancing" in html
    client.post(url("control-ramp-action", "invoices", "pause"), {"reason": "holiday"})
    assert RampPlan.objects.get().paused_reason == "holiday"
    client.post(url("control-ramp-action", "invoices", "resume"))
    client.post(url("control-ramp-action", "invoices", "cancel"))
    assert RampPlan.objects.get().state == "cancelled"


def test_model_versions_upload_challenge_promote_and_roll_back(client, manager, use_case):
    page = url("control-models", "invoices")
    refused = client.post(page, {"version": "v2", "file": SimpleUploadedFile("m.skops", b"nope")})
    assert refused.status_code == 400 and "not a .skops file" in refused.content.decode()
    client.post(
        page, {"version": "v2", "file": SimpleUploadedFile("m.skops", classifier_bytes(seed=4))}
    )
    assert ModelVersion.objects.get(version="v2").role == "candidate"
    client.post(url("control-model-action", "invoices", "v2", "challenge"))
    assert ModelVersion.objects.get(version="v2").role == "challenger"
    refused = client.post(url("control-model-action", "invoices", "v2", "promote"), follow=True)
    assert "a reason is required" in refused.content.decode()
    assert ModelVersion.objects.get(version="v2").role == "challenger"
    client.post(url("control-model-action", "invoices", "v2", "promote"), {"reason": "better"})
    assert ModelVersion.objects.get(version="v2").role == "champion"
    rollback = url("control-model-rollback", "invoices")
    response = client.post(rollback, {"reason": "v2 overrides more"}, follow=True)
    assert ModelVersion.objects.get(version="v1").role == "champion"
    assert "v1 is the champion again" in response.content.decode()


def test_the_comparison_lists_where_versions_differ_and_opens_them(
    client, manager, use_case, django_capture_on_commit_callbacks
):
    reviewer = make_user(Role.REVIEWER)
    use_case.memberships.create(user=reviewer)
    register_model(use_case, constant_classifier_bytes("travel", 0.7), version="v2")
    model_version_challenge(use_case=use_case, version="v2", actor=manager)
    with django_capture_on_commit_callbacks(execute=True):  # challengers score after commit
        send(use_case, range(12))
    review_all(use_case, reviewer, lambda task: "office")
    html = client.get(url("control-models", "invoices")).content.decode()
    assert "12 items scored by both versions, 12 of them decided by a human" in html
    assert "give the same answer on" in html and 'id="calibration-figure"' in html
    assert "inv-11" in html  # newest first
    detail = client.get(url("control-item", "invoices", "inv-11") + "?v=v1&v=v2&show=any")
    text = detail.content.decode()
    assert detail.status_code == 200 and "1 of 12" in text and "next ›" in text
    assert "Vendor 11" in text  # the manager created the use case: may see personal data
    engineer = make_user(Role.ML_ENGINEER)
    use_case.memberships.create(user=engineer)
    client.force_login(engineer)
    text = client.get(url("control-item", "invoices", "inv-10")).content.decode()
    assert "Vendor 10" not in text and "Hidden (personal data): vendor" in text


@pytest.mark.parametrize(
    "name",
    ["control-policy", "control-guardrails", "control-ramp", "control-models", "control-backtests"],
)
def test_a_use_case_outside_yours_is_a_404(client, manager, name):
    outsider_case = make_use_case(slug="secret")
    assert client.get(url(name, outsider_case.slug)).status_code == 404


def test_the_backtest_page_shows_progress_then_the_curve(
    client, manager, use_case, django_capture_on_commit_callbacks
):
    reviewer = make_user(Role.REVIEWER)
    use_case.memberships.create(user=reviewer)
    send(use_case, range(15))
    review_all(use_case, reviewer, lambda task: "office")
    with django_capture_on_commit_callbacks(execute=False) as queued:
        response = client.post(url("control-backtests", "invoices"), {"model_version": "v1"})
    detail = response["Location"]
    waiting = client.get(detail, HTTP_HX_REQUEST="true").content.decode()
    assert 'hx-trigger="every 1s"' in waiting and "queued: 0 of 15 items" in waiting
    for callback in queued:
        callback()
    done = client.get(detail, HTTP_HX_REQUEST="true").content.decode()
    assert "every 1s" not in done
    assert 'id="tradeoff-figure"' in done and 'data-figure="tradeoff-figure"' in done
    assert "current threshold 0.9" in done


def test_htmx_actions_answer_with_their_panel_only(client, manager, use_case):
    checked = client.post(url("control-guardrails-check", "invoices"), HTTP_HX_REQUEST="true")
    html = checked.content.decode()
    assert '<div id="guardrails-panel"' in html and "<html" not in html
    assert "Checked just now." in html and 'id="breach-banner" hx-swap-oob="true"' in html
    client.post(url("control-ramp", "invoices"), {"steps": "10, 100", "items": "5", "reason": "go"})
    pause = url("control-ramp-action", "invoices", "pause")
    refused = client.post(pause, follow=True)
    assert "a reason is required" in refused.content.decode()
    assert RampPlan.objects.get(state="active").current_percent == 10
    paused = client.post(pause, {"reason": "holiday"}, HTTP_HX_REQUEST="true")
    html = paused.content.decode()
    assert '<div id="ramp-panel"' in html and "<html" not in html and "Resume at 10%" in html
    assert client.post(url("control-ramp-action", "invoices", "explode")).status_code == 404


def test_a_rejected_request_and_the_reasons_show_in_the_histories(client, manager, use_case):
    asker = make_user(Role.MANAGER, "mark")
    use_case.memberships.create(user=asker)
    use_case_update(use_case=use_case, changes={"four_eyes": True})
    held = policy_change_or_request(
        use_case=use_case, actor=asker, changes={"level": "full"}, reason="audits are clean"
    )
    change_request_reject(
        use_case=use_case, request_id=held.pk, actor=manager, reason="too soon after v2"
    )
    html = client.get(url("control-policy", "invoices")).content.decode()
    assert "mark asked level → <strong>full</strong>" in html
    assert "rejected by" in html and "too soon after v2" in html
    assert "Waiting for a second manager" not in html
    assert policy_current(use_case=use_case).level == "assisted"
    models_html = client.get(url("control-models", "invoices")).content.decode()
    assert "Model history" in models_html
