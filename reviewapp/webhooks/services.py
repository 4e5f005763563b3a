"""Webhooks: registering endpoints, fanning the outbox out to them, delivering with retries.

The fan-out reads the outbox (``reviewapp.core.events``) with its own stored cursor under the
same visibility rule as the outcome feed, so an event is handed to the endpoints once it is
committed and never skipped, whether its commit was announced (``fanout_soon`` after commit)
or not (the broker was down: the beat's sweep reads on from the cursor). Each event becomes one
``Delivery`` per interested endpoint (unique per pair, so a repeated fan-out adds nothing);
a delivery is attempted until the receiver answers 2xx, on the retry schedule
(``WEBHOOK_RETRY_SCHEDULE``, over 24 hours by default), always under the same ``webhook-id``.
"""

import base64
import json
import logging
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from deployments.models import GuardrailBreach, UseCase
from deployments.selectors import policy_current, use_cases_visible_to
from reviewapp.core.bulk import rows_update
from reviewapp.core.errors import InvalidInput, NotFound
from reviewapp.core.events import Position, event_record, events_readable
from reviewapp.core.logs import event_log
from reviewapp.core.models import Event
from reviewapp.webhooks.models import (
    EVENT_TYPES,
    TEST_EVENT,
    URL_MAX_LENGTH,
    Delivery,
    Endpoint,
    FanoutCursor,
)
from reviewapp.webhooks.targets import Response, TargetRefused, TargetSession, target_check

logger = logging.getLogger(__name__)

FANOUT_CURSOR = "webhooks"
# Set while a fan-out is queued and has not started (commits meanwhile need not queue another),
# or for a moment after a commit found no endpoint to hear it. Short-lived, so that with a
# per-process cache (locmem) a commit waits at most this long.
FANOUT_QUEUED_KEY = "webhooks:fanout-queued"
FANOUT_QUEUED_SECONDS = 2
FANOUT_BATCH = 250
# How long a worker holds a delivery it is sending before another may take it.
DELIVERY_LEASE = timedelta(seconds=120)
SUCCESS_NOTED_EVERY = timedelta(seconds=60)


def secret_new() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


# --- endpoints --------------------------------------------------------------------------------


def _fanout_mark_clear() -> None:
    """Endpoints changed: the next commit looks for them again at once."""
    try:
        cache.delete(FANOUT_QUEUED_KEY)
    except Exception:
        logger.warning("cache unavailable; the sweep covers what the next commit misses")


def _url_clean(url: Any) -> str:
    if not isinstance(url, str) or not url:
        raise InvalidInput({"url": ["an http or https URL is required"]})
    if len(url) > URL_MAX_LENGTH:
        raise InvalidInput({"url": [f"at most {URL_MAX_LENGTH} characters"]})
    try:
        target_check(url)
    except TargetRefused as refused:
        raise InvalidInput({"url": [str(refused)]}) from None
    return url


def _events_clean(events: Any) -> list[str]:
    if not isinstance(events, list) or not events or not all(isinstance(e, str) for e in events):
        raise InvalidInput({"events": ["a non-empty list of event types"]})
    unknown = [e for e in events if e not in EVENT_TYPES]
    if unknown:
        raise InvalidInput(
            {"events": [f"unknown event {unknown[0]!r}; one of {', '.join(EVENT_TYPES)}"]}
        )
    return list(dict.fromkeys(events))


def _use_cases_clean(*, user, slugs: Any) -> list | None:
    if slugs is None:
        return None
    if not isinstance(slugs, list) or not all(isinstance(s, str) for s in slugs):
        raise InvalidInput({"use_cases": ["a list of use case slugs, or null for all"]})
    found = {u.slug: u for u in use_cases_visible_to(user).filter(slug__in=slugs)}
    missing = [s for s in slugs if s not in found]
    if missing:
        raise InvalidInput({"use_cases": [f"no use case {missing[0]!r} you are a member of"]})
    return [found[s] for s in dict.fromkeys(slugs)]


@transaction.atomic
def endpoint_create(*, user, url: Any, events: Any, use_cases: Any = None) -> Endpoint:
    """Register an endpoint with a new signing secret (the caller shows it once)."""
    url = _url_clean(url)
    events = _events_clean(events)
    chosen = _use_cases_clean(user=user, slugs=use_cases)
    endpoint = Endpoint.objects.create(
        url=url,
        events=events,
        all_use_cases=chosen is None,
        secret=secret_new(),
        created_by=user,
    )
    if chosen:
        endpoint.use_cases.set(chosen)
    transaction.on_commit(_fanout_mark_clear)
    return endpoint


