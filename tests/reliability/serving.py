"""A real gunicorn on the test database, started and stopped by PID."""

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]
FIRST_PORT = int(os.environ.get("RELIABILITY_GUNICORN_PORT", "18200"))
_next_port = [FIRST_PORT]


def _database_url() -> str:
    db = connection.settings_dict
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    return f"postgres://{db['USER']}@{host}:{port}/{db['NAME']}"


class Server:
    def __init__(self, process: subprocess.Popen, url: str):
        self.process = process
        self.url = url

    def worker_pids(self) -> list[int]:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in children.read_text().split()] if children.exists() else []

    def kill_worker(self) -> int:
        pid = self.worker_pids()[0]
        os.kill(pid, signal.SIGKILL)
        return pid


@contextlib.contextmanager
def gunicorn(*, workers: int = 2, threads: int = 4, env: dict | None = None):
    """Serve the app on the test database; the master restarts a killed worker."""
    port = _next_port[0]
    _next_port[0] += 1
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "reviewapp.wsgi:application",
            "-b",
            f"127.0.0.1:{port}",
            "-w",
            str(workers),
            "-k",
            "gthread",
            "--threads",
            str(threads),
            "--log-level",
            "warning",
            "--timeout",
            "120",
        ],
        cwd=ROOT,
        env={
            **os.environ,
            "DATABASE_URL": _database_url(),
            "CELERY_BROKER_URL": "",
            "DEBUG": "0",
            "SECRET_KEY": "reliability-" + "x" * 40,
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "SECURE_SSL_REDIRECT": "0",
            "LOG_LEVEL": "ERROR",
            "CONN_MAX_AGE": "0",
            **(env or {}),
        },
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("gunicorn did not start")
            time.sleep(0.2)
        yield Server(process, url)
    finally:
        process.terminate()
        process.wait(timeout=30)
