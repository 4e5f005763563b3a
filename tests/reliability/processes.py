"""Real processes for fault injection, each started, stopped, killed (``kill -9``) and restarted
by PID: a private PostgreSQL cluster, a private Redis, gunicorn, Celery workers and Celery beat.

Nothing here touches the machine's shared services: the cluster lives in its own data directory
on its own port, Redis runs without persistence on its own port. ``Stack`` composes them into
one deployment of the app and is what scenarios use::

    with Stack(workers=2, sweeper_seconds=5) as stack:
        world = stack.world()                   # users, tokens, a use case with a champion
        stack.celery[0].kill_children()         # kill -9 the pool children of worker 0
        stack.redis.stop(); stack.redis.start() # a broker outage
        stack.postgres.restart()                # an immediate (crash-like) restart

Supervision: a killed Celery worker, or one that exits on its own when Redis goes away (kombu
gives up reconnecting and the worker stops), is started again by ``Supervisor`` within a
second, as a process manager would (docker-compose ``restart: always``, systemd
``Restart=always``). The web server and the database are restarted only by the scenario.
"""

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from glob import glob
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_from_env(name: str) -> int:
    """A port fixed by the environment (to keep runs apart on a shared machine) or a free one."""
    value = os.environ.get(name)
    return int(value) if value else free_port()


def wait_until(predicate, *, timeout: float, interval: float = 0.2, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what or predicate}")
        time.sleep(interval)


def children_of(pid: int) -> list[int]:
    """Direct children of ``pid`` (read from /proc, so no extra dependency)."""
    found = []
    for stat in glob("/proc/[0-9]*/stat"):
        try:
            fields = Path(stat).read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.split("/")[2]))
    return sorted(found)


def alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def kill9(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


class Process:
    """One command run in its own process group, so a kill takes its children with it."""

    name = "process"

    def __init__(self, *, log_dir: Path):
        self.log_dir = log_dir
        self.popen: subprocess.Popen | None = None
        self.starts = 0

    def command(self) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        return dict(os.environ)

    def ready(self) -> bool:
        return True

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def start(self, *, wait: bool = True) -> None:
        log = open(self.log_dir / f"{self.name}.log", "ab")  # noqa: SIM115 (owned by the child)
        self.popen = subprocess.Popen(
            self.command(),
            cwd=ROOT,
            env=self.environment(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.starts += 1
        if wait:
            wait_until(self._ready_or_dead, timeout=90, what=f"{self.name} to be ready")
            if not self.running():
                raise RuntimeError(f"{self.name} exited at start; see {self.log_dir}")

    def _ready_or_dead(self) -> bool:
        return not self.running() or self.ready()

    def stop(self, *, timeout: float = 30) -> None:
        """A graceful stop (SIGTERM to the group), then SIGKILL if it does not go."""
        if not self.running():
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        self._reap_group()

    def kill(self) -> None:
        """``kill -9`` the process and everything in its group."""
        if self.popen is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=10)
        self._reap_group()

    def _reap_group(self) -> None:
        # Children that outlived their parent are still in the group: none may keep a port.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()

    def pause(self) -> None:
        """SIGSTOP the group: the process keeps its sockets but answers nothing (a hung
        server); ``resume`` continues it."""
        os.killpg(self.popen.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.killpg(self.popen.pid, signal.SIGCONT)


class Postgres(Process):
    """A private PostgreSQL cluster: its own data directory, port and socket directory.

    initdb and the postmaster refuse to run as root, so as root they run as the ``postgres``
    OS user (``runuser``); the data directory is created for that user.
    """

    name = "postgres"

    def __init__(self, *, log_dir: Path, port: int | None = None, dbname: str = "reviewapp"):
        super().__init__(log_dir=log_dir)
        self.port = port or port_from_env("RELIABILITY_PG_PORT")
        self.dbname = dbname
        self.bin = Path(sorted(glob("/usr/lib/postgresql/*/bin"))[-1])
        self.data = Path(tempfile.mkdtemp(prefix="reliability-pg-"))
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self.data, "postgres", "postgres")
        self._run(
            [str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust"],
            quiet=True,
        )
        conf = self.data / "postgresql.conf"
        with conf.open("a") as f:
            # Speed over durability of the OS: the machine does not crash, processes do.
            f.write(
                "\nfsync = off\nfull_page_writes = off\nmax_connections = 200\n"
                "shared_buffers = 64MB\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.data}'\n"
            )

    def _run(self, command: list[str], *, quiet: bool = False) -> None:
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=quiet)

    def command(self) -> list[str]:
        postmaster = [str(self.bin / "postgres"), "-D", str(self.data), "-p", str(self.port)]
        return ["runuser", "-u", "postgres", "--", *postmaster] if self._as_postgres else postmaster

    def ready(self) -> bool:
        try:
            with self.connect("postgres", timeout=2):
                return True
        except Exception:
            return False

    def url(self, dbname: str | None = None) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{dbname or self.dbname}"

    def connect(self, dbname: str | None = None, *, timeout: int = 5):
        import psycopg

        return psycopg.connect(
            self.url(dbname), autocommit=True, connect_timeout=timeout, application_name="oracle"
        )

    def create_database(self) -> None:
        with self.connect("postgres") as conn:
            conn.execute(f'CREATE DATABASE "{self.dbname}"')

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self, *, timeout: float = 30, mode: str = "fast") -> None:
        """``mode``: ``fast`` (SIGINT: roll back and exit) or ``immediate`` (SIGQUIT: a crash,
        recovered from the WAL at the next start)."""
        pid = self.postmaster_pid()
        if pid and alive(pid):
            os.kill(pid, signal.SIGINT if mode == "fast" else signal.SIGQUIT)
            wait_until(lambda: not alive(pid), timeout=timeout, what="postgres to stop")
        if self.popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=10)

    def restart(self, *, mode: str = "immediate") -> None:
        self.stop(mode=mode)
        self.start()

    def terminate_backends(self, *, application_name: str | None = None) -> int:
        """``pg_terminate_backend`` every client connection to the app's database (the oracle's
        own connections excepted); returns how many were terminated."""
        sql = (
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid() AND application_name <> 'oracle'"
        )
        params: list = [self.dbname]
        if application_name:
            sql += " AND application_name = %s"
            params.append(application_name)
        with self.connect("postgres") as conn:
            return conn.execute(sql, params).fetchone()[0]

    def destroy(self) -> None:
        with contextlib.suppress(Exception):
            self.stop(mode="immediate", timeout=15)
        shutil.rmtree(self.data, ignore_errors=True)


