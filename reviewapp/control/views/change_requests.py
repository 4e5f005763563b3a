"""Four-eyes in the control room: the setting, and approving or rejecting what another manager
asked for."""

from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from deployments.models import UseCase
from deployments.selectors import use_case_get_for
from deployments.services.change_requests import change_request_approve, change_request_reject
from deployments.services.use_cases import use_case_update
from reviewapp.control.views.shared import flat_errors
from reviewapp.core.api import MANAGERS
from reviewapp.core.errors import DomainError
from reviewapp.core.pages import page

DECISIONS = {
    "approve": (change_request_approve, "Approved and applied."),
    "reject": (change_request_reject, "Rejected; nothing changed."),
}


def _back(request, slug):
    target = request.POST.get("next", "")
    if url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return redirect(target)
    return redirect("control-policy", slug=slug)


@require_POST
@page(roles=MANAGERS)
def change_request_decide(request, slug, request_id, action):
    use_case = use_case_get_for(user=request.user, slug=slug)
    if action not in DECISIONS:
        raise Http404("no such action")
    service, done = DECISIONS[action]
    try:
        service(
            use_case=use_case,
            request_id=request_id,
            actor=request.user,
            reason=request.POST.get("reason", ""),
        )
    except DomainError as exc:
        detail = exc.detail
        if isinstance(detail, dict):
            detail = " ".join(str(v[0] if isinstance(v, list) else v) for v in detail.values())
        messages.error(request, str(detail))
    else:
        messages.success(request, done)
    return _back(request, slug)


def _setting_save(request, slug, *, said: str, field: str = "", value=None, changes=None):
    """Save one of the use case's settings (``field``, ``value``) or several (``changes``) from
    the policy page; a refused value is shown there as the service words it."""
    use_case = use_case_get_for(user=request.user, slug=slug)
    try:
        use_case_update(use_case=use_case, changes=changes or {field: value})
    except DomainError as bad:
        messages.error(request, "; ".join(flat_errors(bad.detail).popitem()[1]))
    else:
        messages.success(request, said)
    return redirect("control-policy", slug=slug)


@require_POST
@page(roles=MANAGERS)
def four_eyes_set(request, slug):
    on = request.POST.get("four_eyes") == "on"
    said = (
        "Four-eyes is on: raising automation or promoting a champion needs a second manager."
        if on
        else "Four-eyes is off."
    )
    return _setting_save(request, slug, field="four_eyes", value=on, said=said)


@require_POST
@page(roles=MANAGERS)
def suggestion_preselected_set(request, slug):
    on = request.POST.get("suggestion_preselected") == "on"
    said = (
        "Assisted tasks open with the model's answer picked: Enter accepts it."
        if on
        else "Reviewers pick their answer first, then see whether it matched the model's."
    )
    return _setting_save(request, slug, field="suggestion_preselected", value=on, said=said)


@require_POST
@page(roles=MANAGERS)
def gold_rate_set(request, slug):
    try:
        rate = float(request.POST.get("gold_rate", ""))
    except ValueError:
        rate = -1.0  # refused by the service, in its own words
    said = f"Gold items: {rate:.0%} of each reviewer's claims." if rate else "Gold items are off."
    return _setting_save(request, slug, field="gold_rate", value=rate, said=said)


@require_POST
@page(roles=MANAGERS)
def queue_order_set(request, slug):
    order = request.POST.get("queue_order", "")
    minutes = _optional_number(request, "turnaround_minutes", int)
    labels = dict(UseCase.QueueOrder.choices)
    said = f"Queue order: {labels.get(order, order).lower()}; " + (
        f"items are due {minutes} minutes after they arrive unless sent with due_at."
        if minutes
        else "no default turnaround."
    )
    return _setting_save(
        request, slug, said=said, changes={"queue_order": order, "turnaround_minutes": minutes}
    )


def _number_or_text(text: str, kind=float):
    """A form value as a number, None when empty, or the text itself for the service to refuse
    in its own words."""
    text = text.strip()
    if not text:
        return None
    try:
        return kind(text)
    except ValueError:
        return text


def _optional_number(request, name: str, kind=float):
    return _number_or_text(request.POST.get(name, ""), kind)


@require_POST
@page(roles=MANAGERS)
def costs_set(request, slug):
    """The cost and capacity settings of the policy page's cost section."""
    use_case = use_case_get_for(user=request.user, slug=slug)
    changes = {
        "error_cost": _optional_number(request, "error_cost"),
        "review_minutes": _optional_number(request, "review_minutes"),
        "hourly_cost": _optional_number(request, "hourly_cost"),
        "capacity_reviewers": _optional_number(request, "capacity_reviewers", int),
        "capacity_hours_per_day": _optional_number(request, "capacity_hours_per_day"),
    }
    if use_case.is_classification:
        pairs = []
        for true, predicted, cost in zip(
            request.POST.getlist("pair_true"),
            request.POST.getlist("pair_predicted"),
            request.POST.getlist("pair_cost"),
            strict=False,
        ):
            if true or predicted or cost.strip():
                pairs.append({"true": true, "predicted": predicted, "cost": _number_or_text(cost)})
        changes["error_costs"] = pairs
    return _setting_save(
        request, slug, said="Costs and capacity saved: the figures below use them.", changes=changes
    )
