"""The spectrum overview, and the index of model versions by use case."""

from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from deployments.selectors import (
    model_roles_for,
    use_cases_visible_to,
)
from reviewapp.control.overview import spectrum_overview
from reviewapp.control.presenters import (
    LEVELS,
)
from reviewapp.core.api import MANAGERS, MODEL_OWNERS
from reviewapp.core.pages import page
from reviewapp.reviews.selectors import queue_health_for


@require_GET
@page(roles=MANAGERS)
def overview(request):
    rows = spectrum_overview(use_cases=use_cases_visible_to(request.user))
    breaches = [breach for row in rows for breach in row.breaches]
    health = queue_health_for(use_case_ids=[row.use_case.pk for row in rows], now=timezone.now())
    queues = [{"use_case": row.use_case, "health": health[row.use_case.pk]} for row in rows]
    return render(
        request,
        "control/overview.html",
        {
            "rows": rows,
            "levels": LEVELS,
            "open_breaches": breaches,
            "queue_health": queues,
            "is_manager": True,
        },
    )


@require_GET
@page(roles=MODEL_OWNERS)
def models_index(request):
    use_cases = list(use_cases_visible_to(request.user).order_by("name"))
    roles = model_roles_for(use_cases)
    rows = [
        {"use_case": uc, **roles.get(uc.pk, {"champion": [], "challenger": []})} for uc in use_cases
    ]
    return render(request, "control/models_index.html", {"rows": rows})
