"""Pages for ML teams: the disagreement explorer, exports and retraining.

Function views; an htmx request gets the partial it swaps, any other the whole page. Every
action is a plain POST that redirects, so the pages work without JavaScript too.
"""

from urllib.parse import urlencode

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from deployments.selectors import can_view_pii, use_case_get_for, use_cases_visible_to
from reviewapp.core.api import ANALYSTS
from reviewapp.core.errors import DomainError, InvalidInput
from reviewapp.core.pages import page
from reviewapp.datasets.export_formats import FORMATS
from reviewapp.datasets.export_tables import RowFilters
from reviewapp.datasets.filters import filters_as_query, filters_clean
from reviewapp.datasets.models import Export, TrainingRun
from reviewapp.datasets.selectors import (
    datasets_overview,
    disagreement_matrix,
    disagreement_page,
    explorer_choices,
    export_download_allowed,
    export_file_open,
    export_get,
    exports_list,
    item_history,
    retrain_versions,
    training_runs_list,
)
from reviewapp.datasets.services.exports import export_delete, export_start
from reviewapp.datasets.services.retraining import HOLDOUT_DEFAULT, training_run_start
from reviewapp.reviews.presenters import item_features_display

EXPORTS_SHOWN = 50
RUNS_SHOWN = 30


def _errors_text(errors: dict) -> str:
    return "; ".join(
        f"{field.replace('_', ' ')}: {' '.join(map(str, problems))}"
        for field, problems in errors.items()
    )


@require_GET
@page(roles=ANALYSTS)
def index(request):
    use_cases = list(use_cases_visible_to(request.user).order_by("name"))
    return render(request, "datasets/index.html", {"rows": datasets_overview(use_cases=use_cases)})


@require_GET
@page(roles=ANALYSTS)
def explorer(request, slug):
    use_case = use_case_get_for(user=request.user, slug=slug)
    errors: dict = {}
    try:
        filters = filters_clean(use_case=use_case, raw=request.GET)
    except InvalidInput as exc:
        errors, filters = exc.detail, RowFilters()
    after = request.GET.get("after") or None
    try:
        page = disagreement_page(use_case=use_case, filters=filters, after=after)
    except InvalidInput as exc:
        errors.update(exc.detail)
        after, page = None, disagreement_page(use_case=use_case, filters=filters, after=None)
    context = {
        "use_case": use_case,
        "filters": filters,
        "query": filters_as_query(filters),
        "filters_query": urlencode(filters_as_query(filters)),
        "errors": errors,
        "page": page,
        "after": after,
        "next_query": urlencode(filters_as_query(filters, after=page.next_cursor)),
        "choices": explorer_choices(use_case=use_case),
        "formats": list(FORMATS),
        "pii_choices": _pii_choices(request.user, use_case),
        "tab": "explorer",
    }
    status = 400 if errors else 200
    if request.htmx and request.htmx.target == "more-rows":
        return render(request, "datasets/explorer.html#more", context, status=status)
    context["matrix"] = disagreement_matrix(use_case=use_case, filters=filters)
    context["matrix_rows"] = _matrix_rows(context["matrix"], filters)
    if request.htmx and request.htmx.target == "explorer":
        return render(request, "datasets/explorer.html#explorer", context, status=status)
    return render(request, "datasets/explorer.html", context, status=status)


def _matrix_rows(matrix, filters: RowFilters) -> list[dict]:
    """The matrix as rows of cells, each with the query string it links to: the current
    filters with its answers (or without them when it is the cell selected: a second click
    clears it)."""
    rows = []
    for label, total, line in zip(matrix.model_axis, matrix.row_totals, matrix.cells, strict=True):
        cells = []
        for human, cell in zip(matrix.human_axis, line, strict=True):
            query = None
            if cell is not None:
                changes = {k: None for k in cell.filters} if cell.selected else cell.filters
                query = urlencode(filters_as_query(filters, **changes))
            cells.append({"cell": cell, "query": query, "human": human})
        rows.append({"label": label, "total": total, "cells": cells})
    return rows


def _pii_choices(user, use_case) -> list[tuple[str, str]]:
    allowed = can_view_pii(user=user, use_case=use_case)
    return [
        (value, label)
        for value, label in Export.Pii.choices
        if value != Export.Pii.INCLUDE or allowed
    ]


@require_GET
@page(roles=ANALYSTS)
def item(request, slug, external_id):
    use_case = use_case_get_for(user=request.user, slug=slug)
    history = item_history(use_case=use_case, external_id=external_id, user=request.user)
    context = {
        "use_case": use_case,
        "history": history,
        "display": item_features_display(
            {f["name"]: f["value"] for f in history.features},
            use_case=use_case,
            masked=[f["name"] for f in history.features if f["masked"]],
        ),
        "tab": "explorer",
    }
    template = "datasets/item.html#item" if request.htmx else "datasets/item.html"
    return render(request, template, context)


