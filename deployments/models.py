"""Use cases, their automation policy versions and their model versions."""

import secrets

from django.conf import settings
from django.db import models
from django.db.models import Q

from deployments.policy import Level
from reviewapp.core.append_only import AppendOnlyModel


def config_stamp_new() -> int:
    return secrets.randbits(62)


class UseCase(models.Model):
    class TaskType(models.TextChoices):
        CLASSIFICATION = "classification"
        REGRESSION = "regression"

    class PredictionSource(models.TextChoices):
        REGISTRY = "registry", "Scored here by the champion model"
        EXTERNAL = "external", "Sent by the caller with each item"

    class ItemView(models.TextChoices):
        TABLE = "table", "Table of features"
        IMAGE_GRID = "image_grid", "Image grid (pixel features)"

    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    task_type = models.CharField(max_length=16, choices=TaskType.choices)
    labels = models.JSONField(default=list, blank=True)
    tolerance = models.FloatField(null=True, blank=True)
    value_min = models.FloatField(null=True, blank=True)
    value_max = models.FloatField(null=True, blank=True)
    features = models.JSONField(default=list)
    prediction_source = models.CharField(
        max_length=16, choices=PredictionSource.choices, default=PredictionSource.REGISTRY
    )
    item_view = models.CharField(max_length=16, choices=ItemView.choices, default=ItemView.TABLE)
    latency_budget_ms = models.PositiveIntegerField(null=True, blank=True)
    # Raising automation (level partial or full) or promoting a champion needs a second
    # manager's approval: the change waits as a ChangeRequest.
    four_eyes = models.BooleanField(default=False)
    # Whether an assisted task opens with the model's answer already picked. Off, the reviewer
    # picks first and then learns whether it matched: Enter cannot accept a suggestion unseen.
    suggestion_preselected = models.BooleanField(default=False)
    # Share of a reviewer's claims that re-serve, blind, an item whose answer is settled (two
    # reviewers agreed): their answers measure the reviewer, never the model.
    gold_rate = models.FloatField(default=0.0)

    # --- what automation costs, and what the team can do (see deployments/policy/costs.py) ---
    # The cost of one wrong automated decision (classification), or of one unit of absolute
    # error (regression). Costs are in the use case's own unit (say, euros).
    error_cost = models.FloatField(null=True, blank=True)
    # Classification only: costs per (true label, predicted label) pair that override
    # ``error_cost``: [{"true": "fraud", "predicted": "legit", "cost": 400.0}, ...].
    error_costs = models.JSONField(default=list, blank=True)
    # Minutes a person spends per item; empty: measured from the recorded time per decision.
    review_minutes = models.FloatField(null=True, blank=True)
    hourly_cost = models.FloatField(null=True, blank=True)
    # The team: reviewers x hours a day; empty: measured from recent daily decisions.
    capacity_reviewers = models.PositiveIntegerField(null=True, blank=True)
    capacity_hours_per_day = models.FloatField(null=True, blank=True)

    class QueueOrder(models.TextChoices):
        FIFO = "fifo", "Oldest first"
        PRIORITY = "priority", "Highest priority, then oldest"
        DUE = "due", "Earliest due first"
        UNCERTAIN = "uncertain", "Most uncertain first"

    # Which waiting task a reviewer gets next, and the turnaround promised for an item sent
    # without its own ``due_at`` (empty: none).
    queue_order = models.CharField(
        max_length=16, choices=QueueOrder.choices, default=QueueOrder.FIFO
    )
    turnaround_minutes = models.PositiveIntegerField(null=True, blank=True)
    # History (items and all that hangs off them) older than this many whole months is moved to
    # a Parquet archive by the beat and removed from the database; empty: kept for ever. The
    # rollups keep their aggregates, so the dashboards do not change (reviewapp/archives).
    retention_months = models.PositiveSmallIntegerField(null=True, blank=True)
    # Facts before this moment may be in an archive (the newest archive's cutoff); the
    # recomputation of dashboard figures from raw rows starts here. Empty: nothing archived.
    history_archived_before = models.DateTimeField(null=True, blank=True, editable=False)
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="UseCaseMembership", related_name="use_cases"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # A new random value on every write to the use case's configuration (``use_case_lock``):
    # what a process cached of its policy and models (``deployments.selectors``) is good while
    # the stamp it was read under is the one on the row. Random, not counted, so the stamp of
    # a rolled-back change never comes back with other data.
    config_stamp = models.BigIntegerField(default=config_stamp_new, editable=False)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(tolerance__isnull=True) | Q(tolerance__gte=0),
                name="use_case_tolerance_non_negative",
            ),
            models.CheckConstraint(
                condition=Q(task_type__in=["classification", "regression"]),
                name="use_case_task_type_valid",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_classification(self) -> bool:
        return self.task_type == self.TaskType.CLASSIFICATION

    @property
    def feature_names(self) -> list[str]:
        return [feature["name"] for feature in self.features]

    @property
    def pii_features(self) -> frozenset[str]:
        return frozenset(f["name"] for f in self.features if f.get("pii"))

    @property
    def drift_exclusions(self) -> dict[str, str]:
        """Features left out of drift, each with why. Identifiers, personal data and free text
        take new values all the time by nature: against any reference their drift would always
        read "major", which says nothing about the model's inputs. The dashboards, the metrics
        API and the drift guardrail all leave out the same ones."""
        out = {}
        for spec in self.features:
            if spec.get("identifier"):
                out[spec["name"]] = "an identifier"
            elif spec.get("pii"):
                out[spec["name"]] = "personal data"
            elif spec["type"] == "string":
                out[spec["name"]] = "free text"
        return out


class UseCaseMembership(models.Model):
    """Who works on a use case; everyone but admins sees only their use cases."""

    use_case = models.ForeignKey(UseCase, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    can_view_pii = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["use_case", "user"], name="one_membership_per_user")
        ]

    def __str__(self) -> str:
        return f"{self.user} on {self.use_case}"


