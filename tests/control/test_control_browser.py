"""The control room in Chromium: change the level with a reason, restore a version, run a
backtest and see its curve; screenshots of the overview, the editor and the curve."""

import numpy as np
import pytest
from django.db import transaction
from django.utils import timezone

from deployments.models import ModelVersionEvent
from deployments.selectors import policy_current
from deployments.services.change_requests import policy_change_or_request
from deployments.services.model_versions import model_version_challenge
from deployments.services.policies import policy_change
from deployments.services.use_cases import use_case_update
from reviewapp.control.backtests import backtest_start
from reviewapp.control.guardrail_watch import use_case_watch
from reviewapp.control.ramp_plans import ramp_plan_cancel, ramp_plan_start
from reviewapp.core.roles import Role
from reviewapp.reviews.services.ingest import items_store_pending
from reviewapp.reviews.services.scoring import items_score
from tests.conftest import ARTIFACTS, screenshot
from tests.control.helpers import review_all, truth
from tests.factories import (
    classifier_bytes,
    constant_classifier_bytes,
    make_use_case,
    make_user,
    register_model,
    training_frame,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def labelled_traffic(use_case, reviewer, *, n: int, seed: int, prefix: str) -> None:
    frame, _ = training_frame(n=n, seed=seed)
    rows = [(f"{prefix}-{i}", row, None) for i, row in enumerate(frame.to_dict(orient="records"))]
    with transaction.atomic():
        ids = items_store_pending(use_case=use_case, rows=rows, now=timezone.now())
    items_score(item_ids=ids)
    rng = np.random.default_rng(seed)
    review_all(
        use_case,
        reviewer,
        lambda task: truth(task.item.features) if rng.random() > 0.08 else "other",
    )


@pytest.fixture
def control_room():
    manager = make_user(Role.MANAGER, "maria")
    reviewer = make_user(Role.REVIEWER, "rosa")
    invoices = make_use_case(
        actor=manager, slug="invoices", members=[reviewer], level="assisted", audit_rate=0.05
    )
    register_model(invoices, classifier_bytes())
    register_model(invoices, classifier_bytes(seed=5), version="v2")
    model_version_challenge(use_case=invoices, version="v2", actor=manager, reason="retrained")
    labelled_traffic(invoices, reviewer, n=120, seed=1, prefix="inv")
    policy_change(
        use_case=invoices,
        actor=manager,
        changes={
            "level": "partial",
            "confidence_threshold": 0.9,
            "guardrails": {"override_rate": {"max": 0.25, "window": 200}},
        },
        reason="suggestions accepted 93% of the time for a week",
    )
    backtest_start(use_case=invoices, actor=manager, model_version="v1")  # runs on commit
    ramp_plan_start(
        use_case=invoices,
        actor=manager,
        steps=[5, 25, 50, 100],
        advance_after_items=200,
        reason="automate confident items gradually",
    )

    claims = make_use_case(
        actor=manager,
        slug="claims",
        members=[reviewer],
        level="partial",
        confidence_threshold=0.9,
        audit_rate=0.0,
        guardrails={
            "fallback_level": "assisted",
            "override_rate": {"max": 0.2, "window": 100, "min_sample": 10},
        },
    )
    claims.name = "Claims triage"
    claims.save(update_fields=["name"])
    register_model(claims, constant_classifier_bytes("office", 0.8))
    labelled_traffic(claims, reviewer, n=30, seed=2, prefix="clm")
    use_case_watch(use_case_id=claims.pk)

    estimate = make_use_case(actor=manager, slug="amounts", task_type="regression", level="shadow")
    return manager, invoices, claims, estimate


def test_overview_shows_every_use_case_on_the_spectrum(signed_in, control_room):
    manager, invoices, claims, _ = control_room
    for width in (1280, 390):
        page = signed_in(manager, width=width)
        page.goto(page.base_url + "/control/")
        page.get_by_role("heading", name="Control room").wait_for()
        assert page.get_by_role("alert").filter(has_text="guardrail breach").is_visible()
        row = page.get_by_role("row").filter(has_text="Claims triage")
        assert row.get_by_label("Level: Assisted").is_visible()  # stepped down by the system
        assert row.get_by_role("link", name="breach").is_visible()
        invoice_row = page.get_by_role("row").filter(has_text="Invoice category")
        assert invoice_row.get_by_label("Level: Partial").is_visible()
        assert invoice_row.get_by_text("plan step 1 of 4").is_visible()
        screenshot(page, f"control-overview-{width}")


def test_a_manager_changes_the_level_with_a_reason(signed_in, control_room):
    manager, invoices, _, _ = control_room
    page = signed_in(manager)
    page.goto(page.base_url + "/control/use-cases/invoices/")
    page.get_by_role("heading", name="Change the policy").wait_for()

    # The what-if follows the threshold as it moves.
    automated = page.locator("[data-whatif-automated]")
    page.get_by_label("Confidence threshold", exact=True).fill("0.5")
    at_half = automated.text_content()
    page.get_by_label("Confidence threshold", exact=True).fill("0.99")
    assert automated.text_content() != at_half
    assert page.locator("[data-whatif-threshold]").text_content() == "0.99"
    page.get_by_label("Confidence threshold", exact=True).fill("0.9")

    page.get_by_label("Full").check()
    assert "threshold is not used" in page.locator("[data-whatif-level]").text_content()
    page.get_by_role("button", name="Save as version").click()
    page.get_by_text("a reason is required").wait_for()  # refused without a reason
    assert policy_current(use_case=invoices).level == "partial"

    page.get_by_label("Assisted").check()
    page.get_by_label("Reason").fill("audits found three wrong automated items; back to assisted")
    page.get_by_role("button", name="Save as version").click()
    page.get_by_role("status").filter(has_text="Saved as version").wait_for()
    policy = policy_current(use_case=invoices)
    assert (policy.level, policy.changed_by) == ("assisted", manager)
    first_row = page.locator(".history-table tbody tr").first
    assert "audits found three wrong automated items" in first_row.text_content()
    assert "Partial → Assisted" in " ".join(first_row.text_content().split())
    assert page.url.endswith("/control/use-cases/invoices/")  # htmx swapped, no reload
    screenshot(page, "control-editor-1280")
    small = signed_in(manager, width=390)
    small.goto(page.base_url + "/control/use-cases/invoices/")
    small.get_by_role("heading", name="Change the policy").wait_for()
    screenshot(small, "control-editor-390")


def test_a_manager_restores_an_earlier_version_with_a_reason(signed_in, control_room):
    manager, invoices, _, _ = control_room
    policy_change(use_case=invoices, actor=manager, changes={"level": "full"}, reason="try full")
    page = signed_in(manager)
    page.goto(page.base_url + "/control/use-cases/invoices/")
    page.get_by_role("button", name="Restore version 3").click()
    dialog = page.get_by_role("dialog", name="Restore an earlier policy version?")
    assert "level Full → Partial" in dialog.text_content()
    dialog.get_by_label("Why?").fill("full automated two wrong refunds")
    dialog.get_by_role("button", name="Restore").click()
    page.get_by_role("status").filter(has_text="Version 3 restored").wait_for()
    policy = policy_current(use_case=invoices)
    assert (policy.level, policy.restored_from.version) == ("partial", 3)
    assert policy.reason == "full automated two wrong refunds"
    assert "restores v3" in page.locator(".history-table tbody tr").first.text_content()

    # Starting a ramp plan says how far the traffic drops before it does.
    ramp_plan_cancel(use_case=invoices, actor=manager, reason="start over")
    page.goto(page.base_url + "/control/use-cases/invoices/ramp/")
    page.get_by_label("Steps").fill("1, 10, 100")
    page.get_by_role("button", name="Start at the first step").click()
    dialog = page.get_by_role("dialog", name="Start the ramp plan?")
    assert dialog.locator(".effect").text_content() == (
        "Traffic on the model drops from 100% to 1% now, then 10% → 100%, one step after each "
        "500 reviewed items, while every guardrail holds."
    )
    assert dialog.get_by_role("button", name="Start the plan").is_disabled()
    dialog.get_by_label("Why?").fill("new threshold: start small again")
    dialog.get_by_role("button", name="Start the plan").click()
    page.get_by_role("status").filter(has_text="Ramp plan started").wait_for()
    assert policy_current(use_case=invoices).traffic_percent == 1


def test_promoting_a_model_says_what_changes_and_needs_a_reason(signed_in, control_room):
    manager, invoices, _, _ = control_room
    for width in (1280, 390):
        page = signed_in(manager, width=width)
        page.goto(page.base_url + "/control/use-cases/invoices/models/")
        page.get_by_role("button", name="Promote").click()
        dialog = page.get_by_role("dialog", name="Make v2 the champion?")
        effect = dialog.locator(".effect").text_content()
        # 120 items arrived this week, about 17 a day; the model decided some of them alone.
        assert "v2 becomes champion of Invoice category" in effect
        # v2's confidences clear 0.90 on most items; the ramp puts 5% of traffic on the model.
        assert "about 1 item a day will be decided by it alone" in effect
        assert "(threshold 0.90, 5% of traffic), out of about 17 arriving" in effect
        confirm = dialog.get_by_role("button", name="Promote v2")
        assert confirm.is_disabled()
        dialog.get_by_label("Why?").fill("   ")
        assert confirm.is_disabled()
        screenshot(page, f"control-promote-dialog-{width}")
    dialog.get_by_label("Why?").fill("v2 beats v1 on a week of shadow scoring")
    confirm.click()
    page.get_by_role("status").filter(has_text="v2 is the champion").wait_for()
    event = ModelVersionEvent.objects.filter(action="promote").order_by("-id").first()
    assert (event.model_version.version, event.reason) == (
        "v2",
        "v2 beats v1 on a week of shadow scoring",
    )


def test_a_backtest_is_started_and_its_curve_drawn(signed_in, control_room):
    manager, invoices, _, _ = control_room
    page = signed_in(manager)
    page.goto(page.base_url + "/control/use-cases/invoices/backtests/")
    page.get_by_label("Model version", exact=True).select_option("v2")
    page.get_by_role("button", name="Start the backtest").click()
    page.get_by_role("heading", name="Backtest of v2").wait_for()
    page.locator("[data-figure=tradeoff-figure] .main-svg").first.wait_for()
    page.locator("[data-figure=threshold-figure] .main-svg").first.wait_for()
    assert page.get_by_text("current threshold 0.9").count() >= 1  # the legend of the marker
    assert page.get_by_role("heading", name="Replay through the current policy").is_visible()
    screenshot(page, "control-backtest-curve-1280")
    small = signed_in(manager, width=390)
    small.goto(page.url)
    small.locator("[data-figure=tradeoff-figure] .main-svg").first.wait_for()
    screenshot(small, "control-backtest-curve-390")


def test_the_other_pages_render_for_screenshots(signed_in, control_room):
    manager, invoices, claims, _ = control_room
    for width in (1280, 390):
        page = signed_in(manager, width=width)
        page.goto(page.base_url + "/control/use-cases/claims/guardrails/")
        page.get_by_role("heading", name="Breaches").wait_for()
        screenshot(page, f"control-guardrails-{width}")
        page.goto(page.base_url + "/control/use-cases/invoices/ramp/")
        page.get_by_role("heading", name="Ramp plan").first.wait_for()
        screenshot(page, f"control-ramp-{width}")
        page.goto(page.base_url + "/control/use-cases/invoices/models/")
        page.locator("[data-figure=calibration-figure] .main-svg").first.wait_for()
        page.locator("table.differences tbody a").first.click()
        page.locator("#item-panel .item-detail").wait_for()
        screenshot(page, f"control-models-{width}")


def test_a_second_manager_approves_a_held_change_from_the_banner(signed_in, control_room):
    manager, invoices, _, _ = control_room
    asker = make_user(Role.MANAGER, "mark")
    invoices.memberships.create(user=asker)
    use_case_update(use_case=invoices, changes={"four_eyes": True})
    held = policy_change_or_request(
        use_case=invoices, actor=asker, changes={"level": "full"}, reason="audits are clean"
    )
    assert policy_current(use_case=invoices).level == "partial"
    for width in (390, 1280):
        page = signed_in(manager, width=width)
        page.goto(page.base_url + "/control/use-cases/invoices/")
        banner = page.get_by_role("region", name="Changes waiting for approval")
        assert "asked by mark" in banner.text_content() and "level → full" in banner.text_content()
        screenshot(page, f"control-change-request-{width}")
    banner.get_by_role("button", name="Approve").click()
    dialog = page.get_by_role("dialog", name="Approve this change?")
    dialog.get_by_label("Why?").fill("checked the audit sample")
    dialog.get_by_role("button", name="Approve and apply").click()
    page.get_by_role("status").filter(has_text="Approved and applied").wait_for()
    policy = policy_current(use_case=invoices)
    assert (policy.level, policy.changed_by) == ("full", manager)
    assert held.decision.reason == "checked the audit sample"
    assert page.get_by_role("region", name="Changes waiting for approval").count() == 0


def test_the_cost_curve_and_the_recommendation_on_the_policy_page(signed_in, control_room):
    manager, invoices, _, _ = control_room
    use_case_update(
        use_case=invoices,
        changes={"error_cost": 40.0, "review_minutes": 2.0, "hourly_cost": 30.0},
    )
    for width in (1280, 390):
        page = signed_in(manager, width=width)
        page.goto(page.base_url + "/control/use-cases/invoices/")
        section = page.locator("#costs")
        section.get_by_role("heading", name="What each threshold costs").wait_for()
        section.locator("[data-figure=cost-figure] .main-svg").first.wait_for()
        assert section.get_by_text("recommended (").count() >= 1  # the marker's legend entry
        advice = section.locator(".recommendation").inner_text()
        assert "Recommended:" in advice and " a day (errors " in advice
        # The page never scrolls sideways, even at phone width.
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        screenshot(page, f"control-costs-{width}")
        section.locator("details.cost-settings summary").click()
        section.screenshot(path=str(ARTIFACTS / f"control-costs-section-{width}.png"))
        # The what-if prices the threshold being typed, before anything is saved.
        page.locator("#confidence_threshold").fill("0.5")
        cost_line = page.locator("[data-whatif-cost]")
        assert cost_line.inner_text().startswith("Expected cost at 0.50: ")
        assert " reviews a day" in cost_line.inner_text()
        page.goto(page.base_url + "/control/use-cases/invoices/")
        recommended = page.locator("#costs [data-recommended-threshold]")
        if recommended.count():  # the recommendation is not the current threshold
            saving = page.locator("#costs .cost-saving").inner_text()
            assert saving.startswith(("That is ", "It costs ")) and saving.endswith("now.")
            value = recommended.get_attribute("data-recommended-threshold")
            recommended.click()
            assert page.locator("#confidence_threshold").input_value() == f"{float(value):g}"
            assert "least expected cost" in page.locator("#reason").input_value()
            assert policy_current(use_case=invoices).confidence_threshold == 0.9  # not applied
