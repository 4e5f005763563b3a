"""Ramp plans: start one, follow its steps, pause, resume or cancel it."""

from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from deployments.policy.ramp import step_requirements
from deployments.selectors import (
    ramp_plan_open,
    ramp_plans_latest,
    use_case_get_for,
)
from reviewapp.control.confirmations import ramp_pause_effect
from reviewapp.control.forms import (
    RampForm,
)
from reviewapp.control.ramp_plans import (
    ramp_plan_cancel,
    ramp_plan_pause,
    ramp_plan_resume,
    ramp_plan_spec,
    ramp_plan_start,
    ramp_progress,
)
from reviewapp.control.views.shared import flat_errors, page_or_part, use_case_header
from reviewapp.core.api import MANAGERS
from reviewapp.core.errors import Conflict, InvalidInput
from reviewapp.core.pages import page


def _ramp_context(request, use_case, *, form=None, errors=None) -> dict:
    context = use_case_header(request, use_case)
    plan = ramp_plan_open(use_case=use_case)
    progress, waiting, steps = None, [], []
    if plan is not None:
        progress = ramp_progress(plan=plan, use_case=use_case, now=timezone.now())
        waiting = step_requirements(plan=ramp_plan_spec(plan), progress=progress)
        steps = [
            {
                "number": index + 1,
                "percent": percent,
                "state": "done"
                if index < plan.current_step
                else ("current" if index == plan.current_step else "next"),
            }
            for index, percent in enumerate(plan.steps)
        ]
    context.update(
        pause_effect=ramp_pause_effect(plan) if plan is not None else "",
        plan=plan,
        progress=progress,
        waiting=waiting,
        steps=steps,
        plans=ramp_plans_latest(use_case=use_case),
        form=form or {"steps": "1, 5, 25, 50, 100", "items": "500", "hours": "", "reason": ""},
        errors=errors or {},
    )
    return context


@require_http_methods(["GET", "POST"])
@page(roles=MANAGERS)
def ramp_page(request, slug):
    use_case = use_case_get_for(user=request.user, slug=slug)
    if request.method == "GET":
        return page_or_part(request, "control/ramp.html", "plan", _ramp_context(request, use_case))
    form = RampForm(request.POST)
    errors = form.errors_by_field()
    if not errors:
        try:
            ramp_plan_start(
                use_case=use_case,
                actor=request.user,
                steps=form.cleaned_data["steps"],
                advance_after_items=form.cleaned_data["items"],
                advance_after_seconds=form.advance_after_seconds(),
                reason=form.cleaned_data["reason"],
            )
        except InvalidInput as exc:
            errors = flat_errors(exc.detail)
            if "advance_after_items" in errors:
                errors["items"] = errors.pop("advance_after_items")
            if "advance_after_seconds" in errors:
                errors["hours"] = ["at least one minute (0.017 h)"]
        except Conflict as exc:
            errors = {"non_field_errors": [exc.detail["detail"]]}
        else:
            messages.success(request, "Ramp plan started.")
            return redirect("control-ramp", slug=slug)
    context = _ramp_context(request, use_case, form=form.values(), errors=errors)
    return page_or_part(
        request, "control/ramp.html", "plan", context, status=200 if request.htmx else 400
    )


RAMP_ACTIONS = {"pause": ramp_plan_pause, "resume": ramp_plan_resume, "cancel": ramp_plan_cancel}


@require_POST
@page(roles=MANAGERS)
def ramp_action(request, slug, action):
    use_case = use_case_get_for(user=request.user, slug=slug)
    service = RAMP_ACTIONS.get(action)
    if service is None:
        raise Http404("no such action")
    reason = request.POST.get("reason", "").strip()
    if action == "pause" and not reason:
        # Pausing holds traffic where it is for as long as nobody resumes: say why.
        messages.error(request, "Say why you pause the plan: a reason is required.")
    else:
        try:
            service(use_case=use_case, actor=request.user, reason=reason)
        except Conflict as exc:
            messages.info(request, exc.detail["detail"])
    if request.htmx:
        return page_or_part(request, "control/ramp.html", "plan", _ramp_context(request, use_case))
    return redirect("control-ramp", slug=slug)
