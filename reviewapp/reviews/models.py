"""Items, predictions, review tasks, decisions and the disagreements they reveal."""

from django.conf import settings
from django.db import models
from django.db.models import Q

from deployments.policy import Route, TaskReason
from reviewapp.core.append_only import AppendOnlyModel


class Item(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Waiting for a prediction"
        IN_REVIEW = "in_review", "Waiting for a human"
        DECIDED = "decided"

    class Source(models.TextChoices):
        MODEL = "model"
        HUMAN = "human"

    ROUTE_CHOICES = [(r.value, r.value) for r in Route]
    keeps_history = True  # a use case or account it refers to is never deleted

    # No index of its own: (use_case, external_id) below leads with it.
    use_case = models.ForeignKey(
        "deployments.UseCase", on_delete=models.CASCADE, related_name="items", db_index=False
    )
    external_id = models.CharField(max_length=200)
    features = models.JSONField()
    # What an external caller sent as the prediction, kept until the item is routed (batch).
    external_prediction = models.JSONField(null=True, blank=True)
    ramp_bucket = models.PositiveSmallIntegerField()
    audit_bucket = models.PositiveSmallIntegerField()
    double_review_bucket = models.PositiveSmallIntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    route = models.CharField(max_length=16, choices=ROUTE_CHOICES, blank=True)
    policy = models.ForeignKey(
        "deployments.AutomationPolicy",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    prediction = models.ForeignKey(
        "Prediction", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decision_label = models.CharField(max_length=200, blank=True)
    decision_value = models.FloatField(null=True, blank=True)
    decision_source = models.CharField(max_length=8, choices=Source.choices, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField(db_index=True)
    routed_at = models.DateTimeField(null=True, blank=True)
    job = models.ForeignKey(
        "core.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="items"
    )
    # Attempts to score this pending item that failed (not counting a database outage), and
    # the last failure; after SCORING_MAX_ATTEMPTS the item is routed as a null output.
    # Database defaults: batches insert items with plain SQL.
    scoring_failures = models.PositiveSmallIntegerField(default=0, db_default=0)
    scoring_error = models.TextField(blank=True, default="", db_default="")
    # How soon a person should see it: higher priority first (queue order "priority"), and the
    # time by which it should be decided (sent, or received_at + the use case's turnaround).
    priority = models.SmallIntegerField(default=0, db_default=0)
    due_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["use_case", "external_id"], name="one_item_per_external_id"
            ),
        ]
        indexes = [
            models.Index(fields=["use_case", "received_at"]),
            models.Index(
                fields=["received_at"], condition=Q(status="pending"), name="item_pending_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.use_case_id}:{self.external_id}"


class Prediction(models.Model):
    """What one model version said about one item (or why it could not say)."""

    keeps_history = True

    # No index of its own: (item, model_version) below leads with it.
    item = models.ForeignKey(
        Item, on_delete=models.CASCADE, related_name="predictions", db_index=False
    )
    use_case = models.ForeignKey("deployments.UseCase", on_delete=models.CASCADE, related_name="+")
    # No index of its own: (model_version, created_at) below leads with it.
    model_version = models.ForeignKey(
        "deployments.ModelVersion",
        on_delete=models.PROTECT,
        related_name="predictions",
        db_index=False,
    )
    label = models.CharField(max_length=200, blank=True)
    value = models.FloatField(null=True, blank=True)
    confidence = models.FloatField(null=True, blank=True)
    probabilities = models.JSONField(null=True, blank=True)
    latency_ms = models.FloatField(null=True, blank=True)
    # A null output (the model raised, or said something unusable) names why here.
    error = models.TextField(blank=True)
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["item", "model_version"], name="one_prediction_per_item_and_version"
            ),
            models.CheckConstraint(
                condition=Q(confidence__isnull=True)
                | (Q(confidence__gte=0) & Q(confidence__lte=1)),
                name="prediction_confidence_in_unit_interval",
            ),
        ]
        indexes = [models.Index(fields=["model_version", "created_at"])]

    def __str__(self) -> str:
        return f"{self.model_version_id} on {self.item_id}: {self.label or self.value}"

    @property
    def is_null(self) -> bool:
        return bool(self.error)


class ReviewTask(models.Model):
    """A unit of human work on an item; reviewers claim it under a lease."""

    class State(models.TextChoices):
        OPEN = "open"
        DONE = "done"
        CANCELLED = "cancelled"
        # Held out of the queue while a manager looks at it (see Escalation).
        ESCALATED = "escalated"

    REASON_CHOICES = [(r.value, r.value.replace("_", " ")) for r in TaskReason]

    # No index of its own: (item, reason) below leads with it.
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="tasks", db_index=False)
    use_case = models.ForeignKey("deployments.UseCase", on_delete=models.CASCADE, related_name="+")
    reason = models.CharField(max_length=16, choices=REASON_CHOICES)
    show_suggestion = models.BooleanField(default=False)
    state = models.CharField(max_length=16, choices=State.choices, default=State.OPEN)
    claimed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    claimed_at = models.DateTimeField(null=True, blank=True)
    lease_token = models.UUIDField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()
    done_at = models.DateTimeField(null=True, blank=True)
    # Copied from the item and its prediction when the task is made, so that each queue order
    # is one walk of one partial index (see UseCase.queue_order).
    priority = models.SmallIntegerField(default=0, db_default=0)
    due_at = models.DateTimeField(null=True, blank=True)
    # 1 - the model's confidence; 1 when there is none (a null output is the least certain).
    uncertainty = models.FloatField(default=1.0, db_default=1.0)
    # When the task was found still open past its item's due_at (noted once, by the beat).
    past_due_noted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["item", "reason"], name="one_task_per_item_reason"),
        ]
        indexes = [
            # The queue: open tasks of a use case, oldest first. Partial, so its size is the
            # number of waiting tasks, not the history. One index per queue order.
            models.Index(
                fields=["use_case", "created_at", "id"],
                condition=Q(state="open"),
                name="task_queue_idx",
            ),
            models.Index(
                fields=["use_case", "-priority", "created_at", "id"],
                condition=Q(state="open"),
                name="task_queue_priority_idx",
            ),
            models.Index(
                fields=["use_case", "due_at", "created_at", "id"],
                condition=Q(state="open"),
                name="task_queue_due_idx",
            ),
            models.Index(
                fields=["use_case", "-uncertainty", "created_at", "id"],
                condition=Q(state="open"),
                name="task_queue_uncertain_idx",
            ),
            # "Does this reviewer already hold a task here?" runs before every claim; leases
            # are few, so this stays tiny however long the queue grows.
            models.Index(
                fields=["claimed_by", "use_case"],
                condition=Q(state="open") & Q(claimed_by__isnull=False),
                name="task_held_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"task {self.pk} ({self.reason}, {self.state})"

    @property
    def blind(self) -> bool:
        return not self.show_suggestion


class TaskSkip(models.Model):
    """A reviewer passed on a task; it goes back to the queue for someone else."""

    task = models.ForeignKey(ReviewTask, on_delete=models.CASCADE, related_name="skips")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["user", "task"])]

    def __str__(self) -> str:
        return f"{self.user_id} skipped {self.task_id}"


