"""The whole app under a crowd, and what each operation costs, on PostgreSQL with 4 gunicorn
worker processes (4 threads each, the compose hooks) and 4 Celery worker processes (every
queue), for the README's scale model.

- costs: each operation alone, one client, a fixed number of times: the CPU it took in the
  web processes, in the Celery processes (what it left on the queues, drained) and in the
  PostgreSQL backends of the benchmark database (psutil), per operation; the fold is one
  ``monitoring.fold_rollups`` task on the workers over the facts the others left.
- load: Locust (``benchmarks/locust_load.py``, headless, bounded in time, 127.0.0.1 only) with
  64 simulated reviewers claiming and deciding, two upstreams sending realtime items, one
  sending batches and waiting for their jobs, and a manager reading dashboards and exporting
  disagreements, while a thread plays beat's fold every few seconds. Any request that is not
  its operation's success fails the benchmark; 204 (nothing waiting) and 409 (lease lost)
  are the API's answers to expected situations and are counted on their own rows.
- storage: bytes per row of every table that grew (``pg_total_relation_size``: heap, indexes,
  TOAST), after the load and a seeded volume of routed items; and the database connections
  and broker connections each kind of process held during the load.

--small (CI): 10 s of load after a short set-up, without the per-operation costs; full: the
costs, 180 s of load and a larger seeded volume. The README's figures come from
``python benchmarks/run.py load`` (alone: run.py gives all benchmarks one database). Another
benchmark running on the same machine at the same time must use its own database and broker
(``BENCH_DATABASE_URL``, ``BENCH_BROKER_URL``): Celery workers on a shared broker take each
other's tasks.
"""

import contextlib
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import redis
import requests
import skops.io as sio
from django.conf import settings
from django.db import connection, transaction
from django.test import Client, override_settings
from django.utils import timezone

from benchmarks.bench_ingest import _rows, _user
from benchmarks.harness import ROOT, celery_workers, fmt, gunicorn, server_env, table
from deployments.models import UseCaseMembership
from deployments.services.model_versions import model_version_register
from deployments.services.policies import policy_change
from deployments.services.use_cases import use_case_create
from reviewapp.core.roles import Role
from reviewapp.demo import datasets
from reviewapp.monitoring.models import RollupEvent
from reviewapp.reviews.models import Item, ReviewTask
from reviewapp.reviews.services.ingest import items_store_pending
from reviewapp.reviews.services.scoring import items_score

REVIEWERS = 64
REALTIME_UPSTREAMS = 2


def _sizes(small: bool) -> dict:
    return {
        "use_cases": 2 if small else 4,
        "seeded_items": 1_500 if small else 20_000,
        "load_seconds": 10 if small else 180,
        "realtime": 300,  # the costs (full size only)
        "batch": 5_000,
        "review_rounds": 4,  # rounds of 64 claims, then 64 decisions
        "dashboards": 30,
        "exports": 10,
        "load_batch_size": 200 if small else 1_000,
    }


# --- set-up ----------------------------------------------------------------------------------


def _use_cases(count: int, manager, reviewers, caller, artifact: bytes, digits) -> list:
    """Partial automation: confident predictions decided by the model, the rest and a 10%
    audit reviewed by people; every use case its own reviewers (a 64th each, round robin)."""
    use_cases = []
    for n in range(count):
        use_case = use_case_create(
            actor=manager,
            slug=f"load-{n}-{time.time_ns() % 10**8}",
            name=f"Load {n}",
            task_type="classification",
            features=digits.features,
            labels=digits.labels,
            level="partial",
        )
        policy_change(
            use_case=use_case,
            actor=manager,
            changes={"confidence_threshold": 0.99, "audit_rate": 0.1},
            reason="benchmark",
        )
        for user in [manager, caller, *[u for u, _ in reviewers[n::count]]]:
            UseCaseMembership.objects.get_or_create(use_case=use_case, user=user)
        model_version_register(
            use_case=use_case, version="v1", data=artifact, actor=manager, reference=digits.frame
        )
        use_cases.append(use_case)
    return use_cases


