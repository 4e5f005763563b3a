"""The export engine: which rows a reader narrows disagreements (or human-labelled items) down
to, the typed columns of an export table, and its streaming in chunks (PostgreSQL COPY inside a
snapshot, or keyset batches)."""

import json
import logging
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import partial
from operator import itemgetter
from typing import Any

from django.db import connection
from django.db.models import (
    BooleanField,
    Case,
    Count,
    ExpressionWrapper,
    F,
    Max,
    Min,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)

from deployments.models import UseCase
from reviewapp.datasets.export_formats import (
    arrow_schema,
    csv_chunks,
    csv_record_batches,
    parquet_record_chunks,
    table_chunks,
)
from reviewapp.datasets.sql import IsoTimestamp, JsonHmac, JsonLine, JsonValue
from reviewapp.reviews.models import Decision, Disagreement, Item

logger = logging.getLogger(__name__)

DISAGREEMENT_KINDS = [k.value for k in Disagreement.Kind]


@dataclass(frozen=True)
class RowFilters:
    """What a reader narrows disagreements (or human-labelled items) down to.

    Bounds: ``since`` and the ``*_min`` values are inclusive; ``until`` and the value
    ``*_max`` bounds are exclusive (so adjacent bins never share a row); ``confidence_max``
    is inclusive, since a confidence of exactly 1 is common.
    """

    model_version: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    kind: str | None = None
    model_label: str | None = None
    human_label: str | None = None
    confidence_min: float | None = None
    confidence_max: float | None = None
    model_value_min: float | None = None
    model_value_max: float | None = None
    human_value_min: float | None = None
    human_value_max: float | None = None

    def without_answers(self) -> "RowFilters":
        """The same filters without the label pair or value ranges (for the matrix)."""
        return replace(
            self,
            model_label=None,
            human_label=None,
            model_value_min=None,
            model_value_max=None,
            human_value_min=None,
            human_value_max=None,
        )


# Where each filter looks, per scope. Labelled items carry their routing prediction's answer
# and the kind of the disagreement it caused (annotated as ``routing_kind``).
_DISAGREEMENT_PATHS = {
    "model_version": "model_version__version",
    "decided_at": "decided_at",
    "kind": "kind",
    "model_label": "model_label",
    "human_label": "human_label",
    "confidence": "confidence",
    "model_value": "model_value",
    "human_value": "human_value",
}
_LABELLED_PATHS = {
    "model_version": "prediction__model_version__version",
    "decided_at": "decided_at",
    "kind": "routing_kind",
    "model_label": "prediction__label",
    "human_label": "decision_label",
    "confidence": "prediction__confidence",
    "model_value": "prediction__value",
    "human_value": "decision_value",
}


def _filtered(rows: QuerySet, paths: dict[str, str], filters: RowFilters) -> QuerySet:
    exact = {
        "model_version": filters.model_version,
        "kind": filters.kind,
        "model_label": filters.model_label,
        "human_label": filters.human_label,
    }
    for name, value in exact.items():
        if value:
            rows = rows.filter(**{paths[name]: value})
    bounds = [
        ("decided_at", "gte", filters.since),
        ("decided_at", "lt", filters.until),
        ("confidence", "gte", filters.confidence_min),
        ("confidence", "lte", filters.confidence_max),
        ("model_value", "gte", filters.model_value_min),
        ("model_value", "lt", filters.model_value_max),
        ("human_value", "gte", filters.human_value_min),
        ("human_value", "lt", filters.human_value_max),
    ]
    for name, lookup, value in bounds:
        if value is not None:
            rows = rows.filter(**{f"{paths[name]}__{lookup}": value})
    return rows


def disagreements_filtered(
    *,
    use_case: UseCase,
    model_version: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    kind: str | None = None,
    filters: RowFilters | None = None,
) -> QuerySet[Disagreement]:
    """Disagreements in time order; ``filters`` (all of them) or the common few by name."""
    filters = filters or RowFilters(
        model_version=model_version, since=since, until=until, kind=kind
    )
    rows = _filtered(Disagreement.objects.filter(use_case=use_case), _DISAGREEMENT_PATHS, filters)
    return rows.order_by("decided_at", "id")


