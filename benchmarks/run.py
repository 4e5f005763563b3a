"""Run every benchmark (``benchmarks/bench_*.py``) on a fresh PostgreSQL database.

python benchmarks/run.py            full sizes (minutes)
python benchmarks/run.py --small    CI sizes
python benchmarks/run.py ingest     only bench_ingest.py
"""

import argparse
import importlib
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks.harness import DEFAULT_BROKER_URL, DEFAULT_DATABASE_URL  # noqa: E402


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


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--small", action="store_true", help="CI sizes")
    parser.add_argument("only", nargs="*", help="benchmark names (e.g. ingest)")
    args = parser.parse_args()
    os.environ.setdefault("DATABASE_URL", DEFAULT_DATABASE_URL)
    os.environ.setdefault("CELERY_BROKER_URL", DEFAULT_BROKER_URL)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "reviewapp.settings")
    fresh_database(os.environ["DATABASE_URL"])
    import django

    django.setup()
    names = sorted(p.stem for p in HERE.glob("bench_*.py"))
    if args.only:
        names = [n for n in names if n.removeprefix("bench_") in args.only]
    started = time.monotonic()
    for name in names:
        print(f"\n=== {name} ({'small' if args.small else 'full'} sizes)", flush=True)
        module = importlib.import_module(f"benchmarks.{name}")
        module.main(small=args.small)
    print(f"\nall benchmarks: {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
