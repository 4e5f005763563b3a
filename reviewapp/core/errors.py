"""Domain errors and their translation into API responses.

Services raise these; API views and pages translate them. Each names the field it is about so
the caller can fix the request: ``{"features": {"age": ["required"]}}``.
"""

import re
from typing import Any

from django.conf import settings
from rest_framework import status
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.response import Response


class DomainError(Exception):
    status_code = status.HTTP_400_BAD_REQUEST
    code = "invalid"

    def __init__(self, detail: Any):
        super().__init__(detail)
        self.detail = detail


class InvalidInput(DomainError):
    """The request is malformed; ``detail`` maps field names to their problems."""


class NotFound(DomainError):
    status_code = status.HTTP_404_NOT_FOUND
    code = "not_found"


class Forbidden(DomainError):
    status_code = status.HTTP_403_FORBIDDEN
    code = "forbidden"


class Conflict(DomainError):
    status_code = status.HTTP_409_CONFLICT
    code = "conflict"


class ServiceUnavailable(DomainError):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    code = "unavailable"


# The two keys every error body may carry besides field names (the schema's ``Error``).
ERROR_KEYS = ("detail", "code")


def error_body(detail: Any, *, code: str) -> dict:
    """``detail`` in the API's one error shape: an object naming fields or giving a ``detail``,
    always with a machine-readable ``code`` (the raiser's own, when it gave one).

    A list of messages is kept under ``non_field_errors``; a field literally named ``code`` or
    ``detail`` (an unknown field a caller sent) is named there too, so those keys keep their
    declared meaning."""
    if isinstance(detail, list):
        body: dict = {"non_field_errors": detail}
    elif isinstance(detail, dict):
        body = dict(detail)
    else:
        body = {"detail": str(detail)}
    for key in ERROR_KEYS:
        value = body.get(key)
        if value is not None and not isinstance(value, str):
            messages = value if isinstance(value, list) else [value]
            body.pop(key)
            body.setdefault("non_field_errors", [])
            body["non_field_errors"] = list(body["non_field_errors"]) + [
                f"{key}: {message}" for message in messages
            ]
    if not isinstance(body.get("code"), str) or not body["code"]:
        body["code"] = code
    return body


# Characters a JSON response cannot carry as UTF-8 (unpaired surrogates) or that a log or
# terminal shows badly (NUL): an excerpt spells them as escapes.
_UNRENDERABLE = re.compile("[\x00\ud800-\udfff]")
# An error body names at most this many fields per object or list; the rest are counted.
ERROR_ENTRIES_SHOWN = 100


def excerpt(text: Any, *, limit: int | None = None) -> str:
    """``text`` as at most ``limit`` characters (``API_ERROR_EXCERPT_CHARS``), unrenderable
    characters spelled as escapes, so an error message never repeats a whole hostile value."""
    limit = limit or settings.API_ERROR_EXCERPT_CHARS
    text = str(text)
    cut = text if len(text) <= limit else text[: limit - 1] + "…"
    return _UNRENDERABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", cut)


def detail_bounded(detail: Any) -> Any:
    """An error body with every name and message cut to an excerpt and at most
    ``ERROR_ENTRIES_SHOWN`` entries per object or list: whatever was sent (a 1 MB field name,
    a 1 MB value echoed in a message), the answer stays small."""
    if isinstance(detail, dict):
        # A "more" the raiser wrote (a batch counts its bad rows) is kept as it is.
        entries = [(key, value) for key, value in detail.items() if key != "more"]
        shown = {
            excerpt(key): detail_bounded(value) for key, value in entries[:ERROR_ENTRIES_SHOWN]
        }
        hidden = len(entries) - ERROR_ENTRIES_SHOWN
        if "more" in detail:
            shown["more"] = detail_bounded(detail["more"])
        elif hidden > 0:
            shown["more"] = [f"{hidden} more have errors"]
        return shown
    if isinstance(detail, list):
        shown = [detail_bounded(value) for value in detail[:ERROR_ENTRIES_SHOWN]]
        if len(detail) > ERROR_ENTRIES_SHOWN:
            shown.append(f"{len(detail) - ERROR_ENTRIES_SHOWN} more")
        return shown
    if isinstance(detail, str):
        # An ErrorDetail keeps its code; a cut message is plain text.
        return detail if len(detail) <= settings.API_ERROR_EXCERPT_CHARS else excerpt(detail)
    return detail


DATABASE_RETRY_AFTER = "2"
DATABASE_UNAVAILABLE_BODY = {
    "detail": "The database is unavailable; nothing was saved. Retry shortly.",
    "code": "database_unavailable",
}


def database_unavailable(exc: BaseException) -> bool:
    """The database went away (restarted, connection terminated, unreachable): the request's
    transaction did not commit, so the caller may safely retry."""
    from django.db import InterfaceError, OperationalError

    if isinstance(exc, OperationalError | InterfaceError):
        return True
    # Streams read on a psycopg connection of their own (exports), past Django's wrappers.
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a dependency
        return False
    return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)


def api_exception_handler(exc: Exception, context: dict) -> Response | None:
    if isinstance(exc, DomainError):
        body = error_body(detail_bounded(exc.detail), code=exc.code)
        return Response(body, status=exc.status_code)
    if database_unavailable(exc):
        return Response(
            DATABASE_UNAVAILABLE_BODY,
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": DATABASE_RETRY_AFTER},
        )
    # Imported here: rest_framework.views reads DEFAULT_PARSER_CLASSES when imported, and the
    # parser it names (reviewapp.core.json_input) raises this module's errors.
    from rest_framework.views import exception_handler

    response = exception_handler(exc, context)
    if response is not None:
        response.data = error_body(detail_bounded(response.data), code=_drf_code(exc))
    return response


def _drf_code(exc: Exception) -> str:
    """The code DRF gives the error (``not_authenticated``, ``throttled``...): the detail's own
    when it is one message, else the exception's default (``invalid`` for field errors)."""
    detail = getattr(exc, "detail", None)
    own = getattr(detail, "code", None)
    if isinstance(own, str) and own:
        return own
    return getattr(exc, "default_code", None) or "error"


def raise_for_serializer(serializer) -> None:
    """Turn serializer errors into the API's error shape (the same shape DRF uses)."""
    if not serializer.is_valid():
        raise ValidationError(serializer.errors)


__all__ = [
    "APIException",
    "Conflict",
    "DomainError",
    "InvalidInput",
    "NotFound",
    "ServiceUnavailable",
    "database_unavailable",
    "detail_bounded",
    "error_body",
    "excerpt",
    "api_exception_handler",
    "raise_for_serializer",
]
