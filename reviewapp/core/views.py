import sys

from django.conf import settings
from django.contrib.auth.views import LoginView
from django.db import connection
from django.http import JsonResponse
from django.shortcuts import render
from django.views import defaults
from drf_spectacular.views import SpectacularAPIView

from reviewapp.core.errors import database_unavailable
from reviewapp.core.middleware import database_unavailable_response
from reviewapp.core.throttles import (
    login_failure_record,
    login_failures_clear,
    login_failures_exceeded,
)


def page_not_found(request, exception):
    """API callers get the API's JSON error shape for unknown paths; people get the page."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found."}, status=404)
    return defaults.page_not_found(request, exception)


def server_error(request):
    """``handler500``: a lost database is a 503 the caller can retry (errors outside views, e.g.
    the session read in middleware; see ``DatabaseUnavailableMiddleware``); anything else is a
    500, in the API's JSON shape under /api/."""
    exc = sys.exc_info()[1]  # called from inside Django's ``except`` block
    if exc is not None and database_unavailable(exc):
        return database_unavailable_response()
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Server error; it has been logged."}, status=500)
    return defaults.server_error(request)


def healthz(request):
    """Liveness and readiness: 200 when the database answers, 503 when it does not."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception:
        return JsonResponse({"ok": False, "database": "unavailable"}, status=503)
    return JsonResponse({"ok": True})


class ThrottledLoginView(LoginView):
    """Sign-in that refuses (429) a username from an address after LOGIN_FAILURE_LIMIT failed
    attempts within LOGIN_FAILURE_WINDOW_SECONDS, so passwords cannot be guessed at speed."""

    template_name = "core/login.html"
    redirect_authenticated_user = True

    def post(self, request, *args, **kwargs):
        username = request.POST.get("username", "")
        if login_failures_exceeded(username=username, ip=request.META.get("REMOTE_ADDR", "")):
            response = render(
                request,
                "core/login.html",
                {
                    "form": self.get_form(),
                    "throttled": True,
                    "retry_minutes": -(-settings.LOGIN_FAILURE_WINDOW_SECONDS // 60),
                    "next": self.get_redirect_url(),
                },
                status=429,
            )
            response["Retry-After"] = str(settings.LOGIN_FAILURE_WINDOW_SECONDS)
            return response
        return super().post(request, *args, **kwargs)

    def form_invalid(self, form):
        login_failure_record(
            username=self.request.POST.get("username", ""),
            ip=self.request.META.get("REMOTE_ADDR", ""),
        )
        return super().form_invalid(form)

    def form_valid(self, form):
        login_failures_clear(
            username=form.get_user().get_username(), ip=self.request.META.get("REMOTE_ADDR", "")
        )
        return super().form_valid(form)


class SchemaView(SpectacularAPIView):
    """The OpenAPI document: YAML by default, JSON for ``?format=json`` (what client
    generators ask for) or an ``Accept: application/json`` header."""

    def perform_content_negotiation(self, request, force=False):
        wanted = request.query_params.get("format")
        for renderer in self.get_renderers():
            if wanted and renderer.format == wanted:
                return renderer, renderer.media_type
        return super().perform_content_negotiation(request, force)
