"""Monthly partitions of the history tables on PostgreSQL.

Items, predictions, review tasks and decisions grow forever; on PostgreSQL each is partitioned
by month (reviews migration 0008), so that a month of history is a table of its own that the
archives can drop whole once it is empty. SQLite, the embedded default, keeps plain tables.

How rows find their month:

- An item's id carries its month: ``month << MONTH_SHIFT`` plus a number from the items'
  sequence (the column's default, ``reviews_item_id_next()``). Items are partitioned by
  ranges of id, one range per month, so the primary key and every foreign key to an item
  still hold as before. Ids stay below 2**53, exact in every JSON client.
- Predictions, tasks and decisions are partitioned by ``item_id`` on the same ranges: an
  item's whole family lives in its item's month, and a month is dropped in one piece. Their
  primary keys are ``(id, item_id)``; the foreign keys into them name both columns.
- The two unique keys that do not contain the partition key are kept in key tables that
  triggers fill: an item's ``(use_case, external_id)`` (``reviews_item_key``) and a decision's
  ``(reviewer, idempotency_key)`` (``reviews_decision_key``). A duplicate raises the same
  unique violation, under the same constraint name, as before.

Rows written before the conversion stay where they were: the old table became the partition
``<table>_before`` (ids below 2**MONTH_SHIFT, "month" BEFORE). The beat creates the months
ahead (``partitions_ensure``); the archives drop a month whose rows are all archived, the rows
from before too (``partitions_drop_empty``), and create it again to restore into it.

Every partition costs each query that cannot tell from its own constants which months it needs
some planning (a claim, about 0.15 ms a month on this machine; a read by a task's id, 0.02 ms),
so the months are few: those kept by the use cases' retention, this one and the next.
"""

import contextlib
import logging
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import OperationalError, connection, transaction
from django.utils import timezone

logger = logging.getLogger(__name__)

MONTH_SHIFT = 36
# The partitioned tables and the column each is partitioned by; the first is the parent.
PARTITIONED = (
    ("reviews_item", "id"),
    ("reviews_prediction", "item_id"),
    ("reviews_reviewtask", "item_id"),
    ("reviews_decision", "item_id"),
)
# Month "0": the ids given before the tables were partitioned, all below 2**MONTH_SHIFT.
BEFORE = 0
BEFORE_SUFFIX = "_before"
# A transaction-level advisory lock: a restore holds it while it makes sure of its months and
# writes into them, an archive while it drops an empty month.
LAYOUT_LOCK = 7_770_120_801


def month_number(year: int, month: int) -> int:
    """Months since year 0: the high part of an item id."""
    return year * 12 + month - 1


def month_start_id(number: int) -> int:
    """The first item id of a month (its partition's lower bound)."""
    return number << MONTH_SHIFT


def month_of_item(item_id: int) -> int:
    """The month number an item id was given in; BEFORE for an id from before the partitions."""
    return item_id >> MONTH_SHIFT


def month_of_now() -> int:
    """This month's number by this process's clock (UTC)."""
    now = datetime.now(UTC)
    return month_number(now.year, now.month)


def partition_name(table: str, number: int) -> str:
    if number == BEFORE:
        return f"{table}{BEFORE_SUFFIX}"
    year, month = divmod(number, 12)
    return f"{table}_p{year:04d}{month + 1:02d}"


def partition_bounds(number: int) -> str:
    low = "MINVALUE" if number == BEFORE else month_start_id(number)
    return f"FROM ({low}) TO ({month_start_id(number + 1)})"


def partitioned() -> bool:
    """Whether this database keeps the history in monthly partitions (PostgreSQL, migrated)."""
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT relkind = 'p' FROM pg_class WHERE oid = 'reviews_item'::regclass")
        return bool(cursor.fetchone()[0])


ITEM_KEY_TABLE = "reviews_item_key"
# The databases (by name) seen partitioned by this process: a database is never converted back.
_seen_partitioned: set[str] = set()


def item_keys_table() -> str | None:
    """The table of the items' ``(use_case, external_id)`` keys when this database keeps one
    (partitioned), else None. A key is one probe of one index, where the items' own lookup
    index is probed in every month the query cannot rule out. Asked once per process and
    database; until the conversion, each time."""
    if connection.vendor != "postgresql":
        return None
    name = connection.settings_dict["NAME"]
    if name not in _seen_partitioned:
        if not partitioned():
            return None
        _seen_partitioned.add(name)
    return ITEM_KEY_TABLE


def _months_present(cursor) -> set[int]:
    """The months whose partitions exist (BEFORE among them if the rows from before do)."""
    cursor.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'reviews_item'::regclass"
    )
    months = set()
    for (name,) in cursor.fetchall():
        stamp = name.rsplit("_p", 1)[-1]
        if name.endswith(BEFORE_SUFFIX):
            months.add(BEFORE)
        elif stamp.isdigit():
            months.add(month_number(int(stamp[:4]), int(stamp[4:])))
    return months


def _create(cursor, number: int) -> None:
    """Create a month's partitions. Each is made as a table of its own, then attached:
    attaching locks the parent only against other changes of its layout (SHARE UPDATE
    EXCLUSIVE), where ``CREATE TABLE ... PARTITION OF`` would lock out every read and write of
    the history for as long as the longest running query (an export) takes. An empty table
    is attached at once; its indexes, foreign keys and triggers come from the parent."""
    with _lock_timeout(cursor):
        for table, _key in PARTITIONED:
            name = partition_name(table, number)
            cursor.execute(
                f"CREATE TABLE {name} (LIKE {table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS "
                "INCLUDING STORAGE)"
            )
            cursor.execute(
                f"ALTER TABLE {table} ATTACH PARTITION {name} FOR VALUES {partition_bounds(number)}"
            )