def _seed(use_cases, rows: list[dict], count: int) -> None:
    """``count`` routed items spread over the use cases, stored and scored in-process (what a
    batch does on a worker), so the queues hold open tasks before anyone claims."""
    per = count // len(use_cases)
    for n, use_case in enumerate(use_cases):
        for start in range(0, per, 2_000):
            chunk = [
                (f"seed-{n}-{i}", rows[i % len(rows)]["features"], None)
                for i in range(start, min(per, start + 2_000))
            ]
            with transaction.atomic():
                ids = items_store_pending(use_case=use_case, rows=chunk, now=timezone.now())
            items_score(item_ids=ids)


# --- the processes and what they spent -------------------------------------------------------


class _Meter(threading.Thread):
    """CPU seconds used by each kind of process: the benchmark's gunicorn workers, its Celery
    processes (main and pool) and the PostgreSQL backends of its database. Sampled every
    50 ms and kept after a process ends: a Celery pool process closes its database connection
    after every task (Celery's default without CELERY_DB_REUSE_MAX), so its backend lives only
    as long as the task; what a backend used in its last 50 ms is lost."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.used: dict[str, dict[int, float]] = {"web": {}, "worker": {}, "postgres": {}}
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        database = settings.DATABASES["default"]["NAME"]
        postmasters = [
            p
            for p in psutil.process_iter(["name", "cmdline"])
            if p.info["name"] == "postgres" and "-D" in (p.info["cmdline"] or [])
        ]
        self.postmaster = postmasters[0] if postmasters else None
        self.backend_mark = f" {database} "
        self.own_backend = 0

    def processes(self) -> dict[str, list[psutil.Process]]:
        kinds: dict[str, list[psutil.Process]] = {"web": [], "worker": [], "postgres": []}
        for child in psutil.Process().children():
            try:
                command = " ".join(child.cmdline())
                if "gunicorn" in command:
                    kinds["web"] += child.children()
                elif "-m celery" in command:
                    kinds["worker"] += [child, *child.children()]
            except psutil.NoSuchProcess:  # a zombie too
                pass
        for backend in self.postmaster.children() if self.postmaster else []:
            try:
                if backend.pid == self.own_backend:
                    continue
                if self.backend_mark in " ".join(backend.cmdline()) + " ":
                    kinds["postgres"].append(backend)
            except psutil.NoSuchProcess:
                pass
        return kinds

    def sample(self) -> dict[str, dict[int, float]]:
        with self.lock:
            for kind, processes in self.processes().items():
                for process in processes:
                    try:
                        times = process.cpu_times()
                    except psutil.NoSuchProcess:
                        continue
                    self.used[kind][process.pid] = times.user + times.system
            return {kind: dict(pids) for kind, pids in self.used.items()}

    def run(self) -> None:
        while not self.stopped.wait(0.05):
            self.sample()


METER: _Meter | None = None


def _cpu() -> dict[str, dict[int, float]]:
    return METER.sample()


def _spent(before, after) -> dict[str, float]:
    """CPU seconds per kind between two samples."""
    return {
        kind: sum(cpu - before.get(kind, {}).get(pid, 0.0) for pid, cpu in pids.items())
        for kind, pids in after.items()
    }


def _drained(broker: redis.Redis, timeout: float = 120) -> None:
    """Wait until the queues are empty and the workers have stopped using CPU."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        waiting = sum(broker.llen(queue) for queue in settings.TASK_QUEUES.values())
        used = sum(_cpu()["worker"].values())
        if waiting == 0 and last is not None and used - last < 0.003:
            return
        last = used
        time.sleep(0.25)


# --- per-operation costs ---------------------------------------------------------------------


def _measure(name: str, count: int, unit: str, work, broker, results: list) -> None:
    """Call after ``_drained``: it drains what ``work`` left, so the next one starts clean."""
    before, started = _cpu(), time.perf_counter()
    work()
    elapsed = time.perf_counter() - started
    _drained(broker)
    spent = _spent(before, _cpu())
    results.append(
        [
            name,
            f"{count:,} {unit}",
            fmt(elapsed * 1000 / count),
            fmt(spent["web"] * 1000 / count),
            fmt(spent["worker"] * 1000 / count),
            fmt(spent["postgres"] * 1000 / count),
        ]
    )


