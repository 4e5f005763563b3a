"""The outbox: events written in the transaction that makes the change they describe.

Any layer calls ``event_record`` (or ``events_record`` for a batch) INSIDE its writing
transaction: a rolled-back change leaves no event, a committed one always has its event. Readers
(the outcome feed, the webhook fan-out) follow the events in *position* order with a cursor.

Why a position is safe to hand out (the visibility rule)
---------------------------------------------------------
On PostgreSQL transactions commit in any order, so an id or a timestamp cursor skips rows: a
reader at id 11 never sees id 10 if its transaction commits a moment later. Each row therefore
stores its transaction's id (``pg_current_xact_id()``, a 64-bit xid8 that never wraps) and the
position is ``(txid, id)``. A reader only sees rows with ``txid < xmin``, where ``xmin`` is the
oldest transaction still running in the reader's snapshot
(``pg_snapshot_xmin(pg_current_snapshot())``, taken by the same statement):

- every transaction with an id below ``xmin`` has ended, so the rows below ``xmin`` are final:
  a committed row is there and visible to the statement, a rolled-back one never will be;
- a transaction still running, or not yet begun, has (or will get) an id ``>= xmin``, so every
  row that can still appear sorts after every row the reader was shown.

So the rows below ``xmin`` form a prefix of the final order that never changes, and a cursor
into it never misses a late row and never sees one twice. The cost is latency: a long
transaction anywhere on the server holds ``xmin`` back and the feed waits for it to end.

On SQLite writers are serialised (one write transaction at a time holds the database's write
lock until it commits) and Django's SQLite ``AutoField`` is ``AUTOINCREMENT``, so ids are handed
out in commit order and a reader only ever sees committed rows: ``txid`` is 0 and the position
is the id alone, behind the same API.
"""

from collections.abc import Sequence
from dataclasses import dataclass

from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import BigIntegerField, BooleanField, Func, Q, QuerySet
from django.db.models.expressions import RawSQL
from django.dispatch import Signal
from django.utils import timezone

from reviewapp.core.bulk import rows_append
from reviewapp.core.errors import InvalidInput
from reviewapp.core.models import Event

# Sent after a transaction that recorded events commits: ``types`` and ``use_case_ids`` name
# what it recorded. A hook for other apps (the webhook fan-out); not this module's control flow.
events_committed = Signal()

CURSOR_PREFIX = "p1"
# The oldest transaction still running, as seen by the statement that reads.
HORIZON_SQL = "pg_snapshot_xmin(pg_current_snapshot())::text::bigint"


class CurrentTxid(Func):
    """The writing transaction's id on PostgreSQL (assigning one if needed), 0 elsewhere."""

    output_field = BigIntegerField()

    def as_sql(self, compiler, connection, **extra_context):
        return "0", []

    def as_postgresql(self, compiler, connection, **extra_context):
        return "pg_current_xact_id()::text::bigint", []


def events_record(*, type: str, use_case_id: int | None, datas: Sequence[dict]) -> int:
    """Append one event of ``type`` per payload; return how many. Call inside the writing
    transaction.

    One statement whatever the count, with no model instance per row (a batch's chunk records
    an event per item the model decided): the transaction's id is the database's, per row.
    """
    if not datas:
        return 0
    count = len(datas)
    rows_append(
        Event,
        {
            "type": [type] * count,
            "use_case_id": [use_case_id] * count,
            "data": list(datas),
            "created_at": [timezone.now()] * count,
        },
        computed={"txid": CurrentTxid()},
    )
    transaction.on_commit(lambda: _announce(type=type, use_case_id=use_case_id))
    return count


def event_record(*, type: str, use_case_id: int | None, data: dict) -> Event:
    """Append one event. Call inside the transaction that makes the change it describes."""
    event = Event.objects.create(
        txid=CurrentTxid(), type=type, use_case_id=use_case_id, data=data, created_at=timezone.now()
    )
    transaction.on_commit(lambda: _announce(type=type, use_case_id=use_case_id))
    return event


def changed_key(use_case_id: int | None) -> str:
    return f"events:changed:{use_case_id or 0}"


def _announce(*, type: str, use_case_id: int | None) -> None:
    """After commit: bump the use case's change counter (long-polling readers watch it) and
    tell the other apps. Neither may fail the request that committed."""
    try:
        key = changed_key(use_case_id)
        try:
            cache.incr(key)  # one round trip in the common case
        except ValueError:  # the first change since the cache started
            if not cache.add(key, 1, timeout=None):
                cache.incr(key)
    except Exception:  # the cache (Redis) is down: readers fall back to their own timer
        pass
    events_committed.send_robust(sender=Event, types=[type], use_case_ids=[use_case_id])


def change_counter(use_case_id: int | None) -> int | None:
    try:
        return cache.get(changed_key(use_case_id))
    except Exception:
        return None


# --- reading in position order ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Position:
    txid: int
    id: int

    def token(self) -> str:
        return f"{CURSOR_PREFIX}.{self.txid}.{self.id}"


START = Position(txid=0, id=0)


def position_parse(raw: str | None, *, field: str = "after") -> Position:
    """A cursor token from a caller; a malformed one is a 400 naming ``field``."""
    if raw in (None, ""):
        return START
    parts = raw.split(".")
    if len(parts) == 3 and parts[0] == CURSOR_PREFIX and all(p.isdigit() for p in parts[1:]):
        txid, event_id = int(parts[1]), int(parts[2])
        if txid < 2**63 and event_id < 2**63:
            return Position(txid=txid, id=event_id)
    raise InvalidInput({field: ["not a cursor this feed gave out (use the last `next`)"]})


def events_readable(
    *, after: Position, filters: Q | None = None, up_to: Position | None = None
) -> QuerySet[Event]:
    """The readable events after ``after`` (and at or before ``up_to``), in position order
    (slice it).

    Readable means below the oldest running transaction (the module's rule); the filter and the
    horizon are one statement, so they see the same snapshot. The position comparison is a row
    comparison, which PostgreSQL answers from the ``(…, txid, id)`` indexes as one range.
    """
    events = Event.objects.filter(
        RawSQL(
            '("core_event"."txid", "core_event"."id") > (%s, %s)',
            [after.txid, after.id],
            output_field=BooleanField(),
        )
    ).order_by("txid", "id")
    if up_to is not None:
        events = events.filter(
            RawSQL(
                '("core_event"."txid", "core_event"."id") <= (%s, %s)',
                [up_to.txid, up_to.id],
                output_field=BooleanField(),
            )
        )
    if filters is not None:
        events = events.filter(filters)
    if connection.vendor == "postgresql":
        events = events.filter(txid__lt=RawSQL(HORIZON_SQL, []))
    return events


def events_after(*, after: Position, limit: int, filters: Q | None = None) -> list[Event]:
    """Up to ``limit`` readable events after ``after``, in position order."""
    return list(events_readable(after=after, filters=filters)[:limit])


def position_of(event: Event) -> Position:
    return Position(txid=event.txid, id=event.id)


def events_behind_horizon() -> bool:
    """Whether committed-or-running events wait for older transactions to end before they can
    be read (a reader that found nothing may look again shortly). Always False on SQLite."""
    if connection.vendor != "postgresql":
        return False
    return Event.objects.filter(txid__gte=RawSQL(HORIZON_SQL, [])).exists()
