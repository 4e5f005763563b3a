"""Every process reports itself: a heartbeat row rewritten every few seconds, a sample a minute.

Each web process, Celery worker process and beat keeps a ``ProcessProbe``: counters that the
request middleware and the task signals bump in memory (no I/O on the request's path), and a
daemon thread that every ``HEARTBEAT_INTERVAL_SECONDS`` reads the process and host with psutil
and writes one ``ProcessHeartbeat`` row (plus one ``ProcessSample`` when a new minute started).
The thread has its own database connection, so a heartbeat is never part of a request's
transaction, and a failed write is logged, never raised: a heartbeat cannot fail a request or
a task.

Where the probes start:
- gunicorn: ``post_fork`` (reviewapp/monitoring/gunicorn.py); any other server on the first
  request (``web_request_count`` starts the probe of the current pid);
- Celery: ``worker_process_init`` in each pool process and ``worker_ready`` in the main one
  (both "worker" with the node's name), ``beat_init`` for beat.
A clean shutdown deletes the process's row; a killed process stops writing and goes stale.
"""

import atexit
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import psutil
from django.conf import settings
from django.db import connection, transaction

from reviewapp.celery import app
from reviewapp.monitoring.models import (
    ProcessHeartbeat,
    ProcessRollup,
    ProcessSample,
    ViewRequestRollup,
)

logger = logging.getLogger(__name__)
# Upper bounds of the request-latency buckets kept per view in each sample, in seconds (the
# Prometheus request histogram's).
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, float("inf"))
PUBLISHED_HEADER = "published_at"


def _now() -> datetime:
    return datetime.now(UTC)


def interval_seconds() -> float:
    return float(settings.HEARTBEAT_INTERVAL_SECONDS)


def stale_seconds() -> float:
    return float(settings.HEARTBEAT_STALE_SECONDS)


