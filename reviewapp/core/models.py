import uuid

from django.conf import settings
from django.db import models

from reviewapp.core.append_only import AppendOnlyModel


class Job(models.Model):
    """A piece of asynchronous work a user can follow: its state and progress."""

    class Kind(models.TextChoices):
        BATCH_INGEST = "batch_ingest"
        BACKTEST = "backtest"
        EXPORT = "export"
        RETRAIN = "retrain"

    class State(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    kind = models.CharField(max_length=32, choices=Kind.choices)
    use_case = models.ForeignKey(
        "deployments.UseCase", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    state = models.CharField(max_length=16, choices=State.choices, default=State.QUEUED)
    done = models.PositiveIntegerField(default=0)
    total = models.PositiveIntegerField(default=0)
    params = models.JSONField(default=dict, blank=True)
    result = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["kind", "use_case", "-created_at"])]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(done__lte=models.F("total")), name="job_done_le_total"
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.id} ({self.state} {self.done}/{self.total})"


class Event(AppendOnlyModel):
    """One row of the outbox: something happened, written in the transaction that made it happen.

    Append-only. ``txid`` is the writing transaction's id on PostgreSQL (0 on SQLite); readers
    order by ``(txid, id)`` and see only rows whose transaction is older than every transaction
    still running (see ``reviewapp.core.events``), so a cursor over that order never skips a row
    that commits late.
    """

    id = models.BigAutoField(primary_key=True)
    txid = models.BigIntegerField(default=0)
    type = models.CharField(max_length=64)
    use_case = models.ForeignKey(
        "deployments.UseCase",
        null=True,
        blank=True,
        # Events outlive what they describe: no cascade, no constraint to trip a deletion.
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        # core_event_feed starts with it: a second index would only slow every write.
        db_index=False,
        related_name="+",
    )
    data = models.JSONField(default=dict)
    created_at = models.DateTimeField()

    class Meta:
        indexes = [
            models.Index(fields=["txid", "id"], name="core_event_position"),
            models.Index(fields=["use_case", "type", "txid", "id"], name="core_event_feed"),
        ]

    def __str__(self) -> str:
        return f"{self.type} #{self.id}"


class ApiToken(models.Model):
    """A named personal API token. Only the SHA-256 digest of the key is kept: the key itself is
    shown once, when the token is made. ``prefix`` (the key's first characters) tells tokens
    apart in lists without revealing them."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=12)
    digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"
