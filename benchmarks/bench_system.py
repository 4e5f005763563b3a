"""What watching the processes costs, and the System page over a month of samples.

1. Heartbeat overhead. A real probe of this process writes its heartbeat the way the heartbeat
   thread does (every HEARTBEAT_INTERVAL_SECONDS of simulated time, so one write in six opens
   a minute and adds a sample): CPU time per write (psutil reading + ORM + PostgreSQL client),
   scaled to CPU seconds per hour per process; rows and bytes a day at 50 processes, from the
   sample table's size on disk.
2. System page server time. 50 processes (20 web, 25 worker, 4 more web on a second host,
   1 beat) with a sample a minute each for 30 days (small: 1 day) are COPY-loaded; the page
   is requested through the whole Django stack for the last 24 hours (the default), 7 and 30
   days. Target: the default page at most 300 ms.

    DATABASE_URL=postgres://... python benchmarks/bench_system.py [--small]

It creates (and drops) its own test database. Without PostgreSQL it does not run.
"""

import io
import os
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.harness import fmt, table, throwaway_database  # noqa: E402

PROCESSES = 50
TARGET_MS = 300.0
INTERVAL = 10  # HEARTBEAT_INTERVAL_SECONDS' default
VIEW_COUNT = 60

VIEWS = ("reviews:queue", "api-items", "api-batch", "monitoring:dashboard-tab", "metrics")


def _django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "reviewapp.settings")
    # No heartbeat thread of this process's own: the fleet below is the one measured.
    os.environ["HEARTBEAT_INTERVAL_SECONDS"] = "0"
    import django

    django.setup()


def heartbeat_overhead(writes: int) -> dict:

    from reviewapp.monitoring.heartbeats import ProcessProbe, heartbeat_record
    from reviewapp.monitoring.models import ProcessSample

    interval = INTERVAL
    probe = ProcessProbe(kind="web", name="bench")
    start = datetime.now(UTC).replace(second=0, microsecond=0)
    for n in range(20):  # warm-up: connection, statement caches
        heartbeat_record(probe=probe, now=start - timedelta(hours=1, seconds=interval * n))
    started_read = time.process_time()
    for _ in range(writes):
        probe.read()
    read_cpu = (time.process_time() - started_read) / writes
    samples_before = ProcessSample.objects.count()
    started = time.process_time()
    wall = time.perf_counter()
    for n in range(writes):
        for view in VIEWS:
            probe.request_count(view=view, status=200, seconds=0.02)
        heartbeat_record(probe=probe, now=start + timedelta(seconds=interval * n))
    per_write = (time.process_time() - started) / writes
    wall_per_write = (time.perf_counter() - wall) / writes
    samples = ProcessSample.objects.count() - samples_before
    writes_per_hour = 3600 / interval
    return {
        "interval": interval,
        "read_cpu_ms": read_cpu * 1000,
        "write_cpu_ms": per_write * 1000,
        "write_wall_ms": wall_per_write * 1000,
        "cpu_seconds_per_hour": per_write * writes_per_hour,
        "samples_per_write": samples / writes,
    }


def table_bytes_per_row(model) -> float:
    from django.db import connection

    table = model._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {table}")
        cursor.execute("SELECT pg_total_relation_size(%s)", [table])
        return cursor.fetchone()[0] / max(model.objects.count(), 1)


