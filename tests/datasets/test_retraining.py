"""Retraining: a clone of the champion's pipeline, fitted on the human labels of the demo's
real data, evaluated on the latest items and registered as a challenger whose recorded
figures anyone can recompute from the export it names."""

import hashlib
import math
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from django.contrib.auth import get_user_model
from django.db import DatabaseError
from django.utils import timezone

from deployments.ml.scoring import features_frame
from deployments.models import ModelVersion, ModelVersionEvent
from deployments.services.estimators import estimator_for
from reviewapp.core.errors import InvalidInput, NotFound
from reviewapp.core.models import Event, Job
from reviewapp.core.roles import Role
from reviewapp.datasets.models import Export, TrainingRun
from reviewapp.datasets.services import retraining
from reviewapp.datasets.services.exports import export_storage
from reviewapp.datasets.services.retraining import training_run_create, training_run_execute
from reviewapp.demo import datasets
from reviewapp.demo.seed import use_case_seed, users_seed
from reviewapp.reviews.models import Item
from tests.factories import constant_classifier_bytes, make_use_case, make_user, register_model

pytestmark = pytest.mark.django_db


def seeded(dataset, *, days: int = 3, per_day: int = 40):
    """The demo's seeding on a few days of one data set: real services, real reviews."""
    users_seed(password="pass-for-tests-1")
    User = get_user_model()
    roles = {
        "manager": Role.MANAGER,
        "mlengineer": Role.ML_ENGINEER,
        "reviewer1": Role.REVIEWER,
        "reviewer2": Role.REVIEWER,
    }
    members = [(User.objects.get(username=name), role) for name, role in roles.items()]
    use_case = use_case_seed(
        dataset,
        actor=members[0][0],
        members=members,
        days=days,
        per_day=per_day,
        seed=3,
        start=timezone.now() - timedelta(days=days),
        log=lambda *_: None,
    )
    return use_case, User.objects.get(username="mlengineer")


def retrain(use_case, actor, **kwargs) -> TrainingRun:
    run = training_run_create(use_case=use_case, actor=actor, **kwargs)
    run = training_run_execute(run_id=run.pk)
    assert run.state == TrainingRun.State.DONE, run.error
    return run


def recompute(run: TrainingRun):
    """The held-out split and both models' answers, rebuilt from the export file alone."""
    use_case = run.use_case
    with export_storage().open(run.export.file_name, "rb") as handle:
        data = handle.read()
    assert hashlib.sha256(data).hexdigest() == run.metrics["dataset"]["sha256"]
    frame = pd.read_parquet(pd.io.common.BytesIO(data))
    frame = frame.sort_values(["decided_at", "external_id"], kind="stable")
    held = math.ceil(len(frame) * run.holdout_fraction)
    test = frame.iloc[len(frame) - held :]
    names = [f["name"] for f in use_case.features if not f.get("pii")]
    rows = test[names].to_dict(orient="records")
    features = features_frame(rows, use_case.features)
    challenger = estimator_for(run.model_version).predict(features)
    champion = estimator_for(ModelVersion.objects.get(use_case=use_case, role="champion"))
    return frame, test, challenger, champion.predict(features)


def test_retraining_registers_a_challenger_whose_figures_recompute():
    use_case, engineer = seeded(datasets.breast_cancer())
    run = retrain(use_case, engineer)

    new = run.model_version
    assert (new.role, new.source) == ("challenger", "retrained")
    assert new.metrics == run.metrics
    assert ModelVersionEvent.objects.filter(model_version=new, action="challenge").exists()
    export = run.export
    assert (export.scope, export.format, export.pii) == ("labelled", "parquet", "omit")
    assert (
        export.row_count == Item.objects.filter(use_case=use_case, decision_source="human").count()
    )
    assert str(export.pk) in new.notes and export.sha256 in new.notes

    frame, test, challenger, champion = recompute(run)
    truth = test["human_label"].astype(str).to_numpy()
    assert run.metrics["holdout"]["rows"] == len(test)
    assert run.metrics["train"]["rows"] == len(frame) - len(test)
    assert run.metrics["challenger"]["accuracy"] == pytest.approx(
        float(np.mean(np.asarray(challenger, dtype=str) == truth))
    )
    assert run.metrics["champion"]["accuracy"] == pytest.approx(
        float(np.mean(np.asarray(champion, dtype=str) == truth))
    )
    assert run.metrics["champion"]["version"] == "v1"
    # the held-out items are the latest by decision time
    assert test["decided_at"].min() >= frame.iloc[: len(frame) - len(test)]["decided_at"].max()

    # the recipe is the champion's pipeline, fitted afresh: the same steps and settings
    champion_model = estimator_for(ModelVersion.objects.get(use_case=use_case, version="v1"))
    assert type(estimator_for(new)) is type(champion_model)
    assert estimator_for(new).get_params().keys() == champion_model.get_params().keys()

    job = Job.objects.get(pk=run.job_id)
    assert (job.kind, job.state, job.done, job.total) == ("retrain", "done", 100, 100)
    assert job.result["model_version"] == new.version


