"""REST API: personal API tokens (everyone, their own) and service accounts' tokens (admin)."""

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from reviewapp.core.api import EVERYONE, RolesAllowed, TextField, body_fields_check
from reviewapp.core.errors import raise_for_serializer
from reviewapp.core.tokens import (
    api_token_create,
    api_token_public,
    api_token_revoke,
    api_tokens_visible_to,
)


class TokenInput(serializers.Serializer):
    name = TextField(max_length=100)
    expires_at = serializers.DateTimeField(
        required=False, allow_null=True, help_text="ISO 8601, in the future; null never expires."
    )
    service_account = TextField(
        required=False,
        max_length=150,
        help_text="Admin only: the service account (an integration user, made if new) to "
        "give the token to.",
    )


class TokenOutput(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    prefix = serializers.CharField(help_text="The key's first characters, to tell tokens apart.")
    user = serializers.CharField(help_text="Owner's user name (you, or a service account).")
    created_at = serializers.DateTimeField()
    last_used_at = serializers.DateTimeField(allow_null=True)
    expires_at = serializers.DateTimeField(allow_null=True)


class TokenWithKey(TokenOutput):
    key = serializers.CharField(help_text="rvt_…; shown only now, stored hashed.")


class TokenListApi(APIView):
    permission_classes = [RolesAllowed]
    allowed_roles = {"GET": EVERYONE, "POST": EVERYONE}

    @extend_schema(operation_id="tokens_list", responses={200: TokenOutput(many=True)})
    def get(self, request):
        return Response([api_token_public(t) for t in api_tokens_visible_to(request.user)])

    @extend_schema(
        operation_id="tokens_create",
        request=TokenInput,
        responses={201: TokenWithKey, 400: OpenApiResponse(description="Invalid input.")},
    )
    def post(self, request):
        serializer = TokenInput(data=body_fields_check(request.data, set(TokenInput().fields)))
        raise_for_serializer(serializer)
        token, key = api_token_create(user=request.user, **serializer.validated_data)
        return Response(api_token_public(token, key=key), status=status.HTTP_201_CREATED)


class TokenDetailApi(APIView):
    permission_classes = [RolesAllowed]
    allowed_roles = {"DELETE": EVERYONE}

    @extend_schema(
        operation_id="tokens_revoke",
        responses={204: None, 404: OpenApiResponse(description="No such token (or not yours).")},
    )
    def delete(self, request, token_id: str):
        api_token_revoke(user=request.user, token_id=token_id)
        return Response(status=status.HTTP_204_NO_CONTENT)
