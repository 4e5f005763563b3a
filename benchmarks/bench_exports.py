"""Dataset exports on PostgreSQL: rows per second and peak memory for CSV, JSONL and Parquet.

Each format is exported by the real path (``export_create`` + ``export_write``: keyset batches,
the writer, SHA-256, the file in EXPORT_ROOT, the manifest) in a fresh process, whose peak
resident memory (``ru_maxrss``) is reported next to its memory before the export began. The
floor is ``COPY (<the same SELECT>) TO STDOUT (FORMAT csv)`` of the same rows, read to the end
by the client in the same run; the ratio is the export's rows/s over the floor's.

The rows (1,000,000 disagreements; 5,000 with --small) are generated with COPY into a database
of their own, ``<DATABASE_URL's name>_bench_exports``, dropped at the end.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/reviewapp python benchmarks/bench_exports.py
"""

import contextlib
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
ROWS, SMALL_ROWS = 1_000_000, 5_000
FORMATS = ("csv", "jsonl", "parquet")
TARGET_CSV_ROWS_PER_SECOND = 100_000
TARGET_PEAK_MB = 300
SLUG = "bench-invoices"
LABELS = ["travel", "office", "software", "hardware", "other"]
COUNTRIES = ["FR", "DE", "ES", "IT", "NL", "BE", "PL", "SE"]
CHANNELS = ["email", "portal", "post", "edi"]
FEATURES = [
    {"name": "amount", "type": "number", "required": True, "min": 0},
    {"name": "tax", "type": "number", "required": True, "min": 0},
    {"name": "lines", "type": "integer", "required": True, "min": 1},
    {"name": "country", "type": "category", "categories": COUNTRIES, "required": True},
    {"name": "channel", "type": "category", "categories": CHANNELS, "required": True},
    {"name": "weight", "type": "number", "required": False},
    {"name": "discount", "type": "number", "required": False},
    {"name": "express", "type": "boolean", "required": False},
    {"name": "score", "type": "number", "required": False},
    {"name": "vendor", "type": "string", "required": False, "pii": True},
]
KINDS = ["override", "shadow", "audit", "challenger"]


# --- the parent: a database of its own, one child process per measurement ---------------------


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def _admin(url: str, statement: str) -> None:
    import psycopg

    with psycopg.connect(_with_database(url, "postgres"), autocommit=True) as connection:
        connection.execute(statement)


