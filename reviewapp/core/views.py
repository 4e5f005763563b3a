import sys

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.views import LoginView
from django.db import connection
from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views import defaults
from drf_spectacular.renderers import OpenApiJsonRenderer, OpenApiYamlRenderer
from drf_spectacular.views import SpectacularAPIView

from reviewapp.core.client_address import client_address
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
        response = JsonResponse({"detail": "Not found.", "code": "not_found"}, status=404)
    else:
        response = defaults.page_not_found(request, exception)
    response.friendly_error_page = True
    return response


def bad_request(request, exception):
    """``handler400`` (a request Django itself refuses: too many fields, a bad multipart
    body): the API's JSON error shape under /api/, the page elsewhere."""
    if request.path.startswith("/api/"):
        return JsonResponse(
            {
                "detail": "Bad request; the body or its size is not one this path reads.",
                "code": "bad_request",
            },
            status=400,
        )
    return defaults.bad_request(request, exception)


def server_error(request):
    """``handler500``: a lost database is a 503 the caller can retry (errors outside views, e.g.
    the session read in middleware; see ``DatabaseUnavailableMiddleware``); anything else is a
    500, in the API's JSON shape under /api/."""
    exc = sys.exc_info()[1]  # called from inside Django's ``except`` block
    if exc is not None and database_unavailable(exc):
        return database_unavailable_response()
    if request.path.startswith("/api/"):
        response = JsonResponse(
            {"detail": "Server error; it has been logged.", "code": "server_error"}, status=500
        )
    else:
        response = defaults.server_error(request)
    response.friendly_error_page = True
    return response


class FriendlyErrorPagesMiddleware:
    """The app's own 404 and 500 pages in every mode.

    With DEBUG on (the embedded demo runs so), Django answers a missing page with its technical
    404, which lists every URL pattern, and an error with a traceback page. Those answers are
    replaced here by what ``handler404``/``handler500`` give without DEBUG; the exception was
    already logged by then. ``DEBUG_ERROR_PAGES=1`` keeps Django's pages for a developer.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if (
            not settings.DEBUG
            or settings.DEBUG_ERROR_PAGES
            or response.status_code not in (404, 500)
            or getattr(response, "friendly_error_page", False)
            or not response.get("Content-Type", "").startswith("text/html")  # the API's own
        ):
            return response
        if response.status_code == 404:
            return page_not_found(request, None)
        return server_error(request)


def healthz(request):
    """Liveness and readiness: 200 when the database answers, 503 when it does not."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception:
        return JsonResponse({"ok": False, "database": "unavailable"}, status=503)
    return JsonResponse({"ok": True})


class _SignInThrottle:
    """Refuse (429) a username from an address after LOGIN_FAILURE_LIMIT failed attempts
    within LOGIN_FAILURE_WINDOW_SECONDS, so passwords cannot be guessed at speed. The address
    is the client's (``client_address``: a forwarded one only from a trusted proxy)."""

    def refusal_context(self, *, minutes: int) -> dict:
        """What the sign-in template needs to say the attempt was refused."""
        return {"throttled": True, "retry_minutes": minutes}

    def post(self, request, *args, **kwargs):
        username = request.POST.get("username", "")
        if login_failures_exceeded(username=username, ip=client_address(request)):
            minutes = -(-settings.LOGIN_FAILURE_WINDOW_SECONDS // 60)
            response = render(
                request,
                self.template_name,
                {
                    **self.refusal_context(minutes=minutes),
                    "form": self.get_form(),
                    "next": self.get_redirect_url(),
                },
                status=429,
            )
            response["Retry-After"] = str(settings.LOGIN_FAILURE_WINDOW_SECONDS)
            return response
        return super().post(request, *args, **kwargs)

    def form_invalid(self, form):
        login_failure_record(
            username=self.request.POST.get("username", ""), ip=client_address(self.request)
        )
        return super().form_invalid(form)

    def form_valid(self, form):
        login_failures_clear(
            username=form.get_user().get_username(), ip=client_address(self.request)
        )
        return super().form_valid(form)


class ThrottledLoginView(_SignInThrottle, LoginView):
    """The app's sign-in page (password, and single sign-on when configured)."""

    template_name = "core/login.html"
    redirect_authenticated_user = True

    def get_context_data(self, **kwargs):
        return {
            **super().get_context_data(**kwargs),
            "oidc_enabled": settings.OIDC_ENABLED,
            "oidc_provider": settings.OIDC_PROVIDER_NAME,
        }


class ThrottledAdminLoginView(_SignInThrottle, LoginView):
    """The admin's sign-in, under the same limit as the app's (it counts the same failures:
    guessing a password there is no cheaper). Otherwise Django's own admin login."""

    template_name = "admin/login.html"
    authentication_form = AdminAuthenticationForm

    def get_context_data(self, **kwargs):
        return {**super().get_context_data(**kwargs), **self._admin_context()}

    def _admin_context(self) -> dict:
        return {
            **admin.site.each_context(self.request),
            "title": "Log in",
            "app_path": self.request.get_full_path(),
            "username": self.request.user.get_username(),
        }

    def refusal_context(self, *, minutes: int) -> dict:
        # The admin's template shows messages, not the app's "throttled" notice.
        messages.error(
            self.request,
            f"Too many failed sign-ins for this username. Try again in {minutes} minutes.",
        )
        return self._admin_context()

    def dispatch(self, request, *args, **kwargs):
        if request.method == "GET" and admin.site.has_permission(request):
            return redirect("admin:index")
        return super().dispatch(request, *args, **kwargs)

    def get_redirect_url(self):
        return super().get_redirect_url() or reverse("admin:index")

    def get_success_url(self):
        return self.get_redirect_url()


class SchemaView(SpectacularAPIView):
    """``/api/schema/``: YAML by default, JSON with ``?format=json`` (or ``Accept:
    application/json``). The project turns DRF's URL format override off, because ``format``
    names a file format on the export endpoints, so the schema reads it itself."""

    FORMATS = {
        "json": OpenApiJsonRenderer,
        "openapi-json": OpenApiJsonRenderer,
        "yaml": OpenApiYamlRenderer,
        "openapi": OpenApiYamlRenderer,
    }

    def perform_content_negotiation(self, request, force=False):
        wanted = request.query_params.get("format")
        if wanted in self.FORMATS:
            renderer = self.FORMATS[wanted]()
            return renderer, renderer.media_type
        return super().perform_content_negotiation(request, force)
