"""/metrics series about the processes, hosts and broker, read from the heartbeat table and the
broker at scrape time: whichever web process answers the scrape reports every process of the
app, on every host (the same reasoning as ``prometheus.DatabaseCollector``).

Per-process series carry ``kind``, ``host``, ``name`` and ``pid`` labels: a counter restarts at
zero with a new pid, which ``rate()`` handles as any process restart.
"""

from django.utils import timezone
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from reviewapp.monitoring.models import ProcessHeartbeat
from reviewapp.monitoring.system import FOLD_TASK, SWEEPER_TASK, health_read

PROCESS_LABELS = ["kind", "host", "name", "pid"]


class SystemCollector:
    def collect(self):
        health = health_read(now=timezone.now())
        yield from _processes(health)
        yield from _hosts(health)
        yield from _celery(health)
        alerts = GaugeMetricFamily(
            "reviewapp_system_alerts",
            "Conditions shown as a banner to managers now, by kind.",
            labels=["kind"],
        )
        for kind in (
            "process_missing",
            "no_worker",
            "queue_stalled",
            "error_rate",
            "history_partitions",
        ):
            alerts.add_metric([kind], sum(1 for a in health.alerts if a["kind"] == kind))
        yield alerts


def _processes(health):
    up = GaugeMetricFamily(
        "reviewapp_process_up",
        "1 while the process's heartbeat is fresh, 0 once it went silent (until forgotten).",
        labels=PROCESS_LABELS,
    )
    memory = GaugeMetricFamily(
        "reviewapp_process_resident_memory_bytes",
        "Resident memory of the process at its last heartbeat.",
        labels=PROCESS_LABELS,
    )
    cpu = CounterMetricFamily(
        "reviewapp_process_cpu_seconds",
        "User and system CPU time the process used since it started.",
        labels=PROCESS_LABELS,
    )
    started = GaugeMetricFamily(
        "reviewapp_process_start_time_seconds",
        "When the process started, in seconds since the Unix epoch.",
        labels=PROCESS_LABELS,
    )
    seen = GaugeMetricFamily(
        "reviewapp_process_heartbeat_timestamp_seconds",
        "When the process last wrote its heartbeat, in seconds since the Unix epoch.",
        labels=PROCESS_LABELS,
    )
    connections = GaugeMetricFamily(
        "reviewapp_process_open_connections",
        "Open network connections of the process (database, broker, clients).",
        labels=PROCESS_LABELS,
    )
    threads = GaugeMetricFamily(
        "reviewapp_process_threads", "Threads of the process.", labels=PROCESS_LABELS
    )
    responses = CounterMetricFamily(
        "reviewapp_http_responses",
        "Responses a web process gave since it started, by status class (4xx: refused, "
        "5xx: server errors).",
        labels=[*PROCESS_LABELS, "status"],
    )
    live = GaugeMetricFamily(
        "reviewapp_processes",
        "Processes with a fresh heartbeat, by kind and host.",
        labels=["kind", "host"],
    )
    counts: dict[tuple[str, str], int] = {}
    for p in health.processes:
        labels = [p.kind, p.host, p.name, str(p.pid)]
        up.add_metric(labels, 1 if p.is_live else 0)
        memory.add_metric(labels, p.rss_bytes)
        cpu.add_metric(labels, p.cpu_seconds)
        started.add_metric(labels, p.started_at.timestamp())
        seen.add_metric(labels, p.seen_at.timestamp())
        connections.add_metric(labels, p.connections)
        threads.add_metric(labels, p.threads)
        if p.kind == ProcessHeartbeat.Kind.WEB:
            for status in ("2xx", "3xx", "4xx", "5xx"):
                responses.add_metric([*labels, status], (p.requests or {}).get(status, 0))
        if p.is_live:
            counts[(p.kind, p.host)] = counts.get((p.kind, p.host), 0) + 1
    for (kind, host), n in sorted(counts.items()):
        live.add_metric([kind, host], n)
    yield from (up, live, memory, cpu, started, seen, connections, threads, responses)


def _hosts(health):
    load = GaugeMetricFamily(
        "reviewapp_host_load_average",
        "The host's load average over 1, 5 and 15 minutes.",
        labels=["host", "period"],
    )
    total = GaugeMetricFamily(
        "reviewapp_host_memory_total_bytes", "The host's physical memory.", labels=["host"]
    )
    available = GaugeMetricFamily(
        "reviewapp_host_memory_available_bytes",
        "Memory the host can give to new work without swapping.",
        labels=["host"],
    )
    for host in health.hosts:
        for period, value in zip(("1m", "5m", "15m"), host["load"], strict=True):
            load.add_metric([host["host"], period], value)
        total.add_metric([host["host"]], host["memory_total_bytes"])
        available.add_metric([host["host"]], host["memory_total_bytes"] - host["memory_used_bytes"])
    yield from (load, total, available)


def _celery(health):
    workers = GaugeMetricFamily(
        "reviewapp_celery_workers", "Celery worker nodes with a fresh heartbeat."
    )
    workers.add_metric([], len(health.workers))
    in_flight = GaugeMetricFamily(
        "reviewapp_celery_tasks_in_flight",
        "Tasks a worker process is running now.",
        labels=PROCESS_LABELS,
    )
    done = CounterMetricFamily(
        "reviewapp_celery_tasks_finished",
        "Tasks a worker process finished since it started.",
        labels=PROCESS_LABELS,
    )
    for p in health.processes:
        if p.kind == ProcessHeartbeat.Kind.WORKER:
            labels = [p.kind, p.host, p.name, str(p.pid)]
            in_flight.add_metric(labels, p.tasks_in_flight if p.is_live else 0)
            done.add_metric(labels, p.tasks_done)
    yield from (workers, in_flight, done)
    if health.queues is not None:
        length = GaugeMetricFamily(
            "reviewapp_celery_queue_length",
            "Messages waiting on the broker, by Celery queue.",
            labels=["queue"],
        )
        age = GaugeMetricFamily(
            "reviewapp_celery_queue_oldest_message_age_seconds",
            "How long the oldest waiting message has waited (0 when the queue is empty).",
            labels=["queue"],
        )
        for queue in health.queues:
            length.add_metric([queue.name], queue.length)
            age.add_metric([queue.name], queue.oldest_age_seconds or 0)
        yield length
        yield age
    last = GaugeMetricFamily(
        "reviewapp_task_last_run_timestamp_seconds",
        "When a periodic task last finished on a live or recently gone worker.",
        labels=["task"],
    )
    for task in (SWEEPER_TASK, FOLD_TASK):
        when = health.task_last_run(task)
        if when is not None:
            last.add_metric([task], when.timestamp())
    yield last
