"""The policy editor and its history, and the guardrails a policy carries."""

from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from deployments.models import ChangeRequest
from deployments.policy.guardrails import FALLBACK_LEVELS, KINDS
from deployments.selectors import (
    backtest_latest,
    breaches_list,
    champion_get,
    change_requests_list,
    guardrail_status_get,
    policy_current,
    policy_history,
    use_case_get_for,
)
from deployments.services.change_requests import (
    policy_change_or_request,
    policy_restore_or_request,
)
from deployments.services.policies import policy_change
from reviewapp.control.confirmations import recent_traffic, restore_effect
from reviewapp.control.costs import cost_view
from reviewapp.control.forms import (
    GuardrailsForm,
    PolicyForm,
)
from reviewapp.control.guardrail_watch import guardrail_breach_resolve, use_case_watch
from reviewapp.control.presenters import (
    LEVEL_HELP,
    LEVELS,
    guardrail_form_rows,
    policy_history_rows,
    whatif_at,
    whatif_curve,
)
from reviewapp.control.views.shared import flat_errors, page_or_part, use_case_header
from reviewapp.core.api import MANAGERS
from reviewapp.core.errors import Conflict, InvalidInput, NotFound
from reviewapp.core.pages import page

HISTORY_SHOWN = 30


# --- policy editor -----------------------------------------------------------------------------


def _whatif_job(use_case):
    """The backtest the what-if reads: the champion's latest, else the latest of any."""
    champion = champion_get(use_case=use_case)
    job = None
    if champion is not None:
        job = backtest_latest(use_case=use_case, model_version=champion.version)
    return job or backtest_latest(use_case=use_case)


def _policy_context(request, use_case, *, form=None, errors=None, notice="") -> dict:
    context = use_case_header(request, use_case)
    policy = context["policy"]
    show_all = request.GET.get("history") == "all"
    history = list(policy_history(use_case=use_case))
    job = _whatif_job(use_case)
    curve = whatif_curve(job)
    costs = cost_view(use_case=use_case, policy=policy, job=job if curve else None)
    values = form or {
        "level": policy.level,
        "confidence_threshold": f"{policy.confidence_threshold:g}",
        "traffic_percent": f"{policy.traffic_percent:g}",
        "audit_rate": f"{policy.audit_rate * 100:.6g}",
        "double_review_rate": f"{policy.double_review_rate * 100:.6g}",
        "reason": "",
    }
    proposed = _proposed_threshold(request) if form is None else None
    if proposed is not None:  # from the cost section's "put it in the form"
        values = {
            **values,
            "confidence_threshold": f"{proposed:g}",
            "reason": f"threshold {proposed:g}: the least expected cost a day (cost curve)",
        }
    try:
        threshold = float(values.get("confidence_threshold"))
    except (TypeError, ValueError):
        threshold = None
    context.update(
        levels=LEVELS,
        form=values,
        errors=errors or {},
        notice=notice,
        history=_with_restore_effects(
            policy_history_rows(history)[: None if show_all else HISTORY_SHOWN],
            current=policy,
            traffic=recent_traffic(use_case=use_case),
        ),
        history_hidden=max(0, len(history) - HISTORY_SHOWN) if not show_all else 0,
        policy_requests=[
            r
            for r in change_requests_list(use_case=use_case)
            if r.kind == ChangeRequest.Kind.POLICY
        ][:HISTORY_SHOWN],
        whatif_now=whatif_at(curve, threshold) if curve and threshold is not None else None,
        costs=costs,
    )
    if curve and costs.costs:  # the what-if reads each threshold's daily cost as it moves
        curve = {
            **curve,
            "cost": {
                "total": costs.costs.total,
                "errors": costs.costs.error_cost,
                "reviews": costs.costs.review_cost,
                "human": costs.costs.human_per_day,
                "capacity": costs.settings.capacity_per_day,
            },
        }
    context["whatif"] = curve
    return context


def _proposed_threshold(request) -> float | None:
    try:
        value = float(request.GET.get("threshold", ""))
    except ValueError:
        return None
    return value if 0 <= value <= 1 else None


def _with_restore_effects(rows: list[dict], *, current, traffic) -> list[dict]:
    """Each earlier version's row says what restoring it would change."""
    for row in rows:
        if row["policy"].version != current.version:
            row["restore"] = restore_effect(current=current, earlier=row["policy"], traffic=traffic)
    return rows


@require_GET
@page(roles=MANAGERS)
def policy_page(request, slug):
    use_case = use_case_get_for(user=request.user, slug=slug)
    return render(request, "control/policy.html", _policy_context(request, use_case))


@require_POST
@page(roles=MANAGERS)
def policy_change_view(request, slug):
    use_case = use_case_get_for(user=request.user, slug=slug)
    form = PolicyForm(request.POST)
    errors = form.errors_by_field()
    if not errors:
        changes = form.changes()
        current = policy_current(use_case=use_case)
        if all(getattr(current, k) == v for k, v in changes.items()):
            errors["non_field_errors"] = [
                f"Nothing changed: these are the values of version {current.version}."
            ]
    if not errors:
        try:
            policy = policy_change_or_request(
                use_case=use_case,
                actor=request.user,
                changes=changes,
                reason=form.cleaned_data["reason"],
            )
        except InvalidInput as exc:
            errors = flat_errors(exc.detail)
        else:
            if isinstance(policy, ChangeRequest):
                notice = "Four-eyes: the change waits for a second manager's approval."
            else:
                notice = f"Saved as version {policy.version}."
            if not request.htmx:
                messages.success(request, notice)
                return redirect("control-policy", slug=slug)
            context = _policy_context(request, use_case, notice=notice)
            return page_or_part(request, "control/policy.html", "panel", context)
    context = _policy_context(request, use_case, form=form.values(), errors=errors)
    return page_or_part(
        request, "control/policy.html", "panel", context, status=200 if request.htmx else 400
    )


