"""Pieces every API view uses: role-based permissions and query-parameter parsing."""

from datetime import datetime

from django.utils.dateparse import parse_date, parse_datetime
from django.utils.timezone import make_aware
from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.utils import OpenApiParameter, extend_schema_field
from rest_framework import serializers
from rest_framework.permissions import BasePermission
from rest_framework.renderers import JSONRenderer

from reviewapp.core.errors import InvalidInput, excerpt
from reviewapp.core.roles import Role, user_roles


class RolesAllowed(BasePermission):
    """Admit the roles the view lists for the request's method in ``allowed_roles``."""

    message = "Your role does not allow this."

    def has_permission(self, request, view) -> bool:
        if not request.user or not request.user.is_authenticated:
            return False
        if not hasattr(view, request.method.lower()):
            # No such operation: let the view answer 405, which says so, rather than 403.
            return True
        allowed = view.allowed_roles.get(request.method)
        if allowed is None and request.method in ("HEAD", "OPTIONS"):
            allowed = view.allowed_roles.get("GET")
        return bool(allowed and user_roles(request.user) & allowed)


class FileAnswerNegotiation:
    """For a view whose body is a file, in the media type its schema declares, whatever the
    Accept header says: a client asking for that type (``Accept: text/csv``) gets it rather
    than a 406, and the view's errors stay JSON."""

    def perform_content_negotiation(self, request, force=False):
        return JSONRenderer(), JSONRenderer.media_type


EVERYONE = frozenset(Role)
MANAGERS = frozenset({Role.MANAGER, Role.ADMIN})
MODEL_OWNERS = frozenset({Role.ML_ENGINEER, Role.MANAGER, Role.ADMIN})
ANALYSTS = frozenset({Role.ML_ENGINEER, Role.MANAGER, Role.ADMIN})
CALLERS = frozenset({Role.INTEGRATION, Role.MANAGER, Role.ML_ENGINEER, Role.ADMIN})
REVIEWERS = frozenset({Role.REVIEWER, Role.MANAGER, Role.ADMIN})


def datetime_param(params, name: str) -> datetime | None:
    """An ISO 8601 date or date-time query parameter, naive values read as UTC."""
    raw = params.get(name)
    if raw in (None, ""):
        return None
    try:
        value = parse_datetime(raw)
        if value is None:
            day = parse_date(raw)
            value = datetime(day.year, day.month, day.day) if day else None
    except ValueError:
        value = None
    if value is None:
        raise InvalidInput({name: ["an ISO 8601 date or date-time is required"]})
    if value.tzinfo is None:
        value = make_aware(value)
    return value


def window_params(params) -> tuple[datetime | None, datetime | None]:
    since, until = datetime_param(params, "since"), datetime_param(params, "until")
    if since and until and since >= until:
        raise InvalidInput({"until": ["must be after since"]})
    return since, until


def choice_param(params, name: str, choices, default=None):
    """One of ``choices``, or ``default`` when the parameter is left out; sent empty it is
    refused like any other value outside the choices (the schema declares an enum)."""
    raw = params.get(name)
    if raw is None:
        return default
    if raw not in choices:
        raise InvalidInput({name: [f"must be one of {', '.join(choices)}"]})
    return raw


EMPTY_REFUSED = "must not be empty; leave the parameter out instead"


def params_not_empty(params, names) -> None:
    """Refuse, naming each, the parameters among ``names`` sent with an empty value
    (``?kind=``): their schema (an enum, a number) has no empty value, unlike a date's, whose
    empty value means no bound."""
    empty = [name for name in names if name in params and params.get(name) == ""]
    if empty:
        raise InvalidInput({name: [EMPTY_REFUSED] for name in empty})


class _OfJsonType:
    """DRF's fields convert between JSON types (``"reason": 0`` becomes ``"0"``, ``"0.5"``
    becomes 0.5, ``"yes"`` becomes True); the API refuses a value of another type than the
    schema declares, naming the field."""

    json_types: tuple[type, ...] = ()
    default_error_messages = {"wrong_type": "has the wrong type"}

    def to_internal_value(self, data):
        if not isinstance(data, self.json_types) or (
            isinstance(data, bool) and bool not in self.json_types
        ):
            self.fail("wrong_type")
        return super().to_internal_value(data)


class TextField(_OfJsonType, serializers.CharField):
    """A CharField of an input body that takes text only."""

    json_types = (str,)
    default_error_messages = {"wrong_type": "must be a string"}