class AutomationPolicy(AppendOnlyModel):
    """One version of a use case's policy. Append-only: a change is a new row."""

    LEVEL_CHOICES = [(level.value, level.value.replace("_", " ")) for level in Level]

    use_case = models.ForeignKey(UseCase, on_delete=models.CASCADE, related_name="policies")
    version = models.PositiveIntegerField()
    level = models.CharField(max_length=16, choices=LEVEL_CHOICES)
    confidence_threshold = models.FloatField(default=0.9)
    traffic_percent = models.FloatField(default=100.0)
    audit_rate = models.FloatField(default=0.05)
    double_review_rate = models.FloatField(default=0.0)
    guardrails = models.JSONField(default=dict, blank=True)
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    changed_by_system = models.BooleanField(default=False)
    changed_at = models.DateTimeField()
    reason = models.TextField()
    restored_from = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        ordering = ["use_case", "-version"]
        verbose_name_plural = "automation policies"
        constraints = [
            models.UniqueConstraint(fields=["use_case", "version"], name="one_policy_per_version"),
            models.CheckConstraint(
                condition=Q(confidence_threshold__gte=0) & Q(confidence_threshold__lte=1),
                name="policy_threshold_in_unit_interval",
            ),
            models.CheckConstraint(
                condition=Q(traffic_percent__gte=0) & Q(traffic_percent__lte=100),
                name="policy_traffic_percent_in_range",
            ),
            models.CheckConstraint(
                condition=Q(audit_rate__gte=0) & Q(audit_rate__lte=1),
                name="policy_audit_rate_in_unit_interval",
            ),
            models.CheckConstraint(
                condition=Q(double_review_rate__gte=0) & Q(double_review_rate__lte=1),
                name="policy_double_review_rate_in_unit_interval",
            ),
            models.CheckConstraint(
                condition=Q(level__in=[level.value for level in Level]),
                name="policy_level_valid",
            ),
            models.CheckConstraint(condition=~Q(reason=""), name="policy_reason_required"),
            models.CheckConstraint(
                condition=Q(changed_by__isnull=False) | Q(changed_by_system=True),
                name="policy_has_author",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.use_case.slug} v{self.version} {self.level}"

    @property
    def author(self) -> str:
        return "system" if self.changed_by_system else str(self.changed_by)


class ModelVersion(models.Model):
    class Role(models.TextChoices):
        CANDIDATE = "candidate", "Candidate (registered, not scoring)"
        CHAMPION = "champion"
        CHALLENGER = "challenger", "Challenger (scores in shadow)"
        RETIRED = "retired"

    class Source(models.TextChoices):
        UPLOAD = "upload"
        EXTERNAL = "external", "Served outside the app"
        RETRAINED = "retrained"

    use_case = models.ForeignKey(UseCase, on_delete=models.CASCADE, related_name="model_versions")
    version = models.CharField(max_length=64)
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.CANDIDATE)
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.UPLOAD)
    # The skops bytes live in the database so every web process and worker reads the same
    # artifact without a shared file system.
    artifact = models.BinaryField(null=True, blank=True, editable=False)
    artifact_sha256 = models.CharField(max_length=64, blank=True)
    artifact_size = models.PositiveIntegerField(default=0)
    estimator = models.CharField(max_length=300, blank=True)
    reference_stats = models.JSONField(default=dict, blank=True)
    # Library versions the model was saved with beside those that checked it, and what the
    # libraries warned about (deployments.ml.environment).
    environment = models.JSONField(default=dict, blank=True)
    # Single-row scoring latency measured at upload (p50/p95/p99 ms, calls, budget then).
    latency = models.JSONField(default=dict, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    notes = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["use_case", "-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["use_case", "version"], name="one_model_version_per_name"
            ),
            models.UniqueConstraint(
                fields=["use_case"],
                condition=Q(role="champion"),
                name="one_champion_per_use_case",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.use_case.slug}@{self.version} ({self.role})"


class ModelVersionEvent(AppendOnlyModel):
    """Append-only history of role changes: who promoted what, when and why."""

    class Action(models.TextChoices):
        REGISTER = "register"
        PROMOTE = "promote"
        CHALLENGE = "challenge"
        RETIRE = "retire"
        ROLLBACK = "rollback"

    use_case = models.ForeignKey(UseCase, on_delete=models.CASCADE, related_name="model_events")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="events")
    action = models.CharField(max_length=16, choices=Action.choices)
    previous_champion = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["use_case", "action", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.action} {self.model_version}"