def labelled_items_filtered(*, use_case: UseCase, filters: RowFilters) -> QuerySet[Item]:
    """Items a human has answered, in the order they arrived, each with ``routing_kind``: the
    kind of disagreement between the human and the prediction that routed it (None if they
    agree, or no model was consulted)."""
    routing_kind = Disagreement.objects.filter(
        item_id=OuterRef("pk"), prediction_id=OuterRef("prediction_id")
    ).values("kind")[:1]
    rows = Item.objects.filter(use_case=use_case, decision_source=Item.Source.HUMAN).annotate(
        routing_kind=Subquery(routing_kind)
    )
    return _filtered(rows, _LABELLED_PATHS, filters).order_by("id")


EXPORT_META_COLUMNS = frozenset(
    {
        "external_id",
        "model_version",
        "model_label",
        "model_value",
        "confidence",
        "human_label",
        "human_value",
        "kind",
        "reviewer",
        "decided_at",
        "disagreement",
    }
)


def export_feature_columns(*, use_case: UseCase, include_pii: bool) -> dict[str, str]:
    """Feature name -> export column. A feature whose name is also a metadata column (a
    feature called ``kind``, say) is exported as ``feature_<name>`` so neither hides the other."""
    return {
        name: f"feature_{name}" if name in EXPORT_META_COLUMNS else name
        for name in use_case.feature_names
        if include_pii or name not in use_case.pii_features
    }


@dataclass(frozen=True)
class ExportColumn:
    name: str
    kind: str  # one of sql.KINDS
    feature: str = ""  # the feature the column holds, if it holds one
    pii: str = ""  # for a PII feature: "included" or "hashed"


@dataclass(frozen=True)
class ExportTable:
    """An export as one SQL query: a value expression per column over the filtered rows,
    read in ``order``; and where to find each row's model version and decision time (for the
    summary)."""

    columns: tuple[ExportColumn, ...]
    source: QuerySet
    values: tuple
    order: tuple[str, ...]
    version_path: str
    build: Callable[..., "ExportTable"]  # the same table shaped for another format

    @property
    def names(self) -> list[str]:
        return [column.name for column in self.columns]

    def select(self, *extra) -> QuerySet:
        return self.source.order_by(*self.order).values_list(*self.values, *extra)


FEATURE_KINDS = {
    "number": "number",
    "integer": "integer",
    "boolean": "boolean",
    "string": "string",
    "category": "string",
}


def _export_columns(*, use_case: UseCase, pii: str, labelled: bool = False) -> list[ExportColumn]:
    by_name = {spec["name"]: spec for spec in use_case.features}
    features = []
    for name, column in export_feature_columns(
        use_case=use_case, include_pii=pii != "omit"
    ).items():
        if name in use_case.pii_features and pii == "hash":
            features.append(ExportColumn(f"{column}_hmac", "string", name, "hashed"))
        else:
            kind = FEATURE_KINDS[by_name[name]["type"]]
            mark = "included" if name in use_case.pii_features else ""
            features.append(ExportColumn(column, kind, name, mark))
    if use_case.is_classification:
        model_answer, human_answer = "model_label", "human_label"
        answer_kind = "string"
    else:
        model_answer, human_answer = "model_value", "human_value"
        answer_kind = "number"
    columns = [
        ExportColumn("external_id", "string"),
        *features,
        ExportColumn("model_version", "string"),
        ExportColumn(model_answer, answer_kind),
        ExportColumn("confidence", "number"),
        ExportColumn(human_answer, answer_kind),
        ExportColumn("kind", "string"),
        ExportColumn("reviewer", "string"),
        ExportColumn("decided_at", "timestamp"),
    ]
    if labelled:
        columns.append(ExportColumn("disagreement", "boolean"))
    return columns


def _for_format(columns: list[ExportColumn], fmt: str) -> list[ExportColumn]:
    """CSV writes booleans as the text true/false, which pandas reads back as booleans."""
    if fmt != "csv":
        return columns
    return [replace(c, kind="flag") if c.kind == "boolean" else c for c in columns]


def _feature_value(column: ExportColumn, base: str, pii_key: bytes | None):
    if column.pii == "hashed":
        return JsonHmac(base, key=column.feature, secret=pii_key)
    return JsonValue(base, key=column.feature, kind=column.kind)


def _timestamp(path: str, fmt: str):
    return F(path) if fmt == "parquet" else IsoTimestamp(F(path))


def _flag(condition: Q, fmt: str):
    if fmt == "csv":
        return Case(When(condition, then=Value("true")), default=Value("false"))
    return ExpressionWrapper(condition, output_field=BooleanField())


def _pii_mode(include_pii: bool, pii_key: bytes | None) -> str:
    if pii_key is not None:
        return "hash"
    return "include" if include_pii else "omit"