class SlugTextField(_OfJsonType, serializers.SlugField):
    """A SlugField of an input body that takes text only."""

    json_types = (str,)
    default_error_messages = {"wrong_type": "must be a string"}


class NumberField(_OfJsonType, serializers.FloatField):
    """A FloatField of an input body that takes JSON numbers only."""

    json_types = (int, float)
    default_error_messages = {"wrong_type": "must be a number"}


class WholeNumberField(_OfJsonType, serializers.IntegerField):
    """An IntegerField of an input body that takes JSON numbers only."""

    json_types = (int, float)
    default_error_messages = {"wrong_type": "must be a whole number"}


class TrueFalseField(_OfJsonType, serializers.BooleanField):
    """A BooleanField of an input body that takes true or false only."""

    json_types = (bool,)
    default_error_messages = {"wrong_type": "must be true or false"}


class TextFieldSchema(OpenApiSerializerFieldExtension):
    """A text field that may not be blank says so in requests. DRF trims the text and then
    refuses it empty, so the schema asks for at least one character that is not white space."""

    target_class = TextField
    match_subclasses = True

    def map_serializer_field(self, auto_schema, direction):
        schema = auto_schema._map_serializer_field(self.target, direction, bypass_extensions=True)
        plain = schema.get("type") == "string" and not {"format", "enum", "anyOf"} & set(schema)
        if direction == "request" and plain and not self.target.allow_blank:
            schema.setdefault("minLength", 1)
            schema.setdefault("pattern", r"\S")
        return schema


MOMENT_SCHEMA = {"type": "string", "anyOf": [{"format": "date"}, {"format": "date-time"}]}


@extend_schema_field(MOMENT_SCHEMA)
class MomentField(TextField):
    """An ISO 8601 date or date-time, parsed by ``datetime_param``."""


@extend_schema_field({"type": "string", "anyOf": [*MOMENT_SCHEMA["anyOf"], {"maxLength": 0}]})
class MomentOrBlankField(MomentField):
    """A date or date-time, or an empty string that sets nothing (what a form sends)."""


def response_header(name: str, description: str) -> OpenApiParameter:
    """A header every 200 of a file answer carries, declared for the schema."""
    return OpenApiParameter(
        name, str, OpenApiParameter.HEADER, required=True, response=[200], description=description
    )


def attachment_header(file_name: str) -> OpenApiParameter:
    return response_header("Content-Disposition", f"attachment; filename={file_name}")


IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
# Stored beside the decision (``Decision.idempotency_key``); longer keys would not fit.
IDEMPOTENCY_KEY_MAX = 200


def idempotency_key_header(request) -> str | None:
    """The request's Idempotency-Key, or None when it sent none.

    A key is 1 to 200 visible ASCII characters (a UUID fits): anything else is refused with a
    400 naming the header, before any write, so a retry with a fixed key can still succeed.
    """
    raw = request.headers.get(IDEMPOTENCY_KEY_HEADER)
    if raw is None:
        return None
    if not raw or len(raw) > IDEMPOTENCY_KEY_MAX or not all("!" <= ch <= "~" for ch in raw):
        raise InvalidInput(
            {
                IDEMPOTENCY_KEY_HEADER: [
                    f"1 to {IDEMPOTENCY_KEY_MAX} visible ASCII characters, no spaces"
                ]
            }
        )
    return raw


def body_fields_check(data, allowed: set[str]) -> dict:
    """The JSON body as a dict; unknown top-level fields are named, not ignored."""
    if not isinstance(data, dict):
        raise InvalidInput({"non_field_errors": ["the body must be a JSON object"]})
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise InvalidInput({excerpt(name): ["unknown field"] for name in unknown})
    return data


class EstimateOutput(serializers.Serializer):
    """A figure with its evidence, as every API gives one (``Estimate.as_dict``)."""

    value = serializers.FloatField(allow_null=True)
    low = serializers.FloatField(allow_null=True, help_text="95% interval, low end")
    high = serializers.FloatField(allow_null=True, help_text="95% interval, high end")
    n = serializers.IntegerField(help_text="items behind the figure")
    method = serializers.CharField(
        help_text="wilson (proportions), t (means) or stratified (weighted by routing)"
    )
    too_few = serializers.BooleanField(help_text="fewer than 30 items: read it as a hint")
