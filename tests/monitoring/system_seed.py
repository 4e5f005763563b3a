"""Heartbeats and samples of a fleet of processes, as a day of running would leave them."""

import random
from datetime import UTC, datetime, timedelta

from reviewapp.monitoring.heartbeats import (
    REQUEST_BUCKETS,
    process_rollup_add,
    view_rollups_add,
)
from reviewapp.monitoring.models import ProcessHeartbeat, ProcessSample

VIEWS = ("reviews:queue", "api-items", "monitoring:dashboard-tab", "metrics", "api-batch")


def fleet_seed(
    *, now: datetime, web: int = 3, workers: int = 2, minutes: int = 120, hosts: int = 2, seed=1
) -> list[ProcessHeartbeat]:
    """``web`` web processes, ``workers`` worker processes and a beat spread over ``hosts``
    hosts, each with a heartbeat seen just now and a sample per minute for ``minutes``."""
    rng = random.Random(seed)
    kinds = ["web"] * web + ["worker"] * workers + ["beat"]
    beats, samples = [], []
    current = int(now.timestamp() // 60)
    for n, kind in enumerate(kinds):
        host = f"app-{n % hosts + 1}"
        name = {"web": "gunicorn", "worker": f"celery@{host}", "beat": "beat"}[kind]
        rss = {"web": 180, "worker": 260, "beat": 90}[kind] * 1024 * 1024
        beats.append(
            ProcessHeartbeat(
                key=f"{host}:{1000 + n}:1",
                kind=kind,
                name=name,
                host=host,
                pid=1000 + n,
                started_at=now - timedelta(minutes=minutes),
                seen_at=now - timedelta(seconds=3),
                rss_bytes=rss,
                cpu_seconds=minutes * 6.0,
                threads=4,
                connections=3,
                tasks_in_flight=1 if kind == "worker" else 0,
                tasks_done=minutes * 20 if kind == "worker" else 0,
                last_task_at=now - timedelta(seconds=20) if kind == "worker" else None,
                tasks_last={
                    "reviews.sweep_unscored_items": (now - timedelta(seconds=40)).isoformat()
                }
                if kind == "worker"
                else {},
                queues=["celery"] if kind == "worker" else [],
                requests={"2xx": minutes * 50, "3xx": 0, "4xx": minutes, "5xx": 1}
                if kind == "web"
                else {},
                load1=1.2,
                load5=1.0,
                load15=0.8,
                host_memory_total_bytes=8 * 1024**3,
                host_memory_available_bytes=5 * 1024**3,
            )
        )
        for m in range(current - minutes + 1, current + 1):
            views = {}
            requests = e4 = e5 = 0
            seconds = 0.0
            if kind == "web":
                for view in VIEWS:
                    k = rng.randint(5, 20)
                    buckets = [0] * len(REQUEST_BUCKETS)
                    for _ in range(k):
                        buckets[rng.randint(1, 5)] += 1
                    v4, v5 = rng.random() < 0.3, rng.random() < 0.02
                    spent = k * rng.uniform(0.01, 0.08)
                    views[view] = [k, int(v4), int(v5), spent, *buckets]
                    requests, e4, e5, seconds = requests + k, e4 + v4, e5 + v5, seconds + spent
            sample = ProcessSample(
                minute=m,
                kind=kind,
                host=host,
                pid=1000 + n,
                seconds=60,
                cpu_seconds=rng.uniform(1, 12),
                rss_bytes=rss + rng.randint(0, 20) * 1024 * 1024,
                load1=rng.uniform(0.5, 2.5),
                host_memory_available_bytes=5 * 1024**3,
                tasks_in_flight=rng.randint(0, 2) if kind == "worker" else 0,
                tasks_done=rng.randint(5, 40) if kind == "worker" else 0,
                requests=requests,
                errors_4xx=e4,
                errors_5xx=e5,
                request_seconds=seconds,
            )
            samples.append(sample)
            process_rollup_add(
                kind=kind,
                host=host,
                sample={f.name: getattr(sample, f.name) for f in ProcessSample._meta.fields},
                reading={"rss_bytes": sample.rss_bytes, "load1": sample.load1},
            )
            view_rollups_add(
                hour=datetime.fromtimestamp(m * 60, UTC).replace(minute=0), views=views
            )
    ProcessHeartbeat.objects.bulk_create(beats)
    ProcessSample.objects.bulk_create(samples, batch_size=5000)
    return beats