class Redis(Process):
    """A private Redis without persistence: a restart loses every queued message, which is the
    harder case for the app (only the sweeper can find that work again)."""

    name = "redis"

    def __init__(self, *, log_dir: Path, port: int | None = None):
        super().__init__(log_dir=log_dir)
        self.port = port or port_from_env("RELIABILITY_REDIS_PORT")

    def command(self) -> list[str]:
        return [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def ready(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(port=self.port, socket_timeout=1).ping())
        except redis.RedisError:
            return False

    def queue_length(self, queue: str = "celery") -> int:
        import redis

        return redis.Redis(port=self.port, socket_timeout=2).llen(queue)


class AppProcess(Process):
    """A process of the app itself, configured only through its environment."""

    def __init__(self, *, log_dir: Path, env: dict[str, str], name: str):
        super().__init__(log_dir=log_dir)
        self.env = env
        self.name = name

    def environment(self) -> dict[str, str]:
        return {**os.environ, **self.env}


class Gunicorn(AppProcess):
    """gunicorn serving ``reviewapp.wsgi`` with N sync-thread workers."""

    def __init__(self, *, log_dir: Path, env: dict[str, str], port: int, workers: int = 2):
        super().__init__(log_dir=log_dir, env=env, name=f"gunicorn-{port}")
        self.port = port
        self.workers = workers

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "gunicorn",
            "reviewapp.wsgi:application",
            "-b",
            f"127.0.0.1:{self.port}",
            "-w",
            str(self.workers),
            "-k",
            "gthread",
            "--threads",
            "4",
            "--timeout",
            "60",
            "--log-level",
            "warning",
        ]

    def ready(self) -> bool:
        try:
            return requests.get(f"{self.url}/healthz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def worker_pids(self) -> list[int]:
        return children_of(self.pid) if self.running() else []

    def kill_workers(self) -> list[int]:
        """``kill -9`` the request-serving workers (the master starts new ones)."""
        pids = self.worker_pids()
        for pid in pids:
            kill9(pid)
        return pids


class CeleryWorker(AppProcess):
    """``celery -A reviewapp worker`` with prefetch 1 (acks_late and the rest come from the
    app's settings, the same as in production)."""

    def __init__(self, *, log_dir: Path, env: dict[str, str], index: int, concurrency: int = 2):
        super().__init__(log_dir=log_dir, env=env, name=f"celery-{index}")
        self.concurrency = concurrency
        self.node = f"reliability{index}-{os.getpid()}@{socket.gethostname()}"

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "reviewapp",
            "worker",
            "--concurrency",
            str(self.concurrency),
            "--prefetch-multiplier",
            "1",
            "--loglevel",
            "WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-n",
            self.node,
        ]

    def ready(self) -> bool:
        # The pool is up when its children exist; pinging over the broker would fail while the
        # broker is down, and a worker must be restartable then too.
        return len(children_of(self.pid)) >= self.concurrency if self.running() else False

    def child_pids(self) -> list[int]:
        return children_of(self.pid) if self.running() else []

    def kill_children(self) -> list[int]:
        """``kill -9`` the pool's children mid-task (the main process replaces them and the
        broker redelivers what they held, as acks_late + reject_on_worker_lost promise)."""
        pids = self.child_pids()
        for pid in pids:
            kill9(pid)
        return pids


