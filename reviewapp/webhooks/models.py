"""Webhook endpoints, their deliveries, and the fan-out's place in the outbox."""

from django.conf import settings
from django.db import models

EVENT_TYPES = (
    "outcome.decided",
    "outcome.corrected",  # an audit overturned an automated outcome
    "item.escalated",
    "queue.sla_breached",  # review tasks still open past their items' due time
    "policy.changed",
    "guardrail.breached",
    "model.changed",
    "export.ready",
    "retraining.finished",
    "system.alert_raised",  # a worker missing, a queue not consumed, too many 5xx answers
    "system.alert_cleared",
)
# A delivery the "send a test event" button makes; no endpoint subscribes to it.
TEST_EVENT = "webhook.test"
URL_MAX_LENGTH = 2000  # as reviewapp.core.safe_targets


class Endpoint(models.Model):
    """A receiver: its URL, the events and use cases it wants, and its signing secret."""

    url = models.URLField(max_length=URL_MAX_LENGTH)
    events = models.JSONField(default=list)
    # Empty with ``all_use_cases``: every use case the creator can see, now and later.
    use_cases = models.ManyToManyField("deployments.UseCase", blank=True, related_name="+")
    all_use_cases = models.BooleanField(default=False)
    secret = models.CharField(max_length=100)
    # Set on the implicit endpoint of a use case's guardrail webhook (its policy's
    # ``guardrails.webhook_url``): it hears that use case's breaches only, unsigned.
    guardrail_for = models.OneToOneField(
        "deployments.UseCase",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
    )
    active = models.BooleanField(default=True)
    paused_at = models.DateTimeField(null=True, blank=True)
    paused_reason = models.TextField(blank=True)
    failing_since = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.url


class Delivery(models.Model):
    """One event to one endpoint; retried with backoff under the same ``webhook-id``."""

    class State(models.TextChoices):
        PENDING = "pending"
        DELIVERED = "delivered"
        FAILED = "failed"  # gave up after the whole retry schedule

    endpoint = models.ForeignKey(Endpoint, on_delete=models.CASCADE, related_name="deliveries")
    event = models.ForeignKey("core.Event", on_delete=models.PROTECT, related_name="+")
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    # When the next attempt is due; a worker that takes the delivery pushes it forward first
    # (a lease), so two workers do not send it at once.
    next_attempt_at = models.DateTimeField()
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_latency_ms = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField()
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["endpoint", "event"], name="one_delivery_per_event")
        ]
        indexes = [models.Index(fields=["state", "next_attempt_at"], name="delivery_due")]

    def __str__(self) -> str:
        return f"{self.event_id} -> {self.endpoint_id} ({self.state})"

    @property
    def message_id(self) -> str:
        """The ``webhook-id``: one per event, the same on every retry and to every endpoint."""
        return f"evt_{self.event_id}"


class FanoutCursor(models.Model):
    """How far the fan-out has read the outbox (one row)."""

    name = models.CharField(max_length=32, primary_key=True)
    txid = models.BigIntegerField(default=0)
    event_id = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.name} at {self.txid}.{self.event_id}"
