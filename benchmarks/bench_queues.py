"""Queues by kind: realtime single-item scoring while a large backtest runs beside it.

Realtime items are scored in the web process; backtests go to the ``heavy`` queue, consumed by a
worker pool of its own (one process), with a backtest always queued. The server's own time for
single items (Server-Timing) is measured in short blocks that take turns: idle (the heavy pool
stopped with SIGSTOP), beside the backtests (the pool continued), and beside a process that only
spins on the CPU at nice 19 (what the machine's shared cores cost whatever the priority: the
floor for this target). Taking turns in blocks of a few seconds, every condition meets the same
load from the rest of the machine; measured one after the other, a round's p99 moved by up to
a fifth from one round to the next here, twice the target's margin. The heavy pool runs at
normal priority first, then at nice 9 (the CPU weight docker-compose.yml gives the heavy
workers with ``cpu_shares: 128``), each with its own idle blocks.
Target: p99 beside a backtest (at nice 9) within 10% of idle at full size.

Full size: 2,000 requests a condition beside backtests of 100,000 items; --small: 100 requests
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
        self.pid = self._process.pid
        time.sleep(0.5)
        return self

    def __exit__(self, *exc) -> None:
        self._process.kill()
        self._process.wait()


class Paused:
    """Processes stopped (SIGSTOP) and continued (SIGCONT) between blocks: a stopped pool
    takes no CPU, and continued it goes on where it was."""

    def __init__(self, pid: int):
        import psutil

        main = psutil.Process(pid)
        self._processes = [main, *main.children(recursive=True)]

    def stop(self) -> None:
        for process in self._processes:
            process.suspend()

    def go(self) -> None:
        for process in self._processes:
            process.resume()


def _blocks(session, endpoint, rows, block: int, beside: dict[str, Paused | None], tag: str):
    """Every condition in turn, ``block`` requests at a time, the order turning each cycle;
    returns each condition's timings. ``beside``: the processes each one runs beside (None:
    none), the others stopped; all of them are left stopped."""
    names = list(beside)
    results: dict[str, list[float]] = {name: [] for name in names}
    for cycle, start in enumerate(range(0, len(rows), block)):
        turn = cycle % len(names)
        for name in names[turn:] + names[:turn]:
            for other, processes in beside.items():
                if processes is not None and other != name:
                    processes.stop()
            if beside[name] is not None:
                beside[name].go()
            time.sleep(0.1)  # a statement the stopped pool had sent finishes in PostgreSQL
            results[name] += _round(session, endpoint, rows[start : start + block], f"{tag}-{name}")
    for processes in beside.values():
        if processes is not None:
            processes.stop()
    return results


def main(small: bool) -> None:
    n = 100 if small else 2_000
    block = 25 if small else 50
    backtest_items = 10_000 if small else 100_000
    caller, token = _user(Role.INTEGRATION, "caller")
    use_case, digits, _ = _use_case(
        level="partial", members=[caller], confidence_threshold=0.9, audit_rate=0.05
    )
    backtested, _frame = backtest_seed(backtest_items, slug=f"bench-queues-{use_case.slug}")
    rows = _rows(digits, n, "q")
    results: dict[str, list[float]] = {}
    counts: dict[str, tuple[int, int]] = {}
    # Only the heavy queue has a pool here: realtime items are scored by the web processes.
    with (
        gunicorn() as url,
        celery_workers(concurrency=1, queues=[settings.TASK_QUEUES["heavy"]]) as heavy_pool,
        CpuLoop() as loop,
    ):
        session = requests.Session()
        session.headers["Authorization"] = f"Token {token}"
        endpoint = f"{url}/api/v1/use-cases/{use_case.slug}/items/"
        spinning = Paused(loop.pid)
        spinning.stop()
        _round(session, endpoint, rows[:50], "warm")  # every web process's model and connections
        pool = Paused(heavy_pool.pid)
        with Backtests(backtested) as backtests:
            try:
                for priority in ("normal", "lower"):
                    if priority == "lower":
                        _renice(heavy_pool, 9)
                    beside = {"idle": None, priority: pool}
                    if priority == "lower":
                        beside["loop"] = spinning
                    before = backtests.done, backtests.items
                    measured = _blocks(session, endpoint, rows, block, beside, priority)
                    counts[priority] = (backtests.done - before[0], backtests.items - before[1])
                    results[f"idle-{priority}"] = measured.pop("idle")
                    results.update(measured)
            finally:
                pool.go()  # a stopped pool would neither finish its backtest nor stop

    lines = []
    for priority, label in (("normal", "normal priority"), ("lower", "nice 9 (as compose)")):
        idle, beside = results[f"idle-{priority}"], results[priority]
        done, items = counts[priority]
        lines.append(
            [
                f"idle, between the blocks at {label}",
                fmt(pct(idle, 50)),
                fmt(pct(idle, 99)),
                "1.00",
                "",
            ]
        )
        lines.append(
            [
                f"beside backtests, heavy pool at {label}",
                fmt(pct(beside, 50)),
                fmt(pct(beside, 99)),
                fmt(pct(beside, 99) / pct(idle, 99)),
                f"{done} ({items:,} items)",
            ]
        )
    idle_p99 = pct(results["idle-lower"], 99)
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
        f"Realtime single item beside backtests of {backtest_items:,} items ({n} requests a "
        f"condition in blocks of {block}, taking turns; web: gunicorn 2 x 4 threads; heavy "
        "pool: 1 process)",
        ["condition", "p50 ms", "p99 ms", "p99 / idle p99", "backtests finished"],
        lines,
    )
    ratio = pct(results["lower"], 99) / idle_p99
    verdict = "met" if ratio <= TARGET_RATIO else "NOT met"
    print(
        f"target: p99 beside a backtest <= {TARGET_RATIO:.2f} x idle -> {verdict} ({ratio:.2f}); "
        f"beside a bare CPU loop at nice 19, {pct(results['loop'], 99) / idle_p99:.2f} x idle"
    )
