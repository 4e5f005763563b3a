"""The software's health, read from the heartbeats, the samples and the broker: for the System
page, the Software tab and /metrics; and the watcher that prunes heartbeats and raises alerts.

Everything here reads shared state (the database, the broker), never this process's memory, so
any web process answers for all of them.
"""

import json
import logging
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import redis
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import BigIntegerField, Count, ExpressionWrapper, F, Sum

from reviewapp.core.errors import InvalidInput
from reviewapp.core.events import event_record
from reviewapp.core.logs import event_log
from reviewapp.monitoring.heartbeats import PUBLISHED_HEADER, REQUEST_BUCKETS, stale_seconds
from reviewapp.monitoring.models import (
    ProcessHeartbeat,
    ProcessRollup,
    ProcessSample,
    SystemAlert,
    ViewRequestRollup,
)
from reviewapp.reviews.partitions import partitions_missing

logger = logging.getLogger(__name__)
SWEEPER_TASK = "reviews.sweep_unscored_items"
FOLD_TASK = "monitoring.fold_rollups"
# kombu's Redis transport keeps priorities 3, 6 and 9 in sibling lists of the queue's.
PRIORITY_SEPARATOR = "\x06\x16"
PRIORITY_STEPS = (3, 6, 9)
# (label, span, bucket minutes): about a hundred points per chart.
SYSTEM_RANGES = {
    "1h": ("Last hour", timedelta(hours=1), 1),
    "6h": ("Last 6 hours", timedelta(hours=6), 5),
    "24h": ("Last 24 hours", timedelta(hours=24), 15),
    "7d": ("Last 7 days", timedelta(days=7), 60),
    "30d": ("Last 30 days", timedelta(days=30), 360),
}
DEFAULT_SYSTEM_RANGE = "24h"
ERROR_WINDOW_MINUTES = 5


# --- the broker ------------------------------------------------------------------------------
@dataclass(frozen=True)
class QueueState:
    name: str
    length: int
    oldest_age_seconds: float | None  # None: empty, or its oldest message carries no stamp


def broker_queue_names() -> list[str]:
    """Every queue a task is routed to, the default queue, the configured extras and every
    queue a live worker consumes: a routed queue nobody consumes is listed too, which is when
    it matters."""
    names = {
        *settings.TASK_QUEUES.values(),
        settings.CELERY_TASK_DEFAULT_QUEUE,
        *settings.SYSTEM_BROKER_QUEUES,
    }
    for queues in ProcessHeartbeat.objects.filter(
        kind=ProcessHeartbeat.Kind.WORKER, gone_at__isnull=True
    ).values_list("queues", flat=True):
        names.update(queues or [])
    return sorted(names)


def broker_queues(*, now: datetime, names: list[str] | None = None) -> list[QueueState] | None:
    """Length and oldest message's age of each queue on a Redis broker; None when there is
    no Redis broker to ask, or it does not answer (logged)."""
    url = settings.CELERY_BROKER_URL
    if not url.startswith(("redis://", "rediss://", "unix://")):
        return None
    names = broker_queue_names() if names is None else names
    timeout = settings.BROKER_SOCKET_TIMEOUT
    try:
        client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        with client.pipeline(transaction=False) as pipe:
            for name in names:
                for key in _keys(name):
                    pipe.llen(key)
                    pipe.lindex(key, -1)  # LPUSH in, BRPOP out: the oldest is at the tail
            replies = pipe.execute()
        client.close()
    except redis.RedisError:
        logger.warning("broker queues not read", exc_info=True)
        return None
    states, i = [], 0
    for name in names:
        length, oldest = 0, None
        for _key in _keys(name):
            length += replies[i]
            published = _published_at(replies[i + 1])
            if published is not None:
                oldest = published if oldest is None else min(oldest, published)
            i += 2
        age = max(now.timestamp() - oldest, 0.0) if oldest is not None else None
        states.append(QueueState(name=name, length=length, oldest_age_seconds=age))
    return states


def _keys(queue: str) -> list[str]:
    return [queue] + [f"{queue}{PRIORITY_SEPARATOR}{step}" for step in PRIORITY_STEPS]


def _published_at(raw: bytes | None) -> float | None:
    if not raw:
        return None
    try:
        stamp = json.loads(raw).get("headers", {}).get(PUBLISHED_HEADER)
        return float(stamp) if stamp is not None else None
    except (ValueError, TypeError, AttributeError):
        return None


