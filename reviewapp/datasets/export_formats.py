"""Streaming table writers (CSV, JSONL, Parquet) with flat memory: batches of row tuples in,
byte chunks out.

The rows arrive typed by the database (see ``selectors.export_chunks``), so the writers do no
per-value work in Python: ``csv.writer.writerows``, one ``json`` encode per row, and Arrow
arrays built a column at a time. (On PostgreSQL most of this is the server's work: COPY.)

pyarrow (some 60 MB resident) is imported by the Parquet writer and the CSV reader that need
it, not with this module: every web process imports it for ``FORMATS``.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

FORMATS = {
    "csv": ("text/csv; charset=utf-8", "csv"),
    "jsonl": ("application/x-ndjson", "jsonl"),
    "parquet": ("application/vnd.apache.parquet", "parquet"),
}
# A Parquet row group is flushed at whichever comes first; both bound the memory held. Larger
# groups compressed no better on export-shaped data and raised the writer's peak memory.
ROW_GROUP_ROWS = 16 * 1024
ROW_GROUP_BYTES = 16 * 1024 * 1024

Batch = Sequence[tuple]


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _drain(buffer: io.StringIO) -> bytes:
    data = buffer.getvalue().encode()
    buffer.seek(0)
    buffer.truncate()
    return data


def csv_chunks(batches: Iterable[Batch], columns: list[str]) -> Iterator[bytes]:
    """The header, then one chunk per batch."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    yield _drain(buffer)
    for batch in batches:
        writer.writerows(batch)
        yield _drain(buffer)


def jsonl_chunks(batches: Iterable[Batch], columns: list[str]) -> Iterator[bytes]:
    """One JSON object per line; non-finite numbers (which JSON cannot hold) become null."""
    encode = json.JSONEncoder(
        ensure_ascii=False, allow_nan=False, default=_plain, separators=(",", ":")
    ).encode
    for batch in batches:
        if not batch:
            continue
        try:
            text = "\n".join(map(encode, (dict(zip(columns, row, strict=True)) for row in batch)))
        except ValueError:
            text = "\n".join(
                encode({c: _plain(v) for c, v in zip(columns, row, strict=True)}) for row in batch
            )
        yield (text + "\n").encode()


class _Sink(io.RawIOBase):
    """A write-only file that hands what was written to the generator and forgets it."""

    def __init__(self):
        self.chunks: list[bytes] = []
        self.position = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.chunks.append(bytes(data))
        self.position += len(data)
        return len(data)

    def tell(self) -> int:
        return self.position

    def drain(self) -> bytes:
        out = b"".join(self.chunks)
        self.chunks.clear()
        return out


@cache
def arrow_types() -> dict[str, pa.DataType]:
    """Arrow types of the column kinds (see ``selectors.ExportColumn``) and of the feature
    types of a use case's schema."""
    import pyarrow as pa

    return {
        "number": pa.float64(),
        "integer": pa.int64(),
        "boolean": pa.bool_(),
        "string": pa.string(),
        "category": pa.string(),
        "flag": pa.string(),
        "timestamp": pa.timestamp("us", tz="UTC"),
    }


def arrow_schema(columns: Iterable[tuple[str, str]]) -> pa.Schema:
    """(name, kind) pairs -> an Arrow schema."""
    import pyarrow as pa

    types = arrow_types()
    return pa.schema([(name, types.get(kind, pa.string())) for name, kind in columns])


def _record_batch(batch: Batch, schema: pa.Schema) -> pa.RecordBatch:
    import pyarrow as pa

    columns = zip(*batch, strict=True)
    arrays = [
        pa.array(values, type=field.type) for values, field in zip(columns, schema, strict=True)
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def parquet_record_chunks(
    records: Iterable[pa.RecordBatch],
    schema: pa.Schema,
    *,
    row_group_rows: int | None = None,
    row_group_bytes: int | None = None,
) -> Iterator[bytes]:
    """Parquet (zstd) written one row group at a time from Arrow record batches."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    row_group_rows = row_group_rows or ROW_GROUP_ROWS
    row_group_bytes = row_group_bytes or ROW_GROUP_BYTES
    sink = _Sink()
    writer = pq.ParquetWriter(pa.PythonFile(sink, mode="w"), schema, compression="zstd")
    pending: list[pa.RecordBatch] = []
    rows = size = 0
    for record in records:
        if not record.num_rows:
            continue
        pending.append(record)
        rows += record.num_rows
        size += record.nbytes
        if rows >= row_group_rows or size >= row_group_bytes:
            writer.write_table(pa.Table.from_batches(pending, schema), row_group_size=rows)
            pending, rows, size = [], 0, 0
            yield sink.drain()
    if pending:
        writer.write_table(pa.Table.from_batches(pending, schema), row_group_size=rows)
    writer.close()
    yield sink.drain()


def parquet_chunks(batches: Iterable[Batch], schema: pa.Schema, **limits) -> Iterator[bytes]:
    """Parquet from row tuples: each batch becomes Arrow columns at once, so Python objects
    never outlive their batch."""
    records = (_record_batch(batch, schema) for batch in batches if batch)
    return parquet_record_chunks(records, schema, **limits)


class _Blocks(io.RawIOBase):
    """A readable file over an iterator of byte blocks (for Arrow's CSV reader)."""

    def __init__(self, blocks: Iterable[bytes]):
        self.blocks = iter(blocks)
        self.pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self.pending:
            try:
                self.pending = next(self.blocks)
            except StopIteration:
                return 0
        size = min(len(buffer), len(self.pending))
        buffer[:size] = self.pending[:size]
        self.pending = self.pending[size:]
        return size


class _RecordBatches:
    """Record batches parsed from headerless CSV (true/false booleans, ISO 8601 times; an
    unquoted empty value is null, a quoted one an empty string), with their schema."""

    def __init__(self, blocks: Iterable[bytes], schema: pa.Schema, block_size: int):
        import pyarrow.csv as pa_csv

        self.schema = schema
        self.reader = pa_csv.open_csv(
            io.BufferedReader(_Blocks(blocks), buffer_size=block_size),
            read_options=pa_csv.ReadOptions(
                column_names=schema.names, block_size=block_size, use_threads=False
            ),
            parse_options=pa_csv.ParseOptions(newlines_in_values=True),
            convert_options=pa_csv.ConvertOptions(
                column_types=schema,
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,
                true_values=["true"],
                false_values=["false"],
            ),
        )

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        return iter(self.reader)


def csv_record_batches(
    blocks: Iterable[bytes], schema: pa.Schema, *, block_size: int = 1024 * 1024
) -> _RecordBatches:
    return _RecordBatches(blocks, schema, block_size)


def table_chunks(
    *, batches: Iterable[Batch], columns: Sequence[tuple[str, str]], fmt: str
) -> Iterator[bytes]:
    """Rows in ``fmt``; ``columns`` are (name, kind) pairs in row order."""
    names = [name for name, _ in columns]
    if fmt == "csv":
        return csv_chunks(batches, names)
    if fmt == "jsonl":
        return jsonl_chunks(batches, names)
    if fmt == "parquet":
        return parquet_chunks(batches, arrow_schema(columns))
    raise ValueError(f"unknown export format {fmt!r}")
