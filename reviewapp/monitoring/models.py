"""Monitoring rollups: additive aggregates per use case x model version x hour.

Writers never touch these tables. The write path (routing, scoring, deciding) appends one
``RollupEvent`` per fact, inside its own transaction; a folder, one at a time, turns pending
events into additions to the hourly rows and deletes them. Dashboards, the metrics API and
``/metrics`` read the hourly rows only, never the raw items.
"""

from django.db import models
from django.db.models import Q


class RollupEvent(models.Model):
    """A fact waiting to be folded into the rollups (an outbox row).

    ``detail`` holds what the writer knew that the raw rows do not say later: which
    predictions a decision was paired with, which decision a late challenger prediction meets.
    """

    class Kind(models.TextChoices):
        ITEM = "item", "An item was routed"
        DECISION = "decision", "A human decided a task"
        PREDICTION = "prediction", "A challenger scored an item"

    kind = models.CharField(max_length=16, choices=Kind.choices)
    object_id = models.BigIntegerField()
    use_case_id = models.BigIntegerField()
    detail = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["use_case_id", "id"])]

    def __str__(self) -> str:
        return f"{self.kind} {self.object_id}"


class FoldLock(models.Model):
    """The single row folders lock, so folds never interleave (see ``rollups_fold``)."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    folded_at = models.DateTimeField(null=True, blank=True)
    events_folded = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(id=1), name="fold_lock_singleton")]

    def __str__(self) -> str:
        return f"folded at {self.folded_at}"


class HourlyRollup(models.Model):
    """Additive figures for one use case, model version and hour.

    ``shadow`` rows hold what a challenger said in shadow (its predictions and their quality);
    the other rows hold the routed items (counted once each), their routing prediction and the
    human work on them. Items routed without a model have no model version.

    Time axes: item facts (routes, predictions, quality against the item's first human label,
    double-review agreement) count in the hour the item was *received*; decisions, audits and
    reviewer work in the hour the decision was *made*; queue entries in the hour of *routing*.
    """

    use_case = models.ForeignKey("deployments.UseCase", on_delete=models.CASCADE, related_name="+")
    model_version = models.ForeignKey(
        "deployments.ModelVersion",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
    )
    shadow = models.BooleanField(default=False)
    hour = models.DateTimeField()

    items_routed = models.PositiveIntegerField(default=0)
    route_auto = models.PositiveIntegerField(default=0)
    route_assisted = models.PositiveIntegerField(default=0)
    route_blind = models.PositiveIntegerField(default=0)
    route_human = models.PositiveIntegerField(default=0)
    reviewed_items = models.PositiveIntegerField(default=0)
    reviewed_items_decided = models.PositiveIntegerField(default=0)
    tasks_created = models.PositiveIntegerField(default=0)

    predictions = models.PositiveIntegerField(default=0)
    null_outputs = models.PositiveIntegerField(default=0)
    budget_timeouts = models.PositiveIntegerField(default=0)  # null outputs past the budget
    latency_count = models.PositiveIntegerField(default=0)
    latency_sum_ms = models.FloatField(default=0.0)
    latency_buckets = models.JSONField(default=dict, blank=True)
    outputs = models.JSONField(default=dict, blank=True)

    decisions = models.PositiveIntegerField(default=0)
    decisions_accepted = models.PositiveIntegerField(default=0)
    decisions_overridden = models.PositiveIntegerField(default=0)
    decisions_blind = models.PositiveIntegerField(default=0)
    review_time_count = models.PositiveIntegerField(default=0)
    review_time_sum_ms = models.FloatField(default=0.0)
    review_time_buckets = models.JSONField(default=dict, blank=True)
    reviewers = models.JSONField(default=dict, blank=True)
    audits = models.PositiveIntegerField(default=0)
    audit_errors = models.PositiveIntegerField(default=0)

    labelled = models.PositiveIntegerField(default=0)
    agree = models.PositiveIntegerField(default=0)
    labelled_blind = models.PositiveIntegerField(default=0)
    agree_blind = models.PositiveIntegerField(default=0)
    error_sum = models.FloatField(default=0.0)
    abs_error_sum = models.FloatField(default=0.0)
    sq_error_sum = models.FloatField(default=0.0)
    quad_error_sum = models.FloatField(default=0.0)  # Σe⁴: the MSE's interval
    # Items the model decided alone whose first human label came from an audit (labelled in
    # the item's hour), and how many of those the model got right.
    audited = models.PositiveIntegerField(default=0)
    audited_agree = models.PositiveIntegerField(default=0)
    confusion = models.JSONField(default=dict, blank=True)
    calibration = models.JSONField(default=dict, blank=True)

    double_reviewed = models.PositiveIntegerField(default=0)
    double_agree = models.PositiveIntegerField(default=0)
    double_abs_error_sum = models.FloatField(default=0.0)
    double_sq_error_sum = models.FloatField(default=0.0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["use_case", "model_version", "shadow", "hour"],
                condition=Q(model_version__isnull=False),
                name="one_rollup_per_version_hour",
            ),
            models.UniqueConstraint(
                fields=["use_case", "hour"],
                condition=Q(model_version__isnull=True),
                name="one_rollup_per_unscored_hour",
            ),
            models.CheckConstraint(
                condition=Q(model_version__isnull=False) | Q(shadow=False),
                name="rollup_shadow_has_version",
            ),
        ]
        indexes = [models.Index(fields=["use_case", "hour"])]

    def __str__(self) -> str:
        return f"{self.use_case_id}/{self.model_version_id}/{self.hour:%Y-%m-%d %H}h"

    @property
    def rollup_key(self) -> tuple:
        return (self.use_case_id, self.model_version_id, self.shadow, self.hour)


class FeatureRollup(models.Model):
    """Input health of one feature for the items routed in one hour by one model version.

    ``hist`` counts present values on the routing model's reference bins (see
    ``monitoring.stats.feature_bins``): for numbers, bin 0 is below the training minimum and
    the last bin above the training maximum; for categories, the last bin is the categories
    the training data never had.
    """

    use_case = models.ForeignKey("deployments.UseCase", on_delete=models.CASCADE, related_name="+")
    model_version = models.ForeignKey(
        "deployments.ModelVersion",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
    )

    class Grain(models.TextChoices):
        HOUR = "hour"
        DAY = "day"

    # Each hour's row, and the same figures summed per UTC day (``hour`` is then midnight), so
    # a month of input health reads 30 rows per feature, not 720.
    grain = models.CharField(max_length=4, choices=Grain.choices, default=Grain.HOUR)
    hour = models.DateTimeField()
    feature = models.CharField(max_length=100)
    rows = models.PositiveIntegerField(default=0)
    missing = models.PositiveIntegerField(default=0)
    sum = models.FloatField(default=0.0)
    sum_sq = models.FloatField(default=0.0)
    min = models.FloatField(null=True, blank=True)
    max = models.FloatField(null=True, blank=True)
    below_range = models.PositiveIntegerField(default=0)
    above_range = models.PositiveIntegerField(default=0)
    unseen = models.PositiveIntegerField(default=0)
    hist = models.JSONField(default=list, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["use_case", "model_version", "grain", "hour", "feature"],
                condition=Q(model_version__isnull=False),
                name="one_feature_rollup_per_version_hour",
            ),
            models.UniqueConstraint(
                fields=["use_case", "grain", "hour", "feature"],
                condition=Q(model_version__isnull=True),
                name="one_feature_rollup_per_unscored_hour",
            ),
        ]
        indexes = [models.Index(fields=["use_case", "grain", "hour"])]

    def __str__(self) -> str:
        return f"{self.feature} {self.hour:%Y-%m-%d %H}h"

    @property
    def rollup_key(self) -> tuple:
        return (self.use_case_id, self.model_version_id, self.grain, self.hour, self.feature)