@transaction.atomic
def endpoint_update(*, endpoint: Endpoint, user, changes: dict[str, Any]) -> Endpoint:
    """Change an endpoint; ``active: true`` also lifts a pause (its pending deliveries resume)."""
    fields = []
    if "url" in changes:
        endpoint.url = _url_clean(changes["url"])
        fields.append("url")
    if "events" in changes:
        endpoint.events = _events_clean(changes["events"])
        fields.append("events")
    if "active" in changes:
        if not isinstance(changes["active"], bool):
            raise InvalidInput({"active": ["true or false"]})
        endpoint.active = changes["active"]
        fields.append("active")
        if endpoint.active:
            endpoint.paused_at, endpoint.paused_reason, endpoint.failing_since = None, "", None
            fields += ["paused_at", "paused_reason", "failing_since"]
    if "use_cases" in changes:
        chosen = _use_cases_clean(user=user, slugs=changes["use_cases"])
        endpoint.all_use_cases = chosen is None
        fields.append("all_use_cases")
        endpoint.use_cases.set(chosen or [])
    if fields:
        endpoint.save(update_fields=fields)
    if endpoint.active and endpoint.paused_at is None:
        Delivery.objects.filter(endpoint=endpoint, state=Delivery.State.PENDING).update(
            next_attempt_at=timezone.now()
        )
    transaction.on_commit(_fanout_mark_clear)
    return endpoint


def endpoint_secret_rotate(*, endpoint: Endpoint) -> Endpoint:
    """A new secret from now on (the caller shows it once); the old one stops signing."""
    endpoint.secret = secret_new()
    endpoint.save(update_fields=["secret"])
    return endpoint


def endpoint_delete(*, endpoint: Endpoint) -> None:
    """Remove the endpoint and its deliveries: nothing pending is sent after this."""
    endpoint.delete()


# --- fan-out ----------------------------------------------------------------------------------


def _interested(endpoints: list[Endpoint]) -> Callable[[Event], list[Endpoint]]:
    scopes: dict[int, set[int]] = {}
    visible_cache: dict[int | None, set[int]] = {}
    for endpoint in endpoints:
        if endpoint.all_use_cases:
            creator = endpoint.created_by
            key = creator.pk if creator else None
            if key not in visible_cache:
                visible_cache[key] = (
                    set(use_cases_visible_to(creator).values_list("pk", flat=True))
                    if creator
                    else set()
                )
            scopes[endpoint.pk] = visible_cache[key]
        else:
            scopes[endpoint.pk] = {u.pk for u in endpoint.use_cases.all()}

    def match(event: Event) -> list[Endpoint]:
        # An endpoint hears what happens from its registration on, not the history before it.
        return [
            e
            for e in endpoints
            if event.type in e.events
            and event.created_at >= e.created_at
            and (event.use_case_id is None or event.use_case_id in scopes[e.pk])
        ]

    return match


GUARDRAIL_EVENT = "guardrail.breached"


def _guardrail_endpoints(events: list[Event]) -> dict[int, Endpoint]:
    """The implicit endpoint of each use case whose breaches are among ``events`` and whose
    current policy names a ``guardrails.webhook_url``: made on first use, its URL kept in step
    with the policy. Call inside the fan-out's transaction."""
    found: dict[int, Endpoint] = {}
    use_case_ids = {e.use_case_id for e in events if e.type == GUARDRAIL_EVENT and e.use_case_id}
    for use_case in UseCase.objects.filter(pk__in=use_case_ids):
        url = (policy_current(use_case=use_case).guardrails or {}).get("webhook_url") or ""
        if not url:
            continue
        endpoint, created = Endpoint.objects.get_or_create(
            guardrail_for=use_case,
            defaults={"url": url, "events": [GUARDRAIL_EVENT], "secret": ""},
        )
        if not created and endpoint.url != url:
            endpoint.url = url
            endpoint.save(update_fields=["url"])
        if endpoint.active and endpoint.paused_at is None:
            found[use_case.pk] = endpoint
    return found


@dataclass(frozen=True)
class Fanout:
    delivery_ids: list[int]
    events_read: int


