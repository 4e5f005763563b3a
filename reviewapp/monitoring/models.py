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


# --- the processes doing the work (see heartbeats.py) ---------------------------------------


class ProcessHeartbeat(models.Model):
    """One process of the app (a web process, a Celery worker process or beat), rewritten by
    the process itself every ``HEARTBEAT_INTERVAL_SECONDS``.

    A row not rewritten for ``HEARTBEAT_STALE_SECONDS`` belongs to a process that is gone: the
    watcher stamps ``gone_at`` (and logs it once), and deletes the row
    ``HEARTBEAT_FORGET_SECONDS`` later. Counters (CPU, requests, tasks) are cumulative since
    the process started, as Prometheus expects of a counter with a ``pid`` label.
    """

    class Kind(models.TextChoices):
        WEB = "web", "Web"
        WORKER = "worker", "Celery worker"
        BEAT = "beat", "Celery beat"

    # host:pid:start time — a pid alone is reused after a restart.
    key = models.CharField(max_length=255, unique=True)
    kind = models.CharField(max_length=8, choices=Kind.choices)
    # The Celery node name (queue@host) for workers, "gunicorn"/"runserver" for web processes.
    name = models.CharField(max_length=255)
    host = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    seen_at = models.DateTimeField(db_index=True)
    gone_at = models.DateTimeField(null=True, blank=True)
    rss_bytes = models.BigIntegerField(default=0)
    cpu_seconds = models.FloatField(default=0)
    threads = models.PositiveIntegerField(default=0)
    connections = models.PositiveIntegerField(default=0)
    tasks_in_flight = models.PositiveIntegerField(default=0)
    tasks_done = models.BigIntegerField(default=0)
    last_task_at = models.DateTimeField(null=True, blank=True)
    # {task name: ISO time it last finished} — the sweeper's last run is read from here.
    tasks_last = models.JSONField(default=dict, blank=True)
    # The Celery queues a worker consumes from (the System page measures them on the broker).
    queues = models.JSONField(default=list, blank=True)
    # {"2xx": n, "3xx": n, "4xx": n, "5xx": n} since the process started.
    requests = models.JSONField(default=dict, blank=True)
    load1 = models.FloatField(default=0)
    load5 = models.FloatField(default=0)
    load15 = models.FloatField(default=0)
    host_memory_total_bytes = models.BigIntegerField(default=0)
    host_memory_available_bytes = models.BigIntegerField(default=0)

    class Meta:
        indexes = [models.Index(fields=["kind", "seen_at"])]

    def __str__(self) -> str:
        return f"{self.kind} {self.host}:{self.pid}"


class ProcessSample(models.Model):
    """What one process did during about a minute: a row per process per minute while it runs,
    deleted after ``HEARTBEAT_SAMPLE_DAYS``. Sums over rows are meaningful (CPU seconds over wall
    seconds is the CPU share; requests, errors and request seconds add up), so charts group
    by time bucket, kind and host in SQL.

    ``minute`` is whole minutes since the Unix epoch: integer division buckets it the same way
    on SQLite and PostgreSQL.
    """

    minute = models.BigIntegerField()
    kind = models.CharField(max_length=8, choices=ProcessHeartbeat.Kind.choices)
    host = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    seconds = models.FloatField()  # wall time since the process's previous sample
    cpu_seconds = models.FloatField(default=0)
    rss_bytes = models.BigIntegerField(default=0)
    load1 = models.FloatField(default=0)
    host_memory_available_bytes = models.BigIntegerField(default=0)
    tasks_in_flight = models.PositiveIntegerField(default=0)
    tasks_done = models.PositiveIntegerField(default=0)
    requests = models.PositiveIntegerField(default=0)
    errors_4xx = models.PositiveIntegerField(default=0)
    errors_5xx = models.PositiveIntegerField(default=0)
    request_seconds = models.FloatField(default=0)

    class Meta:
        indexes = [models.Index(fields=["minute", "kind"])]

    def __str__(self) -> str:
        return f"{self.kind} {self.host}:{self.pid} minute {self.minute}"


class ProcessRollup(models.Model):
    """The samples of every process of one kind on one host, added up per quarter hour: what
    the System page's charts read for a day or more (a few rows per quarter however many
    processes run), while the last hours come from ``ProcessSample`` minute by minute.

    ``minute`` is the quarter's first minute since the Unix epoch (a multiple of 15); every
    figure is a sum over ``samples`` process-minutes (``rss_bytes`` and ``load1`` too: divide
    by the minutes for a mean).
    """

    minute = models.BigIntegerField()
    kind = models.CharField(max_length=8, choices=ProcessHeartbeat.Kind.choices)
    host = models.CharField(max_length=255)
    samples = models.BigIntegerField(default=0)
    seconds = models.FloatField(default=0)
    cpu_seconds = models.FloatField(default=0)
    rss_bytes = models.BigIntegerField(default=0)
    load1 = models.FloatField(default=0)
    tasks_in_flight = models.BigIntegerField(default=0)
    tasks_done = models.BigIntegerField(default=0)
    requests = models.BigIntegerField(default=0)
    errors_4xx = models.BigIntegerField(default=0)
    errors_5xx = models.BigIntegerField(default=0)
    request_seconds = models.FloatField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["minute", "kind", "host"], name="one_process_rollup_per_quarter"
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind} @ {self.host} minute {self.minute}"


class ViewRequestRollup(models.Model):
    """Requests to one view in one hour, over every web process: what the System page's table
    of views reads (a handful of rows per view, however many processes served them).

    Each web process adds its minute's counts with one upsert per view it served
    (``heartbeats.view_rollups_add``). ``le_<n>`` count requests by latency bucket, the upper
    bounds of ``heartbeats.REQUEST_BUCKETS`` (the Prometheus request histogram's).
    """

    hour = models.DateTimeField()
    view = models.CharField(max_length=200)
    requests = models.BigIntegerField(default=0)
    errors_4xx = models.BigIntegerField(default=0)
    errors_5xx = models.BigIntegerField(default=0)
    seconds = models.FloatField(default=0)
    le_0 = models.BigIntegerField(default=0)
    le_1 = models.BigIntegerField(default=0)
    le_2 = models.BigIntegerField(default=0)
    le_3 = models.BigIntegerField(default=0)
    le_4 = models.BigIntegerField(default=0)
    le_5 = models.BigIntegerField(default=0)
    le_6 = models.BigIntegerField(default=0)
    le_7 = models.BigIntegerField(default=0)
    le_8 = models.BigIntegerField(default=0)
    le_9 = models.BigIntegerField(default=0)
    le_10 = models.BigIntegerField(default=0)
    le_11 = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["hour", "view"], name="one_request_rollup_per_view_hour"
            )
        ]

    def __str__(self) -> str:
        return f"{self.view} {self.hour:%Y-%m-%d %H}:00"


class SystemAlert(models.Model):
    """A condition managers must see (a worker gone, a queue not consumed, too many 5xx), from
    when the watcher first saw it until it cleared. Raising and clearing are logged as events;
    the open rows are what a webhook would publish."""

    key = models.CharField(max_length=255)
    kind = models.CharField(max_length=32)
    message = models.TextField()
    raised_at = models.DateTimeField()
    cleared_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["key"], condition=Q(cleared_at__isnull=True), name="one_open_alert_per_key"
            )
        ]

    def __str__(self) -> str:
        return self.message
