"""Backtests: start one over a window of history, follow it, read its result."""

from datetime import datetime

from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from deployments.models import ModelVersion
from deployments.selectors import (
    backtest_get,
    backtests_list,
    model_versions_list,
    use_case_get_for,
)
from deployments.services.policies import POLICY_FIELDS
from reviewapp.control.backtests import ROUTES, backtest_start, backtest_window_default
from reviewapp.control.costs import cost_view
from reviewapp.control.forms import (
    BacktestForm,
)
from reviewapp.control.presenters import (
    backtest_accuracy,
    threshold_figure,
    tradeoff_figure,
    whatif_at,
    whatif_curve,
)
from reviewapp.control.views.shared import flat_errors, page_or_part, use_case_header
from reviewapp.core.api import MODEL_OWNERS
from reviewapp.core.errors import InvalidInput
from reviewapp.core.pages import page


def _backtests_context(request, use_case, *, form=None, errors=None) -> dict:
    context = use_case_header(request, use_case)
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
@page(roles=MODEL_OWNERS)
def backtests_page(request, slug):
    use_case = use_case_get_for(user=request.user, slug=slug)
    if request.method == "GET":
        return render(request, "control/backtests.html", _backtests_context(request, use_case))
    form = BacktestForm(request.POST)
    errors = form.errors_by_field()
    if not errors:
        try:
            job = backtest_start(use_case=use_case, actor=request.user, **form.cleaned_data)
        except InvalidInput as exc:
            errors = flat_errors(exc.detail)
        else:
            return redirect("control-backtest", slug=slug, job_id=job.pk)
    context = _backtests_context(request, use_case, form=form.values(), errors=errors)
    return render(request, "control/backtests.html", context, status=400)


@require_GET
@page(roles=MODEL_OWNERS)
def backtest_page(request, slug, job_id):
    use_case = use_case_get_for(user=request.user, slug=slug)
    job = backtest_get(use_case=use_case, job_id=job_id)
    context = use_case_header(request, use_case)
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
        costs=cost_view(use_case=use_case, policy=context["policy"], job=job) if result else None,
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
    return page_or_part(request, "control/backtest.html", "progress", context)
