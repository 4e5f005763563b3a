"""Queues by kind: realtime single-item scoring while a large backtest runs beside it.

Realtime items are scored in the web process; backtests go to the ``heavy`` queue, consumed by a
worker pool of its own (one process). The server's own time for single items (Server-Timing) is
measured idle, then with backtests running back to back on the heavy pool at normal priority,
then at nice 9 (the CPU weight docker-compose.yml gives the heavy workers with
``cpu_shares: 128``), then beside a process that only spins on the CPU at nice 19 (what
the machine's shared cores cost whatever the priority: the floor for this target), then idle
again; the idle figures are both idle rounds together.
Target: p99 beside a backtest within 10% of idle at full size.

Full size: 2,000 requests a round beside backtests of 100,000 items; --small: 100 requests
beside backtests of 10,000 items.
"""

import os
import subprocess
import sys
import threading
import time

import requests
from django.conf import settings
from django.db import close_old_connections

from benchmarks.bench_backtest import _seed as backtest_seed
from benchmarks.bench_ingest import _rows, _use_case, _user
from benchmarks.harness import celery_workers, fmt, gunicorn, pct, server_ms, table
from reviewapp.core.roles import Role

TARGET_RATIO = 1.10


class Backtests:
    """Backtests queued one after another, each as soon as the last is done, until stopped:
    the heavy pool is busy for the whole of the round beside it."""

    def __init__(self, use_case):
        self.use_case = use_case
        self.done = 0
        self.items = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="backtests", daemon=True)

    def __enter__(self) -> "Backtests":
        self._thread.start()
        time.sleep(0.5)  # the first job is on the worker before the round starts
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=600)

    def _loop(self) -> None:
        from reviewapp.control.backtests import backtest_start
        from reviewapp.core.models import Job

        try:
            while not self._stop.is_set():
                job = backtest_start(use_case=self.use_case, actor=None, model_version="v1")
                while (job := Job.objects.get(pk=job.pk)).state not in ("done", "failed"):
                    time.sleep(0.05)
                assert job.state == "done", job.error
                self.done += 1
                self.items += job.result["items"]
        finally:
            close_old_connections()


def _round(session, endpoint: str, rows: list[dict], tag: str) -> list[float]:
    timings = []
    for row in rows:
        body = {**row, "external_id": f"{tag}-{row['external_id']}"}
        response = session.post(endpoint, json=body)
        assert response.status_code == 201, response.text
        timings.append(server_ms(response))
    return timings


def _renice(process, nice: int) -> None:
    """The pool's main process and its children at ``nice``: what ``cpu_shares: 128`` gives
    the heavy workers in docker-compose.yml (CPU weight 137 against 1024)."""
    import psutil

    main = psutil.Process(process.pid)
    for one in (main, *main.children(recursive=True)):
        one.nice(nice)


class CpuLoop:
    """A process that only spins on the CPU at nice 19 (no database, almost no memory): what
    the machine itself does to a realtime request when its other core is busy, however low
    the other work's priority. The backtests cannot do better than this on the same cores."""

    def __enter__(self) -> "CpuLoop":
        self._process = subprocess.Popen(
            [sys.executable, "-c", "while True: pass"], preexec_fn=lambda: os.nice(19)
        )
        time.sleep(0.5)
        return self

    def __exit__(self, *exc) -> None:
        self._process.kill()
        self._process.wait()


def main(small: bool) -> None:
    n = 100 if small else 2_000
    backtest_items = 10_000 if small else 100_000
    caller, token = _user(Role.INTEGRATION, "caller")
    use_case, digits, _ = _use_case(
        level="partial", members=[caller], confidence_threshold=0.9, audit_rate=0.05
    )
    backtested, _frame = backtest_seed(backtest_items, slug=f"bench-queues-{use_case.slug}")
    rows = _rows(digits, n, "q")
    results: dict[str, list[float]] = {}
    counts: dict[str, tuple[int, int, float]] = {}
    # Only the heavy queue has a pool here: realtime items are scored by the web processes.
    with (
        gunicorn() as url,
        celery_workers(concurrency=1, queues=[settings.TASK_QUEUES["heavy"]]) as heavy_pool,
    ):
        session = requests.Session()
        session.headers["Authorization"] = f"Token {token}"
        endpoint = f"{url}/api/v1/use-cases/{use_case.slug}/items/"
        _round(session, endpoint, rows[:50], "warm")  # every web process's model and connections
        results["idle"] = _round(session, endpoint, rows, "idle-a")
        for priority in ("normal", "lower"):
            if priority == "lower":
                _renice(heavy_pool, 9)
            started = time.perf_counter()
            with Backtests(backtested) as backtests:
                results[priority] = _round(session, endpoint, rows, f"beside-{priority}")
                busy = time.perf_counter() - started
            counts[priority] = (backtests.done, backtests.items, busy)
        with CpuLoop():
            results["loop"] = _round(session, endpoint, rows, "beside-loop")
        results["idle"] += _round(session, endpoint, rows, "idle-b")

    idle_p99 = pct(results["idle"], 99)
    lines = [["idle (both idle rounds)", fmt(pct(results["idle"], 50)), fmt(idle_p99), "1.00", ""]]
    for priority, label in (("lower", "nice 9 (as compose)"), ("normal", "normal priority")):
        done, items, busy = counts[priority]
        lines.append(
            [
                f"beside backtests, heavy pool at {label}",
                fmt(pct(results[priority], 50)),
                fmt(pct(results[priority], 99)),
                fmt(pct(results[priority], 99) / idle_p99),
                f"{done} ({fmt(items / busy, 0)} items/s)",
            ]
        )
    lines.append(
        [
            "beside a bare CPU loop at nice 19 (the machine's floor)",
            fmt(pct(results["loop"], 50)),
            fmt(pct(results["loop"], 99)),
            fmt(pct(results["loop"], 99) / idle_p99),
            "",
        ]
    )
    table(
        f"Realtime single item beside backtests of {backtest_items:,} items "
        f"({n} requests a round; web: gunicorn 2 x 4 threads; heavy pool: 1 process)",
        ["round", "p50 ms", "p99 ms", "p99 / idle p99", "backtests finished"],
        lines,
    )
    ratio = pct(results["lower"], 99) / idle_p99
    verdict = "met" if ratio <= TARGET_RATIO else "NOT met"
    print(
        f"target: p99 beside a backtest <= {TARGET_RATIO:.2f} x idle -> {verdict}; beside a "
        f"bare CPU loop at nice 19, {pct(results['loop'], 99) / idle_p99:.2f} x idle"
    )
