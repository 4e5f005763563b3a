"""The OpenAPI schema documents the error responses every operation can give.

Views declare their successes with ``@extend_schema``; the errors follow from what the view is
(authenticated, addressed by path parameters, taking input, throttled), so they are added here
once instead of on each view. Every error body is the API's error shape: an object naming the
field and its problems, or ``{"detail": ...}``.
"""

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse
from rest_framework.views import APIView

ERROR_BODY = {
    "type": "object",
    "additionalProperties": True,
    "description": 'Field names mapped to their problems, or {"detail": "..."}.',
}
_WRITES = {"POST", "PUT", "PATCH", "DELETE"}


def _error(description: str) -> OpenApiResponse:
    return OpenApiResponse(ERROR_BODY, description=description)


class ReviewAppSchema(AutoSchema):
    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        for code, description in self._error_responses().items():
            if str(code) not in responses:
                responses[str(code)] = self._get_response_for_code(
                    _error(description).response, str(code), ["application/json"], direction
                )
                responses[str(code)]["description"] = description
        return responses

    def _error_responses(self) -> dict[int, str]:
        # Any request can be a 400: a path or query parameter holding NUL or an unpaired
        # surrogate is refused before any view (reviewapp.core.url_input).
        errors: dict[int, str] = {
            400: "The request is malformed; the body names each bad field or parameter."
        }
        if self.get_auth():
            errors[401] = "No valid token or session."
            errors[403] = "The caller's role may not do this."
        if "{" in self.path:
            errors[404] = "Nothing at this path (or the caller may not see it)."
        if self.method in _WRITES:
            errors[409] = "The request conflicts with the current state."
        if self.view.get_throttles():
            errors[429] = "Too many requests; retry after the Retry-After header's seconds."
        if type(self.view).perform_content_negotiation is APIView.perform_content_negotiation:
            errors[406] = "The Accept header names no media type this path answers with."
        return errors

    def _get_request_for_media_type(self, serializer, direction="request"):
        # DRF validates a PATCH body as partial, and the schema says so; a view that validates
        # its PATCH body whole (every field optional but a required reason, say) marks its
        # serializer ``patch_whole`` and is declared as it is.
        if self.method == "PATCH" and getattr(serializer, "patch_whole", False):
            self.method = "PUT"
            try:
                return super()._get_request_for_media_type(serializer, direction)
            finally:
                self.method = "PATCH"
        return super()._get_request_for_media_type(serializer, direction)

    def get_tags(self) -> list[str]:
        tags = super().get_tags()
        if tags == self._tokenize_path()[:1]:
            # Nothing declared: the default names the path's first word ("api").
            return [area_of(self.path)]
        return tags

    def get_operation_id(self) -> str:
        return readable_operation_id(super().get_operation_id(), self.path)


def request_bodies_closed(result, generator, request, public):
    """Request bodies name every field they take: the API refuses unknown fields (400, naming
    them) rather than ignoring a typo, so the schema says ``additionalProperties: false``."""
    for name, component in result.get("components", {}).get("schemas", {}).items():
        if name.endswith("Request") and component.get("type") == "object":
            component.setdefault("additionalProperties", False)
    return result


def empty_query_dates_allowed(result, generator, request, public):
    """An empty date query parameter (``?since=``, as a filter form sends it) means no bound,
    so the schema lets a date or date-time parameter be empty too."""
    for path in result.get("paths", {}).values():
        for operation in path.values():
            for parameter in operation.get("parameters", []) if isinstance(operation, dict) else []:
                schema = parameter.get("schema", {})
                if parameter.get("in") == "query" and schema.get("format") in ("date", "date-time"):
                    parameter["schema"] = {"anyOf": [schema, {"type": "string", "maxLength": 0}]}
    return result


