"""Streaming table writers (CSV, JSONL, Parquet) with flat memory: rows in, byte chunks out."""

import csv
import io
import json
import math
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

FORMATS = {
    "csv": ("text/csv; charset=utf-8", "csv"),
    "jsonl": ("application/x-ndjson", "jsonl"),
    "parquet": ("application/vnd.apache.parquet", "parquet"),
}
ARROW_TYPES = {
    "number": pa.float64(),
    "integer": pa.int64(),
    "boolean": pa.bool_(),
    "string": pa.string(),
    "category": pa.string(),
}


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _take(rows: Iterator[dict], size: int) -> list[dict]:
    batch = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            break
    return batch


def stream_csv(rows: Iterable[dict], columns: list[str], *, batch: int = 2000) -> Iterator[bytes]:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    rows = iter(rows)
    while True:
        chunk = _take(rows, batch)
        for row in chunk:
            writer.writerow({k: _plain(v) for k, v in row.items()})
        yield buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()
        if len(chunk) < batch:
            return


def stream_jsonl(rows: Iterable[dict], columns: list[str], *, batch: int = 2000) -> Iterator[bytes]:
    rows = iter(rows)
    while True:
        chunk = _take(rows, batch)
        if chunk:
            yield "".join(
                json.dumps({c: _plain(row.get(c)) for c in columns}, ensure_ascii=False) + "\n"
                for row in chunk
            ).encode()
        if len(chunk) < batch:
            return


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


def stream_parquet(
    rows: Iterable[dict], schema: pa.Schema, *, batch: int = 50_000
) -> Iterator[bytes]:
    """Parquet written one row group per ``batch`` rows, each yielded as soon as it is built."""
    sink = _Sink()
    writer = pq.ParquetWriter(pa.PythonFile(sink, mode="w"), schema, compression="zstd")
    rows = iter(rows)
    names = schema.names
    while True:
        chunk = _take(rows, batch)
        if chunk:
            columns = {name: [row.get(name) for row in chunk] for name in names}
            writer.write_table(pa.Table.from_pydict(columns, schema=schema))
            yield sink.drain()
        if len(chunk) < batch:
            break
    writer.close()
    yield sink.drain()


def arrow_schema(columns: list[str], types: dict[str, pa.DataType]) -> pa.Schema:
    return pa.schema([(name, types.get(name, pa.string())) for name in columns])
