"""Dataset exports: what is in the file is what is in the database, PII stays out unless the
reader may see it, and the manifest names the file exactly."""

import hashlib
import hmac
import io
import json

import pandas as pd
import pyarrow.parquet as pq
import pytest
from django.conf import settings
from django.db import DatabaseError

from reviewapp.core.errors import Conflict, InvalidInput
from reviewapp.core.models import Event, Job
from reviewapp.datasets import export_tables
from reviewapp.datasets.export_tables import RowFilters
from reviewapp.datasets.models import Export
from reviewapp.datasets.services import exports
from reviewapp.datasets.services.exports import (
    MANIFEST_SUFFIX,
    export_create,
    export_delete,
    export_storage,
    export_write,
)
from reviewapp.reviews.models import Disagreement, Item
from tests.datasets.conftest import PII_MARK, build_world
from tests.factories import make_use_case

pytestmark = pytest.mark.django_db
FORMATS = ["csv", "jsonl", "parquet"]


def run_export(world, *, fmt, user=None, **kwargs) -> Export:
    export = export_create(use_case=world.use_case, actor=user or world.analyst, fmt=fmt, **kwargs)
    export = export_write(export_id=export.pk)
    assert export.state == Export.State.READY, export.error
    return export


def file_bytes(export: Export) -> bytes:
    with export_storage().open(export.file_name, "rb") as handle:
        return handle.read()


def read_back(export: Export) -> pd.DataFrame:
    data = file_bytes(export)
    if export.format == "csv":
        return pd.read_csv(io.BytesIO(data), keep_default_na=False, na_values=[""])
    if export.format == "jsonl":
        return pd.DataFrame([json.loads(line) for line in data.decode().splitlines()])
    return pq.read_table(io.BytesIO(data)).to_pandas()


def _close(a, b) -> bool:
    if a is None or (isinstance(a, float) and pd.isna(a)):
        return b is None or (isinstance(b, float) and pd.isna(b))
    if isinstance(b, float) or isinstance(a, float):
        return b is not None and abs(float(a) - float(b)) < 1e-9
    return a == b


def _as_time(value) -> pd.Timestamp:
    return pd.Timestamp(value).tz_convert("UTC")


def assert_rows_equal(frame: pd.DataFrame, expected: list[dict]) -> None:
    assert len(frame) == len(expected)
    for got, want in zip(frame.to_dict(orient="records"), expected, strict=True):
        for column, value in want.items():
            if column == "decided_at":
                assert _as_time(got[column]) == _as_time(value), column
            else:
                assert _close(got[column], value), (column, got[column], value)


def disagreement_rows_in_db(use_case) -> list[dict]:
    rows = (
        Disagreement.objects.filter(use_case=use_case)
        .select_related("item", "model_version", "reviewer")
        .order_by("decided_at", "id")
    )
    return [
        {
            "external_id": d.item.external_id,
            "amount": d.item.features["amount"],
            "feature_kind": d.item.features["kind"],
            "model_version": d.model_version.version,
            "model_label": d.model_label,
            "confidence": d.confidence,
            "human_label": d.human_label,
            "kind": d.kind,
            "reviewer": d.reviewer.username,
            "decided_at": d.decided_at,
        }
        for d in rows
    ]


def labelled_rows_in_db(use_case) -> list[dict]:
    rows = []
    for item in (
        Item.objects.filter(use_case=use_case, decision_source="human")
        .select_related("prediction__model_version")
        .order_by("id")
    ):
        routing = Disagreement.objects.filter(item=item, prediction_id=item.prediction_id).first()
        first = item.decisions.order_by("created_at", "id").select_related("reviewer").first()
        prediction = item.prediction
        rows.append(
            {
                "external_id": item.external_id,
                "amount": item.features["amount"],
                "model_version": prediction.model_version.version if prediction else None,
                "model_label": prediction.label if prediction else None,
                "confidence": prediction.confidence if prediction else None,
                "human_label": item.decision_label,
                "kind": routing.kind if routing else None,
                "reviewer": first.reviewer.username,
                "decided_at": item.decided_at,
                "disagreement": routing is not None,
            }
        )
    return rows


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_disagreement_export_reads_back_as_the_database_rows(world, fmt):
    export = run_export(world, fmt=fmt)
    frame = read_back(export)
    assert list(frame.columns) == [
        "external_id",
        "amount",
        "feature_kind",
        "model_version",
        "model_label",
        "confidence",
        "human_label",
        "kind",
        "reviewer",
        "decided_at",
    ]
    assert_rows_equal(frame, disagreement_rows_in_db(world.use_case))
    assert export.row_count == len(frame) == Disagreement.objects.count()


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_labelled_export_has_every_human_answer_and_the_disagreement_flag(world, fmt):
    export = run_export(world, fmt=fmt, scope="labelled")
    frame = read_back(export)
    expected = labelled_rows_in_db(world.use_case)
    assert_rows_equal(frame, expected)
    flags = [bool(x) for x in frame["disagreement"]]
    assert flags == [row["disagreement"] for row in expected]
    assert any(flags) and not all(flags)


