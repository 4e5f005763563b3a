"""The reviewers of a use case, measured: how fast, how often they accept the suggestion,
how often their blind answers match the model and other reviewers, and who may be
rubber-stamping."""

from django.shortcuts import render
from django.views.decorators.http import require_GET

from deployments.selectors import use_case_get_for
from reviewapp.control.views.shared import use_case_header
from reviewapp.core.api import MANAGERS
from reviewapp.core.pages import page
from reviewapp.reviews.selectors import reviewers_quality


@require_GET
@page(roles=MANAGERS)
def reviewers_page(request, slug):
    use_case = use_case_get_for(user=request.user, slug=slug)
    context = use_case_header(request, use_case)
    context["quality"] = reviewers_quality(use_case=use_case)
    return render(request, "control/reviewers.html", context)