def costs(*, url: str, plan: dict, sizes: dict, broker) -> None:
    slug = plan["use_cases"][0]["slug"]
    upstream = requests.Session()
    upstream.headers["Authorization"] = f"Token {plan['integration_token']}"
    rows = plan["rows"]
    results: list[list[str]] = []

    def realtime() -> None:
        for i in range(sizes["realtime"]):
            body = {"external_id": f"cost-rt-{i}", "features": rows[i % len(rows)]}
            response = upstream.post(f"{url}/api/v1/use-cases/{slug}/items/", json=body)
            assert response.status_code == 201, response.text

    def batch() -> None:
        body = [
            {"external_id": f"cost-b-{i}", "features": rows[i % len(rows)]}
            for i in range(sizes["batch"])
        ]
        jobs = []
        for start in range(0, len(body), 10_000):
            response = upstream.post(
                f"{url}/api/v1/use-cases/{slug}/items/batch/",
                json={"items": body[start : start + 10_000]},
            )
            assert response.status_code == 202, response.text
            jobs.append(response.json()["job"])
        for job in jobs:
            while (state := upstream.get(f"{url}/api/v1/jobs/{job}/").json())["state"] != "done":
                assert state["state"] != "failed", state
                time.sleep(0.2)

    # Each reviewer holds one lease, so a round is every reviewer claiming, then every
    # reviewer deciding: the two operations measured apart.
    sessions = []
    for use_case_slug, token in plan["reviewers"]:
        session = requests.Session()
        session.headers["Authorization"] = f"Token {token}"
        sessions.append((use_case_slug, session))
    claimed: list = []

    def claim() -> None:
        for use_case_slug, session in sessions:
            response = session.post(f"{url}/api/v1/use-cases/{use_case_slug}/review/next/")
            assert response.status_code == 200, (response.status_code, response.text)
            claimed.append((session, response.json()))

    def decide() -> None:
        while claimed:
            session, task = claimed.pop()
            response = session.post(
                f"{url}/api/v1/review/tasks/{task['task']}/decision/",
                json={"label": plan["labels"][0], "lease_token": task["lease_token"]},
            )
            assert response.status_code == 201, response.text

    _drained(broker)
    _measure("ingest realtime", sizes["realtime"], "items", realtime, broker, results)
    _measure("ingest batch", sizes["batch"], "items", batch, broker, results)
    for _ in range(sizes["review_rounds"]):
        _measure("claim (review-next)", len(sessions), "claims", claim, broker, results)
        _measure("decide", len(sessions), "decisions", decide, broker, results)
    results = _merge_rounds(results)

    facts = RollupEvent.objects.count()

    def fold() -> None:
        from reviewapp.celery import app

        app.send_task("monitoring.fold_rollups")
        deadline = time.monotonic() + 120
        while RollupEvent.objects.exists() and time.monotonic() < deadline:
            time.sleep(0.1)

    _measure("fold (rollups)", facts, "facts", fold, broker, results)

    manager = requests.Session()
    manager.cookies.set("sessionid", plan["manager_session"])

    def dashboards() -> None:
        for _ in range(sizes["dashboards"]):
            response = manager.get(f"{url}/monitoring/{slug}/", allow_redirects=False)
            assert response.status_code == 200, response.status_code

    exported = []

    def exports() -> None:
        for _ in range(sizes["exports"]):
            response = manager.get(
                f"{url}/api/v1/use-cases/{slug}/disagreements/?format=csv",
                headers={"Authorization": f"Token {plan['manager_token']}"},
            )
            assert response.status_code == 200, response.text
            exported.append(response.text.count("\n") - 1)

    _measure("dashboard page", sizes["dashboards"], "pages", dashboards, broker, results)
    read_queries = _read_queries(plan, slug)
    _measure("export disagreements (CSV)", sizes["exports"], "exports", exports, broker, results)
    results[-1][1] += f" of {exported[-1]:,} rows"
    print(
        "queries (counted in-process, warm): dashboard page "
        f"{read_queries['dashboard']}, export {read_queries['export']}; the review loop's are "
        "pinned by tests/reviews/test_query_budgets.py"
    )
    table(
        "Per-operation costs: one client, each operation alone (CPU ms per operation, psutil)",
        ["operation", "measured over", "wall ms", "web CPU ms", "worker CPU ms", "PG CPU ms"],
        results,
    )


