"""Resident memory of each kind of process: idle after start, and at its peak after work.

scikit-learn, SciPy, pandas, pyarrow and skops are imported on first use, so a process that
never scores, exports or retrains never holds them. Measured here, each in its own real process
on the benchmark database:

- a gunicorn worker (1 worker, 4 threads) with ``SCORING_WARM_ON_START=0``: idle, then at its
  peak after realtime single items (it imports the libraries and loads the champion on the
  first one);
- a gunicorn worker with the hooks docker-compose.yml runs (``--config
  python:reviewapp.monitoring.gunicorn``) and the default ``SCORING_WARM_ON_START=1``: it loads
  every champion on a thread right after the fork, so it is idle at the warmed size;
- a Celery worker (1 pool process) of every queue: its main process imports the scoring
  libraries before the pool forks (it consumes the batch queue), and the pool process peaks
  after scoring a batch;
- a Celery worker of the monitoring queue alone: small idle; its pool process imports pandas
  on the first fold of the rollups.

Idle is the resident set (VmRSS) a few seconds after start; peak is the high-water mark
(VmHWM) after the work. The floor is a bare ``python -c "import django; django.setup()"``.

Full size: 500 realtime items and a batch of 20,000; --small: 50 and 2,000.
"""

import math
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import psutil
import requests
from django.conf import settings

from benchmarks.bench_ingest import _rows, _use_case, _user
from benchmarks.harness import ROOT, celery_workers, gunicorn, server_env, table
from reviewapp.core.roles import Role

SETTLE_SECONDS = 3.0


def _status_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _mib(kib: int) -> str:
    return f"{kib / 1024:,.0f}"


def _children_of(command_part: str) -> tuple[psutil.Process, list[psutil.Process]]:
    """The benchmark's child process whose command line names ``command_part``, and its own
    children (gunicorn's workers, Celery's pool)."""
    for child in psutil.Process().children():
        if command_part in " ".join(child.cmdline()):
            return child, child.children()
    raise LookupError(command_part)


def _settled(pid: int, timeout: float = 60.0) -> int:
    """VmRSS once it has stopped growing for ``SETTLE_SECONDS`` (a warm-up thread done)."""
    deadline = time.monotonic() + timeout
    last = _status_kib(pid, "VmRSS")
    stable_since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = _status_kib(pid, "VmRSS")
        if abs(now - last) > 1024:
            last, stable_since = now, time.monotonic()
        elif time.monotonic() - stable_since >= SETTLE_SECONDS:
            break
    return _status_kib(pid, "VmRSS")


def _all_settled(*pids: int) -> list[int]:
    """``_settled`` for several processes at once (each one's own wait, side by side)."""
    with ThreadPoolExecutor(max_workers=len(pids)) as pool:
        return list(pool.map(_settled, pids))


def _floor_kib() -> int:
    code = (
        "import django; django.setup(); "
        "print(open('/proc/self/status').read().split('VmRSS:')[1].split()[0])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=server_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    return int(result.stdout.strip())


def _web(*, token: str, slug: str, rows: list[dict], warm: bool) -> list[str]:
    config = "python:reviewapp.monitoring.gunicorn" if warm else None
    env = {"SCORING_WARM_ON_START": "1" if warm else "0"}
    with gunicorn(workers=1, threads=4, config=config, env=env) as url:
        _, [worker] = _children_of("gunicorn")
        idle = _settled(worker.pid)
        session = requests.Session()
        session.headers["Authorization"] = f"Token {token}"
        endpoint = f"{url}/api/v1/use-cases/{slug}/items/"
        first = None
        for row in rows:
            started = time.perf_counter()
            body = {**row, "external_id": f"{'w' if warm else 'l'}-{row['external_id']}"}
            response = session.post(endpoint, json=body)
            assert response.status_code == 201, response.text
            if first is None:
                first = (time.perf_counter() - started) * 1000
        peak = _status_kib(worker.pid, "VmHWM")
    label = "gunicorn worker, warmed at fork (compose)" if warm else "gunicorn worker, lazy"
    return [
        label,
        _mib(idle),
        _mib(peak),
        f"{len(rows)} realtime items (the first {first:,.0f} ms)",
    ]


def _worker_round(*, token: str, slug: str, rows: list[dict]) -> list[list[str]]:
    """A worker of every queue (as CI and the benchmarks start one): it scores the batch."""
    with gunicorn(workers=1, threads=4) as url, celery_workers(concurrency=1):
        main, [pool] = _children_of("celery")
        main_idle, pool_idle = _all_settled(main.pid, pool.pid)
        session = requests.Session()
        session.headers["Authorization"] = f"Token {token}"
        response = session.post(f"{url}/api/v1/use-cases/{slug}/items/batch/", json={"items": rows})
        assert response.status_code == 202, response.text
        job = response.json()["job"]
        while (state := session.get(f"{url}/api/v1/jobs/{job}/").json())["state"] != "done":
            assert state["state"] != "failed", state
            time.sleep(0.1)
        main_peak = _status_kib(main.pid, "VmHWM")
        pool_peak = _status_kib(pool.pid, "VmHWM")
    work = f"a batch of {len(rows):,} scored"
    return [
        ["Celery worker, every queue: main process", _mib(main_idle), _mib(main_peak), work],
        ["Celery worker, every queue: pool process", _mib(pool_idle), _mib(pool_peak), work],
    ]


def _monitoring_round() -> list[list[str]]:
    """A worker of the monitoring queue alone (as docker-compose.yml runs one): it folds the
    facts the batch left into the rollups."""
    from reviewapp.monitoring.models import RollupEvent
    from reviewapp.monitoring.tasks import fold_rollups

    with celery_workers(concurrency=1, queues=[settings.TASK_QUEUES["monitoring"]]):
        main, [pool] = _children_of("celery")
        main_idle, pool_idle = _all_settled(main.pid, pool.pid)
        pending = RollupEvent.objects.count()
        deadline = time.monotonic() + 600
        queued = -math.inf
        while RollupEvent.objects.exists() and time.monotonic() < deadline:
            if time.monotonic() - queued >= 2:  # a fold takes what it can; queue the next
                fold_rollups.delay()
                queued = time.monotonic()
            time.sleep(0.2)
        main_peak = _status_kib(main.pid, "VmHWM")
        pool_peak = _status_kib(pool.pid, "VmHWM")
    work = f"{pending:,} facts folded into the rollups"
    return [
        ["Celery worker, monitoring: main process", _mib(main_idle), _mib(main_peak), work],
        ["Celery worker, monitoring: pool process", _mib(pool_idle), _mib(pool_peak), work],
    ]


def main(small: bool) -> None:
    realtime_items = 50 if small else 500
    batch_items = 2_000 if small else 20_000
    caller, token = _user(Role.INTEGRATION, "caller")
    use_case, digits, _ = _use_case(
        level="partial", members=[caller], confidence_threshold=0.9, audit_rate=0.05
    )
    realtime_rows = _rows(digits, realtime_items, "m")
    lines = [["floor: python -c 'django.setup()'", _mib(_floor_kib()), "", ""]]
    lines.append(_web(token=token, slug=use_case.slug, rows=realtime_rows, warm=False))
    lines.append(_web(token=token, slug=use_case.slug, rows=realtime_rows, warm=True))
    lines += _worker_round(token=token, slug=use_case.slug, rows=_rows(digits, batch_items, "mb"))
    lines += _monitoring_round()
    table(
        "Resident memory by process (MiB): idle after start, peak (high-water mark) after work",
        ["process", "idle MiB", "peak MiB", "work"],
        lines,
    )