class CeleryBeat(AppProcess):
    """``celery -A reviewapp beat``: the periodic sweeper (and the other schedules)."""

    def __init__(self, *, log_dir: Path, env: dict[str, str]):
        super().__init__(log_dir=log_dir, env=env, name="celery-beat")

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "reviewapp",
            "beat",
            "--loglevel",
            "WARNING",
            "-s",
            str(self.log_dir / "celerybeat-schedule"),
        ]


class BlackHole:
    """A TCP listener that accepts connections and never answers: a server that hangs. Put on
    a stopped server's port, it holds every client in the middle of a call."""

    def __init__(self, port: int):
        self.port = port
        self._stop = threading.Event()
        self._sockets: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", port), reuse_port=False)
        self._listener.settimeout(0.2)
        self._thread = threading.Thread(target=self._loop, name=f"blackhole-{port}", daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._sockets.append(conn)  # held open, never read from or written to

    def __enter__(self) -> "BlackHole":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for conn in [self._listener, *self._sockets]:
            with contextlib.suppress(OSError):
                conn.close()


class Supervisor:
    """Restarts any watched process that is not running, every ``interval`` seconds, like a
    process manager's restart policy. ``restarts`` counts what it did."""

    def __init__(self, processes: list[Process], *, interval: float = 0.5):
        self.processes = processes
        self.interval = interval
        self.restarts = 0
        self.paused = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="supervisor", daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            if self.paused.is_set():
                continue
            for process in self.processes:
                if not process.running():
                    with contextlib.suppress(Exception):
                        process.start(wait=False)
                        self.restarts += 1

    def __enter__(self) -> "Supervisor":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)


