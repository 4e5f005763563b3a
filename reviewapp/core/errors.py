"""Domain errors and their translation into API responses.

Services raise these; API views and pages translate them. Each names the field it is about so
the caller can fix the request: ``{"features": {"age": ["required"]}}``.
"""

from typing import Any

from rest_framework import status
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.response import Response
from rest_framework.views import exception_handler


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


class Conflict(DomainError):
    status_code = status.HTTP_409_CONFLICT
    code = "conflict"


class ServiceUnavailable(DomainError):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    code = "unavailable"


def _as_body(detail: Any) -> Any:
    if isinstance(detail, dict | list):
        return detail
    return {"detail": str(detail)}


DATABASE_RETRY_AFTER = "2"
DATABASE_UNAVAILABLE_BODY = {
    "detail": "The database is unavailable; nothing was saved. Retry shortly.",
    "code": "database_unavailable",
}


def database_unavailable(exc: BaseException) -> bool:
    """The database went away (restarted, connection terminated, unreachable): the request's
    transaction did not commit, so the caller may safely retry."""
    from django.db import InterfaceError, OperationalError

    return isinstance(exc, OperationalError | InterfaceError)


def api_exception_handler(exc: Exception, context: dict) -> Response | None:
    if isinstance(exc, DomainError):
        return Response(_as_body(exc.detail), status=exc.status_code)
    if database_unavailable(exc):
        return Response(
            DATABASE_UNAVAILABLE_BODY,
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": DATABASE_RETRY_AFTER},
        )
    return exception_handler(exc, context)


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
    "api_exception_handler",
    "raise_for_serializer",
]