@contextlib.contextmanager
def _lock_timeout(cursor):
    """Wait at most HISTORY_PARTITION_LOCK_TIMEOUT_MS for a lock, then give up (the caller's
    transaction fails with lock_not_available) rather than queue every other query behind."""
    cursor.execute("SELECT current_setting('lock_timeout')")
    (before,) = cursor.fetchone()
    cursor.execute(
        "SELECT set_config('lock_timeout', %s, true)",
        [f"{settings.HISTORY_PARTITION_LOCK_TIMEOUT_MS}ms"],
    )
    yield
    cursor.execute("SELECT set_config('lock_timeout', %s, true)", [before])


def _lock_not_granted(exc: OperationalError) -> bool:
    return getattr(exc.__cause__, "sqlstate", None) == "55P03"  # lock_not_available


def partitions_ensure(*, now: datetime | None = None, ahead: int | None = None) -> list[int]:
    """Create the partitions of this month and of the next ``ahead`` months
    (``HISTORY_PARTITIONS_AHEAD``) where missing; return the month numbers created. A month
    whose tables stay busy past the lock timeout is left for the next run. Nothing on a
    database without partitions."""
    if not partitioned():
        return []
    now = (now or timezone.now()).astimezone(UTC)
    ahead = settings.HISTORY_PARTITIONS_AHEAD if ahead is None else ahead
    first = month_number(now.year, now.month)
    wanted = range(first, first + ahead + 1)
    with connection.cursor() as cursor:
        missing = [n for n in wanted if n not in _months_present(cursor)]
    created = []
    for number in missing:
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                _create(cursor, number)
        except OperationalError as exc:
            if not _lock_not_granted(exc):
                raise
            # The history is busy: the months ahead leave time to try again.
            logger.warning("history partitions of month %s: the tables are busy", number)
            continue
        created.append(number)
    return created


def partitions_missing(*, now: datetime, within: timedelta = timedelta(days=7)) -> list[int]:
    """The months, of ``now`` and of ``now + within``, that have no partitions yet: an item
    given an id in such a month could not be stored. Months before this process's own (a
    clock given in the past) are never wanted: ids come from the database's clock. Empty on a
    database without partitions."""
    if not partitioned():
        return []
    wanted = {
        month_number(moment.year, moment.month)
        for moment in (now.astimezone(UTC), (now + within).astimezone(UTC))
    }
    wanted = {number for number in wanted if number >= month_of_now()}
    with connection.cursor() as cursor:
        return sorted(wanted - _months_present(cursor))


def partitions_for_items(item_ids: Iterable[int]) -> list[int]:
    """Create the month partitions the given item ids belong to, where missing (a restore into
    a month that was dropped, or into the rows from before the partitions once those were
    dropped); return the month numbers created. Call inside a transaction."""
    if not partitioned():
        return []
    wanted = set(map(month_of_item, item_ids))
    with connection.cursor() as cursor:
        # Until this transaction ends, no archive drops a month (it takes the same lock).
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [LAYOUT_LOCK])
        missing = sorted(wanted - _months_present(cursor))
        for number in missing:
            _create(cursor, number)
    return missing


def partitions_drop_empty(*, now: datetime | None = None) -> list[str]:
    """Detach and drop the month partitions that hold no item any more (every use case's rows
    of that month archived), before the month of ``now``. The month's predictions, tasks and
    decisions partitions go with it: they can hold rows only of its items. A month whose
    tables are busy (a lock not granted within ``HISTORY_PARTITION_LOCK_TIMEOUT_MS``) is left
    for the next archive. Return the item partitions dropped."""
    if not partitioned():
        return []
    now = (now or timezone.now()).astimezone(UTC)
    current = month_number(now.year, now.month)
    dropped = []
    with connection.cursor() as cursor:
        months = sorted(n for n in _months_present(cursor) if n < current)
    for number in months:
        name = partition_name("reviews_item", number)
        try:
            with transaction.atomic(), connection.cursor() as cursor, _lock_timeout(cursor):
                # Foreign-key checks still deferred in this transaction run now: a table
                # cannot be dropped with its checks pending.
                cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
                cursor.execute("SET CONSTRAINTS ALL DEFERRED")
                # No restore is making sure of its months meanwhile (partitions_for_items).
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [LAYOUT_LOCK])
                # Held until the month is gone: no late insert gets in between.
                cursor.execute(f"LOCK TABLE {name} IN ACCESS EXCLUSIVE MODE")
                cursor.execute(f"SELECT EXISTS (SELECT 1 FROM {name})")
                if cursor.fetchone()[0]:
                    continue
                # Children first: their foreign keys point at the items.
                for table, _key in reversed(PARTITIONED):
                    child = partition_name(table, number)
                    cursor.execute(f"ALTER TABLE {table} DETACH PARTITION {child}")
                    cursor.execute(f"DROP TABLE {child}")
        except OperationalError as exc:
            if not _lock_not_granted(exc):
                raise
            continue
        dropped.append(name)
    return dropped
