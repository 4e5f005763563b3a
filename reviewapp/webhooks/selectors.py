"""Reading webhook endpoints and their deliveries, as their owner may see them."""

from typing import Any

from django.db.models import QuerySet

from reviewapp.core.errors import NotFound
from reviewapp.core.roles import Role, has_role
from reviewapp.webhooks.models import Delivery, Endpoint

RECENT_DELIVERIES = 50


def endpoints_visible_to(user) -> QuerySet[Endpoint]:
    """Admins see every endpoint; a manager the endpoints they registered."""
    endpoints = Endpoint.objects.prefetch_related("use_cases").order_by("id")
    return endpoints if has_role(user, Role.ADMIN) else endpoints.filter(created_by=user)


def endpoint_get_for(*, user, endpoint_id: Any) -> Endpoint:
    try:
        endpoint_id = int(endpoint_id)
    except (TypeError, ValueError):
        raise NotFound({"detail": "No such webhook."}) from None
    endpoint = endpoints_visible_to(user).filter(pk=endpoint_id).first()
    if endpoint is None:
        raise NotFound({"detail": "No such webhook."})
    return endpoint


def deliveries_recent(*, endpoint: Endpoint, limit: int = RECENT_DELIVERIES) -> list[Delivery]:
    return list(
        Delivery.objects.filter(endpoint=endpoint).select_related("event").order_by("-id")[:limit]
    )


def endpoint_public(endpoint: Endpoint, *, secret: bool = False) -> dict:
    body = {
        "id": endpoint.pk,
        "url": endpoint.url,
        "events": endpoint.events,
        "use_cases": None
        if endpoint.all_use_cases
        else sorted(u.slug for u in endpoint.use_cases.all()),
        "active": endpoint.active,
        "paused": None
        if endpoint.paused_at is None
        else {"at": endpoint.paused_at, "reason": endpoint.paused_reason},
        "created_at": endpoint.created_at,
    }
    if secret:
        body["secret"] = endpoint.secret
    return body


def delivery_public(delivery: Delivery) -> dict:
    return {
        "id": delivery.pk,
        "webhook_id": delivery.message_id,
        "event": delivery.event.type,
        "status": delivery.state,
        "attempts": delivery.attempts,
        "latency_ms": delivery.last_latency_ms,
        "response_code": delivery.last_status_code,
        "error": delivery.last_error,
        "created_at": delivery.created_at,
        "last_attempt_at": delivery.last_attempt_at,
        "next_attempt_at": delivery.next_attempt_at
        if delivery.state == Delivery.State.PENDING
        else None,
    }
