"""Monitoring pages: the use cases at a glance, and per use case a dashboard in tabs whose
panel htmx swaps in place (each tab and filter is also a plain link)."""

from django.http import Http404
from django.shortcuts import render
from django.utils import timezone

from deployments.selectors import (
    model_versions_list,
    policy_current,
    use_case_get_for,
    use_cases_visible_to,
)
from reviewapp.core.api import ANALYSTS
from reviewapp.core.errors import InvalidInput
from reviewapp.core.pages import page
from reviewapp.monitoring.dashboards import (
    RANGES,
    TABS,
    filters_clean,
    panel_build,
)
from reviewapp.monitoring.selectors import metrics_summary


@page(roles=ANALYSTS)
def overview(request):
    since = timezone.now() - RANGES["7d"][1]
    rows = []
    for use_case in use_cases_visible_to(request.user).order_by("name"):
        rows.append(
            {
                "use_case": use_case,
                "policy": policy_current(use_case=use_case),
                "figures": metrics_summary(use_case=use_case, since=since, features=[]),
            }
        )
    return render(request, "monitoring/overview.html", {"rows": rows})


@page(roles=ANALYSTS)
def dashboard(request, slug: str, tab: str = "automation"):
    if tab not in TABS:
        raise Http404("No such dashboard.")
    use_case = use_case_get_for(user=request.user, slug=slug)
    now = timezone.now()
    context = {"use_case": use_case, "tab": tab, "tabs": TABS, "ranges": RANGES}
    try:
        filters = filters_clean(use_case=use_case, params=request.GET, now=now)
    except InvalidInput as exc:
        context.update(errors=exc.detail, filters=None, versions=_versions(use_case))
        return render(request, "monitoring/dashboard.html", context, status=400)
    context.update(
        filters=filters,
        versions=_versions(use_case),
        panel=panel_build(use_case=use_case, tab=tab, filters=filters, now=now),
    )
    template = "monitoring/dashboard.html#panel" if request.htmx else "monitoring/dashboard.html"
    return render(request, template, context)


def _versions(use_case):
    return list(model_versions_list(use_case=use_case))
