"""The datasets API: exports (start, follow, list, download, delete), retraining (start,
read), the matrix and an item's history; documented in the schema."""

import hashlib
import io

import pandas as pd
import pytest

from reviewapp.datasets.models import Export, TrainingRun
from reviewapp.reviews.models import Disagreement
from tests.datasets.conftest import PII_MARK, build_world

pytestmark = pytest.mark.django_db


def base(world) -> str:
    return f"/api/v1/use-cases/{world.use_case.slug}"


def start_export(api, world, user=None, **body):
    return api(user or world.analyst).post(f"{base(world)}/exports/", body, format="json")


def test_an_export_started_by_the_api_is_followed_and_downloaded(
    api, world, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        started = start_export(
            api, world, format="csv", filters={"kind": "shadow", "confidence_max": 0.9}
        )
    assert started.status_code == 202, started.content
    body = started.json()
    assert body["state"] == "queued" and body["job"] and body["download"] is None
    job = api(world.analyst).get(f"/api/v1/jobs/{body['job']}/").json()
    assert job["state"] == "done" and job["result"]["export"] == body["id"]

    detail = api(world.analyst).get(f"{base(world)}/exports/{body['id']}/").json()
    assert detail["state"] == "ready"
    assert detail["filters"] == {"kind": "shadow", "confidence_max": 0.9}
    assert detail["manifest"]["row_count"] == Disagreement.objects.filter(kind="shadow").count()
    download = api(world.analyst).get(detail["download"])
    data = b"".join(download.streaming_content)
    assert download["X-Content-SHA256"] == hashlib.sha256(data).hexdigest() == detail["sha256"]
    assert len(pd.read_csv(io.BytesIO(data))) == detail["row_count"]
    assert PII_MARK.encode() not in data

    listing = api(world.analyst).get(f"{base(world)}/exports/").json()
    assert [e["id"] for e in listing] == [body["id"]]


def test_the_export_list_costs_the_same_queries_for_any_number_of_exports(
    api, world, django_assert_num_queries
):
    from reviewapp.datasets.services.exports import export_create

    client = api(world.analyst)
    client.get(f"{base(world)}/exports/")  # the token is looked up once
    export_create(use_case=world.use_case, actor=world.analyst, fmt="csv")
    with django_assert_num_queries(3):  # token with user and roles, use case, exports
        client.get(f"{base(world)}/exports/")
    for fmt in ("jsonl", "parquet"):
        export_create(use_case=world.use_case, actor=world.pii_analyst, fmt=fmt)
    with django_assert_num_queries(3):
        assert len(client.get(f"{base(world)}/exports/").json()) == 3


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"format": "xml"}, "format"),
        ({"scope": "everything"}, "scope"),
        ({"pii": "include"}, "pii"),
        ({"filters": {"colour": "red"}}, "filters"),
        ({"filters": {"since": "yesterday"}}, "filters"),
        ({"filters": {"model_label": "banana"}}, "filters"),
        ({"compress": True}, "compress"),
    ],
)
def test_bad_export_requests_are_named(api, world, body, field):
    response = start_export(api, world, **body)
    assert response.status_code == 400 and field in response.json(), response.content
    assert not Export.objects.exists()


