"""The control room's pages: the spectrum overview, the policy editor and its history,
guardrails, ramp plans, model versions and their comparison, backtests.

Function views; with htmx they render a ``{% partialdef %}`` of the page, without it the whole
page, and every action also works as a plain POST followed by a redirect.
"""

from datetime import datetime
from functools import wraps
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from deployments.backtests import ROUTES, backtest_start, backtest_window_default
from deployments.comparison import SHOW_CHOICES, differences_shown, model_comparison
from deployments.guardrail_watch import guardrail_breach_resolve, use_case_watch
from deployments.item_detail import item_detail
from deployments.models import ModelVersion
from deployments.overview import spectrum_overview
from deployments.policy.guardrails import FALLBACK_LEVELS, KINDS, RATE_TEST_KEYS
from deployments.policy.ramp import step_requirements
from deployments.presenters import (
    LEVEL_HELP,
    LEVELS,
    backtest_accuracy,
    calibration_figure,
    guardrail_form_rows,
    policy_history_rows,
    threshold_figure,
    tradeoff_figure,
    whatif_at,
    whatif_curve,
)
from deployments.ramp_plans import (
    ramp_plan_cancel,
    ramp_plan_pause,
    ramp_plan_resume,
    ramp_plan_spec,
    ramp_plan_start,
    ramp_progress,
)
from deployments.readiness import readiness_get, slice_features, slices_get
from deployments.selectors import (
    backtest_get,
    backtest_latest,
    backtests_list,
    breaches_list,
    breaches_open,
    can_view_pii,
    champion_get,
    guardrail_status_get,
    model_roles_for,
    model_versions_list,
    policy_current,
    policy_history,
    ramp_plan_open,
    ramp_plans_latest,
    use_case_get_for,
    use_cases_visible_to,
)
from deployments.services.model_uploads import model_upload_read, reference_upload_read
from deployments.services.model_versions import (
    model_version_challenge,
    model_version_promote,
    model_version_register,
    model_version_retire,
    model_version_rollback,
)
from deployments.services.policies import POLICY_FIELDS, policy_change, policy_restore
from reviewapp.core.api import MANAGERS, MODEL_OWNERS, datetime_param
from reviewapp.core.errors import Conflict, InvalidInput, NotFound
from reviewapp.core.roles import user_roles

HISTORY_SHOWN = 30
DIFFERENCES_PER_PAGE = 25


def roles_required(allowed):
    """Admit signed-in users with one of ``allowed`` roles (403 otherwise); a use case the
    user may not see is a 404, like a missing one."""

    def decorator(view):
        @login_required
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            if not user_roles(request.user) & allowed:
                raise PermissionDenied
            try:
                return view(request, *args, **kwargs)
            except NotFound as exc:
                raise Http404(str(exc.detail)) from exc

        return wrapped

    return decorator