# --- processes -------------------------------------------------------------------------------
@dataclass
class Health:
    """What the System page, the Software tab and /metrics show about the processes now."""

    now: datetime
    processes: list[ProcessHeartbeat]
    queues: list[QueueState] | None
    errors: dict[str, int]  # requests, 4xx and 5xx in the last ERROR_WINDOW_MINUTES
    alerts: list[dict] = field(default_factory=list)

    @property
    def live(self) -> list[ProcessHeartbeat]:
        return [p for p in self.processes if p.is_live]

    def live_of(self, kind: str) -> list[ProcessHeartbeat]:
        return [p for p in self.live if p.kind == kind]

    @property
    def workers(self) -> list[str]:
        """Live Celery nodes (each may run several pool processes)."""
        return sorted({p.name for p in self.live_of(ProcessHeartbeat.Kind.WORKER)})

    @property
    def tasks_in_flight(self) -> int:
        return sum(p.tasks_in_flight for p in self.live_of(ProcessHeartbeat.Kind.WORKER))

    @property
    def hosts(self) -> list[dict]:
        latest: dict[str, ProcessHeartbeat] = {}
        for p in self.live:
            if p.host not in latest or p.seen_at > latest[p.host].seen_at:
                latest[p.host] = p
        rows = []
        for host, p in sorted(latest.items()):
            used = p.host_memory_total_bytes - p.host_memory_available_bytes
            rows.append(
                {
                    "host": host,
                    "processes": sum(1 for q in self.live if q.host == host),
                    "load": (p.load1, p.load5, p.load15),
                    "memory_used_bytes": used,
                    "memory_total_bytes": p.host_memory_total_bytes,
                    "memory_used_share": used / p.host_memory_total_bytes
                    if p.host_memory_total_bytes
                    else None,
                }
            )
        return rows

    def task_last_run(self, task: str) -> datetime | None:
        runs = [p.tasks_last.get(task) for p in self.processes if p.tasks_last.get(task)]
        return datetime.fromisoformat(max(runs)) if runs else None

    @property
    def error_rate_5xx(self) -> float | None:
        n = self.errors["requests"]
        return self.errors["5xx"] / n if n else None


def health_read(*, now: datetime, with_broker: bool = True) -> Health:
    stale_before = now - timedelta(seconds=stale_seconds())
    processes = list(ProcessHeartbeat.objects.order_by("kind", "host", "name", "pid"))
    for p in processes:
        p.is_live = p.gone_at is None and p.seen_at >= stale_before
        p.uptime_seconds = (now - p.started_at).total_seconds()
    health = Health(
        now=now,
        processes=processes,
        queues=broker_queues(now=now) if with_broker else None,
        errors=recent_errors(now=now),
    )
    health.alerts = alerts_of(health)
    return health