@require_POST
@page(roles=MANAGERS)
def policy_restore_view(request, slug, version):
    use_case = use_case_get_for(user=request.user, slug=slug)
    try:
        policy = policy_restore_or_request(
            use_case=use_case,
            version=version,
            actor=request.user,
            reason=(request.POST.get("reason") or "").strip(),
        )
    except NotFound as exc:
        raise Http404(str(exc.detail)) from exc
    except InvalidInput as exc:
        if "reason" not in exc.detail:
            raise Http404(str(exc.detail)) from exc
        if not request.htmx:
            messages.error(request, "Say why you restore this version: a reason is required.")
            return redirect("control-policy", slug=slug)
        return page_or_part(
            request,
            "control/policy.html",
            "panel",
            _policy_context(request, use_case, errors=flat_errors(exc.detail)),
            status=400,
        )
    if isinstance(policy, ChangeRequest):
        notice = f"Four-eyes: restoring version {version} waits for a second manager's approval."
    else:
        notice = f"Version {version} restored as version {policy.version}."
    if not request.htmx:
        messages.success(request, notice)
        return redirect("control-policy", slug=slug)
    return page_or_part(
        request,
        "control/policy.html",
        "panel",
        _policy_context(request, use_case, notice=notice),
    )


# --- guardrails --------------------------------------------------------------------------------


def _guardrails_context(request, use_case, *, guardrails=None, errors=None, notice="") -> dict:
    context = use_case_header(request, use_case)
    status = guardrail_status_get(use_case=use_case)
    configured = context["policy"].guardrails if guardrails is None else guardrails
    context.update(
        rows=guardrail_form_rows(configured, status.readings if status else {}),
        fallback=configured.get("fallback_level", "assisted"),
        fallback_levels=[(level.value, LEVEL_HELP[level]["title"]) for level in FALLBACK_LEVELS],
        webhook_url=configured.get("webhook_url", ""),
        status=status,
        readings=[
            (kind.name, status.readings[kind.name])
            for kind in KINDS
            if status and kind.name in status.readings
        ],
        breaches=breaches_list(use_case=use_case),
        errors=errors or {},
        notice=notice,
        reason=request.POST.get("reason", "") if errors else "",
    )
    return context


@require_http_methods(["GET", "POST"])
@page(roles=MANAGERS)
def guardrails_page(request, slug):
    use_case = use_case_get_for(user=request.user, slug=slug)
    if request.method == "GET":
        return render(request, "control/guardrails.html", _guardrails_context(request, use_case))
    form = GuardrailsForm(request.POST)
    errors = form.errors_by_field()
    guardrails = form.guardrails()
    if not errors:
        try:
            policy = policy_change(
                use_case=use_case,
                actor=request.user,
                changes={"guardrails": guardrails},
                reason=form.cleaned_data["reason"],
            )
        except InvalidInput as exc:
            errors = {
                _guardrail_field(name): problems
                for name, problems in flat_errors(exc.detail).items()
            }
        else:
            notice = f"Guardrails saved as policy version {policy.version}."
            if not request.htmx:
                messages.success(request, notice)
                return redirect("control-guardrails", slug=slug)
            context = _guardrails_context(request, use_case, notice=notice)
            return page_or_part(request, "control/guardrails.html", "settings", context)
    context = _guardrails_context(request, use_case, guardrails=guardrails, errors=errors)
    return page_or_part(
        request,
        "control/guardrails.html",
        "settings",
        context,
        status=200 if request.htmx else 400,
    )


def _guardrail_field(name: str) -> str:
    """``guardrails.override_rate.max`` -> the form's ``override_rate-max``."""
    parts = name.split(".")
    if parts[0] == "guardrails":
        parts = parts[1:]
    if len(parts) == 2:
        return f"{parts[0]}-{parts[1]}"
    return parts[0] if parts else name


@require_POST
@page(roles=MANAGERS)
def guardrails_check(request, slug):
    use_case = use_case_get_for(user=request.user, slug=slug)
    result = use_case_watch(use_case_id=use_case.pk)
    notice = (
        f"Breached: {'; '.join(b.detail for b in result.breaches)}"
        if result.breaches
        else "Checked just now."
    )
    if not request.htmx:
        messages.info(request, notice)
        return redirect("control-guardrails", slug=slug)
    context = _guardrails_context(request, use_case, notice=notice)
    return page_or_part(request, "control/guardrails.html", "settings", context)


@require_POST
@page(roles=MANAGERS)
def breach_resolve(request, slug, breach_id):
    use_case = use_case_get_for(user=request.user, slug=slug)
    try:
        guardrail_breach_resolve(
            use_case=use_case,
            breach_id=breach_id,
            actor=request.user,
            note=request.POST.get("note", ""),
        )
        messages.success(request, "Breach resolved. The level stays where it is.")
    except Conflict as exc:
        messages.info(request, exc.detail["detail"])
    return redirect("control-guardrails", slug=slug)
