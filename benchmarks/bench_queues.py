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
workers with ``cpu_shares: 128``), each with its own idle blocks. Last, on cores of their own:
the heavy pool and the PostgreSQL backend its connection is served by on the last core (at nice
9), the web processes and this client on the others, the other backends where the system puts
them (``psutil`` sets the CPU affinity; the backends are found by the pool's connections, so
PostgreSQL must run on this host and its processes be ours to change, as root). That is what
giving heavy work cores of its own (compose's ``cpuset``) does, measured on one host. That
phase has a second floor: a loop that only copies memory on the other core, as much memory
traffic as a backtest's NumPy work and no database at all.
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


SPIN = "while True: pass"
# Copies 256 MB over and over: no database, no Python work, only memory traffic, as a
# backtest streaming its items through NumPy has (the floor for work of that kind).
COPY = "import numpy as np\na = np.ones(2**25)\nb = np.empty_like(a)\nwhile True: np.copyto(b, a)"


class CpuLoop:
    """A process that only spins on the CPU (``SPIN``: no database, almost no memory) or only
    copies memory (``COPY``), at nice 19: what the machine itself does to a realtime request
    when its other core is busy, however low the other work's priority. A floor for the
    backtests: work of their kind costs at least this much on the same machine."""

    def __init__(self, code: str = SPIN):
        self.code = code

    def __enter__(self) -> "CpuLoop":
        self._process = subprocess.Popen(
            [sys.executable, "-c", self.code], preexec_fn=lambda: os.nice(19)
        )
        self.pid = self._process.pid
        time.sleep(0.5 if self.code == SPIN else 2.0)  # the arrays allocated
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


class Pinned:
    """The heavy pool with its database backends on the last core at nice 9, the web and this
    client on the other cores, while inside; each CPU set as it was when it ends. ``refresh``
    pins the backends of connections opened since (a pool's connection ends after a while)."""

    def __init__(self, heavy_pid: int, loop_pids: list[int]):
        import psutil

        self._psutil = psutil
        cores = sorted(psutil.Process().cpu_affinity())
        self.heavy_cores, self.web_cores = cores[-1:], cores[:-1]
        heavy = psutil.Process(heavy_pid)
        self._heavy = [heavy, *heavy.children(recursive=True)]
        self._loops = [psutil.Process(pid) for pid in loop_pids]  # the floors, at nice 19
        me = psutil.Process()
        self._web = [me] + [
            p for p in me.children(recursive=True) if "gunicorn" in " ".join(p.cmdline())
        ]
        self._saved: dict[int, tuple[object, list[int], int]] = {}

    @staticmethod
    def possible() -> str | None:
        """Why the pinned rows cannot be measured here, or None when they can."""
        import psutil

        if not hasattr(psutil.Process, "cpu_affinity"):
            return "this system does not let a process choose its CPUs"
        if len(psutil.Process().cpu_affinity()) < 2:
            return "one CPU"
        servers = [p for p in psutil.process_iter(["name"]) if p.info["name"] == "postgres"]
        if not servers:
            return "PostgreSQL does not run on this host"
        for server in servers:
            try:
                server.cpu_affinity(server.cpu_affinity())  # as it is: may we change it?
                server.nice(server.nice())
            except psutil.AccessDenied:
                return "PostgreSQL's processes are not ours to change (run as root)"
            except psutil.NoSuchProcess:
                continue  # a backend that ended meanwhile
        return None

    def _set(self, process, cores: list[int], nice: int | None = None) -> None:
        if process.pid not in self._saved:
            self._saved[process.pid] = (process, process.cpu_affinity(), process.nice())
        process.cpu_affinity(cores)
        if nice is not None:
            process.nice(nice)

    def _backends(self) -> list:
        """PostgreSQL's processes serving the heavy pool's connections (found by port)."""
        psutil = self._psutil
        ports = {
            c.laddr.port
            for p in self._heavy
            for c in p.net_connections(kind="tcp")
            if c.raddr and c.status == psutil.CONN_ESTABLISHED
        }
        found = []
        for process in psutil.process_iter(["name"]):
            if process.info["name"] != "postgres":
                continue
            try:
                if any(c.raddr and c.raddr.port in ports for c in process.net_connections("tcp")):
                    found.append(process)
            except (psutil.AccessDenied, psutil.NoSuchProcess):
                continue
        return found

    def refresh(self) -> None:
        for process in self._backends():
            self._set(process, self.heavy_cores, nice=9)

    def __enter__(self) -> "Pinned":
        for process in self._heavy:
            self._set(process, self.heavy_cores, nice=9)
        for process in self._loops:
            self._set(process, self.heavy_cores)
        for process in self._web:
            self._set(process, self.web_cores)
        self.refresh()
        return self

    def __exit__(self, *exc) -> None:
        for process, cores, nice in self._saved.values():
            try:
                process.cpu_affinity(cores)
                process.nice(nice)
            except self._psutil.Error:
                continue  # a backend that ended
        self._saved.clear()


def _blocks(
    session,
    endpoint,
    rows,
    block: int,
    beside: dict[str, Paused | None],
    tag: str,
    before_each=lambda: None,
):
    """Every condition in turn, ``block`` requests at a time, the order turning each cycle;
    returns each condition's timings. ``beside``: the processes each one runs beside (None:
    none), the others stopped; all of them are left stopped. ``before_each`` runs before
    each block."""
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
            before_each()
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
    skipped = None  # why the pinned rows are missing
    # Only the heavy queue has a pool here: realtime items are scored by the web processes.
    with (
        gunicorn() as url,
        celery_workers(concurrency=1, queues=[settings.TASK_QUEUES["heavy"]]) as heavy_pool,
        CpuLoop() as loop,
        CpuLoop(COPY) as copier,
    ):
        session = requests.Session()
        session.headers["Authorization"] = f"Token {token}"
        endpoint = f"{url}/api/v1/use-cases/{use_case.slug}/items/"
        spinning = Paused(loop.pid)
        spinning.stop()
        copying = Paused(copier.pid)
        copying.stop()
        _round(session, endpoint, rows[:50], "warm")  # every web process's model and connections
        pool = Paused(heavy_pool.pid)
        with Backtests(backtested) as backtests:
            try:
                for priority in ("normal", "lower", "pinned"):
                    if priority == "lower":
                        _renice(heavy_pool, 9)
                    if priority == "pinned" and (why := Pinned.possible()):
                        skipped = why
                        break
                    beside = {"idle": None, priority: pool}
                    if priority != "normal":
                        beside[f"loop-{priority}"] = spinning
                    if priority == "pinned":
                        beside[f"copy-{priority}"] = copying
                    before = backtests.done, backtests.items
                    if priority == "pinned":
                        with Pinned(heavy_pool.pid, [loop.pid, copier.pid]) as pinned:
                            measured = _blocks(
                                session, endpoint, rows, block, beside, priority, pinned.refresh
                            )
                    else:
                        measured = _blocks(session, endpoint, rows, block, beside, priority)
                    counts[priority] = (backtests.done - before[0], backtests.items - before[1])
                    results[f"idle-{priority}"] = measured.pop("idle")
                    results.update(measured)
            finally:
                pool.go()  # a stopped pool would neither finish its backtest nor stop

    labels = {
        "normal": "normal priority, sharing the cores",
        "lower": "nice 9 (as compose), sharing the cores",
        "pinned": "nice 9 on a core of its own, its backend too",
    }
    lines = []
    for priority, label in labels.items():
        if f"idle-{priority}" not in results:
            continue
        idle, beside = results[f"idle-{priority}"], results[priority]
        done, items = counts[priority]
        lines.append([f"idle, between the blocks at {label}", *_row(idle, idle), ""])
        lines.append(
            [f"beside backtests, heavy pool at {label}", *_row(beside, idle), f"{done} ({items:,})"]
        )
        where = "on that core" if priority == "pinned" else "sharing the cores"
        for key, control in (
            ("loop", "a bare CPU loop at nice 19"),
            ("copy", "a loop copying 256 MB at nice 19"),
        ):
            if f"{key}-{priority}" in results:
                lines.append(
                    [
                        f"beside {control} {where} (a floor)",
                        *_row(results[f"{key}-{priority}"], idle),
                        "",
                    ]
                )
    table(
        f"Realtime single item beside backtests of {backtest_items:,} items ({n} requests a "
        f"condition in blocks of {block}, taking turns; web: gunicorn 2 x 4 threads; heavy "
        "pool: 1 process)",
        ["condition", "p50 ms", "p99 ms", "p99 / idle p99", "backtests finished (items)"],
        lines,
    )
    for priority in ("lower", "pinned"):
        if priority not in results:
            print(f"{labels[priority]}: not measured ({skipped})")
            continue
        ratio = pct(results[priority], 99) / pct(results[f"idle-{priority}"], 99)
        floors = ", ".join(
            f"{control} {pct(results[key], 99) / pct(results[f'idle-{priority}'], 99):.2f}"
            for key, control in ((f"loop-{priority}", "spinning"), (f"copy-{priority}", "copying"))
            if key in results
        )
        verdict = "met" if ratio <= TARGET_RATIO else "NOT met"
        print(
            f"target, heavy pool at {labels[priority]}: p99 beside a backtest <= "
            f"{TARGET_RATIO:.2f} x idle -> {verdict} ({ratio:.2f}); beside the loops: {floors}"
        )


def _row(timings: list[float], idle: list[float]) -> list[str]:
    return [fmt(pct(timings, 50)), fmt(pct(timings, 99)), fmt(pct(timings, 99) / pct(idle, 99))]