class GuardrailBreach(models.Model):
    """A guardrail found over its limit; the step-down it caused is ``policy`` (if any)."""

    use_case = models.ForeignKey(UseCase, on_delete=models.CASCADE, related_name="breaches")
    guardrail = models.CharField(max_length=64)  # override_rate, null_output_rate, ...
    observed = models.FloatField()
    limit = models.FloatField()
    window = models.PositiveIntegerField(null=True, blank=True)
    sample_size = models.PositiveIntegerField(null=True, blank=True)
    model_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    policy = models.ForeignKey(
        AutomationPolicy, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    detail = models.TextField(blank=True)
    detected_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)
    # Who closed the breach: a manager (``resolved_by``) or, when null with ``resolved_at``
    # set, the system after the guardrail held again on fresh observations.
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    resolution = models.TextField(blank=True)
    # The configured webhook's delivery: attempts made, when it succeeded, the last failure.
    webhook_url = models.CharField(max_length=2000, blank=True)
    notify_attempts = models.PositiveSmallIntegerField(default=0)
    notified_at = models.DateTimeField(null=True, blank=True)
    notify_error = models.TextField(blank=True)

    class Meta:
        ordering = ["-detected_at"]
        indexes = [
            models.Index(fields=["use_case", "detected_at"]),
            models.Index(
                fields=["use_case", "guardrail"],
                condition=Q(resolved_at__isnull=True),
                name="breach_open_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.use_case.slug}: {self.guardrail} {self.observed:.3g} > {self.limit:.3g}"


class GuardrailStatus(models.Model):
    """Per use case: when guardrails were last queued and evaluated, and what was read then.

    ``enqueued_at`` throttles evaluation: a conditional update on it lets exactly one of many
    concurrent decisions queue the next check (see ``use_case_watch_soon``).
    """

    use_case = models.OneToOneField(
        UseCase, on_delete=models.CASCADE, related_name="guardrail_status"
    )
    enqueued_at = models.DateTimeField(null=True, blank=True)
    evaluated_at = models.DateTimeField(null=True, blank=True)
    readings = models.JSONField(default=dict, blank=True)

    class Meta:
        verbose_name_plural = "guardrail statuses"

    def __str__(self) -> str:
        return f"guardrails of {self.use_case_id} at {self.evaluated_at}"


class RampPlan(models.Model):
    """A progressive rollout of ``traffic_percent`` through rising steps (see policy/ramp.py)."""

    class State(models.TextChoices):
        ACTIVE = "active"
        PAUSED = "paused"
        DONE = "done"
        CANCELLED = "cancelled"

    OPEN_STATES = (State.ACTIVE, State.PAUSED)

    use_case = models.ForeignKey(UseCase, on_delete=models.CASCADE, related_name="ramp_plans")
    steps = models.JSONField()
    advance_after_items = models.PositiveIntegerField(null=True, blank=True)
    advance_after_seconds = models.PositiveIntegerField(null=True, blank=True)
    current_step = models.PositiveSmallIntegerField(default=0)
    step_started_at = models.DateTimeField()
    state = models.CharField(max_length=16, choices=State.choices, default=State.ACTIVE)
    paused_reason = models.TextField(blank=True)
    reason = models.TextField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["use_case"],
                condition=Q(state__in=["active", "paused"]),
                name="one_open_ramp_plan_per_use_case",
            ),
            models.CheckConstraint(
                condition=Q(advance_after_items__isnull=False)
                | Q(advance_after_seconds__isnull=False),
                name="ramp_plan_has_advance_rule",
            ),
            models.CheckConstraint(
                condition=Q(state__in=["active", "paused", "done", "cancelled"]),
                name="ramp_plan_state_valid",
            ),
            models.CheckConstraint(condition=~Q(reason=""), name="ramp_plan_reason_required"),
        ]

    def __str__(self) -> str:
        return f"ramp plan {self.pk} of {self.use_case_id} ({self.state})"

    @property
    def is_open(self) -> bool:
        return self.state in self.OPEN_STATES

    @property
    def current_percent(self) -> float:
        return self.steps[self.current_step]


