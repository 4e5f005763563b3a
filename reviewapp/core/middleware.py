import time

from django.http import HttpRequest, HttpResponse, JsonResponse

from reviewapp.core.errors import (
    DATABASE_RETRY_AFTER,
    DATABASE_UNAVAILABLE_BODY,
    database_unavailable,
)


class ServerTimingMiddleware:
    """Adds ``Server-Timing: app;dur=<ms>`` so clients (and the benchmarks) can read how long
    the server spent on a request, apart from the network."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        elapsed = (time.perf_counter() - started) * 1000
        response["Server-Timing"] = f"app;dur={elapsed:.2f}"
        return response


class DatabaseUnavailableMiddleware:
    """A view that loses the database answers 503 with Retry-After and the API's error body,
    not a 500: nothing was committed and the request can be retried. (Losses outside a view,
    in other middleware, reach ``handler500``: ``reviewapp.core.views.server_error``.)"""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exc: Exception) -> HttpResponse | None:
        return database_unavailable_response() if database_unavailable(exc) else None


def database_unavailable_response() -> HttpResponse:
    response = JsonResponse(DATABASE_UNAVAILABLE_BODY, status=503)
    response["Retry-After"] = DATABASE_RETRY_AFTER
    return response