def _read_queries(plan: dict, slug: str) -> dict[str, int]:
    """SQL statements of a manager's dashboard page and export, in this process (the second
    of two requests: the per-process caches warm)."""
    from django.contrib.auth import get_user_model
    from django.test.utils import CaptureQueriesContext

    manager = get_user_model().objects.get(auth_token__key=plan["manager_token"])
    paths = {
        "dashboard": f"/monitoring/{slug}/",
        "export": f"/api/v1/use-cases/{slug}/disagreements/?format=csv",
    }
    counts = {}
    with override_settings(ALLOWED_HOSTS=["testserver"], SECURE_SSL_REDIRECT=False):
        client = Client()
        client.force_login(manager)
        for name, path in paths.items():
            _read_whole(client.get(path))
            with CaptureQueriesContext(connection) as captured:
                _read_whole(client.get(path))
            counts[name] = len(captured.captured_queries)
    return counts


def _read_whole(response) -> None:
    """Read a response to its end and close it: an export streams from its own snapshot
    connection, which stays in its transaction until the stream is read and closed."""
    assert response.status_code == 200, response.status_code
    try:
        if response.streaming:
            for _ in response.streaming_content:
                pass
    finally:
        response.close()


def _merge_rounds(results: list[list[str]]) -> list[list[str]]:
    """Rounds of the same operation summed into one row (weighted by their counts)."""
    merged: dict[str, list] = {}
    for name, over, *values in results:
        count = int(over.split()[0].replace(",", ""))
        unit = over.split()[1]
        entry = merged.setdefault(name, [0, unit, [0.0] * len(values)])
        entry[0] += count
        entry[2] = [
            s + float(v.replace(",", "")) * count for s, v in zip(entry[2], values, strict=True)
        ]
    return [
        [name, f"{count:,} {unit}", *(fmt(s / count) for s in sums)]
        for name, (count, unit, sums) in merged.items()
    ]


# --- the load run ----------------------------------------------------------------------------


def _connections() -> list[list[str]]:
    """TCP connections each kind of process holds to PostgreSQL (5432) and Redis (6379)."""
    rows = []
    broker_port = int(server_env()["CELERY_BROKER_URL"].split(":")[-1].split("/")[0])
    for kind, processes in METER.processes().items():
        if kind == "postgres":
            continue
        per = []
        for process in processes:
            try:
                remote = [c.raddr.port for c in process.net_connections("tcp") if c.raddr]
            except psutil.NoSuchProcess:
                continue
            per.append((remote.count(5432), remote.count(broker_port)))
        rows.append(
            [
                kind,
                len(per),
                f"{min(p for p, _ in per)}-{max(p for p, _ in per)}",
                sum(p for p, _ in per),
                f"{min(r for _, r in per)}-{max(r for _, r in per)}",
            ]
        )
    return rows


def _folding(stop: threading.Event, every: float) -> None:
    from reviewapp.celery import app

    while not stop.wait(every):
        app.send_task("monitoring.fold_rollups")


def load(*, url: str, plan_path: Path, sizes: dict, broker) -> bool:
    seconds = sizes["load_seconds"]
    users = REVIEWERS + REALTIME_UPSTREAMS + 2
    out = Path(tempfile.mkdtemp(prefix="bench-load-"))
    stop = threading.Event()
    folder = threading.Thread(target=_folding, args=(stop, settings.ROLLUP_FOLD_SECONDS / 3))
    folder.start()
    before = _cpu()
    started = time.monotonic()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(ROOT / "benchmarks" / "locust_load.py"),
            "--headless",
            "--host",
            url,
            "-u",
            str(users),
            "-r",
            str(users),  # everyone within the first second
            "-t",
            f"{seconds}s",
            "--stop-timeout",
            "10",
            "--csv",
            str(out / "load"),
            "--only-summary",
            "--loglevel",
            "WARNING",
        ],
        cwd=ROOT,
        env={**server_env(), "LOAD_PLAN": str(plan_path)},
        stdout=subprocess.DEVNULL,
        stderr=(out / "locust.log").open("w"),
    )
    time.sleep(seconds * 0.6)
    held = _connections()
    process.wait(timeout=seconds + 60)
    elapsed = time.monotonic() - started
    stop.set()
    folder.join()
    _drained(broker)
    spent = _spent(before, _cpu())
    stats = _locust_rows(out / "load_stats.csv")
    rows, errors, total = [], 0, 0
    for row in stats:
        requests_, failures = int(row["Request Count"]), int(row["Failure Count"])
        if row["Name"] == "Aggregated":
            total = requests_
            continue
        expected = row["Name"].startswith(("claim: nothing", "decide: lease"))
        errors += failures
        rows.append(
            [
                row["Name"],
                f"{requests_:,}",
                f"{failures:,}" + (" (expected answer)" if expected and requests_ else ""),
                row["50%"],
                row["99%"],
                fmt(float(row["Requests/s"]), 1),
            ]
        )
    table(
        f"Load: {REVIEWERS} reviewers, {REALTIME_UPSTREAMS} realtime upstreams, 1 batch "
        f"upstream, 1 manager for {seconds} s (Locust; 4 gunicorn x 4 threads, 4 Celery "
        "processes, client-side ms)",
        ["operation", "requests", "errors", "p50 ms", "p99 ms", "per s"],
        rows,
    )
    table(
        f"Load: CPU seconds spent over the run ({elapsed:.0f} s, {total:,} requests)",
        ["processes", "CPU s", "cores busy", "CPU ms per request"],
        [
            [kind, fmt(cpu, 1), fmt(cpu / elapsed), fmt(cpu * 1000 / max(total, 1))]
            for kind, cpu in spent.items()
        ],
    )
    table(
        "Connections held during the load (per process: min-max)",
        ["processes", "count", "PostgreSQL each", "PostgreSQL total", "Redis each"],
        held,
    )
    if process.returncode not in (0, 1) or not stats:
        print(f"Locust exited with {process.returncode}:")
        print((out / "locust.log").read_text()[-3000:])
        return False
    for row in _locust_rows(out / "load_failures.csv"):
        print(f"failed: {row['Method']} {row['Name']}: {row['Error']} ({row['Occurrences']}x)")
    print(f"errors: {errors} -> {'0 errors: met' if errors == 0 else 'FAILED'}")
    return errors == 0


