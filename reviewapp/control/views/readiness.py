"""Graduation readiness: the verdict, and the slices of one feature."""

from django.views.decorators.http import require_GET

from deployments.selectors import (
    use_case_get_for,
)
from reviewapp.control.readiness import readiness_get, slice_features, slices_get
from reviewapp.control.views.shared import page_or_part, use_case_header
from reviewapp.core.api import MODEL_OWNERS
from reviewapp.core.errors import InvalidInput
from reviewapp.core.pages import page


@require_GET
@page(roles=MODEL_OWNERS)
def readiness_page(request, slug):
    """The verdict, and the slices of the feature in ``?feature=`` (htmx swaps the slices
    section alone; a bad feature is shown in it, as a 400 without htmx)."""
    use_case = use_case_get_for(user=request.user, slug=slug)
    feature = request.GET.get("feature") or ""
    context = use_case_header(request, use_case)
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
    return page_or_part(request, "control/readiness.html", "slices", context, status=status)
