import sys

from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.views.defaults import server_error as default_server_error

from reviewapp.core.api import REVIEWERS
from reviewapp.core.errors import database_unavailable
from reviewapp.core.middleware import database_unavailable_response
from reviewapp.core.roles import user_roles
from reviewapp.reviews.selectors import review_queues_overview


@login_required
def home(request):
    """The use cases this user works on, with their queues; reviewers start reviewing here."""
    return render(
        request,
        "core/home.html",
        {
            "rows": review_queues_overview(user=request.user),
            "can_review": bool(user_roles(request.user) & REVIEWERS),
        },
    )


def healthz(request):
    """Liveness and readiness: 200 when the database answers, 503 when it does not."""
    from django.db import connection
    from django.http import JsonResponse

    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception:
        return JsonResponse({"ok": False, "database": "unavailable"}, status=503)
    return JsonResponse({"ok": True})


def server_error(request):
    """``handler500``: an unhandled error that is a lost database is a 503 the caller can
    retry (see ``DatabaseUnavailableMiddleware``); anything else is Django's plain 500."""
    exc = sys.exc_info()[1]  # called from inside Django's ``except`` block
    if exc is not None and database_unavailable(exc):
        return database_unavailable_response()
    return default_server_error(request)
