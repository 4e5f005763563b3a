"""History archives: how fast old history leaves the database for Parquet files, and comes back.

A use case gets items spread over 30 days (with their predictions, review tasks and decisions)
by COPY into PostgreSQL, as in bench_dashboards. The history before the middle of the month is
then archived (``archive_create``: written to Parquet, stored, read back and checked, then
removed a thousand items a transaction) and restored (``archive_restore``: every file checked,
then every row inserted in one transaction).

The floor, measured in the same run on the same rows: PostgreSQL alone copying them out
(``COPY (SELECT ...) TO STDOUT``) and deleting them with one ``DELETE`` per table (for the
archive), and copying them back in with ``COPY FROM`` (for the restore); all rolled back.

    DATABASE_URL=postgres://... python benchmarks/bench_archive.py [--small]

100,000 items (small: 2,000). It creates (and drops) its own test database.
"""

import io
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.bench_dashboards import DAYS, items_copy, use_case_make  # noqa: E402
from benchmarks.harness import table  # noqa: E402

TABLES = ("reviews_decision", "reviews_reviewtask", "reviews_prediction", "reviews_item")


def _item_filter(table_name: str) -> str:
    return "id" if table_name == "reviews_item" else "item_id"


def floor(item_ids: list[int]) -> tuple[float, float]:
    """Seconds PostgreSQL alone takes to copy out and delete the rows (archive), and to copy
    them back in (restore). Rolled back: the rows stay."""
    from django.db import connection, transaction

    from reviewapp.core.append_only import history_rewrite

    dumps: dict[str, bytes] = {}

    class Rollback(Exception):
        pass

    try:
        with history_rewrite(), connection.cursor() as cursor:  # decisions are append-only
            cursor.execute("CREATE TEMPORARY TABLE archived_ids (id bigint PRIMARY KEY)")
            with cursor.cursor.copy("COPY archived_ids (id) FROM STDIN") as copy:
                copy.write("".join(f"{i}\n" for i in item_ids))
            started = time.perf_counter()
            for name in TABLES:
                where = f"{_item_filter(name)} IN (SELECT id FROM archived_ids)"
                out = io.BytesIO()
                with cursor.cursor.copy(
                    f"COPY (SELECT * FROM {name} WHERE {where}) TO STDOUT"
                ) as c:
                    for block in c:
                        out.write(block)
                dumps[name] = out.getvalue()
            cursor.execute("UPDATE reviews_item SET prediction_id = NULL WHERE id IN "
                           "(SELECT id FROM archived_ids)")  # fmt: skip
            for name in TABLES:
                where = f"{_item_filter(name)} IN (SELECT id FROM archived_ids)"
                cursor.execute(f"DELETE FROM {name} WHERE {where}")
            out_s = time.perf_counter() - started
            started = time.perf_counter()
            for name in reversed(TABLES):
                with cursor.cursor.copy(f"COPY {name} FROM STDIN") as copy:
                    copy.write(dumps[name])
            in_s = time.perf_counter() - started
            raise Rollback
    except Rollback:
        pass
    transaction.get_connection().close()
    return out_s, in_s


def main(small: bool) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "reviewapp.settings")
    import django

    django.setup()
    from django.conf import settings

    from benchmarks.harness import throwaway_database

    if not settings.IS_POSTGRES:
        print("note: the archive benchmark needs PostgreSQL (set DATABASE_URL); skipped")
        return
    with throwaway_database(debug=False):
        from reviewapp.celery import app

        app.conf.task_always_eager = True
        _measure(small)


def _measure(small: bool) -> None:
    import tempfile

    from django.conf import settings

    from reviewapp.archives.services import archive_create, archive_restore, items_archivable
    from reviewapp.reviews.models import Item

    settings.STORAGES = {
        **settings.STORAGES,
        "archives": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": tempfile.mkdtemp(prefix="bench-archives-")},
        },
    }
    count = 2_000 if small else 100_000
    use_case, champion, policy, _, reviewers = use_case_make()
    started = time.perf_counter()
    items_copy(use_case=use_case, champion=champion, policy=policy, reviewers=reviewers,
               count=count, seed=0)  # fmt: skip
    load_s = time.perf_counter() - started
    now = datetime.now(UTC)
    cutoff = (now - timedelta(days=DAYS // 2)).replace(hour=0, minute=0, second=0, microsecond=0)
    ids = list(items_archivable(use_case=use_case, cutoff=cutoff).values_list("pk", flat=True))
    floor_out_s, floor_in_s = floor(ids)

    started = time.perf_counter()
    archive = archive_create(use_case=use_case, cutoff=cutoff, now=now)
    archive_s = time.perf_counter() - started
    total_rows = sum(entry["rows"] for entry in archive.manifest["tables"].values())
    size_mb = sum(entry["size"] for entry in archive.manifest["tables"].values()) / 1e6
    started = time.perf_counter()
    archive_restore(archive=archive)
    restore_s = time.perf_counter() - started
    assert Item.objects.filter(use_case=use_case).count() == count  # all of it came back

    print(
        f"{count:,} items loaded by COPY in {load_s:.1f} s; {len(ids):,} of them before "
        f"{cutoff:%Y-%m-%d} ({total_rows:,} rows in all tables; {size_mb:.1f} MB of Parquet)"
    )
    per = len(ids)
    table(
        "History archive (PostgreSQL)",
        ["step", "s", "items/s", "floor s", "floor items/s", "share of floor"],
        [
            ["archive (write, check, remove)", f"{archive_s:.2f}", f"{per / archive_s:,.0f}",
             f"{floor_out_s:.2f}", f"{per / floor_out_s:,.0f}", f"{floor_out_s / archive_s:.0%}"],
            ["restore (check, insert)", f"{restore_s:.2f}", f"{per / restore_s:,.0f}",
             f"{floor_in_s:.2f}", f"{per / floor_in_s:,.0f}", f"{floor_in_s / restore_s:.0%}"],
        ],
    )  # fmt: skip


if __name__ == "__main__":
    main(small="--small" in sys.argv[1:])
