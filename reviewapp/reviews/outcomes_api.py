"""REST API: the outcome feed, every final outcome of a use case once, in commit order."""

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.views import APIView

from deployments.selectors import use_case_get_for
from reviewapp.core.api import CALLERS, RolesAllowed
from reviewapp.core.errors import InvalidInput
from reviewapp.core.events import position_parse
from reviewapp.reviews.outcomes import FEED_LIMIT_MAX, WAIT_MAX_SECONDS, outcomes_wait

FEED_LIMIT_DEFAULT = 100


class OutcomeDecision(serializers.Serializer):
    label = serializers.CharField(required=False, help_text="Classification.")
    value = serializers.FloatField(required=False, help_text="Regression.")
    source = serializers.ChoiceField(choices=["model", "human"])
    by = serializers.CharField(allow_null=True, help_text="The reviewer's username (human).")
    model_version = serializers.CharField(allow_null=True, help_text="The deciding model.")


class Outcome(serializers.Serializer):
    external_id = serializers.CharField()
    decision = OutcomeDecision()
    route = serializers.ChoiceField(choices=["auto", "assisted", "blind", "human"])
    decided_at = serializers.DateTimeField()
    cursor = serializers.CharField(help_text="Pass as `after` to read what follows this one.")


class OutcomeFeed(serializers.Serializer):
    outcomes = Outcome(many=True)
    next = serializers.CharField(help_text="The cursor to pass as `after` on the next call.")


def _int_param(params, name: str, *, default: int, low: int, high: int) -> int:
    raw = params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)  # "" too is not an integer
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise InvalidInput({name: [f"an integer from {low} to {high}"]})
    return value


class OutcomeFeedApi(APIView):
    permission_classes = [RolesAllowed]
    allowed_roles = {"GET": CALLERS}

    @extend_schema(
        operation_id="outcomes_list",
        parameters=[
            OpenApiParameter(
                "after", OpenApiTypes.STR, description="The `next` of the previous call."
            ),
            OpenApiParameter(
                "limit",
                {"type": "integer", "minimum": 1, "maximum": FEED_LIMIT_MAX},
                description=f"1 to {FEED_LIMIT_MAX} (default 100).",
            ),
            OpenApiParameter(
                "wait",
                {"type": "integer", "minimum": 0, "maximum": WAIT_MAX_SECONDS},
                description=f"Seconds (0 to {WAIT_MAX_SECONDS}) to wait for an outcome when "
                "none is ready (long poll).",
            ),
        ],
        responses={
            200: OutcomeFeed,
            400: OpenApiResponse(description="A malformed cursor, limit or wait, named."),
            404: OpenApiResponse(description="No such use case (or not a member)."),
        },
    )
    def get(self, request, slug: str):
        use_case = use_case_get_for(user=request.user, slug=slug)
        after = position_parse(request.query_params.get("after"), field="after")
        limit = _int_param(
            request.query_params, "limit", default=FEED_LIMIT_DEFAULT, low=1, high=FEED_LIMIT_MAX
        )
        wait = _int_param(request.query_params, "wait", default=0, low=0, high=WAIT_MAX_SECONDS)
        body = outcomes_wait(use_case=use_case, after=after, limit=limit, wait=wait, as_json=True)
        # Already JSON: the stored payloads are passed through, not decoded and encoded again.
        return HttpResponse(body, content_type="application/json")