def _locust_rows(path: Path) -> list[dict]:
    import csv

    if not path.exists():
        return []
    with path.open() as stats:
        return list(csv.DictReader(stats))


# --- storage ---------------------------------------------------------------------------------


def _table_sizes(cursor) -> dict[str, tuple[int, int]]:
    cursor.execute(
        "SELECT relname, pg_total_relation_size(relid), pg_indexes_size(relid)"
        " FROM pg_stat_user_tables ORDER BY 2 DESC"
    )
    return {name: (size, indexes) for name, size, indexes in cursor.fetchall()}


def storage() -> None:
    """Every table that holds rows after the run: its size with indexes and TOAST, per row and
    per item (the items, decisions and the rest as a deployment accumulates them). An item is
    inserted pending, then updated when routed and again when decided, so the tables hold
    dead row versions until a vacuum makes their space reusable; the sizes are shown as the
    run left them and rewritten (VACUUM FULL), which is what the live rows take."""
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
        as_left = _table_sizes(cursor)
        cursor.execute("SELECT pg_database_size(current_database())")
        (database_as_left,) = cursor.fetchone()
        # Table by table: a database-wide VACUUM FULL also rewrites the shared catalogs and
        # waits behind any other database's activity on the same server.
        # The servers are gone: a session still open here is a leftover (an unread stream's
        # snapshot) that would hold VACUUM FULL's lock forever.
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        for name in as_left:
            cursor.execute(f'VACUUM FULL ANALYZE "{name}"')
        sizes = _table_sizes(cursor)
        items = Item.objects.count()
        rows = []
        total = 0
        for name, (size, indexes) in sizes.items():
            cursor.execute(f'SELECT count(*) FROM "{name}"')
            (count,) = cursor.fetchone()
            if not count or size < 64 * 1024:
                continue
            total += size
            rows.append(
                [
                    name,
                    f"{count:,}",
                    fmt(as_left[name][0] / 2**20, 1),
                    fmt(size / 2**20, 1),
                    f"{indexes / size:.0%}",
                    fmt(size / count, 0),
                    fmt(size / items),
                ]
            )
        cursor.execute("SELECT pg_database_size(current_database())")
        (database,) = cursor.fetchone()
    rows.append(["all tables above", "", "", fmt(total / 2**20, 1), "", "", fmt(total / items)])
    rows.append(
        [
            "the whole database",
            "",
            fmt(database_as_left / 2**20, 1),
            fmt(database / 2**20, 1),
            "",
            "",
            fmt(database / items),
        ]
    )
    tasks = ReviewTask.objects.count()
    table(
        f"Storage after the run: {items:,} items, {tasks:,} review tasks (pg_total_relation_size)",
        [
            "table",
            "rows",
            "MB as left",
            "MB rewritten",
            "indexes",
            "bytes per row",
            "bytes per item",
        ],
        rows,
    )