def fleet_copy(*, now: datetime, days: int, seed: int = 7) -> tuple[int, float]:
    """50 heartbeats and a sample a minute for each over ``days``, by COPY; rows, seconds."""
    from django.db import connection

    from reviewapp.monitoring.heartbeats import PROCESS_COUNTS as SUMS
    from reviewapp.monitoring.models import ProcessHeartbeat, ProcessRollup, ViewRequestRollup

    rng = random.Random(seed)
    kinds = ["web"] * 20 + ["worker"] * 25 + ["web"] * 4 + ["beat"]
    started = time.perf_counter()
    beats = []
    for n, kind in enumerate(kinds):
        host = f"app-{n % 5 + 1}" if n < 45 else "edge-1"
        beats.append(
            ProcessHeartbeat(
                key=f"{host}:{2000 + n}:1",
                kind=kind,
                name={"web": "gunicorn", "worker": f"celery@{host}", "beat": "beat"}[kind],
                host=host,
                pid=2000 + n,
                started_at=now - timedelta(days=days),
                seen_at=now - timedelta(seconds=2),
                rss_bytes=200 * 1024 * 1024,
                cpu_seconds=1000.0,
                load1=1.0,
                load5=1.0,
                load15=1.0,
                host_memory_total_bytes=16 * 1024**3,
                host_memory_available_bytes=9 * 1024**3,
                queues=["celery"] if kind == "worker" else [],
            )
        )
    ProcessHeartbeat.objects.bulk_create(beats)
    current = int(now.timestamp() // 60)
    minutes = days * 1440
    columns = (
        "minute, kind, host, pid, seconds, cpu_seconds, rss_bytes, load1, "
        "host_memory_available_bytes, tasks_in_flight, tasks_done, requests, errors_4xx, "
        "errors_5xx, request_seconds"
    )
    rows = 0
    quarters: dict[tuple, dict] = {}
    with connection.cursor() as cursor:
        for beat in beats:
            buffer = io.StringIO()
            for m in range(current - minutes + 1, current + 1):
                requests, e4, e5, spent = 0, 0, 0, 0.0
                if beat.kind == "web":
                    requests = rng.randint(20, 150)
                    e4, e5 = rng.randint(0, 6), int(rng.random() < 0.05)
                    spent = requests * 0.03
                tasks = rng.randint(0, 40) if beat.kind == "worker" else 0
                cpu, rss, load = (
                    rng.uniform(1, 20),
                    200 * 1024**2 + rng.randint(0, 50) * 1024**2,
                    1.0,
                )
                q = quarters.setdefault((m - m % 15, beat.kind, beat.host), dict.fromkeys(SUMS, 0))
                for name, value in zip(
                    SUMS, (1, 60, cpu, rss, load, 1, tasks, requests, e4, e5, spent), strict=True
                ):
                    q[name] += value
                buffer.write(
                    f"{m}\t{beat.kind}\t{beat.host}\t{beat.pid}\t60\t{cpu:.3f}\t{rss}\t"
                    f"{load:.2f}\t{9 * 1024**3}\t1\t{tasks}\t"
                    f"{requests}\t{e4}\t{e5}\t{spent:.4f}\n"
                )
                rows += 1
            buffer.seek(0)
            with cursor.cursor.copy(
                f"COPY monitoring_processsample ({columns}) FROM STDIN"
            ) as copy:
                copy.write(buffer.read())
        cursor.execute("ANALYZE monitoring_processsample")
    ProcessRollup.objects.bulk_create(
        [
            ProcessRollup(minute=minute, kind=kind, host=host, **sums)
            for (minute, kind, host), sums in quarters.items()
        ],
        batch_size=5000,
    )
    # Requests by view, an hour a row: 60 views (about the app's count) over the period.
    hours = days * 24
    first_hour = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours - 1)
    rollups = []
    for h in range(hours):
        for v in range(VIEW_COUNT):
            n = rng.randint(100, 5000)
            spread = {f"le_{rng.randint(1, 6)}": n}
            rollups.append(
                ViewRequestRollup(
                    hour=first_hour + timedelta(hours=h),
                    view=f"view-{v:02d}",
                    requests=n,
                    errors_4xx=n // 20,
                    errors_5xx=n // 500,
                    seconds=n * 0.03,
                    **spread,
                )
            )
    ViewRequestRollup.objects.bulk_create(rollups, batch_size=5000)
    return rows, time.perf_counter() - started