class ItemSeen(models.Model):
    """A person was shown this item (with whatever its task showed).

    Written in the transaction that hands the item to them: every claim (a task later decided,
    skipped, escalated or left to expire was claimed first) and a manager's answer to an
    escalation. Rows are only ever added. The claim query keeps a blind task away from anyone
    with a row here for its item, so blind answers, double reviews included, always come from
    someone who has not seen the item or its suggestion before.
    """

    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="+")
    # No index of its own: (user, item) below leads with it.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    first_seen_at = models.DateTimeField()

    class Meta:
        constraints = [
            # Also the index the claim's NOT EXISTS probes: (this reviewer, this item).
            models.UniqueConstraint(fields=["user", "item"], name="item_seen_once_per_user"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} saw item {self.item_id}"


class GoldCheck(models.Model):
    """An item whose answer is settled (two reviewers agreed on it), served again, blind, to a
    reviewer who has not seen it, and their answer scored against the settled one.

    Kept apart from tasks and decisions: a gold answer measures the reviewer and never counts
    in the item's outcome, the model's figures or the queue.
    """

    use_case = models.ForeignKey("deployments.UseCase", on_delete=models.CASCADE, related_name="+")
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="+")
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+"
    )
    expected_label = models.CharField(max_length=200, blank=True)
    expected_value = models.FloatField(null=True, blank=True)
    served_at = models.DateTimeField()
    lease_token = models.UUIDField()
    lease_expires_at = models.DateTimeField()
    answered_at = models.DateTimeField(null=True, blank=True)
    skipped = models.BooleanField(default=False)
    label = models.CharField(max_length=200, blank=True)
    value = models.FloatField(null=True, blank=True)
    correct = models.BooleanField(null=True)
    time_spent_ms = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["reviewer", "item"], name="gold_once_per_reviewer"),
        ]
        indexes = [models.Index(fields=["use_case", "reviewer", "served_at"])]

    def __str__(self) -> str:
        return f"gold {self.item_id} for {self.reviewer_id}"


