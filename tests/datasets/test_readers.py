"""An export reads back to the same typed table in pandas, pyarrow and DuckDB, from CSV, JSONL
and Parquet alike: timestamps as timestamps (one fixed format, whatever the microseconds),
digit labels as the strings they are, with the types taken from the manifest beside the file."""

import io
import json
from datetime import timedelta

import duckdb
import pandas as pd
import pyarrow.parquet as pq
import pytest
from django.core.management import call_command
from django.utils import timezone

from deployments.services.use_cases import use_case_create
from reviewapp.core.roles import Role
from reviewapp.reviews.services.ingest import item_ingest
from reviewapp.reviews.services.review import review_task_claim, review_task_decide
from tests.factories import make_user

pytestmark = pytest.mark.django_db

PANDAS = {"string": "string", "number": "float64", "integer": "Int64", "boolean": "boolean"}
DUCKDB = {"string": "VARCHAR", "number": "DOUBLE", "integer": "BIGINT", "boolean": "BOOLEAN"}


@pytest.fixture
def digits_world():
    manager, reviewer = make_user(Role.MANAGER), make_user(Role.REVIEWER)
    use_case = use_case_create(
        actor=manager,
        slug="digit-labels",
        name="Digits",
        task_type="classification",
        labels=["3", "7"],
        features=[{"name": "ink", "type": "number", "required": True}],
    )
    use_case.members.add(reviewer)
    start = timezone.now().replace(microsecond=0) - timedelta(days=1)
    for n in range(6):
        at = start + timedelta(minutes=n, microseconds=0 if n % 2 else 123_456 * n)
        item_ingest(use_case=use_case, external_id=f"d-{n}", features={"ink": n * 0.5}, now=at)
        task = review_task_claim(use_case=use_case, user=reviewer, now=at)
        review_task_decide(task=task, user=reviewer, label="37"[n % 2], now=at)
    return use_case


def export(use_case, fmt: str, target) -> dict:
    call_command(
        "export_disagreements",
        use_case.slug,
        f"--format={fmt}",
        "--scope=labelled",
        f"--output={target}",
        stdout=io.StringIO(),
        stderr=io.StringIO(),
    )
    with open(f"{target}.manifest.json") as handle:
        return json.load(handle)


def _normalised(frame: pd.DataFrame, schema: list[dict]) -> pd.DataFrame:
    out = pd.DataFrame()
    for column in schema:
        name, kind = column["name"], column["type"]
        if kind == "timestamp":
            out[name] = pd.to_datetime(frame[name], utc=True).astype("datetime64[us, UTC]")
        else:
            out[name] = frame[name].astype(PANDAS.get(kind, "string"))
    return out


def test_every_reader_gets_the_same_typed_table_from_every_format(digits_world, tmp_path):
    frames = {}
    for fmt in ("csv", "jsonl", "parquet"):
        target = tmp_path / f"labelled.{fmt}"
        manifest = export(digits_world, fmt, target)
        assert manifest["created_by"].startswith("command line (")
        schema = manifest["schema"]
        kinds = {c["name"]: c["type"] for c in schema}
        assert kinds["human_label"] == "string" and kinds["decided_at"] == "timestamp"
        stamps = [n for n, k in kinds.items() if k == "timestamp"]
        dtypes = {n: PANDAS[k] for n, k in kinds.items() if k in PANDAS}
        if fmt == "csv":
            text = target.read_text()
            # one timestamp format, at one width, whatever the microseconds
            assert all(len(v) == 32 for v in pd.read_csv(target, dtype=str)["decided_at"])
            frames["pandas csv"] = pd.read_csv(target, dtype=dtypes, parse_dates=stamps)
            types = {n: DUCKDB.get(k, "TIMESTAMPTZ") for n, k in kinds.items()}
            frames["duckdb csv"] = duckdb.sql(
                f"SELECT * FROM read_csv('{target}', header=true, columns={types})"
            ).df()
            assert '"3"' not in text  # plain CSV: the reader's dtype makes it a string
        elif fmt == "jsonl":
            first = json.loads(target.read_text().splitlines()[0])
            assert isinstance(first["human_label"], str)
            frame = pd.read_json(target, lines=True, dtype=dtypes)
            for name in stamps:  # one fixed ISO 8601 format: parsed without guessing
                frame[name] = pd.to_datetime(frame[name], format="%Y-%m-%dT%H:%M:%S.%f%z")
            frames["pandas jsonl"] = frame
            types = {n: DUCKDB.get(k, "TIMESTAMPTZ") for n, k in kinds.items()}
            frames["duckdb jsonl"] = duckdb.sql(
                f"SELECT * FROM read_json('{target}', format='newline_delimited', columns={types})"
            ).df()
        else:
            frames["pyarrow parquet"] = pq.read_table(target).to_pandas()
            frames["duckdb parquet"] = duckdb.sql(f"SELECT * FROM '{target}'").df()
            assert str(pq.read_schema(target).field("human_label").type) == "string"
            assert str(pq.read_schema(target).field("decided_at").type).startswith("timestamp")

    reference = _normalised(frames["pyarrow parquet"], schema)
    assert list(reference["human_label"]) == ["3", "7", "3", "7", "3", "7"]
    for name, frame in frames.items():
        assert str(frame["decided_at"].dtype).startswith("datetime64"), name
        assert frame["human_label"].map(type).eq(str).all(), name
        pd.testing.assert_frame_equal(_normalised(frame, schema), reference, obj=name)