class ProcessProbe:
    """What one process knows about itself between heartbeats.

    Counters are bumped from request and task threads under a lock; ``heartbeat_record``
    takes what accumulated since the last sample.
    """

    def __init__(self, *, kind: str, name: str, queues: list[str] | None = None):
        self.kind = kind
        self.name = name
        self.queues = queues or []
        self.pid = os.getpid()
        self.host = socket.gethostname()
        self.process = psutil.Process(self.pid)
        created = self.process.create_time()
        self.started_at = datetime.fromtimestamp(created, UTC)
        self.key = f"{self.host}:{self.pid}:{int(created)}"
        self._lock = threading.Lock()
        self.requests = {"2xx": 0, "3xx": 0, "4xx": 0, "5xx": 0}
        self.tasks_in_flight = 0
        self.tasks_done = 0
        self.last_task_at: datetime | None = None
        self.tasks_last: dict[str, str] = {}
        # Since the previous sample:
        self._views: dict[str, list[float]] = {}
        self._sampled_minute: int | None = None
        self._sampled_at = self.started_at
        self._sampled_cpu = 0.0
        self._sampled_tasks = 0
        self.connections = 0

    # --- bumped by middleware and signals ---------------------------------------------------
    def request_count(self, *, view: str, status: int, seconds: float) -> None:
        status_class = f"{min(max(status // 100, 2), 5)}xx"
        bucket = next(i for i, upper in enumerate(REQUEST_BUCKETS) if seconds <= upper)
        with self._lock:
            self.requests[status_class] += 1
            row = self._views.get(view)
            if row is None:
                row = self._views[view] = [0, 0, 0, 0.0] + [0] * len(REQUEST_BUCKETS)
            row[0] += 1
            row[1] += status_class == "4xx"
            row[2] += status_class == "5xx"
            row[3] += seconds
            row[4 + bucket] += 1

    def task_started(self) -> None:
        with self._lock:
            self.tasks_in_flight += 1

    def task_finished(self, *, name: str, now: datetime) -> None:
        with self._lock:
            self.tasks_in_flight = max(self.tasks_in_flight - 1, 0)
            self.tasks_done += 1
            self.last_task_at = now
            self.tasks_last[name] = now.isoformat()

    # --- read by the heartbeat ---------------------------------------------------------------
    def read(self, *, connections: bool = True) -> dict:
        """The process's and host's figures now (psutil). Counting connections scans the
        host's socket tables, most of a reading's cost: done once a minute, with the sample."""
        with self.process.oneshot():
            memory = self.process.memory_info()
            cpu = self.process.cpu_times()
            threads = self.process.num_threads()
        if connections:
            try:
                self.connections = len(self.process.net_connections(kind="inet"))
            except (psutil.AccessDenied, psutil.NoSuchProcess):
                self.connections = 0
        load1, load5, load15 = os.getloadavg()
        host_memory = psutil.virtual_memory()
        return {
            "rss_bytes": memory.rss,
            "cpu_seconds": cpu.user + cpu.system,
            "threads": threads,
            "connections": self.connections,
            "load1": load1,
            "load5": load5,
            "load15": load15,
            "host_memory_total_bytes": host_memory.total,
            "host_memory_available_bytes": host_memory.available,
        }

    def sample_take(self, *, now: datetime, reading: dict) -> tuple[dict, dict] | None:
        """The figures for a sample row and the requests by view if this heartbeat opens a new
        minute, else None; the counters since the previous sample restart from zero."""
        minute = int(now.timestamp() // 60)
        if minute == self._sampled_minute:
            return None
        with self._lock:
            views, self._views = self._views, {}
            tasks_done, in_flight = self.tasks_done, self.tasks_in_flight
        sample = {
            "minute": minute,
            "seconds": max((now - self._sampled_at).total_seconds(), 0.0),
            "cpu_seconds": max(reading["cpu_seconds"] - self._sampled_cpu, 0.0),
            "tasks_done": tasks_done - self._sampled_tasks,
            "tasks_in_flight": in_flight,
            "requests": int(sum(v[0] for v in views.values())),
            "errors_4xx": int(sum(v[1] for v in views.values())),
            "errors_5xx": int(sum(v[2] for v in views.values())),
            "request_seconds": sum(v[3] for v in views.values()),
        }
        self._sampled_minute, self._sampled_at = minute, now
        self._sampled_cpu, self._sampled_tasks = reading["cpu_seconds"], tasks_done
        return sample, views

    def sample_restore(self, views: dict[str, list[float]]) -> None:
        """Put a minute's request counts back after its write failed (the next one has them)."""
        with self._lock:
            for name, row in views.items():
                mine = self._views.setdefault(name, [0] * len(row))
                for i, value in enumerate(row):
                    mine[i] += value
        self._sampled_minute = None


def heartbeat_record(*, probe: ProcessProbe, now: datetime | None = None) -> ProcessHeartbeat:
    """Write the process's heartbeat (and, when a minute started, its sample and its requests
    by view). Call outside any transaction of the caller's: it commits on its own."""
    now = now or _now()
    minute_starts = int(now.timestamp() // 60) != probe._sampled_minute
    reading = probe.read(connections=minute_starts)
    taken = probe.sample_take(now=now, reading=reading)
    with probe._lock:
        counters = {
            "requests": dict(probe.requests),
            "tasks_in_flight": probe.tasks_in_flight,
            "tasks_done": probe.tasks_done,
            "last_task_at": probe.last_task_at,
            "tasks_last": dict(probe.tasks_last),
        }
    try:
        with transaction.atomic():
            heartbeat, _ = ProcessHeartbeat.objects.update_or_create(
                key=probe.key,
                defaults={
                    "kind": probe.kind,
                    "name": probe.name,
                    "host": probe.host,
                    "pid": probe.pid,
                    "started_at": probe.started_at,
                    "seen_at": now,
                    "gone_at": None,
                    "queues": probe.queues,
                    **reading,
                    **counters,
                },
            )
            if taken is not None:
                sample, views = taken
                ProcessSample.objects.create(
                    kind=probe.kind,
                    host=probe.host,
                    pid=probe.pid,
                    rss_bytes=reading["rss_bytes"],
                    load1=reading["load1"],
                    host_memory_available_bytes=reading["host_memory_available_bytes"],
                    **sample,
                )
                process_rollup_add(kind=probe.kind, host=probe.host, sample=sample, reading=reading)
                view_rollups_add(hour=now.replace(minute=0, second=0, microsecond=0), views=views)
    except Exception:
        if taken is not None:
            probe.sample_restore(taken[1])
        raise
    return heartbeat


_VIEW_COUNTS = ["requests", "errors_4xx", "errors_5xx", "seconds"] + [
    f"le_{i}" for i in range(len(REQUEST_BUCKETS))
]
PROCESS_COUNTS = [  # the summed columns of a quarter-hour ProcessRollup row
    "samples",
    "seconds",
    "cpu_seconds",
    "rss_bytes",
    "load1",
    "tasks_in_flight",
    "tasks_done",
    "requests",
    "errors_4xx",
    "errors_5xx",
    "request_seconds",
]


def view_rollups_add(*, hour: datetime, views: dict[str, list[float]]) -> None:
    """Add one minute's requests by view to the hour's rows."""
    stamp = connection.ops.adapt_datetimefield_value(hour)
    rows = [[stamp, name[:200], *row] for name, row in sorted(views.items())]
    _upsert_adding(ViewRequestRollup, keys=["hour", "view"], counts=_VIEW_COUNTS, rows=rows)


def process_rollup_add(*, kind: str, host: str, sample: dict, reading: dict) -> None:
    """Add one process-minute to its kind and host's quarter hour."""
    quarter = sample["minute"] - sample["minute"] % 15
    figures = {**sample, "samples": 1, "rss_bytes": reading["rss_bytes"], "load1": reading["load1"]}
    row = [quarter, kind, host, *(figures[c] for c in PROCESS_COUNTS)]
    _upsert_adding(
        ProcessRollup, keys=["minute", "kind", "host"], counts=PROCESS_COUNTS, rows=[row]
    )


def _upsert_adding(model, *, keys: list[str], counts: list[str], rows: list[list]) -> None:
    """Insert rows, or add their counts to the rows already there: one statement, the same
    SQL on PostgreSQL and SQLite (Django's upsert replaces values, it cannot add)."""
    if not rows:
        return
    table = model._meta.db_table
    one_row = "(" + ", ".join(["%s"] * (len(keys) + len(counts))) + ")"
    updates = ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in counts)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} ({', '.join(keys + counts)}) "
            f"VALUES {', '.join([one_row] * len(rows))} "
            f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {updates}",
            [value for row in rows for value in row],
        )