def test_retraining_a_regression_model_records_errors_that_recompute():
    use_case, engineer = seeded(datasets.diabetes(), per_day=40)
    run = retrain(use_case, engineer, holdout_fraction=0.3, version="diabetes-r1")
    assert run.model_version.version == "diabetes-r1"
    _, test, challenger, champion = recompute(run)
    truth = test["human_value"].to_numpy(dtype=float)
    for name, predicted in (("challenger", challenger), ("champion", champion)):
        errors = np.abs(np.asarray(predicted, dtype=float) - truth)
        assert run.metrics[name]["mae"] == pytest.approx(float(errors.mean()))
        assert run.metrics[name]["rmse"] == pytest.approx(float(np.sqrt((errors**2).mean())))
        assert run.metrics[name]["within_tolerance"] == pytest.approx(
            float((errors <= use_case.tolerance).mean())
        )


def test_retraining_is_refused_without_enough_labels_or_a_recipe():
    engineer = make_user(Role.ML_ENGINEER)
    use_case = make_use_case(members=[engineer])
    with pytest.raises(InvalidInput) as refused:
        training_run_create(use_case=use_case, actor=engineer, holdout_fraction=0.9)
    assert set(refused.value.detail) == {"base_version", "holdout_fraction", "items"}
    register_model(use_case, constant_classifier_bytes())
    with pytest.raises(NotFound):
        training_run_create(use_case=use_case, actor=engineer, base_version="nope")
    with pytest.raises(InvalidInput) as refused:
        training_run_create(use_case=use_case, actor=engineer, version="v1")
    assert "already exists" in refused.value.detail["version"][0]
    external = make_use_case(members=[engineer])
    external.prediction_source = "external"
    external.save()
    with pytest.raises(InvalidInput) as refused:
        training_run_create(use_case=external, actor=engineer)
    assert "use_case" in refused.value.detail
    assert not TrainingRun.objects.exists()


def test_a_run_that_cannot_learn_fails_with_its_reason(settings):
    from tests.datasets.conftest import build_world

    settings.RETRAIN_MIN_ITEMS = 5
    world = build_world()
    # every human answer the same: nothing to learn
    Item.objects.filter(use_case=world.use_case).update(decision_label="travel")
    run = training_run_create(use_case=world.use_case, actor=world.analyst)
    run = training_run_execute(run_id=run.pk)
    assert run.state == TrainingRun.State.FAILED
    assert "single label" in run.error
    job = Job.objects.get(pk=run.job_id)
    assert job.state == "failed" and "single label" in job.error
    assert not ModelVersion.objects.filter(source="retrained").exists()
    assert Export.objects.get(pk=run.export_id).state == Export.State.READY


def test_a_failed_run_records_retraining_finished_with_its_reason(settings):
    from tests.datasets.conftest import build_world

    settings.RETRAIN_MIN_ITEMS = 5
    world = build_world()
    Item.objects.filter(use_case=world.use_case).update(decision_label="travel")
    run = training_run_create(use_case=world.use_case, actor=world.analyst)
    run = training_run_execute(run_id=run.pk)
    assert run.state == TrainingRun.State.FAILED
    event = Event.objects.get(type="retraining.finished")
    assert event.use_case_id == world.use_case.pk
    assert event.data["training_run"] == str(run.pk)
    assert event.data["status"] == "failed"
    assert "single label" in event.data["error"] and len(event.data["error"]) <= 500
    assert event.data["model_version"] is None


def test_a_finished_run_records_retraining_finished_with_its_model(settings):
    from tests.datasets.conftest import build_world

    settings.RETRAIN_MIN_ITEMS = 5
    world = build_world(items_per_phase=10)
    run = retrain(world.use_case, world.analyst)
    event = Event.objects.get(type="retraining.finished")
    assert event.use_case_id == world.use_case.pk
    assert event.data == {
        "training_run": str(run.pk),
        "status": "done",
        "model_version": run.model_version.version,
        "role": "challenger",
        "challenger": run.metrics["challenger"],
        "champion": run.metrics["champion"],
        "error": "",
    }


def test_retraining_finished_is_written_with_the_registered_model_or_not_at_all(
    settings, monkeypatch
):
    from tests.datasets.conftest import build_world

    settings.RETRAIN_MIN_ITEMS = 5
    world = build_world(items_per_phase=10)
    record = retraining.event_record

    def fail_after_the_done_event(**kwargs):
        record(**kwargs)
        if kwargs["data"]["status"] == "done":
            raise DatabaseError("the connection dropped before the commit")

    monkeypatch.setattr(retraining, "event_record", fail_after_the_done_event)
    run = training_run_create(use_case=world.use_case, actor=world.analyst)
    run = training_run_execute(run_id=run.pk)
    # The model, the run's success and its event went back together; the failure is told.
    assert run.state == TrainingRun.State.FAILED and run.model_version_id is None
    assert not ModelVersion.objects.filter(source="retrained").exists()
    statuses = [e.data["status"] for e in Event.objects.filter(type="retraining.finished")]
    assert statuses == ["failed"]


def test_executing_a_finished_run_again_changes_nothing(settings):
    from tests.datasets.conftest import build_world

    settings.RETRAIN_MIN_ITEMS = 5
    world = build_world(items_per_phase=10)
    run = retrain(world.use_case, world.analyst)
    again = training_run_execute(run_id=run.pk)
    assert again.model_version_id == run.model_version_id
    assert ModelVersion.objects.filter(source="retrained").count() == 1