def test_an_export_holding_pii_downloads_only_for_readers_with_the_right(
    api, world, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        body = start_export(api, world, world.pii_analyst, format="jsonl", pii="include").json()
    url = f"{base(world)}/exports/{body['id']}/download/"
    assert api(world.analyst).get(url).status_code == 403
    assert PII_MARK.encode() in b"".join(api(world.pii_analyst).get(url).streaming_content)


def test_unknown_and_unready_exports_are_404(api, world):
    from reviewapp.datasets.services.exports import export_create

    assert api(world.analyst).get(f"{base(world)}/exports/not-a-uuid/").status_code == 404
    pending = export_create(use_case=world.use_case, actor=world.analyst, fmt="csv")
    response = api(world.analyst).get(f"{base(world)}/exports/{pending.pk}/download/")
    assert response.status_code == 404 and "queued" in response.json()["detail"]


def test_deleting_an_export(api, world, django_capture_on_commit_callbacks, caplog):
    with django_capture_on_commit_callbacks(execute=True):
        body = start_export(api, world, format="csv").json()
        other = start_export(api, world, format="csv").json()
    url = f"{base(world)}/exports/{body['id']}/"
    assert api(world.reviewer).delete(url).status_code == 403
    assert api(world.analyst).delete(url).status_code == 204  # a reason is optional here
    assert api(world.analyst).get(url).status_code == 404
    caplog.set_level("INFO", logger="reviewapp.events")
    deleted = api(world.analyst).delete(
        f"{base(world)}/exports/{other['id']}/", {"reason": "superseded"}, format="json"
    )
    assert deleted.status_code == 204
    logged = [r.event_fields for r in caplog.records if getattr(r, "event_fields", None)]
    assert any(f["event"] == "export_deleted" and f["reason"] == "superseded" for f in logged)


def test_retraining_through_the_api(api, settings, django_capture_on_commit_callbacks):
    settings.RETRAIN_MIN_ITEMS = 5
    world = build_world(items_per_phase=10)
    with django_capture_on_commit_callbacks(execute=True):
        started = api(world.analyst).post(
            f"{base(world)}/retrainings/",
            {"holdout_fraction": 0.25, "version": "r-api"},
            format="json",
        )
    assert started.status_code == 202, started.content
    run = api(world.analyst).get(f"{base(world)}/retrainings/{started.json()['id']}/").json()
    assert run["state"] == "done"
    assert run["model_version"] == {"version": "r-api", "role": "challenger"}
    assert run["base_version"] == "v1" and run["holdout_fraction"] == 0.25
    assert run["metrics"]["dataset"]["export"] == run["export"]
    assert set(run["metrics"]["challenger"]) == {"rows", "accuracy", "macro_f1"}
    assert run["progress"] == {"state": "done", "done": 100, "total": 100}
    models = api(world.analyst).get(f"{base(world)}/models/").json()
    assert {"version": "r-api", "source": "retrained"}.items() <= models[0].items()
    listing = api(world.analyst).get(f"{base(world)}/retrainings/").json()
    assert [r["id"] for r in listing] == [run["id"]]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"holdout_fraction": 0.9}, "holdout_fraction"),
        ({"holdout_fraction": "lots"}, "holdout_fraction"),
        ({"version": "v1"}, "version"),
        ({"epochs": 3}, "epochs"),
    ],
)
def test_bad_retraining_requests_are_named(api, world, settings, body, field):
    settings.RETRAIN_MIN_ITEMS = 5
    response = api(world.analyst).post(f"{base(world)}/retrainings/", body, format="json")
    assert response.status_code == 400 and field in response.json(), response.content
    assert not TrainingRun.objects.exists()


def test_the_matrix_api_counts_label_pairs_under_the_filters(api, world):
    response = api(world.analyst).get(f"{base(world)}/disagreements/matrix/?kind=override")
    body = response.json()
    assert body["binned"] is False and body["model_axis"] == world.use_case.labels
    for i, model_label in enumerate(body["model_axis"]):
        for j, human_label in enumerate(body["human_axis"]):
            want = Disagreement.objects.filter(
                kind="override", model_label=model_label, human_label=human_label
            ).count()
            assert body["counts"][i][j] == want
            if want:
                assert body["filters"][i][j] == {
                    "model_label": model_label,
                    "human_label": human_label,
                }
    bad = api(world.analyst).get(f"{base(world)}/disagreements/matrix/?confidence_min=x")
    assert bad.status_code == 400 and "confidence_min" in bad.json()


def test_an_items_history_through_the_api(api, world):
    body = api(world.analyst).get(f"{base(world)}/items/inv-4/history/").json()
    assert body["features"]["vendor"] is None and body["pii_masked"] == ["vendor"]
    assert {p["model_version"] for p in body["predictions"]} == {"v1", "v2"}
    assert [p["routed"] for p in body["predictions"]].count(True) == 1
    assert body["decisions"][0]["comment"] == "looked twice at #4"
    assert {d["kind"] for d in body["disagreements"]} <= {"override", "challenger", "shadow"}
    shown = api(world.pii_analyst).get(f"{base(world)}/items/inv-4/history/").json()
    assert shown["features"]["vendor"] == f"{PII_MARK} 0004"
    missing = api(world.analyst).get(f"{base(world)}/items/nope/history/")
    assert missing.status_code == 404


def test_the_schema_documents_the_new_endpoints(client):
    text = client.get("/api/schema/").content.decode()
    for path in (
        "/api/v1/use-cases/{slug}/exports/",
        "/api/v1/use-cases/{slug}/exports/{export_id}/",
        "/api/v1/use-cases/{slug}/exports/{export_id}/download/",
        "/api/v1/use-cases/{slug}/retrainings/",
        "/api/v1/use-cases/{slug}/retrainings/{run_id}/",
        "/api/v1/use-cases/{slug}/disagreements/matrix/",
        "/api/v1/use-cases/{slug}/items/{external_id}/history/",
        "/api/v1/use-cases/{slug}/disagreements/",
    ):
        assert path in text, path
