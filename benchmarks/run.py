"""Run every benchmark (``benchmarks/bench_*.py``) on a fresh PostgreSQL database.

python benchmarks/run.py            full sizes (minutes)
python benchmarks/run.py --small    CI sizes
python benchmarks/run.py ingest     only bench_ingest.py
python benchmarks/run.py statistics the simulation study of intervals and guardrails
"""

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks.harness import (  # noqa: E402
    DEFAULT_BROKER_URL,
    DEFAULT_DATABASE_URL,
    MIGRATED_TEMPLATE_ENV,
)


def fresh_database(url: str) -> None:
    parsed = urlparse(url)
    name = parsed.path.lstrip("/")
    admin = [
        "psql",
        "-h",
        parsed.hostname or "127.0.0.1",
        "-p",
        str(parsed.port or 5432),
        "-U",
        parsed.username or "postgres",
        "-d",
        "postgres",
        "-q",
        "-c",
    ]
    subprocess.run([*admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'], check=True)
    subprocess.run([*admin, f'CREATE DATABASE "{name}"'], check=True)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v0"], cwd=HERE.parent, check=True, env=os.environ
    )
    # A copy of the migrated schema no benchmark writes to: the benchmarks that work in a
    # throwaway database start from it instead of migrating again (harness.test_database_create).
    template = f"{name}_migrated"
    subprocess.run([*admin, f'DROP DATABASE IF EXISTS "{template}" WITH (FORCE)'], check=True)
    subprocess.run([*admin, f'CREATE DATABASE "{template}" TEMPLATE "{name}"'], check=True)
    os.environ[MIGRATED_TEMPLATE_ENV] = template


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", action="store_true", help="CI sizes")
    parser.add_argument("only", nargs="*", help="benchmark names (e.g. ingest)")
    args = parser.parse_args()
    # The benchmarks' own database and broker, whatever the caller's DATABASE_URL says.
    os.environ["DATABASE_URL"] = os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL)
    os.environ["CELERY_BROKER_URL"] = os.environ.get("BENCH_BROKER_URL", DEFAULT_BROKER_URL)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "reviewapp.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")  # request logs would drown the tables
    fresh_database(os.environ["DATABASE_URL"])
    names = sorted(p.stem for p in HERE.glob("bench_*.py"))
    if args.only:
        names = [n for n in names if n.removeprefix("bench_") in args.only]
    started = time.monotonic()
    failed = []
    for name in names:
        print(f"\n=== {name} ({'small' if args.small else 'full'} sizes)", flush=True)
        # One process per benchmark: each sets up databases, caches and Celery its own way.
        code = (
            "import django; django.setup(); "
            f"import benchmarks.{name} as bench; bench.main(small={args.small})"
        )
        one_started = time.monotonic()
        result = subprocess.run([sys.executable, "-c", code], cwd=HERE.parent, env=os.environ)
        print(f"--- {name}: {time.monotonic() - one_started:.0f} s", flush=True)
        if result.returncode:
            failed.append(name)
    print(f"\nall benchmarks: {time.monotonic() - started:.0f} s")
    if failed:
        print(f"FAILED: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