@require_http_methods(["GET", "POST"])
@page(roles=ANALYSTS)
def exports(request, slug):
    use_case = use_case_get_for(user=request.user, slug=slug)
    if request.method == "POST":
        return _export_start(request, use_case)
    rows = list(exports_list(use_case=use_case)[:EXPORTS_SHOWN])
    context = {
        "use_case": use_case,
        "exports": rows,
        "busy": any(e.state in (Export.State.QUEUED, Export.State.RUNNING) for e in rows),
        "tab": "exports",
    }
    if request.htmx and request.htmx.target == "exports-list":
        return render(request, "datasets/exports.html#list", context)
    return render(request, "datasets/exports.html", context)


def _export_start(request, use_case):
    data = request.POST
    try:
        filters = filters_clean(use_case=use_case, raw=data)
        export_start(
            use_case=use_case,
            actor=request.user,
            fmt=data.get("format", "csv"),
            scope=data.get("scope", Export.Scope.DISAGREEMENTS),
            pii=data.get("pii", Export.Pii.OMIT),
            filters=filters,
        )
    except InvalidInput as exc:
        messages.error(request, f"The export was not started. {_errors_text(exc.detail)}")
        query = urlencode({k: v for k, v in data.items() if k != "csrfmiddlewaretoken" and v})
        return redirect(f"{reverse('datasets-explorer', args=[use_case.slug])}?{query}")
    messages.success(request, "Export started: it is listed below with its progress.")
    return redirect("datasets-exports", slug=use_case.slug)


@require_GET
@page(roles=ANALYSTS)
def export_download(request, slug, export_id):
    use_case = use_case_get_for(user=request.user, slug=slug)
    export = export_get(use_case=use_case, export_id=export_id)
    if not export_download_allowed(user=request.user, export=export):
        raise PermissionDenied("This export holds PII, which you may not see.")
    return FileResponse(
        export_file_open(export=export),
        as_attachment=True,
        filename=export.download_name,
        content_type=FORMATS[export.format][0],
    )


@require_GET
@page(roles=ANALYSTS)
def export_manifest(request, slug, export_id):
    use_case = use_case_get_for(user=request.user, slug=slug)
    export = export_get(use_case=use_case, export_id=export_id)
    if export.state != Export.State.READY:
        raise Http404("This export is not ready.")
    response = JsonResponse(export.manifest, json_dumps_params={"indent": 2})
    response["Content-Disposition"] = f'attachment; filename="{export.download_name}.manifest.json"'
    return response


@require_POST
@page(roles=ANALYSTS)
def export_remove(request, slug, export_id):
    use_case = use_case_get_for(user=request.user, slug=slug)
    export = export_get(use_case=use_case, export_id=export_id)
    reason = request.POST.get("reason", "").strip()
    if not reason:
        messages.error(request, "Say why you delete this export: a reason is required.")
        return redirect("datasets-exports", slug=use_case.slug)
    try:
        export_delete(export=export, actor=request.user, reason=reason)
    except DomainError as exc:
        messages.error(request, _errors_text(exc.detail) if isinstance(exc.detail, dict) else "")
    else:
        messages.success(request, "Export deleted.")
    return redirect("datasets-exports", slug=use_case.slug)


@require_http_methods(["GET", "POST"])
@page(roles=ANALYSTS)
def retraining(request, slug):
    use_case = use_case_get_for(user=request.user, slug=slug)
    if request.method == "POST":
        return _retraining_start(request, use_case)
    runs = list(training_runs_list(use_case=use_case)[:RUNS_SHOWN])
    context = {
        "use_case": use_case,
        "runs": runs,
        "busy": any(r.state in (TrainingRun.State.QUEUED, TrainingRun.State.RUNNING) for r in runs),
        "versions": retrain_versions(use_case=use_case),
        "holdout_percent": round(HOLDOUT_DEFAULT * 100),
        "tab": "retraining",
    }
    if request.htmx and request.htmx.target == "runs-list":
        return render(request, "datasets/retraining.html#list", context)
    return render(request, "datasets/retraining.html", context)


def _retraining_start(request, use_case):
    data = request.POST
    try:
        holdout = float(data.get("holdout_percent") or HOLDOUT_DEFAULT * 100) / 100
    except ValueError:
        holdout = None
    try:
        training_run_start(
            use_case=use_case,
            actor=request.user,
            base_version=data.get("base_version") or None,
            holdout_fraction=holdout,
            version=data.get("version") or None,
        )
    except InvalidInput as exc:
        detail = dict(exc.detail)
        if "holdout_fraction" in detail:
            detail["held out share"] = ["must be between 5 and 50 %"]
            del detail["holdout_fraction"]
        messages.error(request, f"Retraining was not started. {_errors_text(detail)}")
    else:
        messages.success(request, "Retraining started: its progress shows below.")
    return redirect("datasets-retraining", slug=use_case.slug)
