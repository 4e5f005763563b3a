"""An archive killed mid-way: ``manage.py archive_history`` is killed with ``kill -9`` while it
writes its files, run again and killed while it removes rows, then run to the end.

Nothing may be lost or doubled: every item sent is, at every moment after the kill, either in
the database or in the files of exactly one archive (never both, nobody changes them meanwhile),
the SQL invariants hold, the figures recounted from the raw rows still match the rollups, and
restoring every archive brings every item back."""

import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

from tests.reliability import oracle
from tests.reliability.client import Api, rows
from tests.reliability.processes import ROOT, kill9, wait_until
from tests.reliability.report import result_append


def _env(stack, archive_root: Path) -> dict[str, str]:
    # Small transactions, so the kill lands between two of them.
    return {
        **os.environ,
        **stack.env,
        "ARCHIVE_ROOT": str(archive_root),
        "ARCHIVE_CHUNK_ITEMS": "40",
    }


def _manage(env, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip


def _archived_external_ids(conn, archive_root: Path, use_case_id: int) -> list[str]:
    """External ids in the files of every archive still archived (or being removed)."""
    found: list[str] = []
    for (location,) in conn.execute(
        "SELECT location FROM archives_archive WHERE use_case_id = %s "
        "AND state IN ('removing', 'archived')",
        [use_case_id],
    ):
        table = pq.read_table(archive_root / location / "items.parquet", columns=["external_id"])
        found += table.column("external_id").to_pylist()
    return found


SHIFTED = {  # every moment the archive and the figures read, by table
    "reviews_item": ["received_at", "routed_at", "decided_at", "due_at"],
    "reviews_prediction": ["created_at"],
    "reviews_reviewtask": ["created_at", "done_at", "claimed_at", "lease_expires_at", "due_at"],
    "reviews_decision": ["created_at"],
    "reviews_disagreement": ["decided_at"],
    "monitoring_hourlyrollup": ["hour"],
    "monitoring_featurerollup": ["hour"],
}


def _history_a_day_older(conn, use_case_id: int) -> None:
    """The use case's history, moved a whole day back (hours stay whole hours): a cutoff at
    this hour then leaves all of it before, as it would be for history a retention archives."""
    with conn.transaction():
        conn.execute("SELECT set_config('reviewapp.history_rewrite', 'on', true)")
        for table, columns in SHIFTED.items():
            moves = ", ".join(f"{c} = {c} - interval '1 day'" for c in columns)
            conn.execute(f"UPDATE {table} SET {moves} WHERE use_case_id = %s", [use_case_id])
        conn.execute(
            "UPDATE reviews_itemseen SET first_seen_at = first_seen_at - interval '1 day' "
            "WHERE item_id IN (SELECT id FROM reviews_item WHERE use_case_id = %s)",
            [use_case_id],
        )


def _db_external_ids(conn, use_case_id: int) -> set[str]:
    return {
        e for (e,) in conn.execute(
            "SELECT external_id FROM reviews_item WHERE use_case_id = %s", [use_case_id]
        )
    }  # fmt: skip


def test_an_archive_killed_mid_way_loses_nothing(stack, size, seed):
    rng = random.Random(seed)
    world = stack.world(slug=f"archive-kill-{seed}-{size}", level="full")
    api = Api(stack.web.url, world["manager"], world["slug"])
    use_case_id = world["use_case_id"]
    started = time.monotonic()
    sent = set()
    for start in range(0, size, 1000):
        batch = rows(start, min(1000, size - start), prefix=f"a{seed}")
        sent |= {row["external_id"] for row in batch}
        response = api.batch(batch)
        assert response.status_code == 202, response.text
    archive_root = Path(tempfile.mkdtemp(prefix="archives-", dir=stack.dir))
    env = _env(stack, archive_root)
    faults = {"killed_writing": 0, "killed_removing": 0}
    with stack.postgres.connect() as conn:
        wait_until(lambda: oracle.pending_items(conn, use_case_id=use_case_id) == 0,
                   timeout=120 + size / 20, what="every item to be scored")  # fmt: skip
        wait_until(
            lambda: conn.execute("SELECT count(*) FROM monitoring_rollupevent").fetchone()[0] == 0,
            timeout=120, what="every fact folded into the rollups",
        )  # fmt: skip
        _history_a_day_older(conn, use_case_id)
        cutoff = conn.execute("SELECT date_trunc('hour', now())").fetchone()[0].isoformat()
        checked_before = _manage(env, "verify_metrics", "--use-case", world["slug"])
        assert checked_before.returncode == 0, checked_before.stdout + checked_before.stderr

        # Killed while writing, then (run again) while removing, each at a random moment.
        lost_after_kill = 0
        for phase in ("writing", "removing"):
            wanted = (
                "SELECT count(*) FROM archives_archive WHERE use_case_id = %s AND state = 'writing'"
                if phase == "writing"
                else "SELECT count(*) FROM archives_archive WHERE use_case_id = %s "
                "AND state = 'removing' AND items_removed > 0"
            )
            process = subprocess.Popen(
                [sys.executable, "manage.py", "archive_history", "--use-case", world["slug"],
                 "--before", cutoff],
                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            try:
                wait_until(
                    lambda wanted=wanted, process=process: (
                        conn.execute(wanted, [use_case_id]).fetchone()[0] > 0
                        or process.poll() is not None
                    ),
                    timeout=120,
                    interval=0.01,
                    what=f"the archive to be {phase}",
                )
                if process.poll() is None:
                    time.sleep(rng.uniform(0, 0.05))
                    kill9(process.pid)
                    faults[f"killed_{phase}"] += 1
            finally:
                process.wait(timeout=30)
            # After each kill: every item in the database or in one archive's files.
            in_db = _db_external_ids(conn, use_case_id)
            archived = _archived_external_ids(conn, archive_root, use_case_id)
            lost_after_kill += len(sent - in_db - set(archived))

        finished = _manage(env, "archive_history", "--use-case", world["slug"], "--before", cutoff)
        assert finished.returncode == 0, finished.stderr
        in_db = _db_external_ids(conn, use_case_id)
        archived = _archived_external_ids(conn, archive_root, use_case_id)
        verified = _manage(env, "verify_metrics", "--use-case", world["slug"])
        violations = oracle.violations(conn)
        violations["lost_after_kill"] = lost_after_kill
        violations["lost"] = len(sent - in_db - set(archived))
        violations["archived_twice"] = len(archived) - len(set(archived))
        violations["in_database_and_archive"] = len(in_db & set(archived))
        violations["figures_differ"] = int(verified.returncode != 0)
        archived_items = len(archived)

        ids = conn.execute(
            "SELECT id FROM archives_archive WHERE use_case_id = %s AND state = 'archived'",
            [use_case_id],
        ).fetchall()
        for (archive_id,) in ids:
            restored = _manage(env, "restore_archive", str(archive_id))
            assert restored.returncode == 0, restored.stderr
        violations["missing_after_restore"] = len(sent - _db_external_ids(conn, use_case_id))
        again = _manage(env, "verify_metrics", "--use-case", world["slug"])
        violations["figures_differ_after_restore"] = int(again.returncode != 0)

    result_append(
        scenario="archive killed mid-way (kill -9), then run again and restored",
        size=size,
        seed=seed,
        faults=faults,
        violations=violations,
        load={"items_archived": archived_items},
        duration_s=time.monotonic() - started,
    )
    assert sum(violations.values()) == 0, violations
    assert archived_items > 0
    assert sum(faults.values()) >= 1  # at least one kill landed mid-way
