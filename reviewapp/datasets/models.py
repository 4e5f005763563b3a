"""Dataset exports (a file and its manifest) and the retraining runs that learn from them."""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q


class Export(models.Model):
    """A file of disagreements (or human-labelled items) with the manifest that names exactly
    what is in it, so a training run can say which data it used."""

    class Scope(models.TextChoices):
        DISAGREEMENTS = "disagreements", "Disagreements"
        LABELLED = "labelled", "Human-labelled items"

    class Format(models.TextChoices):
        CSV = "csv", "CSV"
        JSONL = "jsonl", "JSON lines"
        PARQUET = "parquet", "Parquet"

    class Pii(models.TextChoices):
        OMIT = "omit", "PII left out"
        HASH = "hash", "PII replaced by a keyed hash (joinable)"
        INCLUDE = "include", "PII included"

    class State(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        READY = "ready"
        FAILED = "failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    use_case = models.ForeignKey(
        "deployments.UseCase", on_delete=models.CASCADE, related_name="exports"
    )
    job = models.OneToOneField(
        "core.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="export"
    )
    scope = models.CharField(max_length=16, choices=Scope.choices)
    format = models.CharField(max_length=8, choices=Format.choices)
    pii = models.CharField(max_length=8, choices=Pii.choices, default=Pii.OMIT)
    filters = models.JSONField(default=dict, blank=True)
    state = models.CharField(max_length=8, choices=State.choices, default=State.QUEUED)
    # Where the file is in the "exports" storage, and what it holds once ready.
    file_name = models.CharField(max_length=300, blank=True)
    size_bytes = models.BigIntegerField(null=True, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    row_count = models.BigIntegerField(null=True, blank=True)
    manifest = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Who made it, as text: the username, or the command line's own name when no user did.
    created_by_name = models.CharField(max_length=150, blank=True, default="")
    created_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["use_case", "-created_at"])]
        constraints = [
            models.CheckConstraint(
                condition=Q(scope__in=["disagreements", "labelled"]), name="export_scope_valid"
            ),
            models.CheckConstraint(
                condition=Q(format__in=["csv", "jsonl", "parquet"]), name="export_format_valid"
            ),
            models.CheckConstraint(
                condition=Q(pii__in=["omit", "hash", "include"]), name="export_pii_valid"
            ),
            models.CheckConstraint(
                condition=~Q(state="ready")
                | (~Q(file_name="") & ~Q(sha256="") & Q(row_count__gte=0) & Q(size_bytes__gte=0)),
                name="export_ready_has_file",
            ),
        ]

    COMMAND_LINE = "command line"

    def __str__(self) -> str:
        return f"{self.use_case_id} {self.scope} {self.format} ({self.state})"

    @property
    def author(self) -> str:
        """Who made the export: never empty (older rows without a name: the user, else the
        command line)."""
        if self.created_by_name:
            return self.created_by_name
        return self.created_by.get_username() if self.created_by_id else self.COMMAND_LINE

    @property
    def download_name(self) -> str:
        stamp = self.created_at.strftime("%Y%m%d-%H%M%S")
        return f"{self.use_case.slug}-{self.scope}-{stamp}.{self.format}"


class TrainingRun(models.Model):
    """Retraining a use case's model on its human-labelled items, into a challenger."""

    class State(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    use_case = models.ForeignKey(
        "deployments.UseCase", on_delete=models.CASCADE, related_name="training_runs"
    )
    job = models.OneToOneField(
        "core.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="training_run"
    )
    state = models.CharField(max_length=8, choices=State.choices, default=State.QUEUED)
    # The recipe: a clone of this version's estimator, fitted afresh.
    base_model_version = models.ForeignKey(
        "deployments.ModelVersion", on_delete=models.PROTECT, related_name="+"
    )
    holdout_fraction = models.FloatField()
    version = models.CharField(max_length=64)
    export = models.ForeignKey(
        Export, null=True, blank=True, on_delete=models.PROTECT, related_name="training_runs"
    )
    model_version = models.OneToOneField(
        "deployments.ModelVersion",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="training_run",
    )
    metrics = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["use_case", "-created_at"])]
        constraints = [
            models.CheckConstraint(
                condition=Q(holdout_fraction__gt=0) & Q(holdout_fraction__lt=1),
                name="training_run_holdout_in_unit_interval",
            ),
            models.CheckConstraint(
                condition=~Q(state="done")
                | (Q(model_version__isnull=False) & Q(export__isnull=False)),
                name="training_run_done_has_model_and_data",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.use_case_id} retrain {self.version} ({self.state})"
