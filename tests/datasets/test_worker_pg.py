"""A real Celery worker on Redis writes an export and retrains (PostgreSQL, committed data)."""

import hashlib
import time

import pytest

from reviewapp.datasets.models import Export, TrainingRun
from reviewapp.datasets.services.exports import export_storage
from tests.datasets.conftest import build_world
from tests.reviews.test_worker_pg import worker  # noqa: F401 (the fixture)

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.worker,
    pytest.mark.django_db(transaction=True),
    pytest.mark.xdist_group("celery-worker"),
]


@pytest.fixture
def shared_exports(monkeypatch, settings):
    """The worker writes export files where this test reads them."""
    monkeypatch.setenv("EXPORT_ROOT", str(settings.STORAGES["exports"]["OPTIONS"]["location"]))
    monkeypatch.setenv("RETRAIN_MIN_ITEMS", "5")
    settings.RETRAIN_MIN_ITEMS = 5


def wait_for(read, done, *, seconds: float = 90):
    deadline = time.monotonic() + seconds
    while True:
        value = read()
        if done(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.3)


def test_a_worker_writes_the_export_and_retrains(shared_exports, worker, api):  # noqa: F811
    world = build_world(items_per_phase=10)
    base = f"/api/v1/use-cases/{world.use_case.slug}"
    started = api(world.analyst).post(
        f"{base}/exports/", {"format": "parquet", "pii": "hash"}, format="json"
    )
    assert started.status_code == 202
    export = wait_for(
        lambda: Export.objects.get(pk=started.json()["id"]),
        lambda e: e.state in ("ready", "failed"),
    )
    assert export.state == "ready", export.error
    with export_storage().open(export.file_name, "rb") as handle:
        assert hashlib.sha256(handle.read()).hexdigest() == export.sha256

    run_id = api(world.analyst).post(f"{base}/retrainings/", {}, format="json").json()["id"]
    run = wait_for(
        lambda: TrainingRun.objects.get(pk=run_id), lambda r: r.state in ("done", "failed")
    )
    assert run.state == "done", run.error
    assert run.model_version.role == "challenger"
    body = api(world.analyst).get(f"{base}/retrainings/{run_id}/").json()
    assert body["progress"]["state"] == "done" and body["metrics"]["challenger"]["rows"] > 0