def heartbeat_remove(*, probe: ProcessProbe) -> None:
    """A clean shutdown: the process is not missing, it is gone on purpose."""
    ProcessHeartbeat.objects.filter(key=probe.key).delete()


class HeartbeatThread(threading.Thread):
    """Writes the probe's heartbeat every interval until stopped; never raises."""

    def __init__(self, probe: ProcessProbe, *, after: Callable[[datetime], None] | None = None):
        super().__init__(name="heartbeat", daemon=True)
        self.probe = probe
        self.after = after
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            self.beat()
            self.stopped.wait(interval_seconds())

    def beat(self) -> None:
        try:
            now = _now()
            heartbeat_record(probe=self.probe, now=now)
            if self.after is not None:
                self.after(now)
        except Exception:
            logger.warning("heartbeat of %s not written", self.probe.key, exc_info=True)
        finally:
            # This thread's own connection: closed after each beat, so a fork (a new pool
            # process) never inherits an open socket and a database restart costs one beat.
            _connection_close()


# --- one probe per process -------------------------------------------------------------------
_probe: ProcessProbe | None = None
_thread: HeartbeatThread | None = None
_start_lock = threading.Lock()
_node_name = ""  # the Celery node's name, set before the pool forks


def current_probe() -> ProcessProbe | None:
    """This process's probe (None before it started, or in a child forked after it did)."""
    probe = _probe
    return probe if probe is not None and probe.pid == os.getpid() else None


def process_start(*, kind: str, name: str, queues: list[str] | None = None) -> ProcessProbe:
    """Start this process's probe and heartbeat thread (once per process; a forked child starts
    its own). With ``HEARTBEAT_INTERVAL_SECONDS`` = 0 the probe counts but nothing is written."""
    global _probe, _thread
    with _start_lock:
        probe = current_probe()
        if probe is not None:
            return probe
        probe = _probe = ProcessProbe(kind=kind, name=name, queues=queues)
        _thread = None
        if interval_seconds() > 0:
            _thread = HeartbeatThread(probe, after=_watch_without_beat)
            _thread.start()
        return probe


def process_stop() -> None:
    global _probe, _thread
    probe, thread = current_probe(), _thread
    if probe is None:
        return
    if thread is not None:
        thread.stopped.set()
    try:
        heartbeat_remove(probe=probe)
    except Exception:
        logger.warning("heartbeat of %s not removed", probe.key, exc_info=True)
    finally:
        _connection_close()
    _probe, _thread = None, None


