"""Prometheus' scrape endpoint."""

import hmac

from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from rest_framework.permissions import BasePermission
from rest_framework.views import APIView

from deployments.models import UseCase
from deployments.selectors import use_cases_visible_to
from reviewapp.core.api import ANALYSTS, RolesAllowed
from reviewapp.monitoring.prometheus import metrics_registry


def scrape_token_presented(request) -> bool:
    expected = settings.METRICS_SCRAPE_TOKEN
    header = request.headers.get("Authorization", "")
    if not expected or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header.removeprefix("Bearer ").encode(), expected.encode())


class ScrapeTokenOrRoles(BasePermission):
    """A scraper holding METRICS_SCRAPE_TOKEN, or a user with one of the view's roles."""

    message = RolesAllowed.message

    def has_permission(self, request, view) -> bool:
        return scrape_token_presented(request) or RolesAllowed().has_permission(request, view)


class PrometheusMetricsApi(APIView):
    """Metrics in the Prometheus text format. A user sees the use cases they are a member of
    (admins: all); the scrape token sees all."""

    permission_classes = [ScrapeTokenOrRoles]
    allowed_roles = {"GET": ANALYSTS}

    @extend_schema(
        responses={(200, "text/plain"): OpenApiTypes.STR},
        summary="Prometheus metrics (request latency, predictions, routes, queue, null outputs)",
    )
    def get(self, request):
        if scrape_token_presented(request):
            ids = list(UseCase.objects.values_list("id", flat=True))
        else:
            ids = list(use_cases_visible_to(request.user).values_list("id", flat=True))
        body = generate_latest(metrics_registry(use_case_ids=ids))
        return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
