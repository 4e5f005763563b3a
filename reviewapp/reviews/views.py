"""The reviewer's workspace: the home page's queues, the queue, My work, and the managers'
escalation list.

Every action is a plain form POST answered with a redirect; when htmx sends it, the answer is
the ``task`` partial of the queue page instead, holding the next item, so the page swaps it in
without a load.
"""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from deployments.selectors import can_view_pii, use_case_get_for, use_cases_visible_to
from reviewapp.core.api import MANAGERS, REVIEWERS
from reviewapp.core.errors import Conflict, InvalidInput
from reviewapp.core.pages import page
from reviewapp.core.roles import user_roles
from reviewapp.reviews.forms import (
    DecisionForm,
    EscalationForm,
    HeldTaskForm,
    ResolveForm,
    form_errors,
)
from reviewapp.reviews.presenters import gold_shown_id, gold_view, task_view
from reviewapp.reviews.selectors import (
    escalation_get_for,
    escalation_note_for,
    escalations_list,
    escalations_raised_by,
    queue_health,
    review_queues_overview,
    reviewer_work_summary,
)
from reviewapp.reviews.services.escalations import escalation_resolve
from reviewapp.reviews.services.queue import (
    QueueStep,
    queue_decide,
    queue_escalate,
    queue_gold_decide,
    queue_gold_pass,
    queue_next,
    queue_skip,
)

TASK_PARTIAL = "reviews/queue.html#task"
MESSAGE_LEVELS = {"success": messages.SUCCESS, "info": messages.INFO, "warning": messages.WARNING}


@login_required
def home(request):
    """The use cases this user works on, with their queues; reviewers start reviewing here."""
    return render(
        request,
        "reviews/home.html",
        {
            "rows": review_queues_overview(user=request.user),
            "can_review": bool(user_roles(request.user) & REVIEWERS),
        },
    )


def _see_other(url: str) -> HttpResponseRedirect:
    response = HttpResponseRedirect(url)
    response.status_code = 303  # after a POST, the browser GETs the queue again
    return response


def _task_context(request, use_case, step: QueueStep, *, errors=None, posted=None) -> dict:
    task = step.task
    view = None
    if step.gold is not None:
        view = gold_view(
            step.gold,
            use_case=use_case,
            show_pii=can_view_pii(user=request.user, use_case=use_case),
        )
    elif task is not None:
        view = task_view(
            task,
            use_case=use_case,
            show_pii=can_view_pii(user=request.user, use_case=use_case),
            note=escalation_note_for(task=task),
        )
    if view is not None and posted is not None and str(view["id"]) == str(posted.get("task")):
        # A refused submit shows the same item with what the reviewer had entered.
        view["comment"] = posted.get("comment", "")
        if view["choices"] is not None and posted.get("label"):
            for choice in view["choices"]:
                choice["checked"] = choice["label"] == posted["label"]
        if view["value"] is not None and posted.get("value") not in (None, ""):
            view["value"]["prefill"] = posted["value"]
    return {"use_case": use_case, "task": view, "notice": step.notice, "errors": errors or {}}


def _step_response(request, use_case, step: QueueStep):
    if request.htmx:
        return render(request, TASK_PARTIAL, _task_context(request, use_case, step))
    if step.notice:
        messages.add_message(request, MESSAGE_LEVELS[step.notice.level], step.notice.text)
    return _see_other(reverse("reviews:queue", kwargs={"slug": use_case.slug}))


def _refused(request, use_case, errors: dict, *, task_id):
    """Bad input: nothing was saved, the reviewer still holds the item; show it again with the
    problem next to the field (422)."""
    step = queue_next(use_case=use_case, user=request.user)
    posted = {**request.POST.dict(), "task": task_id}
    context = _task_context(request, use_case, step, errors=errors, posted=posted)
    if request.htmx:
        return render(request, TASK_PARTIAL, context, status=422)
    context["health"] = queue_health(use_case=use_case)
    return render(request, "reviews/queue.html", context, status=422)


@page(roles=REVIEWERS)
@require_GET
def queue(request, slug):
    """Show the task the reviewer holds in this use case, claiming the next one if none."""
    use_case = use_case_get_for(user=request.user, slug=slug)
    step = queue_next(use_case=use_case, user=request.user)
    context = _task_context(request, use_case, step)
    if request.htmx:
        return render(request, TASK_PARTIAL, context)
    context["health"] = queue_health(use_case=use_case)
    return render(request, "reviews/queue.html", context)


@page(roles=REVIEWERS)
@require_GET
def queue_stats_view(request, slug):
    """The queue's size, age, items past due and time to clear, polled by the queue page (kept
    out of the decision's round trip: counting a long queue costs more than deciding)."""
    use_case = use_case_get_for(user=request.user, slug=slug)
    return render(
        request,
        "reviews/queue.html#stats",
        {"use_case": use_case, "health": queue_health(use_case=use_case)},
    )