def disagreement_export_table(
    *,
    use_case: UseCase,
    rows: QuerySet[Disagreement],
    include_pii: bool,
    fmt: str = "csv",
    pii_key: bytes | None = None,
) -> ExportTable:
    """One row per disagreement in ``rows``, shaped for ``fmt``. PII features are left out
    here, at the source, unless ``include_pii`` (or hashed with ``pii_key``): no later writer
    can leak them."""
    columns = _for_format(
        _export_columns(use_case=use_case, pii=_pii_mode(include_pii, pii_key)), fmt
    )
    paths = {
        "external_id": "item__external_id",
        "model_version": "model_version__version",
        "model_label": "model_label",
        "model_value": "model_value",
        "confidence": "confidence",
        "human_label": "human_label",
        "human_value": "human_value",
        "kind": "kind",
        "reviewer": "reviewer__username",
    }
    values = [
        _feature_value(c, "item__features", pii_key)
        if c.feature
        else _timestamp("decided_at", fmt)
        if c.name == "decided_at"
        else F(paths[c.name])
        for c in columns
    ]
    return ExportTable(
        columns=tuple(columns),
        source=rows,
        values=tuple(values),
        order=("decided_at", "id"),
        version_path="model_version__version",
        build=partial(
            disagreement_export_table,
            use_case=use_case,
            rows=rows,
            include_pii=include_pii,
            pii_key=pii_key,
        ),
    )


def labelled_export_table(
    *,
    use_case: UseCase,
    rows: QuerySet[Item],
    include_pii: bool,
    fmt: str = "csv",
    pii_key: bytes | None = None,
) -> ExportTable:
    """One row per human-answered item: its features, the prediction that routed it, the
    first human answer, and whether the two disagree. Rows from ``labelled_items_filtered``."""
    columns = _for_format(
        _export_columns(use_case=use_case, pii=_pii_mode(include_pii, pii_key), labelled=True),
        fmt,
    )
    first_reviewer = (
        Decision.objects.filter(item_id=OuterRef("pk"))
        .order_by("created_at", "id")
        .values("reviewer__username")[:1]
    )
    paths = {
        "external_id": F("external_id"),
        "model_version": F("prediction__model_version__version"),
        # A null output has no answer; what the model said instead stays with the prediction.
        "model_label": Case(When(prediction__error="", then=F("prediction__label"))),
        "model_value": F("prediction__value"),
        "confidence": F("prediction__confidence"),
        "human_label": F("decision_label"),
        "human_value": F("decision_value"),
        "kind": F("routing_kind"),
        "reviewer": Subquery(first_reviewer),
        "decided_at": _timestamp("decided_at", fmt),
        "disagreement": _flag(Q(routing_kind__isnull=False), fmt),
    }
    values = [
        _feature_value(c, "features", pii_key) if c.feature else paths[c.name] for c in columns
    ]
    return ExportTable(
        columns=tuple(columns),
        source=rows,
        values=tuple(values),
        order=("id",),
        version_path="prediction__model_version__version",
        build=partial(
            labelled_export_table,
            use_case=use_case,
            rows=rows,
            include_pii=include_pii,
            pii_key=pii_key,
        ),
    )


def _after(rows: QuerySet, order: tuple[str, ...], last: tuple, *, descending: bool = False):
    """Rows strictly after ``last`` in ``order`` (keyset pagination). The redundant bound on
    the first field lets the database start an index range scan there."""
    beyond, reach = ("lt", "lte") if descending else ("gt", "gte")
    if len(order) == 1:
        return rows.filter(**{f"{order[0]}__{beyond}": last[0]})
    first, second = order
    return rows.filter(**{f"{first}__{reach}": last[0]}).filter(
        Q(**{f"{first}__{beyond}": last[0]}) | Q(**{f"{second}__{beyond}": last[1]})
    )


@dataclass
class ExportSummary:
    """What an export read: its rows, rows per model version, first and last decision."""

    rows: int = 0
    versions: Counter = field(default_factory=Counter)
    first: Any = None
    last: Any = None

    def widen(self, first, last) -> None:
        if first is not None:
            self.first = first if self.first is None else min(self.first, first)
        if last is not None:
            self.last = last if self.last is None else max(self.last, last)