# Every error body, whatever the status, is this one shape.
ERROR_COMPONENT = {
    "type": "object",
    "description": (
        "An error. Field names map to their problems (a list of messages, or a nested object "
        "for nested fields); `detail` says what went wrong when no single field is to blame; "
        "`code` names the kind of error when there is one."
    ),
    "properties": {
        "detail": {"type": "string"},
        "code": {
            "type": "string",
            "description": "Machine-readable: `invalid` (a field or parameter named in the "
            "body), `parse_error`, `bad_request`, `not_authenticated`, `authentication_failed`, "
            "`permission_denied`, `not_found`, `method_not_allowed`, `not_acceptable`, "
            "`conflict` (or a narrower one such as `decided`, `lease_lost`), `too_large`, "
            "`unsupported_media_type`, `throttled`, `database_unavailable`...",
        },
    },
    "required": ["code"],
    "additionalProperties": {
        "oneOf": [
            {"type": "array", "items": {}},
            {"type": "object", "additionalProperties": True},
            {"type": "string"},
        ]
    },
}
_ERROR_REF = {"$ref": "#/components/schemas/Error"}


_RETRY_AFTER = {
    "Retry-After": {
        "schema": {"type": "integer", "minimum": 0},
        "description": "Seconds to wait before retrying.",
    }
}


# DRF answers 401 (rather than 403) only when it can name the scheme to authenticate with.
_WWW_AUTHENTICATE = {
    "WWW-Authenticate": {
        "schema": {"type": "string"},
        "required": True,
        "description": "The scheme to authenticate with (`Bearer`).",
    }
}


def errors_share_one_shape(result, generator, request, public):
    """Every 4xx and 5xx response of every operation, new ones included, refers to the one
    ``Error`` component. A database outage (503) can happen on any operation; an unsupported
    body type (415) on any that takes a body, a body over ``API_MAX_BODY_BYTES`` (413) on any
    that takes JSON. A 429 and a 503 say when to retry (``Retry-After``), a 401 how to
    authenticate (``WWW-Authenticate``)."""
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_COMPONENT
    for path in result.get("paths", {}).values():
        for operation in path.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            if "requestBody" in operation:
                responses.setdefault(
                    "415", {"description": "The body's media type is not one this path reads."}
                )
            if "application/json" in operation.get("requestBody", {}).get("content", {}):
                responses.setdefault(
                    "413", {"description": "The body is larger than this API reads."}
                )
            responses.setdefault(
                "503", {"description": "The database is unavailable; retry after Retry-After."}
            )
            for code, response in responses.items():
                if code.isdigit() and int(code) >= 400:
                    response["content"] = {"application/json": {"schema": dict(_ERROR_REF)}}
                if code in ("429", "503"):
                    response.setdefault("headers", {}).update(_RETRY_AFTER)
                if code == "401":
                    response.setdefault("headers", {}).update(_WWW_AUTHENTICATE)
    return result


# Operations are grouped by the area of the app they belong to, read from the path, so a new
# path joins its area without a declaration of its own.
_AREAS = {
    "policy": "policy",
    "backtests": "policy",
    "models": "models",
    "items": "items",
    "review": "review",
    "outcomes": "outcomes",
    "exports": "datasets",
    "disagreements": "datasets",
    "retrainings": "datasets",
    "metrics": "monitoring",
    "readiness": "monitoring",
    "slices": "monitoring",
    "webhooks": "webhooks",
    "jobs": "jobs",
    "tokens": "tokens",
    "api-tokens": "tokens",
    "change-requests": "policy",
}


def area_of(path: str) -> str:
    parts = [part for part in path.strip("/").split("/") if part]
    if parts[:2] == ["api", "v1"]:
        parts = parts[2:]
    if not parts:
        return "api"
    if parts[0] == "use-cases":
        if len(parts) <= 2:
            return "use cases"
        return _AREAS.get(parts[2], parts[2].replace("-", " "))
    return _AREAS.get(parts[0], parts[0].replace("-", " "))


def readable_operation_id(operation_id: str, path: str) -> str:
    """``api_v1_use_cases_items_create`` reads as ``items_create``: the version prefix says
    nothing, nor does the use case every sub-path sits under."""
    if operation_id.startswith("api_v1_"):
        operation_id = operation_id[len("api_v1_") :]
        parts = [part for part in path.strip("/").split("/") if part]
        if parts[2:3] == ["use-cases"] and len(parts) > 4 and operation_id.startswith("use_cases_"):
            operation_id = operation_id[len("use_cases_") :]
    return operation_id
