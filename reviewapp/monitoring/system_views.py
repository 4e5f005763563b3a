"""The System page: every process, host and broker queue of the app, for managers and admins."""

from django.shortcuts import render
from django.utils import timezone

from reviewapp.core.errors import InvalidInput
from reviewapp.core.pages import page
from reviewapp.core.roles import Role
from reviewapp.monitoring.system import SYSTEM_RANGES, system_range_clean
from reviewapp.monitoring.system_page import system_page_build

SYSTEM_ROLES = frozenset({Role.MANAGER, Role.ADMIN})


@page(roles=SYSTEM_ROLES)
def system(request):
    try:
        range_key = system_range_clean(request.GET)
    except InvalidInput as exc:
        context = {
            "errors": exc.detail,
            "ranges": {k: v[0] for k, v in SYSTEM_RANGES.items()},
            "range": None,
        }
        return render(request, "monitoring/system.html", context, status=400)
    context = system_page_build(now=timezone.now(), range_key=range_key)
    template = "monitoring/system.html#panel" if request.htmx else "monitoring/system.html"
    return render(request, template, context)