def _flat_errors(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """A service's field errors as ``{"guardrails.override_rate.max": [...]}``."""
    if isinstance(detail, dict):
        flat: dict[str, list[str]] = {}
        for key, inner in detail.items():
            flat.update(_flat_errors(inner, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    if isinstance(detail, list) and all(isinstance(x, str) for x in detail):
        return {prefix or "non_field_errors": detail}
    return {prefix or "non_field_errors": [str(detail)]}


def _number(post, name: str, errors: dict, *, scale: float = 1.0, required=True) -> float | None:
    raw = (post.get(name) or "").strip()
    if raw == "":
        if required:
            errors[name] = ["required"]
        return None
    try:
        return float(raw) / scale
    except ValueError:
        errors[name] = ["must be a number"]
        return None


def _whole(post, name: str, errors: dict) -> int | None:
    raw = (post.get(name) or "").strip()
    if raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        errors[name] = ["must be a whole number"]
        return None


def _page(request, template: str, partial: str | None, context: dict, status: int = 200):
    name = f"{template}#{partial}" if partial and request.htmx else template
    return render(request, name, context, status=status)


def _header(request, use_case) -> dict:
    roles = user_roles(request.user)
    return {
        "use_case": use_case,
        "policy": policy_current(use_case=use_case),
        "is_manager": bool(roles & MANAGERS),
        "open_breaches": list(breaches_open(use_cases=[use_case])),
    }


# --- overview ----------------------------------------------------------------------------------


@require_GET
@roles_required(MANAGERS)
def overview(request):
    rows = spectrum_overview(use_cases=use_cases_visible_to(request.user))
    breaches = [breach for row in rows for breach in row.breaches]
    return render(
        request,
        "deployments/overview.html",
        {"rows": rows, "levels": LEVELS, "open_breaches": breaches, "is_manager": True},
    )


@require_GET
@roles_required(MODEL_OWNERS)
def models_index(request):
    use_cases = list(use_cases_visible_to(request.user).order_by("name"))
    roles = model_roles_for(use_cases)
    rows = [
        {"use_case": uc, **roles.get(uc.pk, {"champion": [], "challenger": []})} for uc in use_cases
    ]
    return render(request, "deployments/models_index.html", {"rows": rows})


# --- policy editor -----------------------------------------------------------------------------


def _whatif(use_case) -> dict | None:
    champion = champion_get(use_case=use_case)
    job = None
    if champion is not None:
        job = backtest_latest(use_case=use_case, model_version=champion.version)
    return whatif_curve(job or backtest_latest(use_case=use_case))


def _policy_context(request, use_case, *, form=None, errors=None, notice="") -> dict:
    context = _header(request, use_case)
    policy = context["policy"]
    show_all = request.GET.get("history") == "all"
    history = list(policy_history(use_case=use_case))
    curve = _whatif(use_case)
    values = form or {
        "level": policy.level,
        "confidence_threshold": f"{policy.confidence_threshold:g}",
        "traffic_percent": f"{policy.traffic_percent:g}",
        "audit_rate": f"{policy.audit_rate * 100:.6g}",
        "double_review_rate": f"{policy.double_review_rate * 100:.6g}",
        "reason": "",
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
        history=policy_history_rows(history)[: None if show_all else HISTORY_SHOWN],
        history_hidden=max(0, len(history) - HISTORY_SHOWN) if not show_all else 0,
        whatif=curve,
        whatif_now=whatif_at(curve, threshold) if curve and threshold is not None else None,
    )
    return context


@require_GET
@roles_required(MANAGERS)
def policy_page(request, slug):
    use_case = use_case_get_for(user=request.user, slug=slug)
    return render(request, "deployments/policy.html", _policy_context(request, use_case))


def _policy_form(post) -> tuple[dict, dict, dict]:
    """(values to show again, changes for policy_change, errors by field)."""
    errors: dict[str, list[str]] = {}
    form = {name: post.get(name, "") for name in ("level", "reason")}
    changes: dict[str, Any] = {"level": form["level"]}
    for name, scale in (
        ("confidence_threshold", 1),
        ("traffic_percent", 1),
        ("audit_rate", 100),
        ("double_review_rate", 100),
    ):
        form[name] = post.get(name, "")
        value = _number(post, name, errors, scale=scale)
        if value is not None:
            changes[name] = value
    return form, changes, errors


@require_POST
@roles_required(MANAGERS)
def policy_change_view(request, slug):
    use_case = use_case_get_for(user=request.user, slug=slug)
    form, changes, errors = _policy_form(request.POST)
    current = policy_current(use_case=use_case)
    if not errors and all(getattr(current, k) == v for k, v in changes.items()):
        errors["non_field_errors"] = [
            f"Nothing changed: these are the values of version {current.version}."
        ]
    if not errors:
        try:
            policy = policy_change(
                use_case=use_case, actor=request.user, changes=changes, reason=form["reason"]
            )
        except InvalidInput as exc:
            errors = _flat_errors(exc.detail)
        else:
            notice = f"Saved as version {policy.version}."
            if not request.htmx:
                messages.success(request, notice)
                return redirect("control-policy", slug=slug)
            context = _policy_context(request, use_case, notice=notice)
            return _page(request, "deployments/policy.html", "panel", context)
    context = _policy_context(request, use_case, form=form, errors=errors)
    return _page(
        request, "deployments/policy.html", "panel", context, status=200 if request.htmx else 400
    )


@require_POST
@roles_required(MANAGERS)
def policy_restore_view(request, slug, version):
    use_case = use_case_get_for(user=request.user, slug=slug)
    try:
        policy = policy_restore(
            use_case=use_case,
            version=version,
            actor=request.user,
            reason=(request.POST.get("reason") or "").strip(),
        )
    except InvalidInput as exc:
        raise Http404(str(exc.detail)) from exc
    notice = f"Version {version} restored as version {policy.version}."
    if not request.htmx:
        messages.success(request, notice)
        return redirect("control-policy", slug=slug)
    return _page(
        request,
        "deployments/policy.html",
        "panel",
        _policy_context(request, use_case, notice=notice),
    )


# --- guardrails --------------------------------------------------------------------------------


def _guardrails_form(post) -> tuple[dict, dict]:
    """(the guardrails JSON the form describes, parse errors by form field)."""
    errors: dict[str, list[str]] = {}
    guardrails: dict[str, Any] = {"fallback_level": post.get("fallback_level") or "assisted"}
    for kind in KINDS:
        if not post.get(f"{kind.name}-enabled"):
            continue
        limit: dict[str, Any] = {}
        maximum = _number(
            post, f"{kind.name}-max", errors, scale=100 if kind.is_rate else 1, required=True
        )
        if maximum is not None:
            limit["max"] = round(maximum, 10)
        for part in ("window", "min_sample"):
            value = _whole(post, f"{kind.name}-{part}", errors)
            if value is not None:
                limit[part] = value
        for part in RATE_TEST_KEYS if kind.is_rate else ():
            value = _number(post, f"{kind.name}-{part}", errors, scale=100, required=False)
            if value is not None:
                limit[part] = round(value, 10)
        guardrails[kind.name] = limit
    webhook = (post.get("webhook_url") or "").strip()
    if webhook:
        guardrails["webhook_url"] = webhook
    if len(guardrails) == 1 and "webhook_url" not in guardrails:
        guardrails = {}  # no limit, no webhook: no guardrails (the fallback alone means nothing)
    return guardrails, errors


def _guardrails_context(request, use_case, *, guardrails=None, errors=None, notice="") -> dict:
    context = _header(request, use_case)
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
@roles_required(MANAGERS)
def guardrails_page(request, slug):
    use_case = use_case_get_for(user=request.user, slug=slug)
    if request.method == "GET":
        return render(
            request, "deployments/guardrails.html", _guardrails_context(request, use_case)
        )
    guardrails, errors = _guardrails_form(request.POST)
    if not errors:
        try:
            policy = policy_change(
                use_case=use_case,
                actor=request.user,
                changes={"guardrails": guardrails},
                reason=request.POST.get("reason", ""),
            )
        except InvalidInput as exc:
            errors = {
                _guardrail_field(name): problems
                for name, problems in _flat_errors(exc.detail).items()
            }
        else:
            notice = f"Guardrails saved as policy version {policy.version}."
            if not request.htmx:
                messages.success(request, notice)
                return redirect("control-guardrails", slug=slug)
            context = _guardrails_context(request, use_case, notice=notice)
            return _page(request, "deployments/guardrails.html", "settings", context)
    context = _guardrails_context(request, use_case, guardrails=guardrails, errors=errors)
    return _page(
        request,
        "deployments/guardrails.html",
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
@roles_required(MANAGERS)
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
    return _page(request, "deployments/guardrails.html", "settings", context)


@require_POST
@roles_required(MANAGERS)
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


# --- ramp plans --------------------------------------------------------------------------------


def _ramp_context(request, use_case, *, form=None, errors=None) -> dict:
    context = _header(request, use_case)
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
@roles_required(MANAGERS)
def ramp_page(request, slug):
    use_case = use_case_get_for(user=request.user, slug=slug)
    if request.method == "GET":
        return _page(request, "deployments/ramp.html", "plan", _ramp_context(request, use_case))
    form = {k: request.POST.get(k, "") for k in ("steps", "items", "hours", "reason")}
    errors: dict[str, list[str]] = {}
    try:
        steps = [float(s) for s in form["steps"].replace("%", "").replace("→", ",").split(",")]
    except ValueError:
        errors["steps"] = ["a list of percentages separated by commas, e.g. 1, 5, 25, 50, 100"]
    items = _whole(request.POST, "items", errors)
    hours = _number(request.POST, "hours", errors, required=False)
    if not errors:
        try:
            ramp_plan_start(
                use_case=use_case,
                actor=request.user,
                steps=steps,
                advance_after_items=items,
                advance_after_seconds=None if hours is None else round(hours * 3600),
                reason=form["reason"],
            )
        except InvalidInput as exc:
            errors = _flat_errors(exc.detail)
            if "advance_after_items" in errors:
                errors["items"] = errors.pop("advance_after_items")
            if "advance_after_seconds" in errors:
                errors["hours"] = ["at least one minute (0.017 h)"]
        except Conflict as exc:
            errors = {"non_field_errors": [exc.detail["detail"]]}
        else:
            messages.success(request, "Ramp plan started.")
            return redirect("control-ramp", slug=slug)
    context = _ramp_context(request, use_case, form=form, errors=errors)
    return _page(
        request, "deployments/ramp.html", "plan", context, status=200 if request.htmx else 400
    )


RAMP_ACTIONS = {"pause": ramp_plan_pause, "resume": ramp_plan_resume, "cancel": ramp_plan_cancel}


@require_POST
@roles_required(MANAGERS)
def ramp_action(request, slug, action):
    use_case = use_case_get_for(user=request.user, slug=slug)
    service = RAMP_ACTIONS.get(action)
    if service is None:
        raise Http404("no such action")
    try:
        service(use_case=use_case, actor=request.user, reason=request.POST.get("reason", ""))
    except Conflict as exc:
        messages.info(request, exc.detail["detail"])
    if request.htmx:
        return _page(request, "deployments/ramp.html", "plan", _ramp_context(request, use_case))
    return redirect("control-ramp", slug=slug)


# --- model versions ----------------------------------------------------------------------------


def _compared_versions(request, versions: list[ModelVersion]) -> list[ModelVersion]:
    chosen = request.GET.getlist("v")
    if chosen:
        by_name = {v.version: v for v in versions}
        picked = [by_name[name] for name in chosen if name in by_name]
        if picked:
            return picked
    roles = {ModelVersion.Role.CHAMPION: 0, ModelVersion.Role.CHALLENGER: 1}
    return sorted((v for v in versions if v.role in roles), key=lambda v: (roles[v.role], v.pk))


def _models_context(request, use_case, *, form=None, errors=None) -> dict:
    context = _header(request, use_case)
    versions = list(model_versions_list(use_case=use_case))
    compared = _compared_versions(request, versions)
    comparison = model_comparison(use_case=use_case, versions=compared)
    show = request.GET.get("show") if request.GET.get("show") in SHOW_CHOICES else "any"
    differences = differences_shown(comparison, show)
    try:
        page = max(1, int(request.GET.get("page", 1)))
    except ValueError:
        page = 1
    start = (page - 1) * DIFFERENCES_PER_PAGE
    context.update(
        versions=versions,
        compared=compared,
        compared_names=[v.version for v in compared],
        comparison=comparison,
        calibration=calibration_figure(comparison) if comparison.labelled else None,
        show=show,
        show_choices=SHOW_CHOICES,
        differences=differences[start : start + DIFFERENCES_PER_PAGE],
        differences_total=len(differences),
        page=page,
        pages=max(1, -(-len(differences) // DIFFERENCES_PER_PAGE)),
        can_rollback=any(v.role == ModelVersion.Role.RETIRED for v in versions),
        upload=form or {"version": "", "notes": ""},
        errors=errors or {},
    )
    return context


@require_http_methods(["GET", "POST"])
@roles_required(MODEL_OWNERS)
def models_page(request, slug):
    use_case = use_case_get_for(user=request.user, slug=slug)
    if request.method == "GET":
        partial = "comparison" if request.GET.get("partial") == "comparison" else None
        return _page(
            request, "deployments/models.html", partial, _models_context(request, use_case)
        )
    form = {"version": request.POST.get("version", ""), "notes": request.POST.get("notes", "")}
    errors: dict[str, list[str]] = {}
    upload = request.FILES.get("file")
    if upload is None:
        errors["file"] = ["choose a .skops file"]
    else:
        try:
            model_version = model_version_register(
                use_case=use_case,
                version=form["version"].strip(),
                data=model_upload_read(upload=upload),
                actor=request.user,
                reference=reference_upload_read(upload=request.FILES.get("reference")),
                notes=form["notes"],
            )
        except InvalidInput as exc:
            errors = _flat_errors(exc.detail)
        else:
            messages.success(
                request, f"Version {model_version.version} registered as {model_version.role}."
            )
            return redirect("control-models", slug=slug)
    context = _models_context(request, use_case, form=form, errors=errors)
    return render(request, "deployments/models.html", context, status=400)


MODEL_ACTIONS = {
    "challenge": (model_version_challenge, "{} now scores every new item in shadow."),
    "promote": (model_version_promote, "{} is the champion."),
    "retire": (model_version_retire, "{} is retired."),
}


@require_POST
@roles_required(MODEL_OWNERS)
def model_action(request, slug, version, action):
    use_case = use_case_get_for(user=request.user, slug=slug)
    if action not in MODEL_ACTIONS:
        raise Http404("no such action")
    service, done = MODEL_ACTIONS[action]
    try:
        service(
            use_case=use_case,
            version=version,
            actor=request.user,
            reason=request.POST.get("reason", ""),
        )
        messages.success(request, done.format(version))
    except Conflict as exc:
        messages.error(request, "; ".join(_flat_errors(exc.detail).popitem()[1]))
    return redirect("control-models", slug=slug)


@require_POST
@roles_required(MODEL_OWNERS)
def model_rollback(request, slug):
    use_case = use_case_get_for(user=request.user, slug=slug)
    try:
        champion = model_version_rollback(
            use_case=use_case, actor=request.user, reason=request.POST.get("reason", "")
        )
        messages.success(request, f"Rolled back: {champion.version} is the champion again.")
    except Conflict as exc:
        messages.error(request, exc.detail["detail"])
    return redirect("control-models", slug=slug)


@require_GET
@roles_required(MODEL_OWNERS)
def item_page(request, slug, external_id):
    use_case = use_case_get_for(user=request.user, slug=slug)
    detail = item_detail(
        use_case=use_case,
        external_id=external_id,
        show_pii=can_view_pii(user=request.user, use_case=use_case),
    )
    versions = list(model_versions_list(use_case=use_case))
    compared = _compared_versions(request, versions)
    show = request.GET.get("show") if request.GET.get("show") in SHOW_CHOICES else "any"
    order = [
        d.external_id
        for d in differences_shown(model_comparison(use_case=use_case, versions=compared), show)
    ]
    position = order.index(external_id) if external_id in order else None
    context = _header(request, use_case)
    context.update(
        detail=detail,
        show=show,
        compared_names=[v.version for v in compared],
        position=position,
        total=len(order),
        previous=order[position - 1] if position else None,
        next=order[position + 1] if position is not None and position + 1 < len(order) else None,
    )
    return _page(request, "deployments/item.html", "detail", context)


# --- backtests ---------------------------------------------------------------------------------


def _backtests_context(request, use_case, *, form=None, errors=None) -> dict:
    context = _header(request, use_case)
    versions = [
        v
        for v in model_versions_list(use_case=use_case)
        if v.source != ModelVersion.Source.EXTERNAL
    ]
    since, until = backtest_window_default()
    champion = next((v for v in versions if v.role == ModelVersion.Role.CHAMPION), None)
    context.update(
        versions=versions,
        jobs=backtests_list(use_case=use_case),
        form=form
        or {
            "model_version": champion.version if champion else "",
            "since": since.date().isoformat(),
            "until": "",
        },
        errors=errors or {},
    )
    return context


@require_http_methods(["GET", "POST"])
@roles_required(MODEL_OWNERS)
def backtests_page(request, slug):
    use_case = use_case_get_for(user=request.user, slug=slug)
    if request.method == "GET":
        return render(request, "deployments/backtests.html", _backtests_context(request, use_case))
    form = {k: request.POST.get(k, "") for k in ("model_version", "since", "until")}
    try:
        since = datetime_param(request.POST, "since")
        until = datetime_param(request.POST, "until")
        job = backtest_start(
            use_case=use_case,
            actor=request.user,
            model_version=form["model_version"],
            since=since,
            until=until,
        )
    except InvalidInput as exc:
        context = _backtests_context(request, use_case, form=form, errors=_flat_errors(exc.detail))
        return render(request, "deployments/backtests.html", context, status=400)
    return redirect("control-backtest", slug=slug, job_id=job.pk)


@require_GET
@roles_required(MODEL_OWNERS)
def backtest_page(request, slug, job_id):
    use_case = use_case_get_for(user=request.user, slug=slug)
    job = backtest_get(use_case=use_case, job_id=job_id)
    context = _header(request, use_case)
    threshold = context["policy"].confidence_threshold
    result = job.result if job.state == job.State.DONE else None
    context.update(
        job=job,
        since=datetime.fromisoformat(job.params["since"]) if job.params.get("since") else None,
        until=datetime.fromisoformat(job.params["until"]),
        result=result,
        percent=round(100 * job.done / job.total) if job.total else 0,
        tradeoff=tradeoff_figure(result, current_threshold=threshold) if result else None,
        by_threshold=threshold_figure(result, current_threshold=threshold) if result else None,
        at_threshold=whatif_at(whatif_curve(job), threshold) if result else None,
        accuracy=backtest_accuracy(result) if result else None,
        # In route order: the stored JSON's key order is not kept by PostgreSQL's jsonb.
        replay_rows=[
            (
                route,
                result["replay"]["routes_then"].get(route, 0),
                result["replay"]["routes_now"][route],
            )
            for route in ROUTES
        ]
        if result
        else [],
        fields=POLICY_FIELDS,
    )
    return _page(request, "deployments/backtest.html", "progress", context)


# --- graduation readiness ----------------------------------------------------------------------


@require_GET
@roles_required(MODEL_OWNERS)
def readiness_page(request, slug):
    """The verdict, and the slices of the feature in ``?feature=`` (htmx swaps the slices
    section alone; a bad feature is shown in it, as a 400 without htmx)."""
    use_case = use_case_get_for(user=request.user, slug=slug)
    feature = request.GET.get("feature") or ""
    context = _header(request, use_case)
    context.update(feature=feature, features=slice_features(use_case), errors={})
    status = 200
    try:
        if feature:
            sliced = slices_get(use_case=use_case, feature=feature)
            context.update(readiness=sliced.readiness, slices=sliced)
        else:
            context.update(readiness=readiness_get(use_case=use_case), slices=None)
    except InvalidInput as exc:
        context.update(readiness=readiness_get(use_case=use_case), slices=None, errors=exc.detail)
        status = 200 if request.htmx else 400
    return _page(request, "deployments/readiness.html", "slices", context, status=status)