# --- main ------------------------------------------------------------------------------------


@contextlib.contextmanager
def _servers(env: dict):
    """4 gunicorn workers (4 threads, the hooks docker-compose.yml runs) and 4 Celery worker
    processes of every queue; yields the web URL. One after the other: started at once on two
    busy cores, each one's imports slowed the other past its start deadline."""
    with (
        gunicorn(
            workers=4, threads=4, config="python:reviewapp.monitoring.gunicorn", env=env
        ) as url,
        celery_workers(concurrency=4),
    ):
        yield url


def main(small: bool) -> None:
    sizes = _sizes(small)
    started = time.monotonic()
    digits = datasets.digits()
    manager, manager_token = _user(Role.MANAGER, "manager")
    caller, integration_token = _user(Role.INTEGRATION, "upstream")
    reviewers = [_user(Role.REVIEWER, f"reviewer{i}") for i in range(REVIEWERS)]
    artifact = sio.dumps(datasets.fit(digits, np.arange(len(digits.frame))))
    use_cases = _use_cases(sizes["use_cases"], manager, reviewers, caller, artifact, digits)
    rows = _rows(digits, len(digits.frame), "row")
    _seed(use_cases, rows, sizes["seeded_items"])
    web = Client()
    # Signed as the server signs (its SECRET_KEY), so the web processes accept the session.
    with override_settings(SECRET_KEY=server_env()["SECRET_KEY"]):
        web.force_login(manager)
    plan = {
        "use_cases": [{"slug": u.slug} for u in use_cases],
        "reviewers": [
            (use_cases[n % len(use_cases)].slug, token) for n, (_, token) in enumerate(reviewers)
        ],
        "labels": list(digits.labels),
        "rows": [row["features"] for row in rows],
        "integration_token": integration_token,
        "manager_token": manager_token,
        "manager_session": web.cookies["sessionid"].value,
        "reviewer_think_seconds": [0.5, 2.0],
        "realtime_upstreams": REALTIME_UPSTREAMS,
        "realtime_wait_seconds": [0.05, 0.15],
        "batch_every_seconds": 3,
        "batch_size": sizes["load_batch_size"],
        "manager_wait_seconds": [1.0, 3.0],
    }
    plan_path = Path(tempfile.mkdtemp(prefix="bench-load-")) / "plan.json"
    plan_path.write_text(json.dumps(plan))
    open_tasks = ReviewTask.objects.filter(state="open").count()
    print(
        f"set-up: {len(use_cases)} use cases, {open_tasks:,} open tasks, {REVIEWERS} reviewers"
        f" ({time.monotonic() - started:.0f} s)",
        flush=True,
    )
    env = {
        # Throttles shared by the processes, as in a deployment (one per process otherwise).
        "CACHE_URL": "redis://127.0.0.1:6379/11",
        "INGEST_RATE_LIMIT": "1000000/minute",
        # A connection kept alive longer than any reviewer's pause. With gunicorn's default
        # (2 s), the server closes an idle connection just as a client that paused about 2 s
        # sends its next request on it: the client sees the connection closed without an
        # answer (Locust counted 2-3 per run). Behind a load balancer, the same holds for the
        # balancer's idle timeout: gunicorn's keep-alive must be longer.
        "GUNICORN_CMD_ARGS": "--keep-alive 75",
    }
    broker = redis.Redis.from_url(server_env()["CELERY_BROKER_URL"])
    with _servers(env) as url:
        global METER
        METER = _Meter()
        with connection.cursor() as cursor:  # the benchmark's own queries are not the app's
            cursor.execute("SELECT pg_backend_pid()")
            (METER.own_backend,) = cursor.fetchone()
        METER.start()
        print(f"servers up: {time.monotonic() - started:.0f} s", flush=True)
        if small:  # CI keeps to the load run: the costs are the README's, at full size
            print("per-operation costs: measured at full size only")
        else:
            costs(url=url, plan=plan, sizes=sizes, broker=broker)
            print(f"costs measured: {time.monotonic() - started:.0f} s", flush=True)
        passed = load(url=url, plan_path=plan_path, sizes=sizes, broker=broker)
        METER.stopped.set()
    storage()
    if not passed:
        sys.exit(1)
