"""Prometheus' scrape endpoint and the metrics API (the dashboards' figures as JSON)."""

import hmac

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.http import HttpResponse
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from prometheus_client.exposition import choose_encoder
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from deployments.models import UseCase
from deployments.selectors import model_version_get, use_case_get_for, use_cases_visible_to
from reviewapp.core.api import ANALYSTS, RolesAllowed, window_params
from reviewapp.monitoring.api_schema import MetricsOutput
from reviewapp.monitoring.prometheus import metrics_registry
from reviewapp.monitoring.selectors import metrics_summary

SCRAPER = "metrics-scrape-token"


def scrape_token_presented(request) -> bool:
    expected = settings.METRICS_SCRAPE_TOKEN
    header = request.headers.get("Authorization", "")
    if not expected or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header.removeprefix("Bearer ").encode(), expected.encode())


class ScrapeTokenAuthentication(BaseAuthentication):
    """Claims the request when it carries METRICS_SCRAPE_TOKEN, before the API tokens (which
    would refuse that Bearer value as an unknown token)."""

    def authenticate(self, request):
        return (AnonymousUser(), SCRAPER) if scrape_token_presented(request) else None

    def authenticate_header(self, request):
        return 'Bearer realm="metrics"'  # so a wrong or missing token is a 401, not a 403


class ScrapeTokenScheme(OpenApiAuthenticationExtension):
    target_class = ScrapeTokenAuthentication
    name = "metricsScrapeToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "METRICS_SCRAPE_TOKEN, for a Prometheus scrape of every use case.",
        }


class ScrapeTokenOrRoles(BasePermission):
    """A scraper holding METRICS_SCRAPE_TOKEN, or a user with one of the view's roles."""

    message = RolesAllowed.message

    def has_permission(self, request, view) -> bool:
        return scrape_token_presented(request) or RolesAllowed().has_permission(request, view)


class PrometheusMetricsApi(APIView):
    """Metrics in the Prometheus text format. A user sees the use cases they are a member of
    (admins: all); the scrape token sees all."""

    authentication_classes = [
        ScrapeTokenAuthentication,
        *api_settings.DEFAULT_AUTHENTICATION_CLASSES,
    ]
    permission_classes = [ScrapeTokenOrRoles]
    allowed_roles = {"GET": ANALYSTS}

    def perform_content_negotiation(self, request, force=False):
        # Scrapers send every kind of Accept header (Prometheus asks for OpenMetrics first,
        # Telegraf and curl for text/plain); the body's format is chosen in get() the way
        # prometheus_client does, and errors (401, 403) keep the API's JSON shape.
        return JSONRenderer(), JSONRenderer.media_type

    @extend_schema(
        responses={
            (200, "text/plain"): OpenApiTypes.STR,
            (200, "application/openmetrics-text"): OpenApiTypes.STR,
        },
        operation_id="prometheus_metrics",
        summary="Prometheus metrics (request latency, predictions, routes, queue, null outputs)",
        description="Prometheus text format 0.0.4, or OpenMetrics 1.0 when the `Accept` header "
        "asks for `application/openmetrics-text`; any other `Accept` gets the text format.",
    )
    def get(self, request):
        if scrape_token_presented(request):
            ids = list(UseCase.objects.values_list("id", flat=True))
        else:
            ids = list(use_cases_visible_to(request.user).values_list("id", flat=True))
        encode, content_type = choose_encoder(request.headers.get("Accept", ""))
        body = encode(metrics_registry(use_case_ids=ids))
        return HttpResponse(body, content_type=content_type)


class MetricsApi(APIView):
    permission_classes = [RolesAllowed]
    allowed_roles = {"GET": ANALYSTS}

    @extend_schema(
        parameters=[
            OpenApiParameter("since", OpenApiTypes.DATETIME),
            OpenApiParameter("until", OpenApiTypes.DATETIME),
            OpenApiParameter(
                "model_version",
                str,
                description="Only this version's predictions (a challenger's in shadow too); "
                "by default every version as it routed the items.",
            ),
        ],
        responses=MetricsOutput,
        summary="Automation, quality, latency and input-health figures for a period",
        description="Read from the hourly monitoring rollups, as the dashboards are: `since` "
        "is rounded down and `until` up to whole hours (`window` says which). `evidence` gives "
        "every rate and error figure as `{value, low, high, n, method, too_few}`: a 95% "
        "interval (Wilson for proportions, Student-t for MSE/MAE) and `too_few` under 30 "
        "items. `estimates` gives the model's quality under routing, each with a `label`: "
        "`model_accuracy` (over all scored items, reviewed and audited items weighted by their "
        "sampling probability), `reviewed_agreement` (among reviewed items only, which are the "
        "hard ones at `partial`), `automated_error_rate` (from audits) and "
        "`wrong_automated_decisions` (that rate times the automated items).",
    )
    def get(self, request, slug):
        use_case = use_case_get_for(user=request.user, slug=slug)
        since, until = window_params(request.query_params)
        version = request.query_params.get("model_version")
        model_version = (
            model_version_get(use_case=use_case, version=version, field="model_version")
            if version
            else None
        )
        return Response(
            metrics_summary(
                use_case=use_case, model_version=model_version, since=since, until=until
            )
        )