def _batch_rows(table: ExportTable) -> int:
    """Rows per batch: a few megabytes of Python objects whatever the number of columns."""
    return max(1_000, min(10_000, 150_000 // len(table.columns)))


def export_chunks(
    *,
    table: ExportTable,
    fmt: str,
    summary: ExportSummary,
    on_rows: Callable[[int], None] | None = None,
) -> Iterator[bytes]:
    """The table in ``fmt`` as byte chunks, with flat memory; ``summary`` says what was read
    by the end, and ``on_rows`` hears how many rows are written so far.

    On PostgreSQL the rows are read on a connection of their own, in one REPEATABLE READ
    snapshot: the summary and the rows agree exactly, CSV is written by the server (COPY),
    other formats come through a server-side cursor, and progress written meanwhile on the
    default connection is visible at once. Elsewhere (SQLite), or inside a transaction (whose
    uncommitted rows another connection would not see), the rows come in keyset batches.
    """
    if connection.vendor == "postgresql" and not connection.in_atomic_block:
        return _postgres_chunks(table=table, fmt=fmt, summary=summary, on_rows=on_rows)
    return _batched_chunks(table=table, fmt=fmt, summary=summary, on_rows=on_rows)


def _summary_query(table: ExportTable) -> QuerySet:
    return (
        table.source.order_by()
        .values(version=F(table.version_path))
        .annotate(rows=Count("pk"), first=Min("decided_at"), last=Max("decided_at"))
    )


@contextmanager
def _snapshot():
    """A connection of its own, in a read-only REPEATABLE READ transaction, in UTC."""
    import psycopg

    params = connection.get_connection_params()
    for option in ("context", "cursor_factory"):  # Django's adapters; psycopg's are faster
        params.pop(option, None)
    with psycopg.connect(**params) as snapshot:
        snapshot.execute("SET TIME ZONE 'UTC'")
        snapshot.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        try:
            yield snapshot
        finally:
            snapshot.rollback()


def _compiled(queryset: QuerySet) -> tuple[str, tuple]:
    return queryset.query.get_compiler(using=queryset.db).as_sql()


def _postgres_chunks(*, table, fmt, summary, on_rows) -> Iterator[bytes]:
    """Every format from one COPY of the table, so no row becomes a Python object: CSV as
    PostgreSQL writes it, JSON lines built by PostgreSQL, Parquet through Arrow's streaming
    CSV reader."""
    with _snapshot() as snapshot:
        sql, params = _compiled(_summary_query(table))
        for version, rows, first, last in snapshot.execute(sql, params):
            summary.rows += rows
            summary.versions[version] += rows
            summary.widen(first, last)
        if fmt == "jsonl":
            shaped = table.build(fmt="jsonl")
            line = JsonLine(list(zip(shaped.names, shaped.values, strict=True)))
            query = shaped.source.order_by(*shaped.order).values_list(line)
            # A JSON line holds no raw newline and no control character: with these as
            # quote and delimiter, CSV output is the lines themselves, never quoted.
            options = "FORMAT csv, DELIMITER E'\\x02', QUOTE E'\\x01'"
            blocks = _copy(snapshot, query, options)
            yield from _progress_by_lines(blocks, on_rows, summary.rows)
            return
        blocks = _copy(snapshot, table.build(fmt="csv").select(), "FORMAT csv")
        if fmt == "csv":
            yield from csv_chunks([], table.names)  # the header
            yield from _progress_by_lines(blocks, on_rows, summary.rows)
            return
        schema = arrow_schema(_kinds(table.build(fmt="parquet")))
        if not summary.rows:  # Arrow's CSV reader refuses empty input; the file has a schema
            yield from parquet_record_chunks([], schema)
            return
        records = csv_record_batches(blocks, schema)
        counted = _counted(records, on_rows, size=lambda record: record.num_rows)
        yield from parquet_record_chunks(counted, schema)


COPY_CHUNK = 1024 * 1024


def _copy(snapshot, query: QuerySet, options: str) -> Iterator[bytes]:
    """COPY ``query`` to the client, in chunks of about a megabyte (the server sends a
    message per row; joining them here keeps the per-row work to an append)."""
    from psycopg import ClientCursor

    sql, params = _compiled(query)
    statement = ClientCursor(snapshot).mogrify(sql, params)
    chunk = bytearray()
    with snapshot.cursor().copy(f"COPY ({statement}) TO STDOUT ({options})") as copy:
        for block in copy:
            chunk += block
            if len(chunk) >= COPY_CHUNK:
                yield bytes(chunk)
                chunk.clear()
    if chunk:
        yield bytes(chunk)


def _progress_by_lines(blocks, on_rows, total: int) -> Iterator[bytes]:
    """Rows counted by newlines; a CSV value holding a newline overcounts, so it is capped."""
    written = 0
    for block in blocks:
        written = min(total, written + block.count(b"\n"))
        if on_rows:
            on_rows(written)
        yield block
    if on_rows:
        on_rows(total)


def _counted(batches, on_rows, *, size=len) -> Iterator:
    """The batches (lists of rows, or Arrow record batches with ``size``), counted."""
    written = 0
    for batch in batches:
        yield batch
        written += size(batch)
        if on_rows:
            on_rows(written)


def _kinds(table: ExportTable) -> list[tuple[str, str]]:
    return [(column.name, column.kind) for column in table.columns]


def export_row_batches(
    *, table: ExportTable, summary: ExportSummary, batch_rows: int | None = None
) -> Iterator[list[tuple]]:
    """The table's rows as lists of tuples, one short keyset query per batch, summarised as
    they pass. No transaction stays open (SQLite writers are not blocked) and each query is an
    index range scan from where the last one stopped."""
    size = batch_rows or _batch_rows(table)
    width = len(table.columns)
    strip = itemgetter(*range(width))
    version_of, decided_of = itemgetter(-2), itemgetter(-1)
    rows = table.select(*table.order, table.version_path, "decided_at")
    last = None
    while True:
        page = rows if last is None else _after(rows, table.order, last)
        batch = list(page[:size])
        if not batch:
            return
        summary.rows += len(batch)
        summary.versions.update(map(version_of, batch))
        times = [t for t in map(decided_of, batch) if t is not None]
        summary.widen(min(times, default=None), max(times, default=None))
        yield list(map(strip, batch))
        if len(batch) < size:
            return
        last = batch[-1][width : width + len(table.order)]


def _batched_chunks(*, table, fmt, summary, on_rows) -> Iterator[bytes]:
    batches = export_row_batches(table=table, summary=summary)
    return table_chunks(batches=_counted(batches, on_rows), columns=_kinds(table), fmt=fmt)


def rows_page(
    *, rows: QuerySet, order: tuple[str, ...], after: tuple | None, size: int
) -> tuple[list, bool]:
    """One page of ``rows``, newest first by ``order``, after the keyset ``after``; and
    whether more rows follow."""
    if after is not None:
        rows = _after(rows, order, after, descending=True)
    page = list(rows.order_by(*(f"-{field}" for field in order))[: size + 1])
    return page[:size], len(page) > size


def disagreement_stream(*, use_case: UseCase, rows, fmt: str, include_pii: bool) -> Iterator[bytes]:
    table = disagreement_export_table(
        use_case=use_case, rows=rows, include_pii=include_pii, fmt=fmt
    )
    return export_chunks(table=table, fmt=fmt, summary=ExportSummary())


class StreamInterrupted(Exception):
    """A streamed export lost its database part-way: the body sent so far is incomplete."""


INTERRUPTED_DETAIL = (
    "The database became unavailable part-way through this export; the rows above are "
    "incomplete. Retry the export."
)


def stream_ended_clearly(chunks: Iterator[bytes], *, fmt: str) -> Iterator[bytes]:
    """A streamed export whose database may go away.

    Before the first byte: the error is raised at once, so the caller answers 503
    ``database_unavailable`` (the first chunk is read here, in the view). Part-way: the body
    ends with a line that says so (a JSON object with ``error`` for JSON lines, a ``#`` line
    for CSV; a Parquet file is left without its footer, which every reader refuses) and the
    connection is then cut, so an HTTP client also sees an incomplete transfer instead of a
    file that looks whole."""
    from reviewapp.core.errors import database_unavailable

    chunks = iter(chunks)
    first = next(chunks, b"")

    def rest() -> Iterator[bytes]:
        yield first
        try:
            yield from chunks
        except Exception as exc:
            if not database_unavailable(exc):
                raise
            logger.error("streamed %s export interrupted: database unavailable (%s)", fmt, exc)
            if fmt == "jsonl":
                error = {"code": "database_unavailable", "detail": INTERRUPTED_DETAIL}
                yield b"\n" + json.dumps({"error": error}).encode() + b"\n"
            elif fmt == "csv":
                yield f"\n# ERROR database_unavailable: {INTERRUPTED_DETAIL}\n".encode()
            raise StreamInterrupted(INTERRUPTED_DETAIL) from exc

    return rest()