def recent_errors(*, now: datetime) -> dict[str, int]:
    since = int(now.timestamp() // 60) - ERROR_WINDOW_MINUTES
    totals = ProcessSample.objects.filter(
        minute__gt=since, kind=ProcessHeartbeat.Kind.WEB
    ).aggregate(requests=Sum("requests"), e4=Sum("errors_4xx"), e5=Sum("errors_5xx"))
    return {
        "requests": totals["requests"] or 0,
        "4xx": totals["e4"] or 0,
        "5xx": totals["e5"] or 0,
    }


def alerts_of(health: Health) -> list[dict]:
    """The conditions a manager must act on, each with a stable key (one open alert per key)."""
    alerts = []
    live_names = {(p.kind, p.name) for p in health.live}
    for p in health.processes:
        if p.is_live or p.kind == ProcessHeartbeat.Kind.WEB or (p.kind, p.name) in live_names:
            continue
        ago = _ago((health.now - p.seen_at).total_seconds())
        alerts.append(
            {
                "key": f"process-missing:{p.key}",
                "kind": "process_missing",
                "message": f"{p.get_kind_display()} {p.name} (pid {p.pid} on {p.host}) "
                f"stopped reporting {ago} ago.",
            }
        )
    if not settings.CELERY_TASK_ALWAYS_EAGER and not health.workers:
        alerts.append(
            {
                "key": "no-worker",
                "kind": "no_worker",
                "message": "No Celery worker is reporting: queued work is not being done.",
            }
        )
    for queue in health.queues or []:
        age = queue.oldest_age_seconds
        if queue.length and age is not None and age > settings.SYSTEM_QUEUE_STALL_SECONDS:
            alerts.append(
                {
                    "key": f"queue-stalled:{queue.name}",
                    "kind": "queue_stalled",
                    "message": f"Queue {queue.name}: {queue.length:,} "
                    f"message{'s' if queue.length != 1 else ''}, the oldest waiting {_ago(age)}; "
                    "nothing is consuming it fast enough.",
                }
            )
    for number in partitions_missing(now=health.now):
        year, month = divmod(number, 12)
        first = date(year, month + 1, 1)
        alerts.append(
            {
                "key": f"history-partitions:{first:%Y-%m}",
                "kind": "history_partitions",
                "message": f"The history has no partitions for {first:%B %Y} yet: from "
                f"{first:%-d %B} on, no item can be stored. The beat creates them once a day "
                "(reviews.partitions_ensure): is it running?",
            }
        )
    rate = health.error_rate_5xx
    if (
        rate is not None
        and health.errors["requests"] >= settings.SYSTEM_5XX_MIN_REQUESTS
        and rate > settings.SYSTEM_5XX_RATE_ALERT
    ):
        alerts.append(
            {
                "key": "error-rate-5xx",
                "kind": "error_rate",
                "message": f"{rate:.1%} of the last {health.errors['requests']:,} requests "
                f"failed with a server error (5xx) in {ERROR_WINDOW_MINUTES} minutes; the "
                f"limit is {settings.SYSTEM_5XX_RATE_ALERT:.0%}.",
            }
        )
    return alerts


def _ago(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


# --- the watcher -----------------------------------------------------------------------------
def system_watch(*, now: datetime) -> dict:
    """Mark stale heartbeats gone (logged once each), delete the long gone and the old samples,
    and raise or clear alerts (logged). Idempotent; safe to run in several processes at once."""
    stale_before = now - timedelta(seconds=stale_seconds())
    gone = 0
    for p in ProcessHeartbeat.objects.filter(gone_at__isnull=True, seen_at__lt=stale_before):
        # Whoever stamps the row logs it: one event per process however many watchers run.
        if ProcessHeartbeat.objects.filter(pk=p.pk, gone_at__isnull=True).update(gone_at=now):
            gone += 1
            event_log(
                "process_gone",
                level=logging.WARNING,
                kind=p.kind,
                name=p.name,
                host=p.host,
                pid=p.pid,
                last_seen=p.seen_at.isoformat(),
            )
    forget_before = now - timedelta(seconds=settings.HEARTBEAT_FORGET_SECONDS)
    forgotten, _ = ProcessHeartbeat.objects.filter(seen_at__lt=forget_before).delete()
    oldest_minute = int((now - timedelta(days=settings.HEARTBEAT_SAMPLE_DAYS)).timestamp() // 60)
    samples, _ = ProcessSample.objects.filter(minute__lt=oldest_minute).delete()
    ProcessRollup.objects.filter(minute__lt=oldest_minute - 15).delete()
    ViewRequestRollup.objects.filter(
        hour__lt=now - timedelta(days=settings.HEARTBEAT_SAMPLE_DAYS, hours=1)
    ).delete()
    raised, cleared = alerts_sync(alerts=health_read(now=now).alerts, now=now)
    return {
        "gone": gone,
        "forgotten": forgotten,
        "samples_deleted": samples,
        "alerts_raised": raised,
        "alerts_cleared": cleared,
    }


# Event types an alert's change appends to the outbox (webhooks publish them to subscribers).
ALERT_RAISED = "system.alert_raised"
ALERT_CLEARED = "system.alert_cleared"


def alerts_sync(*, alerts: list[dict], now: datetime) -> tuple[int, int]:
    """Open an alert row for each new condition and close those that no longer hold; each
    change is one logged event and one outbox event, written with the alert row."""
    current = {a["key"]: a for a in alerts}
    open_rows = {a.key: a for a in SystemAlert.objects.filter(cleared_at__isnull=True)}
    raised = cleared = 0
    for key, alert in current.items():
        if key in open_rows:
            continue
        try:
            with transaction.atomic():
                SystemAlert.objects.create(
                    key=key, kind=alert["kind"], message=alert["message"], raised_at=now
                )
                event_record(
                    type=ALERT_RAISED,
                    use_case_id=None,
                    data={"key": key, "kind": alert["kind"], "message": alert["message"]},
                )
        except IntegrityError:
            continue  # another watcher raised it first
        raised += 1
        event_log(
            "system_alert_raised",
            level=logging.WARNING,
            key=key,
            kind=alert["kind"],
            message=alert["message"],
        )
    for key, row in open_rows.items():
        if key in current:
            continue
        with transaction.atomic():
            closed = SystemAlert.objects.filter(pk=row.pk, cleared_at__isnull=True).update(
                cleared_at=now
            )
            if closed:
                event_record(
                    type=ALERT_CLEARED,
                    use_case_id=None,
                    data={"key": key, "kind": row.kind, "raised_at": row.raised_at.isoformat()},
                )
        if closed:
            cleared += 1
            event_log("system_alert_cleared", key=key, kind=row.kind, raised_at=row.raised_at)
    return raised, cleared


# --- history ---------------------------------------------------------------------------------
def system_range_clean(params) -> str:
    chosen = params.get("range") or DEFAULT_SYSTEM_RANGE
    if chosen not in SYSTEM_RANGES:
        raise InvalidInput({"range": [f"must be one of {', '.join(SYSTEM_RANGES)}"]})
    return chosen


def samples_by_bucket(*, now: datetime, range_key: str) -> tuple[list[dict], int, int]:
    """Per time bucket, kind and host: sums over the process-minutes (SQL does the grouping),
    from the minute samples for short ranges and the quarter-hour rollups for a day or more.
    Returns the rows, the first bucket and the bucket's length in minutes."""
    _label, span, step = SYSTEM_RANGES[range_key]
    current = int(now.timestamp() // 60)
    first = (current - int(span.total_seconds() // 60)) // step + 1
    source = ProcessRollup if step % 15 == 0 else ProcessSample
    bucket = ExpressionWrapper(F("minute") / step, output_field=BigIntegerField())
    rows = list(
        source.objects.filter(minute__gte=first * step)
        .annotate(bucket=bucket)
        .values("bucket", "kind", "host")
        .annotate(
            rss=Sum("rss_bytes"),
            cpu=Sum("cpu_seconds"),
            load_sum=Sum("load1"),
            samples=Sum("samples") if source is ProcessRollup else Count("id"),
            requests=Sum("requests"),
            e4=Sum("errors_4xx"),
            e5=Sum("errors_5xx"),
            request_seconds=Sum("request_seconds"),
            in_flight=Sum("tasks_in_flight"),
            done=Sum("tasks_done"),
        )
        .order_by("bucket")
    )
    # Sums become per-minute means over the bucket's minutes so far (the current bucket is
    # still filling); load is a mean over the process-minutes.
    for row in rows:
        row["minutes"] = max(min(step, current - row["bucket"] * step + 1), 1)
        row["load"] = row["load_sum"] / row["samples"] if row["samples"] else 0.0
    return rows, first, step


def views_table(*, now: datetime, range_key: str, limit: int = 30) -> list[dict]:
    """Requests, errors and latency by view over the range (whole hours), busiest first."""
    _label, span, _step = SYSTEM_RANGES[range_key]
    since = (now - span).replace(minute=0, second=0, microsecond=0)
    buckets = [f"le_{i}" for i in range(len(REQUEST_BUCKETS))]
    rows = (
        ViewRequestRollup.objects.filter(hour__gte=since)
        .values("view")
        .annotate(
            n=Sum("requests"),
            e4=Sum("errors_4xx"),
            e5=Sum("errors_5xx"),
            spent=Sum("seconds"),
            **{b: Sum(b) for b in buckets},
        )
        .order_by("-n", "view")[:limit]
    )
    minutes = (now - since).total_seconds() / 60
    return [
        {
            "view": row["view"],
            "requests": row["n"],
            "per_minute": row["n"] / minutes,
            "errors_4xx": row["e4"],
            "errors_5xx": row["e5"],
            "mean_ms": row["spent"] / row["n"] * 1000 if row["n"] else None,
            "p95_ms": _bucket_quantile([row[b] for b in buckets], 0.95),
        }
        for row in rows
    ]


def _bucket_quantile(counts: list[float], q: float) -> float | None:
    """The upper bound of the latency bucket holding quantile q, in ms (None past 10 s)."""
    total = sum(counts)
    if not total:
        return None
    running = 0.0
    for upper, n in zip(REQUEST_BUCKETS, counts, strict=False):
        running += n
        if running >= q * total:
            return upper * 1000 if upper != float("inf") else None
    return None