def events_fanout(*, now: datetime | None = None, batch: int = FANOUT_BATCH) -> Fanout:
    """Turn the next readable events (up to ``batch``) into deliveries.

    Holds the cursor row's lock for the batch, so two fan-outs never hand out the same events.
    """
    now = now or timezone.now()
    with transaction.atomic():
        FanoutCursor.objects.get_or_create(name=FANOUT_CURSOR)
        cursor = FanoutCursor.objects.select_for_update().get(name=FANOUT_CURSOR)
        after = Position(txid=cursor.txid, id=cursor.event_id)
        # The last readable event now. Everything up to it stays readable, so the filtered read
        # below sees every event up to it, and the cursor may skip to it past events no
        # endpoint hears (history from before the first endpoint, test events).
        head = (
            events_readable(after=after).order_by("-txid", "-id").values_list("txid", "id").first()
        )
        if head is None:
            return Fanout(delivery_ids=[], events_read=0)
        endpoints = list(
            Endpoint.objects.filter(active=True, guardrail_for__isnull=True)
            .select_related("created_by")
            .prefetch_related("use_cases")
        )
        heard = Q(type=GUARDRAIL_EVENT)  # a guardrail webhook's endpoint is made on first use
        if endpoints:
            heard |= Q(created_at__gte=min(e.created_at for e in endpoints))
        # The payloads are not needed to hand events out (the deliveries load them).
        events = list(
            events_readable(
                after=after, up_to=Position(*head), filters=heard & ~Q(type=TEST_EVENT)
            ).defer("data")[:batch]
        )
        if len(events) < batch:  # every event up to the head was looked at
            cursor.txid, cursor.event_id = head
        else:
            cursor.txid, cursor.event_id = events[-1].txid, events[-1].id
        cursor.save(update_fields=["txid", "event_id"])
        match = _interested(endpoints)
        deliveries = [
            Delivery(endpoint=endpoint, event=event, next_attempt_at=now, created_at=now)
            for event in events
            for endpoint in match(event)
        ]
        guardrail = _guardrail_endpoints(events)
        deliveries += [
            Delivery(
                endpoint=guardrail[e.use_case_id], event=e, next_attempt_at=now, created_at=now
            )
            for e in events
            if e.type == GUARDRAIL_EVENT and e.use_case_id in guardrail
        ]
        created = Delivery.objects.bulk_create(deliveries, ignore_conflicts=True)
    ids = [d.pk for d in created]
    if created and created[0].pk is None:  # ignore_conflicts returns no ids on some databases
        ids = list(
            Delivery.objects.filter(
                event_id__in=[e.id for e in events], state=Delivery.State.PENDING
            ).values_list("pk", flat=True)
        )
    return Fanout(delivery_ids=ids, events_read=len(events))


# --- delivering -------------------------------------------------------------------------------


def retry_schedule() -> list[float]:
    """Seconds to wait after the 1st, 2nd, ... failed attempt; its length bounds the retries."""
    return [float(s) for s in settings.WEBHOOK_RETRY_SCHEDULE]


def message_body(event: Event, *, endpoint: Endpoint | None = None) -> bytes:
    """The Standard Webhooks envelope; a guardrail webhook gets the breach itself, the body its
    receivers have always had."""
    if endpoint is not None and endpoint.guardrail_for_id is not None:
        return json.dumps(event.data, separators=(",", ":"), default=str).encode()
    payload = {"type": event.type, "timestamp": event.created_at.isoformat(), "data": event.data}
    return json.dumps(payload, separators=(",", ":"), default=str).encode()


def message_headers(*, endpoint: Endpoint, message_id: str, body: bytes, now: datetime) -> dict:
    """Standard Webhooks headers: the id, the time of this attempt, and the signature (an
    endpoint without a secret, a guardrail webhook, is sent unsigned and says so)."""
    headers = {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "User-Agent": "reviewapp-webhooks/1",
    }
    if endpoint.secret:
        headers["webhook-signature"] = Webhook(endpoint.secret).sign(
            msg_id=message_id, timestamp=now, data=body
        )
    else:
        headers["webhook-unsigned"] = "guardrail webhook: no secret is registered"
    return headers


def _claim(*, delivery_ids: list[int], now: datetime) -> list[Delivery]:
    """Take the due pending deliveries among ``delivery_ids`` for one attempt each (a lease):
    not those already done, gone, held by another worker, or whose endpoint is paused."""
    with transaction.atomic():
        deliveries = list(
            Delivery.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("endpoint", "event")
            .filter(
                pk__in=delivery_ids,
                state=Delivery.State.PENDING,
                next_attempt_at__lte=now,
                endpoint__active=True,
                endpoint__paused_at__isnull=True,
            )
            .order_by("id")
        )
        if deliveries:
            Delivery.objects.filter(pk__in=[d.pk for d in deliveries]).update(
                next_attempt_at=now + DELIVERY_LEASE
            )
    # One instance per endpoint, so what one attempt notes on it (a success, a failure) the
    # next attempt of the batch sees, instead of writing the same row again.
    shared: dict[int, Endpoint] = {}
    for delivery in deliveries:
        delivery.endpoint = shared.setdefault(delivery.endpoint_id, delivery.endpoint)
    return deliveries