class RampPlanEvent(AppendOnlyModel):
    """Append-only: every start, step, pause and stop of a ramp plan, with who and why."""

    class Kind(models.TextChoices):
        START = "start"
        ADVANCE = "advance"
        STEP_BACK = "step_back", "Step back"
        PAUSE = "pause"
        RESUME = "resume"
        CANCEL = "cancel"
        FINISH = "finish"

    plan = models.ForeignKey(RampPlan, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    step = models.PositiveSmallIntegerField()
    traffic_percent = models.FloatField()
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    policy = models.ForeignKey(
        AutomationPolicy, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reason = models.TextField()
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.kind} of plan {self.plan_id} at step {self.step}"


class ChangeRequest(AppendOnlyModel):
    """A change four-eyes holds back until a second manager decides on it. Append-only: the
    decision is its own row (ChangeRequestDecision)."""

    class Kind(models.TextChoices):
        POLICY = "policy", "Policy change"
        PROMOTE = "promote", "Promote a champion"

    use_case = models.ForeignKey(UseCase, on_delete=models.CASCADE, related_name="change_requests")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    # What to apply: the policy fields that change, or {"version": ...} for a promotion.
    changes = models.JSONField(default=dict)
    # What it was asked against: approving after either moved would apply a stale change.
    base_policy_version = models.PositiveIntegerField()
    base_champion = models.CharField(max_length=64, blank=True)
    reason = models.TextField()
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    requested_at = models.DateTimeField()

    class Meta:
        ordering = ["-requested_at", "-id"]


class ChangeRequestDecision(AppendOnlyModel):
    request = models.OneToOneField(ChangeRequest, on_delete=models.CASCADE, related_name="decision")
    approved = models.BooleanField()
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    decided_at = models.DateTimeField()
    reason = models.TextField()