def _connection_close() -> None:
    # Never under a caller's transaction (a test's, or a hook run inside one).
    if not connection.in_atomic_block:
        connection.close()


_last_watch = 0.0
WATCH_TASK = "monitoring.watch_system"


def _watch_without_beat(now: datetime) -> None:
    """The watcher is a Celery task, so with no worker consuming it nobody would raise "no
    worker" or "queue not consumed". Web and beat processes therefore run it themselves, at
    most once a minute each, when no process reports a run of the task within two watch
    intervals (with a broker) or always (embedded mode: no beat, no worker). It is idempotent
    and race-safe, so two processes running it at once do no harm."""
    global _last_watch
    if time.monotonic() - _last_watch < 60:
        return
    probe = current_probe()
    if probe is not None and probe.kind == ProcessHeartbeat.Kind.WORKER:
        return  # workers run the task
    _last_watch = time.monotonic()
    if not settings.CELERY_TASK_ALWAYS_EAGER and _watch_ran_since(
        now - timedelta(seconds=2 * settings.CELERY_BEAT_SCHEDULE["watch-system"]["schedule"])
    ):
        return
    # system.py reads this module's constants, so its watcher is imported when first run.
    from reviewapp.monitoring.system import system_watch

    system_watch(now=now)


def _watch_ran_since(since: datetime) -> bool:
    """Whether a live process reports a run of the watch task since ``since``."""
    for tasks_last in ProcessHeartbeat.objects.filter(gone_at__isnull=True).values_list(
        "tasks_last", flat=True
    ):
        ran = (tasks_last or {}).get(WATCH_TASK)
        if ran and datetime.fromisoformat(ran) >= since:
            return True
    return False


# --- hooks -----------------------------------------------------------------------------------
def web_request_count(*, view: str, status: int, seconds: float) -> None:
    """Called by the request middleware after each response: counts in memory only."""
    probe = current_probe()
    if probe is None:
        try:
            probe = process_start(kind=ProcessHeartbeat.Kind.WEB, name="web")
        except Exception:
            logger.warning("process probe not started", exc_info=True)
            return
    probe.request_count(view=view, status=status, seconds=seconds)


def celery_signals_connect() -> None:
    from celery import signals

    signals.celeryd_init.connect(_worker_named, weak=False)
    signals.worker_process_init.connect(_worker_start, weak=False)
    signals.worker_ready.connect(_worker_start, weak=False)
    signals.worker_process_shutdown.connect(_stop, weak=False)
    signals.worker_shutdown.connect(_stop, weak=False)
    signals.beat_init.connect(_beat_start, weak=False)
    signals.task_prerun.connect(_task_started, weak=False)
    signals.task_postrun.connect(_task_finished, weak=False)
    signals.before_task_publish.connect(_publish_stamped, weak=False)


def _worker_named(sender=None, **kwargs) -> None:
    global _node_name
    _node_name = str(sender or "")


def _worker_start(sender=None, **kwargs) -> None:
    try:
        queues = sorted(app.amqp.queues.consume_from or app.amqp.queues)
    except Exception:
        queues = []
    name = _node_name or getattr(sender, "hostname", "") or "celery"
    process_start(kind=ProcessHeartbeat.Kind.WORKER, name=name, queues=queues)


def _beat_start(sender=None, **kwargs) -> None:
    process_start(kind=ProcessHeartbeat.Kind.BEAT, name="beat")
    # Beat sends no shutdown signal; it exits through SystemExit on SIGTERM/SIGINT.
    atexit.register(process_stop)


def _stop(**kwargs) -> None:
    process_stop()


def _task_started(**kwargs) -> None:
    probe = current_probe()
    if probe is not None:
        probe.task_started()


def _task_finished(sender=None, task=None, **kwargs) -> None:
    probe = current_probe()
    if probe is not None:
        probe.task_finished(name=getattr(task or sender, "name", "?"), now=_now())


def _publish_stamped(sender=None, headers=None, **kwargs) -> None:
    # The broker keeps no enqueue time: the System page reads the oldest message's age from
    # this header.
    if headers is not None:
        headers.setdefault(PUBLISHED_HEADER, time.time())
