"""Model versions: upload, challenge, promote, retire, roll back, compare, and one item's
predictions side by side."""

from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from deployments.models import ChangeRequest, ModelVersion
from deployments.selectors import (
    can_view_pii,
    change_requests_list,
    model_history,
    model_versions_list,
    use_case_get_for,
)
from deployments.services.change_requests import model_promote_or_request
from deployments.services.model_uploads import model_upload_read, reference_upload_read
from deployments.services.model_versions import (
    model_version_challenge,
    model_version_register,
    model_version_retire,
    model_version_rollback,
)
from reviewapp.control.comparison import SHOW_CHOICES, differences_shown, model_comparison
from reviewapp.control.confirmations import (
    challenge_effect,
    promote_effect,
    recent_traffic,
    rollback_effect,
)
from reviewapp.control.forms import (
    ModelUploadForm,
)
from reviewapp.control.item_detail import item_detail
from reviewapp.control.presenters import (
    calibration_figure,
)
from reviewapp.control.views.shared import flat_errors, page_or_part, use_case_header
from reviewapp.core.api import MODEL_OWNERS
from reviewapp.core.errors import Conflict, InvalidInput
from reviewapp.core.pages import page

DIFFERENCES_PER_PAGE = 25


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
    context = use_case_header(request, use_case)
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
        model_events=model_history(use_case=use_case),
        promote_requests=[
            r
            for r in change_requests_list(use_case=use_case)
            if r.kind == ChangeRequest.Kind.PROMOTE
        ][:30],
        **_effects(use_case, context["policy"], versions),
        upload=form or {"version": "", "notes": ""},
        errors=errors or {},
    )
    return context


def _effects(use_case, policy, versions) -> dict:
    """What each confirmation dialog on the page says will happen."""
    traffic = recent_traffic(use_case=use_case)
    champion = next((v for v in versions if v.role == ModelVersion.Role.CHAMPION), None)
    return {
        "version_rows": [
            {
                "version": v,
                "promote": promote_effect(
                    use_case=use_case, policy=policy, model_version=v, traffic=traffic
                ),
                "challenge": challenge_effect(version=v.version, traffic=traffic),
            }
            for v in versions
        ],
        "rollback_effect": rollback_effect(
            use_case=use_case, policy=policy, champion=champion, traffic=traffic
        ),
    }


@require_http_methods(["GET", "POST"])
@page(roles=MODEL_OWNERS)
def models_page(request, slug):
    use_case = use_case_get_for(user=request.user, slug=slug)
    if request.method == "GET":
        partial = "comparison" if request.GET.get("partial") == "comparison" else None
        return page_or_part(
            request, "control/models.html", partial, _models_context(request, use_case)
        )
    form = ModelUploadForm(request.POST, request.FILES)
    errors = form.errors_by_field()
    if not errors:
        data = form.cleaned_data
        try:
            model_version = model_version_register(
                use_case=use_case,
                version=data["version"],
                data=model_upload_read(upload=data["file"]),
                actor=request.user,
                reference=reference_upload_read(upload=data["reference"]),
                notes=data["notes"],
            )
        except InvalidInput as exc:
            errors = flat_errors(exc.detail)
        else:
            messages.success(
                request, f"Version {model_version.version} registered as {model_version.role}."
            )
            return redirect("control-models", slug=slug)
    context = _models_context(request, use_case, form=form.values(), errors=errors)
    return render(request, "control/models.html", context, status=400)


MODEL_ACTIONS = {
    "challenge": (model_version_challenge, "{} now scores every new item in shadow."),
    "promote": (model_promote_or_request, "{} is the champion."),
    "retire": (model_version_retire, "{} is retired."),
}


@require_POST
@page(roles=MODEL_OWNERS)
def model_action(request, slug, version, action):
    use_case = use_case_get_for(user=request.user, slug=slug)
    if action not in MODEL_ACTIONS:
        raise Http404("no such action")
    service, done = MODEL_ACTIONS[action]
    try:
        result = service(
            use_case=use_case,
            version=version,
            actor=request.user,
            reason=request.POST.get("reason", ""),
        )
        if isinstance(result, ChangeRequest):
            done = "Four-eyes: promoting {} waits for a second manager's approval."
        messages.success(request, done.format(version))
    except (Conflict, InvalidInput) as exc:
        messages.error(request, "; ".join(flat_errors(exc.detail).popitem()[1]))
    return redirect("control-models", slug=slug)


@require_POST
@page(roles=MODEL_OWNERS)
def model_rollback(request, slug):
    use_case = use_case_get_for(user=request.user, slug=slug)
    try:
        champion = model_version_rollback(
            use_case=use_case, actor=request.user, reason=request.POST.get("reason", "")
        )
        messages.success(request, f"Rolled back: {champion.version} is the champion again.")
    except (Conflict, InvalidInput) as exc:
        messages.error(request, "; ".join(flat_errors(exc.detail).popitem()[1]))
    return redirect("control-models", slug=slug)


@require_GET
@page(roles=MODEL_OWNERS)
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
    context = use_case_header(request, use_case)
    context.update(
        detail=detail,
        show=show,
        compared_names=[v.version for v in compared],
        position=position,
        total=len(order),
        previous=order[position - 1] if position else None,
        next=order[position + 1] if position is not None and position + 1 < len(order) else None,
    )
    return page_or_part(request, "control/item.html", "detail", context)