def deliveries_attempt(
    *,
    delivery_ids: list[int],
    now: datetime | None = None,
    post: Callable[..., Response] | None = None,
) -> dict[int, float]:
    """Attempt the due deliveries among ``delivery_ids``; return, for each that failed and will
    be retried, the seconds until its next attempt is due.

    Claimed in one transaction and recorded in one (one pipelined statement for the whole
    batch), so a batch costs two commits however many deliveries it holds; nothing is held open
    while the receivers answer. The posts go out several at a time over kept-alive connections
    (``_post_all``).
    """
    now = now or timezone.now()
    deliveries = _claim(delivery_ids=delivery_ids, now=now)
    if not deliveries:
        return {}
    answers = _post_all(deliveries=deliveries, now=now, post=post)
    waits: dict[int, float] = {}
    with transaction.atomic():
        for delivery, answer in zip(deliveries, answers, strict=True):
            wait = _attempt_apply(delivery=delivery, answer=answer, now=now)
            if wait is not None:
                waits[delivery.pk] = wait
        _attempts_save(deliveries)
        for delivery, answer in zip(deliveries, answers, strict=True):
            _attempt_effects(delivery=delivery, answer=answer, now=now)
    return waits


def _post_all(
    *, deliveries: list[Delivery], now: datetime, post: Callable[..., Response] | None
) -> list[Response]:
    """Send every delivery, ``WEBHOOK_DELIVERY_CONCURRENCY`` at a time (a slow receiver costs
    its latency once per batch, not once per event), through one ``TargetSession``."""
    answers: list[Response | None] = [None] * len(deliveries)
    pending = iter(range(len(deliveries)))
    lock = threading.Lock()

    send = post or TargetSession().post

    def sender() -> None:
        while True:
            with lock:
                index = next(pending, None)
            if index is None:
                return
            delivery = deliveries[index]
            body = message_body(delivery.event, endpoint=delivery.endpoint)
            headers = message_headers(
                endpoint=delivery.endpoint, message_id=delivery.message_id, body=body, now=now
            )
            answers[index] = send(url=delivery.endpoint.url, body=body, headers=headers)

    senders = max(1, min(settings.WEBHOOK_DELIVERY_CONCURRENCY, len(deliveries)))
    if senders == 1:
        sender()
    else:
        with ThreadPoolExecutor(max_workers=senders, thread_name_prefix="webhook") as pool:
            for running in [pool.submit(sender) for _ in range(senders)]:
                running.result()  # a sender's own error (not a receiver's) is raised here
    return answers  # type: ignore[return-value]  (every index was filled)


def delivery_attempt(
    *, delivery_id: int, now: datetime | None = None, post: Callable[..., Response] | None = None
) -> float | None:
    """Attempt one delivery if it is due; the seconds until its retry is due, or None."""
    return deliveries_attempt(delivery_ids=[delivery_id], now=now, post=post).get(delivery_id)


_ATTEMPT_FIELDS = [
    "attempts",
    "last_status_code",
    "last_latency_ms",
    "last_error",
    "last_attempt_at",
    "state",
    "delivered_at",
    "next_attempt_at",
]


def _attempts_save(deliveries: list[Delivery]) -> None:
    """Write the attempts' outcomes in one statement, conditional on each row still being
    there and pending: a deleted endpoint took its deliveries with it, and a retry button may
    have reset one meanwhile."""
    rows_update(
        Delivery,
        [d.pk for d in deliveries],
        {name: [getattr(d, name) for d in deliveries] for name in _ATTEMPT_FIELDS},
        only_where={"state": Delivery.State.PENDING.value},
    )


def _attempt_apply(*, delivery: Delivery, answer: Response, now: datetime) -> float | None:
    """Set the attempt's outcome on ``delivery`` (saved by the caller); the seconds until its
    retry is due, or None."""
    schedule = retry_schedule()
    delivery.attempts += 1
    delivery.last_status_code = answer.status
    delivery.last_latency_ms = answer.latency_ms
    delivery.last_error = answer.error
    delivery.last_attempt_at = now
    if answer.ok:
        delivery.state, delivery.delivered_at = Delivery.State.DELIVERED, now
        return None
    if delivery.attempts > len(schedule):
        delivery.state = Delivery.State.FAILED
        return None
    wait = schedule[delivery.attempts - 1]
    delivery.next_attempt_at = now + timedelta(seconds=wait)
    return wait


