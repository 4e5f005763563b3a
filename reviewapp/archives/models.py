"""Archives: a use case's old history moved out of the database into Parquet files."""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q


class Archive(models.Model):
    """Items of one use case whose whole history lies before ``cutoff``, with everything that
    hangs off them (predictions, tasks, decisions, ...), written to Parquet files beside a
    manifest and then removed from the database. ``restore_archive`` brings them back.

    States: ``writing`` (the files are being written; nothing removed yet), ``removing``
    (the files are stored and checked; their rows are being removed), ``archived``, ``restored``
    (the rows are back; the files are kept), ``failed`` (writing failed: nothing was removed).
    """

    class State(models.TextChoices):
        WRITING = "writing"
        REMOVING = "removing"
        ARCHIVED = "archived"
        RESTORED = "restored"
        FAILED = "failed"

    keeps_history = True  # a use case with archives is never deleted (core.append_only)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    use_case = models.ForeignKey(
        "deployments.UseCase", on_delete=models.PROTECT, related_name="archives"
    )
    cutoff = models.DateTimeField()
    state = models.CharField(max_length=8, choices=State.choices, default=State.WRITING)
    # The folder in the "archives" storage, the manifest in it (also kept here) and the
    # manifest's own SHA-256: the manifest names each table's file with its SHA-256.
    location = models.CharField(max_length=300, blank=True)
    manifest = models.JSONField(default=dict, blank=True)
    manifest_sha256 = models.CharField(max_length=64, blank=True)
    items = models.BigIntegerField(default=0)  # items in the files
    items_removed = models.BigIntegerField(default=0)
    # Items in the files that were left in the database: they changed while being archived
    # (a restore leaves them as they are).
    items_kept = models.BigIntegerField(default=0)
    error = models.TextField(blank=True)
    created_by_name = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField()
    archived_at = models.DateTimeField(null=True, blank=True)
    restored_at = models.DateTimeField(null=True, blank=True)
    restored_by_name = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # One archive at a time per use case: the second run waits for the next day.
            models.UniqueConstraint(
                fields=["use_case"],
                condition=Q(state__in=["writing", "removing"]),
                name="one_running_archive_per_use_case",
            ),
            models.CheckConstraint(
                condition=Q(state__in=["writing", "removing", "archived", "restored", "failed"]),
                name="archive_state_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.use_case.slug} before {self.cutoff:%Y-%m-%d} ({self.state})"


class ArchivedReference(models.Model):
    """An account, policy version or model version that archived rows refer to: kept from
    deletion while the archive is out of the database, as the rows themselves kept it, so the
    archive can always be restored. Removed when the archive is restored."""

    keeps_history = True  # what this points at is refused deletion (core.append_only)

    archive = models.ForeignKey(Archive, on_delete=models.CASCADE, related_name="references")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.PROTECT, related_name="+"
    )
    policy = models.ForeignKey(
        "deployments.AutomationPolicy", null=True, on_delete=models.PROTECT, related_name="+"
    )
    model_version = models.ForeignKey(
        "deployments.ModelVersion", null=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        verbose_name = "archived reference"
        verbose_name_plural = "archived history"
        constraints = [
            models.CheckConstraint(
                condition=Q(user__isnull=False, policy__isnull=True, model_version__isnull=True)
                | Q(user__isnull=True, policy__isnull=False, model_version__isnull=True)
                | Q(user__isnull=True, policy__isnull=True, model_version__isnull=False),
                name="archived_reference_names_one",
            ),
        ]

    def __str__(self) -> str:
        kind = "user" if self.user_id else "policy" if self.policy_id else "model version"
        return (
            f"{kind} {self.user_id or self.policy_id or self.model_version_id} in {self.archive_id}"
        )