class Stack:
    """One deployment of the app on private PostgreSQL and Redis: gunicorn, ``workers`` Celery
    workers (supervised) and Celery beat running the sweeper every ``sweeper_seconds``."""

    def __init__(
        self,
        *,
        workers: int = 2,
        concurrency: int = 2,
        web_workers: int = 2,
        sweeper_seconds: int = 5,
        task_time_limit: int = 60,
        beat: bool = True,
        extra_env: dict[str, str] | None = None,
    ):
        self.dir = Path(tempfile.mkdtemp(prefix="reliability-"))
        self.sweeper_seconds = sweeper_seconds
        self.postgres = Postgres(log_dir=self.dir)
        self.redis = Redis(log_dir=self.dir)
        self.env = {
            "DATABASE_URL": self.postgres.url(),
            "CELERY_BROKER_URL": self.redis.url(),
            "DEBUG": "0",
            "SECRET_KEY": "reliability-" + "x" * 40,
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "SECURE_SSL_REDIRECT": "0",
            "LOG_LEVEL": "WARNING",
            "LOG_FORMAT": "text",
            "SWEEPER_INTERVAL_SECONDS": str(sweeper_seconds),
            "CELERY_TASK_TIME_LIMIT": str(task_time_limit),
            "EXPORT_ROOT": str(self.dir / "exports"),
            # Small scoring tasks, so a kill loses (and the sweeper re-finds) a small batch.
            "BATCH_CHUNK_SIZE": "100",
            # Webhook receivers are test servers on this machine; retries come seconds apart.
            "WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
            "WEBHOOK_RETRY_SCHEDULE": "1,2,5,10,30,60,60",
            **(extra_env or {}),
        }
        base_port = int(os.environ.get("RELIABILITY_WEB_PORT", "0")) or free_port()
        self.web = Gunicorn(log_dir=self.dir, env=self.env, port=base_port, workers=web_workers)
        self.celery = [
            CeleryWorker(log_dir=self.dir, env=self.env, index=i, concurrency=concurrency)
            for i in range(workers)
        ]
        self.beat = CeleryBeat(log_dir=self.dir, env=self.env) if beat else None
        self.supervisor = Supervisor(self.celery + ([self.beat] if self.beat else []))
        self._world: subprocess.Popen | None = None
        self._world_lock = threading.Lock()

    def manage(self, *args: str, timeout: float = 300) -> str:
        """``python manage.py ...`` against this deployment; returns its standard output."""
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stderr[-3000:]}")
        return done.stdout

    def world(self, **options) -> dict:
        """Users, tokens and a use case with a champion model, made by the app's own services
        (``tests/reliability/world.py``, options as its ``build``); returns names and keys.
        One long-lived ``manage.py shell`` serves every call (Django starts once)."""
        with self._world_lock:
            self._world_builder()
            self._world.stdin.write(json.dumps(options) + "\n")
            self._world.stdin.flush()
            for line in self._world.stdout:
                if line.startswith("WORLD="):
                    answer = json.loads(line[len("WORLD=") :])
                    break
            else:
                raise RuntimeError("the world builder exited")
        if "error" in answer:
            raise RuntimeError(answer["error"])
        return answer["world"]

    def _world_builder(self) -> None:
        if self._world is None or self._world.poll() is not None:
            code = "from tests.reliability.world import serve; serve()"
            self._world = subprocess.Popen(
                [sys.executable, "manage.py", "shell", "-c", code],
                cwd=ROOT,
                env={**os.environ, **self.env},
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )

    def healthy(self, *, timeout: float = 120) -> None:
        """Bring every process back up (a scenario may have left one down) and wait until the
        web server answers and each worker's pool is up."""
        self.supervisor.paused.clear()
        if not self.postgres.ready():
            self.postgres.restart()
        if not self.redis.running():
            self.redis.start()
        if not self.web.running():
            self.web.start()
        wait_until(self.web.ready, timeout=timeout, what="the web server")
        for worker in self.celery:
            wait_until(worker.ready, timeout=timeout, what=f"{worker.name}")

    def start(self) -> None:
        self.postgres.start()
        self.postgres.create_database()
        self.redis.start()
        self.manage("migrate", "--noinput")
        # Django takes seconds to start on a busy machine: start everything, then wait.
        self._world_builder()
        processes = [self.web, *self.celery, *([self.beat] if self.beat else [])]
        for process in processes:
            process.start(wait=False)
        for process in processes:
            wait_until(process._ready_or_dead, timeout=180, what=f"{process.name} to be ready")
            if not process.running():
                raise RuntimeError(f"{process.name} exited at start; see {self.dir}")
        self.supervisor.__enter__()

    def stop(self) -> None:
        self.supervisor.__exit__()
        if self._world is not None:
            self._world.kill()
            self._world.wait()
        for process in [self.beat, *self.celery, self.web]:
            if process is not None:
                with contextlib.suppress(Exception):
                    process.stop(timeout=15)
        with contextlib.suppress(Exception):
            self.redis.stop()
        self.postgres.destroy()
        if os.environ.get("RELIABILITY_KEEP_LOGS") != "1":
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "Stack":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def logs(self) -> Iterator[tuple[str, str]]:
        for path in sorted(self.dir.glob("*.log")):
            yield path.name, path.read_text(errors="replace")