def _attempt_effects(*, delivery: Delivery, answer: Response, now: datetime) -> None:
    """What an attempt changes beyond its delivery: the endpoint's health, a guardrail breach's
    record, the log. Call inside a transaction."""
    _endpoint_health(endpoint=delivery.endpoint, delivery=delivery, now=now)
    if delivery.endpoint.guardrail_for_id is not None:
        _breach_attempt_note(delivery=delivery)
    if not answer.ok:
        event_log(
            "webhook_failed",
            endpoint=delivery.endpoint_id,
            event_id=delivery.event_id,
            attempt=delivery.attempts,
            status=answer.status,
            error=answer.error,
            latency_ms=answer.latency_ms,
        )


def _breach_attempt_note(*, delivery: Delivery) -> None:
    """Keep the breach's own record of its webhook (attempts, error, when delivered)."""
    data = delivery.event.data or {}
    delivered = delivery.state == Delivery.State.DELIVERED
    updates: dict[str, Any] = {
        "notify_attempts": delivery.attempts,
        "notify_error": delivery.last_error
        or (f"HTTP {delivery.last_status_code}" if not delivered else ""),
    }
    if delivered:
        updates["notified_at"] = delivery.delivered_at
    GuardrailBreach.objects.filter(
        use_case_id=delivery.event.use_case_id,
        guardrail=data.get("guardrail"),
        detected_at=data.get("detected_at"),
    ).update(**updates)


def _endpoint_health(*, endpoint: Endpoint, delivery: Delivery, now) -> None:
    """Track how long the endpoint has been failing; pause it once a delivery has used up its
    whole schedule with no success from the endpoint in that time (it keeps failing).

    Writes only when something changes (a success is noted at most once a minute), so a
    healthy endpoint's deliveries do not queue on its row.
    """
    if delivery.state == Delivery.State.DELIVERED:
        fresh = endpoint.last_success_at and now - endpoint.last_success_at < SUCCESS_NOTED_EVERY
        if endpoint.failing_since is not None or not fresh:
            endpoint.failing_since, endpoint.last_success_at = None, now
            Endpoint.objects.filter(pk=endpoint.pk).update(failing_since=None, last_success_at=now)
        return
    if endpoint.failing_since is None:
        endpoint.failing_since = now
        Endpoint.objects.filter(pk=endpoint.pk).update(failing_since=now)
    no_success_since = endpoint.last_success_at is None or (
        endpoint.last_success_at < delivery.created_at
    )
    if delivery.state == Delivery.State.FAILED and no_success_since:
        endpoint.paused_at = now
        endpoint.paused_reason = (
            f"Paused after failing since {endpoint.failing_since:%Y-%m-%d %H:%M} UTC: "
            f"{delivery.last_error or 'no answer'}. Fix the receiver, then resume it."
        )
        Endpoint.objects.filter(pk=endpoint.pk).update(
            paused_at=now, paused_reason=endpoint.paused_reason
        )
        # The notice: managers see it on the webhooks page (a banner) and in the log.
        logger.warning("webhook endpoint %s paused: %s", endpoint.pk, endpoint.paused_reason)
        event_log("webhook_paused", endpoint=endpoint.pk, url=endpoint.url)


def deliveries_due(*, now: datetime | None = None, limit: int = 1000) -> list[int]:
    """Pending deliveries whose attempt is due (the sweep's work)."""
    now = now or timezone.now()
    return list(
        Delivery.objects.filter(
            state=Delivery.State.PENDING,
            next_attempt_at__lte=now,
            endpoint__active=True,
            endpoint__paused_at__isnull=True,
        )
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    )


def delivery_retry(*, endpoint: Endpoint, delivery_id: Any, now=None) -> Delivery:
    """The retry button: attempt a delivery again now, whatever its state (same webhook-id)."""
    now = now or timezone.now()
    try:
        delivery_id = int(delivery_id)
    except (TypeError, ValueError):
        raise NotFound({"detail": "No such delivery."}) from None
    updated = Delivery.objects.filter(pk=delivery_id, endpoint=endpoint).update(
        state=Delivery.State.PENDING, next_attempt_at=now, attempts=0
    )
    if not updated:
        raise NotFound({"detail": "No such delivery."})
    return Delivery.objects.get(pk=delivery_id)


@transaction.atomic
def endpoint_test_send(*, endpoint: Endpoint, user, now=None) -> Delivery:
    """The "send a test event" button: a ``webhook.test`` delivery to this endpoint only."""
    now = now or timezone.now()
    event = event_record(
        type=TEST_EVENT,
        use_case_id=None,
        data={"endpoint": endpoint.pk, "sent_by": user.get_username()},
    )
    return Delivery.objects.create(
        endpoint=endpoint, event=event, next_attempt_at=now, created_at=now
    )