class Decision(AppendOnlyModel):
    """A human's answer to a review task. Append-only."""

    class Kind(models.TextChoices):
        ACCEPTED = "accepted", "Accepted the suggestion"
        OVERRIDDEN = "overridden", "Overrode the suggestion"
        BLIND = "blind", "Decided without a suggestion"

    task = models.OneToOneField(ReviewTask, on_delete=models.PROTECT, related_name="decision")
    item = models.ForeignKey(Item, on_delete=models.PROTECT, related_name="decisions")
    # No index of its own: (use_case, created_at) below leads with it.
    use_case = models.ForeignKey(
        "deployments.UseCase", on_delete=models.PROTECT, related_name="+", db_index=False
    )
    # No index of its own: (reviewer, created_at) below leads with it.
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="decisions", db_index=False
    )
    label = models.CharField(max_length=200, blank=True)
    value = models.FloatField(null=True, blank=True)
    comment = models.TextField(blank=True)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    time_spent_ms = models.PositiveIntegerField(null=True, blank=True)
    idempotency_key = models.CharField(max_length=200, null=True, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["reviewer", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="one_decision_per_idempotency_key",
            ),
        ]
        indexes = [
            models.Index(fields=["use_case", "created_at"]),
            models.Index(fields=["reviewer", "created_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.reviewer_id} on {self.item_id}: {self.label or self.value}"


class Disagreement(models.Model):
    """A human decision that differs from a model's prediction on the same item."""

    class Kind(models.TextChoices):
        OVERRIDE = "override", "Reviewer overrode the suggestion"
        SHADOW = "shadow", "Blind label differs from the silent model"
        AUDIT = "audit", "Audit found the automated decision wrong"
        CHALLENGER = "challenger", "Challenger differs from the human"

    # No index of its own: (use_case, decided_at) below leads with it.
    use_case = models.ForeignKey(
        "deployments.UseCase", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="disagreements")
    # No index of its own: (decision, prediction) below leads with it.
    decision = models.ForeignKey(
        Decision, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    prediction = models.ForeignKey(Prediction, on_delete=models.CASCADE, related_name="+")
    model_version = models.ForeignKey(
        "deployments.ModelVersion", on_delete=models.CASCADE, related_name="+"
    )
    kind = models.CharField(max_length=16, choices=Kind.choices)
    model_label = models.CharField(max_length=200, blank=True)
    model_value = models.FloatField(null=True, blank=True)
    confidence = models.FloatField(null=True, blank=True)
    human_label = models.CharField(max_length=200, blank=True)
    human_value = models.FloatField(null=True, blank=True)
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    decided_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["decision", "prediction"], name="one_disagreement_per_pair"
            ),
        ]
        indexes = [
            models.Index(fields=["use_case", "decided_at"]),
            models.Index(fields=["use_case", "model_version", "decided_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.kind} on {self.item_id}"


class Escalation(models.Model):
    """A reviewer hands a task to a manager with a comment.

    While open, the task is out of the queue (state ``escalated``). The manager resolves it
    either by answering it (a decision in their name) or by returning it to the queue with a
    note the next reviewer sees.
    """

    class Outcome(models.TextChoices):
        ANSWERED = "answered", "Decided by a manager"
        RETURNED = "returned", "Returned to the queue with a note"

    task = models.ForeignKey(ReviewTask, on_delete=models.CASCADE, related_name="escalations")
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="escalations")
    use_case = models.ForeignKey("deployments.UseCase", on_delete=models.CASCADE, related_name="+")
    raised_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    comment = models.TextField()
    created_at = models.DateTimeField()
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    resolved_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=16, choices=Outcome.choices, blank=True)
    resolution_note = models.TextField(blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["task"],
                condition=Q(resolved_at__isnull=True),
                name="one_open_escalation_per_task",
            ),
            models.CheckConstraint(condition=~Q(comment=""), name="escalation_comment_required"),
            models.CheckConstraint(
                condition=(
                    Q(resolved_at__isnull=True, resolved_by__isnull=True, outcome="")
                    | (
                        Q(resolved_at__isnull=False, resolved_by__isnull=False)
                        & Q(outcome__in=["answered", "returned"])
                        & ~Q(resolution_note="")
                    )
                ),
                name="escalation_resolution_complete",
            ),
        ]
        indexes = [
            models.Index(
                fields=["use_case", "created_at"],
                condition=Q(resolved_at__isnull=True),
                name="escalation_open_idx",
            ),
            models.Index(fields=["raised_by", "created_at"], name="escalation_raised_idx"),
        ]

    def __str__(self) -> str:
        return f"escalation of task {self.task_id} by {self.raised_by_id}"

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None