def test_parquet_columns_are_typed(world):
    table = pq.read_table(io.BytesIO(file_bytes(run_export(world, fmt="parquet"))))
    types = {field.name: str(field.type) for field in table.schema}
    assert types["amount"] == "double"
    assert types["confidence"] == "double"
    assert types["decided_at"] == "timestamp[us, tz=UTC]"
    assert types["external_id"] == "string"


def _pii_values(world) -> list[str]:
    values = [item["vendor"] for item in Item.objects.values_list("features", flat=True)]
    assert all(v.startswith(PII_MARK) for v in values)
    return values


def _everything_in(export: Export) -> str:
    """All the file says: its bytes, and for Parquet (compressed) every decoded value and
    the schema's metadata too."""
    data = file_bytes(export)
    if export.format != "parquet":
        return data.decode()
    table = pq.read_table(io.BytesIO(data))
    metadata = table.schema.metadata or {}
    return repr(table.to_pylist()) + repr(metadata) + repr(data)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("scope", ["disagreements", "labelled"])
@pytest.mark.parametrize("pii", ["omit", "hash"])
def test_no_pii_value_reaches_the_file_of_a_reader_without_the_right(world, fmt, scope, pii):
    export = run_export(world, fmt=fmt, scope=scope, pii=pii)
    content = _everything_in(export)
    assert PII_MARK not in content
    for value in _pii_values(world):
        assert value not in content
    assert "vendor" not in read_back(export).columns


def test_the_right_to_see_pii_is_needed_to_include_it(world):
    with pytest.raises(InvalidInput) as refused:
        export_create(use_case=world.use_case, actor=world.analyst, fmt="csv", pii="include")
    assert "pii" in refused.value.detail
    with pytest.raises(InvalidInput):
        export_create(use_case=world.use_case, actor=None, fmt="csv", pii="include")
    export = run_export(world, fmt="csv", user=world.pii_analyst, pii="include")
    frame = read_back(export)
    assert frame["vendor"].str.startswith(PII_MARK).all()


def test_hashed_pii_is_an_hmac_that_joins_across_exports_and_not_across_use_cases(world):
    first = read_back(run_export(world, fmt="csv", pii="hash"))
    second = read_back(run_export(world, fmt="parquet", scope="labelled", pii="hash"))
    key = hmac.new(
        settings.EXPORT_HASH_KEY.encode(),
        f"export-pii:{world.use_case.slug}".encode(),
        hashlib.sha256,
    ).digest()
    vendors = {
        external_id: features["vendor"]
        for external_id, features in Item.objects.values_list("external_id", "features")
    }
    for frame in (first, second):
        for external_id, hashed in zip(frame["external_id"], frame["vendor_hmac"], strict=True):
            want = hmac.new(key, vendors[external_id].encode(), hashlib.sha256).hexdigest()
            assert hashed == want
    joined = first.merge(second, on="vendor_hmac", suffixes=("", "_labelled"))
    assert (joined["external_id"] == joined["external_id_labelled"]).all()

    other = make_use_case(slug="other-invoices", members=[world.analyst])
    from reviewapp.datasets.pii import use_case_key
    from reviewapp.datasets.sql import hmac_hex

    value = vendors["inv-0"]
    assert hmac_hex(use_case_key(slug=other.slug), value) != hmac_hex(
        use_case_key(slug=world.use_case.slug), value
    )


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_manifest_names_the_file_exactly(world, fmt):
    export = run_export(world, fmt=fmt, pii="hash")
    data = file_bytes(export)
    assert hashlib.sha256(data).hexdigest() == export.sha256 == export.manifest["file"]["sha256"]
    assert len(data) == export.size_bytes == export.manifest["file"]["size"]
    with export_storage().open(export.file_name + MANIFEST_SUFFIX, "rb") as handle:
        assert json.loads(handle.read()) == export.manifest
    manifest = export.manifest
    assert manifest["row_count"] == Disagreement.objects.count()
    assert manifest["created_by"] == world.analyst.username
    assert manifest["format"] == fmt and manifest["scope"] == "disagreements"
    assert manifest["pii"]["mode"] == "hash" and manifest["pii"]["features"] == ["vendor"]
    assert len(manifest["pii"]["key_id"]) == 16
    assert [c["name"] for c in manifest["schema"]] == list(read_back(export).columns)
    counts = {m["version"]: m["rows"] for m in manifest["model_versions"]}
    assert counts == {
        v: Disagreement.objects.filter(model_version__version=v).count() for v in ("v1", "v2")
    }
    champion = world.use_case.model_versions.get(version="v1")
    assert manifest["model_versions"][0]["artifact_sha256"] == champion.artifact_sha256