def _child(env: dict, *args: str) -> dict:
    result = subprocess.run(
        [sys.executable, __file__, *args], env=env, cwd=ROOT, capture_output=True, text=True
    )
    if result.returncode:
        raise RuntimeError(f"bench_exports {' '.join(args)} failed:\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(small: bool) -> None:
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        print("bench_exports: skipped (it measures PostgreSQL: set DATABASE_URL)")
        return
    rows = SMALL_ROWS if small else ROWS
    name = f"{urlsplit(url).path.lstrip('/') or 'reviewapp'}_bench_exports"
    scratch = tempfile.mkdtemp(prefix="bench-exports-")
    env = {
        **os.environ,
        "DATABASE_URL": _with_database(url, name),
        "EXPORT_ROOT": scratch,
        "CELERY_BROKER_URL": "",
        "DJANGO_SETTINGS_MODULE": "reviewapp.settings",
        "LOG_LEVEL": "WARNING",
    }
    _admin(url, f'DROP DATABASE IF EXISTS "{name}"')
    # Under run.py, a copy of its migrated database (harness.MIGRATED_TEMPLATE_ENV): the set-up's
    # migrate then has nothing left to apply.
    template = os.environ.get("BENCH_MIGRATED_TEMPLATE")
    _admin(url, f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    try:
        setup = _child(env, "--setup", str(rows))
        floor = _child(env, "--floor")
        results = [_child(env, "--export", fmt) for fmt in FORMATS]
        for result in results:
            worker = _child(env, "--export", result["format"], "--worker")
            result["worker_peak_mb"] = worker["peak_mb"]
            result["worker_before_mb"] = worker["before_mb"]
    finally:
        _admin(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        shutil.rmtree(scratch, ignore_errors=True)
    _report(rows=rows, setup=setup, floor=floor, results=results)


def _report(*, rows: int, setup: dict, floor: dict, results: list[dict]) -> None:
    floor_rate = floor["rows"] / floor["seconds"]
    print(
        f"Export of {rows:,} disagreement rows ({len(FEATURES)} features, one PII) on "
        f"PostgreSQL; rows generated with COPY in {setup['seconds']:.1f} s."
    )
    header = (
        f"{'path':<28}{'rows':>11}{'seconds':>9}{'rows/s':>11}{'x floor':>9}"
        f"{'peak RSS MB':>13}{'before MB':>11}{'in a worker MB':>16}{'file MB':>9}"
    )
    print(header)
    print("-" * len(header))
    print(
        f"{'floor: COPY ... TO STDOUT':<28}{floor['rows']:>11,}{floor['seconds']:>9.2f}"
        f"{floor_rate:>11,.0f}{1:>9.2f}{floor['peak_mb']:>13.0f}{floor['before_mb']:>11.0f}"
        f"{'':>16}{floor['bytes'] / 1e6:>9.1f}"
    )
    for result in results:
        rate = result["rows"] / result["seconds"]
        print(
            f"{'export ' + result['format']:<28}{result['rows']:>11,}{result['seconds']:>9.2f}"
            f"{rate:>11,.0f}{rate / floor_rate:>9.2f}{result['peak_mb']:>13.0f}"
            f"{result['before_mb']:>11.0f}"
            f"{result['worker_peak_mb']:>7.0f} (from{result['worker_before_mb']:>4.0f})"
            f"{result['bytes'] / 1e6:>9.1f}"
        )
    csv_rate = next(r["rows"] / r["seconds"] for r in results if r["format"] == "csv")
    peak = max(r["peak_mb"] for r in results)
    worker_peak = max(r["worker_peak_mb"] for r in results)
    print(
        "peak RSS: the exporting process (as manage.py export_disagreements runs it); "
        "'in a worker': the same export in a process that first imported every Celery task "
        "module (scikit-learn, pandas, ...), as a worker has."
    )
    if rows < ROWS:
        # A fresh process's first export pays its start (imports, the first statements' plans,
        # the manifest: some 50 ms) once; at a few thousand rows that is most of the time.
        csv_verdict = f"judged at full size ({ROWS:,} rows), here {csv_rate:,.0f}"
    else:
        met = csv_rate >= TARGET_CSV_ROWS_PER_SECOND
        csv_verdict = f"{'met' if met else 'MISSED'} ({csv_rate:,.0f})"
    print(
        f"targets: CSV >= {TARGET_CSV_ROWS_PER_SECOND:,} rows/s: {csv_verdict}; "
        f"peak RSS <= {TARGET_PEAK_MB} MB: "
        f"{'met' if peak <= TARGET_PEAK_MB else 'MISSED'} ({peak:.0f} MB; "
        f"{worker_peak:.0f} MB in a worker)"
    )


# --- the children ------------------------------------------------------------------------------


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def _django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "reviewapp.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def _copy_rows(cursor, table: str, columns: str, lines) -> None:
    """COPY ``lines`` (tab-separated text) into ``columns`` (space-separated names)."""
    with cursor.copy(f"COPY {table} ({', '.join(columns.split())}) FROM STDIN") as copy:
        block = []
        for line in lines:
            block.append(line)
            if len(block) == 20_000:
                copy.write("".join(block))
                block.clear()
        if block:
            copy.write("".join(block))


def _timestamp(moment: datetime) -> str:
    return moment.isoformat()


def setup(rows: int) -> dict:
    """Migrate, then generate ``rows`` items, each with a prediction, a review task, a
    decision and a disagreement, with COPY."""
    _django()
    from django.core.management import call_command
    from django.db import DatabaseError, connection

    from deployments.models import ModelVersion
    from deployments.services.use_cases import use_case_create
    from reviewapp.core.roles import Role, role_groups_ensure
    from reviewapp.reviews.partitions import partitions_for_items

    started = time.perf_counter()
    call_command("migrate", verbosity=0)
    from django.contrib.auth import get_user_model

    groups = role_groups_ensure()
    owner = get_user_model().objects.create_user("bench-owner")
    owner.groups.add(groups[Role.ML_ENGINEER])
    reviewers = []
    for n in range(5):
        reviewer = get_user_model().objects.create_user(f"bench-reviewer-{n}")
        reviewer.groups.add(groups[Role.REVIEWER])
        reviewers.append(reviewer.pk)
    use_case = use_case_create(
        actor=owner,
        slug=SLUG,
        name="Benchmark invoices",
        task_type="classification",
        features=FEATURES,
        labels=LABELS,
    )
    versions = [
        ModelVersion.objects.create(use_case=use_case, version="v1", role="champion").pk,
        ModelVersion.objects.create(use_case=use_case, version="v2", role="challenger").pk,
    ]
    rng = random.Random(7)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    uc = use_case.pk

    def items():
        for i in range(1, rows + 1):
            features = {
                "amount": round(rng.uniform(1, 5000), 2),
                "tax": round(rng.uniform(0, 900), 2),
                "lines": rng.randint(1, 40),
                "country": rng.choice(COUNTRIES),
                "channel": rng.choice(CHANNELS),
                "weight": None if i % 9 == 0 else round(rng.uniform(0, 80), 3),
                "discount": round(rng.random() * 0.3, 4),
                "express": i % 3 == 0,
                "score": rng.random(),
                "vendor": f"Vendor {rng.randint(1, 50_000):05d} GmbH",
            }
            at = start + timedelta(seconds=i * 2)
            yield (
                f"{i}\t{uc}\tinv-{i:08d}\t{json.dumps(features)}\t{i % 10_000}\t{i % 7_919}\t"
                f"{i % 6_007}\tdecided\tassisted\t{LABELS[i % 5]}\thuman\t"
                f"{_timestamp(at + timedelta(seconds=60))}\t{_timestamp(at)}\t{_timestamp(at)}\n"
            )

    def predictions():
        for i in range(1, rows + 1):
            at = start + timedelta(seconds=i * 2)
            version = versions[1] if KINDS[i % 4] == "challenger" else versions[0]
            yield (
                f"{i}\t{i}\t{uc}\t{version}\t{LABELS[(i + 1) % 5]}\t"
                f"{round(0.4 + 0.6 * ((i * 7919) % 1000) / 1000, 3)}\t\t{_timestamp(at)}\n"
            )

    def tasks():
        for i in range(1, rows + 1):
            at = start + timedelta(seconds=i * 2)
            yield (
                f"{i}\t{i}\t{uc}\t{'audit' if KINDS[i % 4] == 'audit' else 'review'}\t"
                f"{'t' if KINDS[i % 4] == 'override' else 'f'}\tdone\t{reviewers[i % 5]}\t"
                f"{_timestamp(at)}\t{_timestamp(at)}\t{_timestamp(at + timedelta(seconds=60))}\n"
            )

    def decisions():
        for i in range(1, rows + 1):
            at = start + timedelta(seconds=i * 2 + 60)
            kind = "overridden" if KINDS[i % 4] == "override" else "blind"
            yield (
                f"{i}\t{i}\t{i}\t{uc}\t{reviewers[i % 5]}\t{LABELS[i % 5]}\t\t{kind}\t"
                f"{2000 + i % 9000}\t{_timestamp(at)}\n"
            )

    def disagreements():
        for i in range(1, rows + 1):
            at = start + timedelta(seconds=i * 2 + 60)
            kind = KINDS[i % 4]
            version = versions[1] if kind == "challenger" else versions[0]
            yield (
                f"{i}\t{uc}\t{i}\t{i}\t{i}\t{version}\t{kind}\t{LABELS[(i + 1) % 5]}\t"
                f"{round(0.4 + 0.6 * ((i * 7919) % 1000) / 1000, 3)}\t{LABELS[i % 5]}\t"
                f"{reviewers[i % 5]}\t{_timestamp(at)}\n"
            )

    # Ids counted from 1 belong to the partition of the rows from before the monthly
    # partitions (PostgreSQL): it is created if this database has none.
    partitions_for_items([1, rows])
    with connection.cursor() as cursor:
        raw = cursor.cursor
        # A superuser may skip the foreign-key triggers while loading rows that are
        # consistent by construction; anyone else loads more slowly, with the same result.
        with contextlib.suppress(DatabaseError):
            cursor.execute("SET session_replication_role = replica")
        _copy_rows(
            raw,
            "reviews_item",
            "id use_case_id external_id features ramp_bucket audit_bucket double_review_bucket "
            "status route decision_label decision_source decided_at received_at "
            "routed_at",
            items(),
        )
        _copy_rows(
            raw,
            "reviews_prediction",
            "id item_id use_case_id model_version_id label confidence error created_at",
            predictions(),
        )
        _copy_rows(
            raw,
            "reviews_reviewtask",
            "id item_id use_case_id reason show_suggestion state claimed_by_id claimed_at "
            "created_at done_at",
            tasks(),
        )
        _copy_rows(
            raw,
            "reviews_decision",
            "id task_id item_id use_case_id reviewer_id label comment kind time_spent_ms "
            "created_at",
            decisions(),
        )
        _copy_rows(
            raw,
            "reviews_disagreement",
            "id use_case_id item_id decision_id prediction_id model_version_id kind "
            "model_label confidence human_label reviewer_id decided_at",
            disagreements(),
        )
        for table in ("item", "prediction", "reviewtask", "decision", "disagreement"):
            cursor.execute(
                f"SELECT setval(pg_get_serial_sequence('reviews_{table}', 'id'), {rows})"
            )
        cursor.execute("ANALYZE")
    return {"rows": rows, "seconds": time.perf_counter() - started}


def floor() -> dict:
    """COPY of the export's own SELECT to the client, as CSV, read to the end."""
    _django()
    from django.db import connection

    from deployments.models import UseCase
    from reviewapp.datasets.export_tables import disagreement_export_table, disagreements_filtered

    use_case = UseCase.objects.get(slug=SLUG)
    table = disagreement_export_table(
        use_case=use_case,
        rows=disagreements_filtered(use_case=use_case),
        include_pii=False,
        fmt="csv",
    )
    sql, params = table.select().query.sql_with_params()
    before = _peak_mb()
    size = 0
    with connection.cursor() as cursor:
        statement = cursor.cursor.mogrify(sql, params)
        started = time.perf_counter()
        with cursor.cursor.copy(f"COPY ({statement}) TO STDOUT (FORMAT csv)") as copy:
            for block in copy:
                size += len(block)
        seconds = time.perf_counter() - started
        rows = table.source.count()
    return {
        "rows": rows,
        "seconds": seconds,
        "bytes": size,
        "peak_mb": _peak_mb(),
        "before_mb": before,
    }


def export(fmt: str, *, worker: bool) -> dict:
    """The real export path, in this fresh process (as the command runs it); with ``worker``,
    after importing every task module first, as a Celery worker would have."""
    _django()
    if worker:
        from reviewapp.celery import app

        app.loader.import_default_modules()
    from deployments.models import UseCase
    from reviewapp.datasets.services.exports import export_create, export_write

    use_case = UseCase.objects.get(slug=SLUG)
    record = export_create(use_case=use_case, actor=None, fmt=fmt)
    before = _peak_mb()
    started = time.perf_counter()
    record = export_write(export_id=record.pk)
    seconds = time.perf_counter() - started
    if record.state != "ready":
        raise RuntimeError(record.error)
    return {
        "format": fmt,
        "rows": record.row_count,
        "seconds": seconds,
        "bytes": record.size_bytes,
        "peak_mb": _peak_mb(),
        "before_mb": before,
    }


if __name__ == "__main__":
    arguments = sys.argv[1:]
    if arguments[:1] == ["--setup"]:
        print(json.dumps(setup(int(arguments[1]))))
    elif arguments[:1] == ["--floor"]:
        print(json.dumps(floor()))
    elif arguments[:1] == ["--export"]:
        print(json.dumps(export(arguments[1], worker="--worker" in arguments)))
    else:
        main(small="--small" in arguments)
