"""REST API: webhook endpoints (manager or admin), their deliveries, retries and test events."""

from drf_spectacular.utils import (
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from reviewapp.core.api import MANAGERS, RolesAllowed, body_fields_check
from reviewapp.core.errors import InvalidInput
from reviewapp.webhooks.models import EVENT_TYPES, URL_MAX_LENGTH
from reviewapp.webhooks.selectors import (
    deliveries_recent,
    delivery_public,
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

FIELDS = {"url", "events", "use_cases", "active"}


@extend_schema_field(
    {"type": "string", "maxLength": URL_MAX_LENGTH, "pattern": "^[hH][tT][tT][pP][sS]?://"}
)
class _EndpointUrl(serializers.CharField):
    """Checked by the safe-target rules (a public http or https address); declared."""


class EndpointInput(serializers.Serializer):
    url = _EndpointUrl(help_text="http or https, at most 2,000 characters.")
    events = serializers.ListField(child=serializers.ChoiceField(choices=EVENT_TYPES))
    use_cases = serializers.ListField(
        child=serializers.CharField(),
        allow_null=True,
        required=False,
        help_text="Slugs of use cases you are a member of; null (default) for all of them.",
    )
    active = serializers.BooleanField(required=False)


class EndpointPatch(EndpointInput):
    url = _EndpointUrl(required=False)
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=EVENT_TYPES), required=False
    )


class Paused(serializers.Serializer):
    at = serializers.DateTimeField()
    reason = serializers.CharField()


class EndpointOutput(serializers.Serializer):
    id = serializers.IntegerField()
    url = serializers.CharField()
    events = serializers.ListField(child=serializers.CharField())
    use_cases = serializers.ListField(child=serializers.CharField(), allow_null=True)
    active = serializers.BooleanField()
    paused = Paused(allow_null=True)
    created_at = serializers.DateTimeField()


class EndpointWithSecret(EndpointOutput):
    secret = serializers.CharField(help_text="whsec_…; shown only now.")


class DeliveryOutput(serializers.Serializer):
    id = serializers.IntegerField()
    webhook_id = serializers.CharField()
    event = serializers.CharField()
    status = serializers.ChoiceField(choices=["pending", "delivered", "failed"])
    attempts = serializers.IntegerField()
    latency_ms = serializers.IntegerField(allow_null=True)
    response_code = serializers.IntegerField(allow_null=True)
    error = serializers.CharField()
    created_at = serializers.DateTimeField()
    last_attempt_at = serializers.DateTimeField(allow_null=True)
    next_attempt_at = serializers.DateTimeField(allow_null=True)


BAD = OpenApiResponse(description="Invalid input, each field named.")
MISSING = OpenApiResponse(description="No such webhook (or not yours).")


class _ManagersOnly(APIView):
    permission_classes = [RolesAllowed]


class WebhookListApi(_ManagersOnly):
    allowed_roles = {"GET": MANAGERS, "POST": MANAGERS}

    @extend_schema(operation_id="webhooks_list", responses={200: EndpointOutput(many=True)})
    def get(self, request):
        return Response([endpoint_public(e) for e in endpoints_visible_to(request.user)])

    @extend_schema(
        operation_id="webhooks_create",
        request=EndpointInput,
        responses={201: EndpointWithSecret, 400: BAD},
    )
    def post(self, request):
        data = body_fields_check(request.data, FIELDS)
        if not isinstance(data.get("active", True), bool):
            # Checked before the endpoint is made: only ``active: false`` changes it after.
            raise InvalidInput({"active": ["true or false"]})
        endpoint = endpoint_create(
            user=request.user,
            url=data.get("url"),
            events=data.get("events"),
            use_cases=data.get("use_cases"),
        )
        if data.get("active") is False:
            endpoint = endpoint_update(endpoint=endpoint, user=request.user, changes=data)
        return Response(endpoint_public(endpoint, secret=True), status=status.HTTP_201_CREATED)


class WebhookDetailApi(_ManagersOnly):
    allowed_roles = {"GET": MANAGERS, "PATCH": MANAGERS, "DELETE": MANAGERS}

    @extend_schema(operation_id="webhooks_read", responses={200: EndpointOutput, 404: MISSING})
    def get(self, request, webhook_id: str):
        return Response(
            endpoint_public(endpoint_get_for(user=request.user, endpoint_id=webhook_id))
        )

    @extend_schema(
        operation_id="webhooks_change",
        request=EndpointPatch,
        responses={200: EndpointOutput, 400: BAD, 404: MISSING},
    )
    def patch(self, request, webhook_id: str):
        endpoint = endpoint_get_for(user=request.user, endpoint_id=webhook_id)
        changes = body_fields_check(request.data, FIELDS)
        endpoint = endpoint_update(endpoint=endpoint, user=request.user, changes=changes)
        return Response(endpoint_public(endpoint))

    @extend_schema(
        operation_id="webhooks_delete",
        responses={
            204: OpenApiResponse(description="Deleted; nothing pending is sent."),
            404: MISSING,
        },
    )
    def delete(self, request, webhook_id: str):
        endpoint_delete(endpoint=endpoint_get_for(user=request.user, endpoint_id=webhook_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class WebhookSecretApi(_ManagersOnly):
    allowed_roles = {"POST": MANAGERS}

    @extend_schema(
        operation_id="webhooks_rotate_secret",
        request=None,
        responses={200: EndpointWithSecret, 404: MISSING},
    )
    def post(self, request, webhook_id: str):
        endpoint = endpoint_get_for(user=request.user, endpoint_id=webhook_id)
        return Response(endpoint_public(endpoint_secret_rotate(endpoint=endpoint), secret=True))


class WebhookDeliveriesApi(_ManagersOnly):
    allowed_roles = {"GET": MANAGERS}

    @extend_schema(
        operation_id="webhooks_deliveries",
        responses={200: DeliveryOutput(many=True), 404: MISSING},
    )
    def get(self, request, webhook_id: str):
        endpoint = endpoint_get_for(user=request.user, endpoint_id=webhook_id)
        return Response([delivery_public(d) for d in deliveries_recent(endpoint=endpoint)])


class WebhookRetryApi(_ManagersOnly):
    allowed_roles = {"POST": MANAGERS}

    @extend_schema(
        operation_id="webhooks_delivery_retry",
        request=None,
        responses={202: DeliveryOutput, 404: MISSING},
    )
    def post(self, request, webhook_id: str, delivery_id: str):
        endpoint = endpoint_get_for(user=request.user, endpoint_id=webhook_id)
        delivery = delivery_retry(endpoint=endpoint, delivery_id=delivery_id)
        deliver.delay_on_commit(delivery_ids=[delivery.pk])
        return Response(delivery_public(delivery), status=status.HTTP_202_ACCEPTED)


class WebhookTestApi(_ManagersOnly):
    allowed_roles = {"POST": MANAGERS}

    @extend_schema(
        operation_id="webhooks_test",
        request=None,
        responses={
            202: inline_serializer("WebhookTestSent", {"delivery": serializers.IntegerField()}),
            404: MISSING,
        },
    )
    def post(self, request, webhook_id: str):
        endpoint = endpoint_get_for(user=request.user, endpoint_id=webhook_id)
        delivery = endpoint_test_send(endpoint=endpoint, user=request.user)
        deliver.delay_on_commit(delivery_ids=[delivery.pk])
        return Response({"delivery": delivery.pk}, status=status.HTTP_202_ACCEPTED)
