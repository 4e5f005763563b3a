"""The streaming writers: batches of typed rows in, a file that reads back the same."""

import csv
import io
import json
import math
from datetime import UTC, datetime

import pyarrow.parquet as pq
import pytest

from reviewapp.datasets.export_formats import arrow_schema, table_chunks

COLUMNS = [
    ("id", "string"),
    ("amount", "number"),
    ("count", "integer"),
    ("flag", "boolean"),
    ("at", "timestamp"),
]
AWKWARD = 'comma, "quote"\nnewline ünïcödé'
ROWS = [
    ("a", 1.5, 3, True, datetime(2024, 5, 1, 12, 0, tzinfo=UTC)),
    (AWKWARD, None, None, None, None),
    ("c", -0.0, 2**40, False, datetime(2024, 5, 2, 0, 0, 0, 1, tzinfo=UTC)),
]


def written(fmt: str, batches) -> bytes:
    return b"".join(table_chunks(batches=batches, columns=COLUMNS, fmt=fmt))


def test_csv_quotes_what_needs_quoting_and_leaves_missing_empty():
    text = written("csv", [ROWS[:2], ROWS[2:]]).decode()
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == [name for name, _ in COLUMNS]
    assert rows[2] == [AWKWARD, "", "", "", ""]
    assert rows[1][:4] == ["a", "1.5", "3", "True"]


def test_an_empty_csv_still_has_its_header():
    assert written("csv", []) == b"id,amount,count,flag,at\n"


def test_jsonl_writes_one_object_per_line_and_no_invalid_json():
    batches = [[("x", math.nan, 1, True, None), ("y", math.inf, 2, False, ROWS[0][4])]]
    lines = written("jsonl", batches).decode().splitlines()
    first, second = (json.loads(line) for line in lines)
    assert first["amount"] is None and second["amount"] is None
    assert second["at"] == "2024-05-01T12:00:00+00:00"
    assert json.loads(written("jsonl", [ROWS]).decode().splitlines()[1])["id"] == AWKWARD
    assert written("jsonl", []) == b""


def test_parquet_keeps_types_and_splits_row_groups():
    from reviewapp.datasets import export_formats

    batches = [ROWS] * 5
    data = b"".join(export_formats.parquet_chunks(batches, arrow_schema(COLUMNS), row_group_rows=6))
    parquet = pq.ParquetFile(io.BytesIO(data))
    assert parquet.metadata.num_rows == 15
    assert parquet.metadata.num_row_groups == 3
    table = parquet.read()
    assert table.column("count").to_pylist()[:3] == [3, None, 2**40]
    assert table.column("at").to_pylist()[2] == ROWS[2][4]
    assert table.column("id").to_pylist()[1] == AWKWARD


def test_an_unknown_format_is_a_programming_error():
    with pytest.raises(ValueError, match="xml"):
        written("xml", [])