def test_filters_choose_the_rows_and_are_recorded(world):
    filters = RowFilters(
        model_version="v1", model_label="office", human_label="travel", confidence_min=0.5
    )
    export = run_export(world, fmt="jsonl", filters=filters)
    frame = read_back(export)
    want = Disagreement.objects.filter(
        model_version__version="v1", model_label="office", human_label="travel"
    )
    assert len(frame) == want.count() > 0
    assert set(frame["model_label"]) == {"office"} and set(frame["human_label"]) == {"travel"}
    assert export.manifest["filters"] == {
        "model_version": "v1",
        "model_label": "office",
        "human_label": "travel",
        "confidence_min": 0.5,
    }


def test_an_export_with_no_rows_is_still_a_valid_file(world):
    filters = RowFilters(kind="audit", model_version="v2")
    for fmt in FORMATS:
        export = run_export(world, fmt=fmt, filters=filters)
        assert export.row_count == 0
        assert len(read_back(export)) == 0


def test_small_batches_lose_and_repeat_nothing_even_with_equal_times(world, monkeypatch):
    # a shadow and a challenger disagreement on one decision share their decided_at
    times = list(Disagreement.objects.values_list("decided_at", flat=True))
    assert len(times) > len(set(times))
    monkeypatch.setattr(export_tables, "_batch_rows", lambda table: 2)
    seen = []
    export = export_create(use_case=world.use_case, actor=world.analyst, fmt="csv")
    export = export_write(export_id=export.pk, on_progress=lambda done, total: seen.append(done))
    assert_rows_equal(read_back(export), disagreement_rows_in_db(world.use_case))
    assert seen == sorted(seen) and seen[-1] == len(times)
    job = Job.objects.get(pk=export.job_id)
    assert (job.state, job.done, job.total) == ("done", len(times) + 1, len(times) + 1)
    assert job.result["sha256"] == export.sha256


def test_writing_twice_changes_nothing(world):
    export = run_export(world, fmt="csv")
    again = export_write(export_id=export.pk)
    assert (again.sha256, again.file_name) == (export.sha256, export.file_name)


def test_a_failed_write_is_recorded_with_its_reason_and_leaves_no_file(world, settings, tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    settings.STORAGES = {
        **settings.STORAGES,
        "exports": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": blocker / "exports"},
        },
    }
    export = export_create(use_case=world.use_case, actor=world.analyst, fmt="csv")
    export = export_write(export_id=export.pk)
    assert export.state == Export.State.FAILED and export.error
    job = Job.objects.get(pk=export.job_id)
    assert job.state == "failed" and job.error == export.error
    assert export.file_name == ""


def test_a_written_export_records_export_ready_with_its_manifest(world):
    export = run_export(world, fmt="csv")
    event = Event.objects.get(type="export.ready")
    assert event.use_case_id == world.use_case.pk
    assert event.data == {"export": str(export.pk), "manifest": export.manifest}


def test_export_ready_is_written_with_the_ready_export_or_not_at_all(world, monkeypatch):
    record = exports.event_record

    def record_then_fail(**kwargs):
        record(**kwargs)
        raise DatabaseError("the connection dropped before the commit")

    monkeypatch.setattr(exports, "event_record", record_then_fail)
    export = export_create(use_case=world.use_case, actor=world.analyst, fmt="csv")
    export = export_write(export_id=export.pk)
    # The event went with the rolled-back change: no event, and no ready file recorded.
    assert not Event.objects.filter(type="export.ready").exists()
    assert export.state == Export.State.FAILED
    assert (export.file_name, export.manifest, export.row_count) == ("", {}, None)


def test_bad_choices_are_named(world):
    with pytest.raises(InvalidInput) as refused:
        export_create(use_case=world.use_case, actor=world.analyst, fmt="xml", scope="all")
    assert set(refused.value.detail) == {"format", "scope"}


