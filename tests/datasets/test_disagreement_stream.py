"""The disagreements stream (API): three formats that read back the same, PII left out."""

import io
import json

import pandas as pd
import pyarrow.parquet as pq
import pytest

from reviewapp.core.roles import Role
from reviewapp.reviews.models import Disagreement
from tests.factories import (
    constant_classifier_bytes,
    invoice,
    make_use_case,
    make_user,
    register_model,
)
from tests.reviews.disagreement_world import disagreement_world_build, review_all

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(api, django_capture_on_commit_callbacks):
    return disagreement_world_build(api, django_capture_on_commit_callbacks)


def export(api, user, use_case, fmt, **params):
    query = "&".join(f"{k}={v}" for k, v in {"format": fmt, **params}.items())
    response = api(user).get(f"/api/v1/use-cases/{use_case.slug}/disagreements/?{query}")
    assert response.status_code == 200, response.content
    return b"".join(response.streaming_content)


def expected_rows(use_case):
    rows = (
        Disagreement.objects.filter(use_case=use_case)
        .select_related("item", "model_version", "reviewer")
        .order_by("decided_at", "id")
    )
    return [
        {
            "external_id": d.item.external_id,
            "amount": d.item.features["amount"],
            "kind_feature": d.item.features["kind"],
            "model_version": d.model_version.version,
            "model_label": d.model_label,
            "confidence": d.confidence,
            "human_label": d.human_label,
            "kind": d.kind,
            "reviewer": d.reviewer.username,
        }
        for d in rows
    ]


def _compare(frame: pd.DataFrame, use_case):
    expected = expected_rows(use_case)
    assert len(frame) == len(expected) > 0
    for row, want in zip(frame.to_dict(orient="records"), expected, strict=True):
        assert row["external_id"] == want["external_id"]
        assert row["amount"] == pytest.approx(want["amount"])
        assert row["kind"] == want["kind"]
        assert row["feature_kind"] == want["kind_feature"]
        assert row["model_label"] == want["model_label"]
        assert row["human_label"] == want["human_label"]
        assert row["confidence"] == pytest.approx(want["confidence"])
        assert row["reviewer"] == want["reviewer"]
    assert "vendor" not in frame.columns


def test_csv_export_round_trips_without_pii(api, world):
    use_case, analyst, _ = world
    body = export(api, analyst, use_case, "csv")
    _compare(pd.read_csv(io.BytesIO(body)), use_case)
    assert b"Vendor" not in body


def test_jsonl_export_round_trips_without_pii(api, world):
    use_case, analyst, _ = world
    body = export(api, analyst, use_case, "jsonl")
    frame = pd.DataFrame([json.loads(line) for line in body.splitlines()])
    _compare(frame, use_case)
    assert b"Vendor" not in body


def test_parquet_export_round_trips_without_pii(api, world):
    use_case, analyst, _ = world
    body = export(api, analyst, use_case, "parquet")
    table = pq.read_table(io.BytesIO(body))
    _compare(table.to_pandas(), use_case)
    assert "Vendor" not in str(table.to_pylist())


def test_members_with_the_pii_right_get_pii_columns(api, world):
    use_case, analyst, _ = world
    from deployments.models import UseCaseMembership

    UseCaseMembership.objects.filter(use_case=use_case, user=analyst).update(can_view_pii=True)
    frame = pd.read_csv(io.BytesIO(export(api, analyst, use_case, "csv")))
    assert frame["vendor"].str.startswith("Vendor").all()


def test_export_filters(api, world):
    use_case, analyst, _ = world
    assert export(api, analyst, use_case, "csv", kind="challenger").count(b"\n") == 1  # header
    assert export(api, analyst, use_case, "csv", kind="shadow").count(b"\n") == 5
    assert export(api, analyst, use_case, "csv", model_version="v2").count(b"\n") == 1
    future = "2999-01-01"
    assert export(api, analyst, use_case, "jsonl", since=future) == b""


@pytest.mark.parametrize(
    ("param", "value"), [("format", "xml"), ("since", "yesterday"), ("kind", "nope")]
)
def test_bad_export_parameters_are_named(api, world, param, value):
    use_case, analyst, _ = world
    response = api(analyst).get(f"/api/v1/use-cases/{use_case.slug}/disagreements/?{param}={value}")
    assert response.status_code == 400 and param in response.json()


def test_reviewers_cannot_export(api, world):
    use_case, _, reviewer = world
    response = api(reviewer).get(f"/api/v1/use-cases/{use_case.slug}/disagreements/")
    assert response.status_code == 403


@pytest.mark.django_db(transaction=True)
def test_the_stream_reads_committed_rows_in_every_format(api, django_capture_on_commit_callbacks):
    """Outside a transaction PostgreSQL streams through COPY on a connection of its own."""
    caller = make_user(Role.INTEGRATION)
    reviewer = make_user(Role.REVIEWER)
    analyst = make_user(Role.ML_ENGINEER)
    use_case = make_use_case(members=[caller, reviewer, analyst], level="shadow")
    register_model(use_case, constant_classifier_bytes("office", 0.8))
    for n in range(5):
        api(caller).post(
            f"/api/v1/use-cases/{use_case.slug}/items/", invoice(n, amount=500.0), format="json"
        )
    review_all(api, reviewer, use_case, "travel")
    _compare(pd.read_csv(io.BytesIO(export(api, analyst, use_case, "csv"))), use_case)
    lines = export(api, analyst, use_case, "jsonl").splitlines()
    _compare(pd.DataFrame([json.loads(line) for line in lines]), use_case)
    table = pq.read_table(io.BytesIO(export(api, analyst, use_case, "parquet")))
    _compare(table.to_pandas(), use_case)
    assert str(table.schema.field("decided_at").type) == "timestamp[us, tz=UTC]"
