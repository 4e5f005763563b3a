"""Per request: the request id (honouring an incoming X-Request-ID), its latency in the
Prometheus histogram and in this process's heartbeat counters (memory only: the heartbeat
thread writes them), and one JSON access-log line."""

import logging
import time

from reviewapp.core.logs import event_log
from reviewapp.core.request_context import HEADER, request_id_clean, request_id_var
from reviewapp.monitoring.heartbeats import web_request_count
from reviewapp.monitoring.prometheus import request_observe


class RequestIdMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request_id = request_id_clean(request.headers.get(HEADER))
        request.request_id = request_id
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        response = None
        try:
            response = self.get_response(request)
            response[HEADER] = request_id
            return response
        finally:
            elapsed = time.perf_counter() - started
            status = response.status_code if response is not None else 500
            match = getattr(request, "resolver_match", None)
            view = match.view_name if match else "unmatched"
            request_observe(method=request.method, view=view, status=status, seconds=elapsed)
            web_request_count(view=view, status=status, seconds=elapsed)
            event_log(
                "request",
                level=logging.INFO if status < 500 else logging.ERROR,
                method=request.method,
                path=request.path,
                view=view,
                status=status,
                duration_ms=round(elapsed * 1000, 2),
                user=request.user.get_username()
                if getattr(request, "user", None) and request.user.is_authenticated
                else None,
            )
            request_id_var.reset(token)
