"""The webhooks page: endpoints, their recent deliveries, and the actions on them.

Every action is a plain form POST answered with a redirect (htmx boosts it); a new or rotated
secret is shown once, on the page the redirect lands on, through the session.
"""

from django.contrib import messages
from django.http import Http404, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from deployments.selectors import use_cases_visible_to
from reviewapp.core.api import MANAGERS
from reviewapp.core.errors import InvalidInput
from reviewapp.core.pages import page
from reviewapp.webhooks.models import EVENT_TYPES
from reviewapp.webhooks.selectors import (
    deliveries_recent,
    endpoint_get_for,
    endpoint_public,
    endpoints_visible_to,
)
from reviewapp.webhooks.services import (
    delivery_retry,
    endpoint_create,
    endpoint_delete,
    endpoint_secret_rotate,
    endpoint_test_send,
    endpoint_update,
)
from reviewapp.webhooks.tasks import deliver

SECRET_SESSION_KEY = "webhooks:secret-once"


def _see_other(url: str) -> HttpResponseRedirect:
    response = HttpResponseRedirect(url)
    response.status_code = 303
    return response


def _page(request, *, errors=None, form=None, status=200):
    endpoints = [
        {
            "endpoint": e,
            "public": endpoint_public(e),
            "deliveries": deliveries_recent(endpoint=e, limit=10),
        }
        for e in endpoints_visible_to(request.user)
    ]
    return render(
        request,
        "webhooks/page.html",
        {
            "endpoints": endpoints,
            "paused": [row for row in endpoints if row["endpoint"].paused_at],
            "event_types": EVENT_TYPES,
            "use_cases": use_cases_visible_to(request.user).order_by("name"),
            "errors": errors or {},
            "form": form or {},
            "secret_once": request.session.pop(SECRET_SESSION_KEY, None),
        },
        status=status,
    )


@page(roles=MANAGERS)
@require_GET
def webhooks(request):
    return _page(request)


@page(roles=MANAGERS)
@require_POST
def webhook_create(request):
    slugs = request.POST.getlist("use_cases")
    form = {
        "url": request.POST.get("url", ""),
        "events": request.POST.getlist("events"),
        "use_cases": slugs,
    }
    try:
        endpoint = endpoint_create(
            user=request.user, url=form["url"], events=form["events"], use_cases=slugs or None
        )
    except InvalidInput as bad:
        return _page(request, errors=bad.detail, form=form, status=422)
    request.session[SECRET_SESSION_KEY] = {"id": endpoint.pk, "secret": endpoint.secret}
    messages.success(request, f"Registered {endpoint.url}.")
    return _see_other(reverse("webhooks:page"))


@page(roles=MANAGERS)
@require_POST
def webhook_action(request, endpoint_id, action):
    endpoint = endpoint_get_for(user=request.user, endpoint_id=endpoint_id)
    if action == "rotate":
        endpoint = endpoint_secret_rotate(endpoint=endpoint)
        request.session[SECRET_SESSION_KEY] = {"id": endpoint.pk, "secret": endpoint.secret}
    elif action == "test":
        delivery = endpoint_test_send(endpoint=endpoint, user=request.user)
        deliver.delay_on_commit(delivery_ids=[delivery.pk])
        messages.success(request, "Test event sent.")
    elif action in ("pause", "resume"):
        endpoint_update(
            endpoint=endpoint, user=request.user, changes={"active": action == "resume"}
        )
    elif action == "delete":
        endpoint_delete(endpoint=endpoint)
        messages.success(request, f"Deleted {endpoint.url}; nothing pending is sent.")
    else:
        raise Http404("No such action.")
    return _see_other(reverse("webhooks:page"))


@page(roles=MANAGERS)
@require_POST
def delivery_retry_view(request, endpoint_id, delivery_id):
    endpoint = endpoint_get_for(user=request.user, endpoint_id=endpoint_id)
    delivery = delivery_retry(endpoint=endpoint, delivery_id=delivery_id)
    deliver.delay_on_commit(delivery_ids=[delivery.pk])
    messages.success(request, f"Retrying delivery {delivery.pk}.")
    return _see_other(reverse("webhooks:page") + f"#endpoint-{endpoint.pk}")