def _answered(request, slug, shown_id, answer):
    """An answer posted from the queue page: checked by the form, given to ``answer`` (use
    case, cleaned data -> the next step); bad input shows the same item again (422)."""
    use_case = use_case_get_for(user=request.user, slug=slug)
    form = DecisionForm(request.POST)
    if not form.is_valid():
        return _refused(request, use_case, form_errors(form), task_id=shown_id)
    try:
        step = answer(use_case, form.cleaned_data)
    except InvalidInput as bad:
        return _refused(request, use_case, bad.detail, task_id=shown_id)
    return _step_response(request, use_case, step)


@page(roles=REVIEWERS)
@require_POST
def decide(request, slug, task_id):
    return _answered(
        request,
        slug,
        task_id,
        lambda use_case, data: queue_decide(
            use_case=use_case,
            user=request.user,
            task_id=task_id,
            label=data["label"] or None,
            value=data["value"],
            comment=data["comment"],
            lease_token=data["lease_token"],
            time_spent_ms=data["time_spent_ms"],
            idempotency_key=data["idempotency_key"] or None,
        ),
    )


@page(roles=REVIEWERS)
@require_POST
def skip(request, slug, task_id):
    use_case = use_case_get_for(user=request.user, slug=slug)
    form = HeldTaskForm(request.POST)
    if not form.is_valid():
        return _refused(request, use_case, form_errors(form), task_id=task_id)
    step = queue_skip(
        use_case=use_case,
        user=request.user,
        task_id=task_id,
        lease_token=form.cleaned_data["lease_token"],
    )
    return _step_response(request, use_case, step)


@page(roles=REVIEWERS)
@require_POST
def escalate(request, slug, task_id):
    use_case = use_case_get_for(user=request.user, slug=slug)
    form = EscalationForm(request.POST)
    if not form.is_valid():
        return _refused(request, use_case, form_errors(form), task_id=task_id)
    try:
        step = queue_escalate(
            use_case=use_case,
            user=request.user,
            task_id=task_id,
            comment=form.cleaned_data["comment"],
            lease_token=form.cleaned_data["lease_token"],
        )
    except InvalidInput as bad:
        return _refused(request, use_case, bad.detail, task_id=task_id)
    return _step_response(request, use_case, step)


@page(roles=REVIEWERS)
@require_POST
def gold_decide(request, slug, check_id):
    return _answered(
        request,
        slug,
        gold_shown_id(check_id),
        lambda use_case, data: queue_gold_decide(
            use_case=use_case,
            user=request.user,
            check_id=check_id,
            label=data["label"] or None,
            value=data["value"],
            time_spent_ms=data["time_spent_ms"],
        ),
    )


@page(roles=REVIEWERS)
@require_POST
def gold_pass(request, slug, check_id):
    use_case = use_case_get_for(user=request.user, slug=slug)
    return _step_response(
        request, use_case, queue_gold_pass(use_case=use_case, user=request.user, check_id=check_id)
    )


@page(roles=REVIEWERS)
@require_GET
def my_work(request):
    return render(
        request,
        "reviews/my_work.html",
        {
            "summary": reviewer_work_summary(user=request.user),
            "escalations": escalations_raised_by(user=request.user),
        },
    )


def _escalations_page(request, *, errors=None, status=200):
    use_cases = use_cases_visible_to(request.user)
    pii: dict[int, bool] = {}
    rows = []
    for escalation in escalations_list(use_cases=use_cases, resolved=False):
        use_case = escalation.use_case
        if use_case.pk not in pii:
            pii[use_case.pk] = can_view_pii(user=request.user, use_case=use_case)
        rows.append(
            {
                "escalation": escalation,
                "task": task_view(escalation.task, use_case=use_case, show_pii=pii[use_case.pk]),
                "errors": (errors or {}).get(escalation.pk, {}),
            }
        )
    return render(
        request,
        "reviews/escalations.html",
        {"open": rows, "resolved": escalations_list(use_cases=use_cases, resolved=True, limit=20)},
        status=status,
    )


@page(roles=MANAGERS)
@require_GET
def escalations(request):
    return _escalations_page(request)


@page(roles=MANAGERS)
@require_POST
def escalation_resolve_view(request, escalation_id):
    escalation = escalation_get_for(
        escalation_id=escalation_id, use_cases=use_cases_visible_to(request.user)
    )
    form = ResolveForm(request.POST)
    if not form.is_valid():
        return _escalations_page(request, errors={escalation.pk: form_errors(form)}, status=422)
    data = form.cleaned_data
    try:
        escalation_resolve(
            escalation=escalation,
            user=request.user,
            note=data["note"],
            label=data["label"] or None,
            value=data["value"],
        )
    except InvalidInput as bad:
        return _escalations_page(request, errors={escalation.pk: bad.detail}, status=422)
    except Conflict as conflict:
        messages.warning(request, conflict.detail.get("detail", "Already resolved."))
    else:
        messages.success(request, f"Resolved the escalation on {escalation.item.external_id}.")
    return _see_other(reverse("reviews:escalations"))