def page_times(*, repeat: int) -> dict[str, float]:
    from django.contrib.auth import get_user_model
    from django.test import Client

    from deployments.services.use_cases import use_case_create
    from reviewapp.core.roles import Role, role_groups_ensure

    groups = role_groups_ensure()
    manager = get_user_model().objects.create_user("bench-system", password="bench-pass-123")
    manager.groups.add(groups[Role.MANAGER])
    client = Client()
    client.force_login(manager)
    out = {}
    for range_key in ("24h", "1h", "7d", "30d"):
        url = f"/monitoring/system/?range={range_key}"
        response = client.get(url, HTTP_HX_REQUEST="true")  # warm-up
        assert response.status_code == 200, response.status_code
        samples = []
        for _ in range(repeat):
            started = time.perf_counter()
            client.get(url, HTTP_HX_REQUEST="true")
            samples.append((time.perf_counter() - started) * 1000)
        out[range_key] = statistics.median(samples)
    # A use case's Software tab draws the same process figures over the last 24 hours.
    use_case = use_case_create(
        actor=manager,
        slug="bench-system",
        name="Benchmark",
        task_type="classification",
        labels=["yes", "no"],
        features=[{"name": "x", "type": "number"}],
    )
    url = f"/monitoring/{use_case.slug}/software/"
    assert client.get(url, HTTP_HX_REQUEST="true").status_code == 200  # warm-up
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        client.get(url, HTTP_HX_REQUEST="true")
        samples.append((time.perf_counter() - started) * 1000)
    out["software"] = statistics.median(samples)
    return out


def _measure(small: bool) -> None:
    from reviewapp.monitoring.models import (
        ProcessHeartbeat,
        ProcessRollup,
        ProcessSample,
        ViewRequestRollup,
    )

    overhead = heartbeat_overhead(writes=300 if small else 2000)
    for model in (ProcessSample, ProcessRollup, ViewRequestRollup, ProcessHeartbeat):
        model.objects.all().delete()
    days = 1 if small else 30
    rows, seconds = fleet_copy(now=datetime.now(UTC), days=days)
    print(f"\nloaded {rows:,} samples ({PROCESSES} processes x {days} days) in {seconds:.0f} s")
    sample_bytes = table_bytes_per_row(ProcessSample)
    per_day_samples = PROCESSES * 1440
    per_day_updates = PROCESSES * 86400 / overhead["interval"]
    table(
        f"Heartbeat overhead (one process; PostgreSQL on this machine; {PROCESSES} processes)",
        ["what", "measured"],
        [
            ["interval", f"{overhead['interval']:g} s (a sample row a minute)"],
            [
                "psutil reading with connections (once a minute)",
                f"{fmt(overhead['read_cpu_ms'], 2)} ms CPU",
            ],
            [
                "whole beat, average",
                f"{fmt(overhead['write_cpu_ms'], 2)} ms CPU "
                f"(wall {fmt(overhead['write_wall_ms'], 2)} ms)",
            ],
            [
                "CPU per process per hour",
                f"{fmt(overhead['cpu_seconds_per_hour'], 2)} s "
                f"({overhead['cpu_seconds_per_hour'] / 36:.3f}% of a core)",
            ],
            ["sample rows a day", f"{per_day_samples:,}"],
            [
                "quarter-hour rollup rows a day (kind x host)",
                f"{ProcessRollup.objects.count() // days:,}",
            ],
            ["heartbeat updates a day (50 rows in place)", f"{per_day_updates:,.0f}"],
            [
                "sample table growth a day",
                f"{per_day_samples * sample_bytes / 1024**2:,.1f} MB "
                f"({sample_bytes:.0f} bytes a row incl. indexes)",
            ],
        ],
    )
    times = page_times(repeat=3 if small else 5)
    table(
        f"System page server time, {PROCESSES} processes, {days} days of samples",
        ["period shown", "median ms", "target"],
        [
            [
                "last 24 hours (default)",
                fmt(times["24h"], 1),
                f"<= {TARGET_MS:.0f} ms: " + ("met" if times["24h"] <= TARGET_MS else "NOT MET"),
            ],
            ["last hour (minute samples)", fmt(times["1h"], 1), "—"],
            ["last 7 days", fmt(times["7d"], 1), "—"],
            ["last 30 days", fmt(times["30d"], 1), "—"],
            [
                "a use case's Software tab (last 24 hours)",
                fmt(times["software"], 1),
                f"<= {TARGET_MS:.0f} ms: "
                + ("met" if times["software"] <= TARGET_MS else "NOT MET"),
            ],
        ],
    )


def main(small: bool) -> None:
    _django()
    from django.conf import settings

    if not settings.IS_POSTGRES:
        print("note: bench_system needs PostgreSQL (set DATABASE_URL); skipped")
        return
    with throwaway_database(debug=False):
        from reviewapp.celery import app

        app.conf.task_always_eager = True
        _measure(small)


if __name__ == "__main__":
    main(small="--small" in sys.argv[1:])
