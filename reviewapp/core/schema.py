"""The OpenAPI schema documents the error responses every operation can give.

Views declare their successes with ``@extend_schema``; the errors follow from what the view is
(authenticated, addressed by path parameters, taking input, throttled), so they are added here
once instead of on each view. Every error body is the API's error shape: an object naming the
field and its problems, or ``{"detail": ...}``.
"""

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse

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
        errors: dict[int, str] = {}
        if self.method in _WRITES or self.get_override_parameters():
            errors[400] = "The request is malformed; the body names each bad field."
        if self.get_auth():
            errors[401] = "No valid token or session."
            errors[403] = "The caller's role may not do this."
        if "{" in self.path:
            errors[404] = "Nothing at this path (or the caller may not see it)."
        if self.method in _WRITES:
            errors[409] = "The request conflicts with the current state."
        if self.view.get_throttles():
            errors[429] = "Too many requests; retry after the Retry-After header's seconds."
        return errors


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