def test_deleting_removes_the_file_unless_a_training_run_used_it(world):
    from reviewapp.datasets.models import TrainingRun

    export = run_export(world, fmt="csv")
    name = export.file_name
    export_delete(export=export)
    assert not export_storage().exists(name)
    assert not export_storage().exists(name + MANIFEST_SUFFIX)
    assert not Export.objects.filter(pk=export.pk).exists()

    kept = run_export(world, fmt="parquet", scope="labelled")
    TrainingRun.objects.create(
        use_case=world.use_case,
        base_model_version=world.use_case.model_versions.get(version="v1"),
        holdout_fraction=0.2,
        version="r",
        export=kept,
        created_at=kept.created_at,
    )
    with pytest.raises(Conflict):
        export_delete(export=kept)
    assert export_storage().exists(kept.file_name)


def test_a_bigger_world_exports_in_many_batches(monkeypatch):
    world = build_world(items_per_phase=12)
    monkeypatch.setattr(export_tables, "_batch_rows", lambda table: 7)
    for fmt in FORMATS:
        export = run_export(world, fmt=fmt, scope="labelled")
        assert_rows_equal(read_back(export), labelled_rows_in_db(world.use_case))


MIXED = [
    {"name": "price", "type": "number", "required": False},
    {"name": "units", "type": "integer", "required": False},
    {"name": "urgent", "type": "boolean", "required": False},
    {"name": "region", "type": "category", "categories": ["north", "south"], "required": False},
    {"name": "note", "type": "string", "required": False},
]


@pytest.mark.parametrize("fmt", FORMATS)
def test_missing_values_of_every_type_export_as_missing(fmt):
    """Human-only items (no model at all) whose optional features are sometimes absent."""
    from deployments.services.use_cases import use_case_create
    from reviewapp.core.roles import Role
    from reviewapp.reviews.services.ingest import item_ingest
    from reviewapp.reviews.services.review import review_task_claim, review_task_decide
    from tests.factories import make_user

    engineer, reviewer = make_user(Role.ML_ENGINEER), make_user(Role.REVIEWER)
    use_case = use_case_create(
        actor=engineer,
        slug=f"mixed-{fmt}",
        name="Mixed",
        task_type="classification",
        labels=["yes", "no"],
        features=MIXED,
    )
    from deployments.models import UseCaseMembership

    UseCaseMembership.objects.create(use_case=use_case, user=reviewer)
    full = {"price": 2.5, "units": 3, "urgent": True, "region": "north", "note": "ok"}
    for n, features in enumerate([full, {}, {**full, "urgent": False, "price": 0}]):
        item_ingest(use_case=use_case, external_id=f"m-{n}", features=features)
    while task := review_task_claim(use_case=use_case, user=reviewer):
        review_task_decide(task=task, user=reviewer, label="yes")
    export = export_write(
        export_id=export_create(use_case=use_case, actor=engineer, fmt=fmt, scope="labelled").pk
    )
    frame = read_back(export)
    records = frame.to_dict(orient="records")
    assert [r["external_id"] for r in records] == ["m-0", "m-1", "m-2"]
    assert records[0]["price"] == 2.5 and records[0]["units"] == 3
    assert records[0]["region"] == "north" and records[0]["note"] == "ok"
    assert bool(records[0]["urgent"]) is True and bool(records[2]["urgent"]) is False
    assert records[2]["price"] == 0
    for column in ("price", "units", "urgent", "region", "note", "model_version", "confidence"):
        assert pd.isna(records[1][column]), column
    assert all(pd.isna(r["model_label"]) and r["human_label"] == "yes" for r in records)
    assert not any(bool(r["disagreement"]) for r in records)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("fmt", FORMATS)
def test_committed_rows_export_the_same_through_the_snapshot_reader(fmt):
    """Outside a transaction PostgreSQL reads on a connection of its own (COPY for CSV, a
    server-side cursor otherwise); these rows are committed so that reader sees them."""
    world = build_world()
    export = run_export(world, fmt=fmt, pii="hash")
    frame = read_back(export)
    expected = disagreement_rows_in_db(world.use_case)
    assert_rows_equal(frame, expected)
    assert PII_MARK not in _everything_in(export)
    assert export.manifest["row_count"] == len(expected)
    counts = {m["version"]: m["rows"] for m in export.manifest["model_versions"]}
    assert counts == {
        v: Disagreement.objects.filter(model_version__version=v).count() for v in ("v1", "v2")
    }
    labelled = run_export(world, fmt=fmt, scope="labelled", user=world.pii_analyst, pii="include")
    assert_rows_equal(read_back(labelled), labelled_rows_in_db(world.use_case))
    assert read_back(labelled)["vendor"].str.startswith(PII_MARK).all()
    nothing = run_export(world, fmt=fmt, filters=RowFilters(kind="audit", model_version="v2"))
    assert nothing.row_count == 0 and len(read_back(nothing)) == 0
