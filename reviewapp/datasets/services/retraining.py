"""Retraining a use case's model on its human-labelled items, into a challenger.

The recipe is the champion's own pipeline (``sklearn.base.clone``: same steps, same
hyper-parameters, unfitted), or another registered version's when asked. The data is an export
of every human-labelled item, written first, so the model names the exact file (and SHA-256) it
learnt from. The latest share of those items by decision time is held out; the new model and
the champion are scored on it, and the new model is registered as a challenger with the figures.

pandas is imported by the functions that read the training data (a retraining task's work), not
with this module: the web processes import it to start a run.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from deployments.ml.scoring import NUMERIC_TYPES
from deployments.models import ModelVersion, UseCase
from deployments.selectors import champion_get, model_version_get
from deployments.services.estimators import estimator_for
from deployments.services.model_versions import model_version_challenge, model_version_register
from reviewapp.core.errors import InvalidInput
from reviewapp.core.events import event_record
from reviewapp.core.jobs import job_claim, job_create, job_fail, job_finish, job_progress
from reviewapp.core.models import Job
from reviewapp.datasets.export_tables import (
    RowFilters,
    export_feature_columns,
    labelled_items_filtered,
)
from reviewapp.datasets.models import Export, TrainingRun
from reviewapp.datasets.services.exports import export_create, export_storage, export_write

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

HOLDOUT_DEFAULT = 0.2
HOLDOUT_RANGE = (0.05, 0.5)
# Progress units of the run's job (out of 100): the export is the first 40.
EXPORTED, LOADED, FITTED, EVALUATED = 40, 45, 80, 90


def training_run_create(
    *,
    use_case: UseCase,
    actor,
    base_version: str | None = None,
    holdout_fraction: Any = HOLDOUT_DEFAULT,
    version: str | None = None,
    now=None,
) -> TrainingRun:
    """Check that retraining can run, and record it with a job to follow it."""
    errors: dict[str, list[str]] = {}
    if use_case.prediction_source != UseCase.PredictionSource.REGISTRY:
        raise InvalidInput({"use_case": ["its models are served elsewhere; retrain them there"]})
    if base_version:
        base = model_version_get(use_case=use_case, version=base_version)
    else:
        base = champion_get(use_case=use_case)
        if base is None:
            errors["base_version"] = ["there is no champion: name a version to retrain from"]
    if base is not None and not base.artifact_sha256:
        errors["base_version"] = [f"{base.version!r} has no model file to take the recipe from"]
    low, high = HOLDOUT_RANGE
    if (
        not isinstance(holdout_fraction, int | float)
        or isinstance(holdout_fraction, bool)
        or not math.isfinite(holdout_fraction)
        or not low <= holdout_fraction <= high
    ):
        errors["holdout_fraction"] = [f"must be a number between {low} and {high}"]
    if version is not None:
        if not isinstance(version, str) or not version.strip() or len(version) > 64:
            errors["version"] = ["a version name of 1 to 64 characters"]
        elif ModelVersion.objects.filter(use_case=use_case, version=version).exists():
            errors["version"] = [f"version {version!r} already exists"]
    labelled = labelled_items_filtered(use_case=use_case, filters=RowFilters()).count()
    if labelled < settings.RETRAIN_MIN_ITEMS:
        errors["items"] = [
            f"retraining needs at least {settings.RETRAIN_MIN_ITEMS} human-labelled items; "
            f"there are {labelled}"
        ]
    if errors:
        raise InvalidInput(errors)
    with transaction.atomic():
        job = job_create(
            kind=Job.Kind.RETRAIN,
            total=100,
            use_case=use_case,
            created_by=actor,
            params={"base_version": base.version, "holdout_fraction": holdout_fraction},
        )
        run = TrainingRun(
            use_case=use_case,
            job=job,
            base_model_version=base,
            holdout_fraction=float(holdout_fraction),
            created_by=actor if actor is not None and actor.is_authenticated else None,
            created_at=now or timezone.now(),
        )
        run.version = version.strip() if version else f"retrained-{run.pk.hex[:8]}"
        run.save(force_insert=True)
        job.params["training_run"] = str(run.pk)
        job.save(update_fields=["params"])
    return run


def training_run_start(**kwargs) -> TrainingRun:
    """``training_run_create``, then run it on a worker once the request commits."""
    # The tasks module imports this service to run it, so the task is imported here.
    from reviewapp.datasets.tasks import retrain

    with transaction.atomic():
        run = training_run_create(**kwargs)
        retrain.delay_on_commit(training_run_id=str(run.pk))
    return run


class _Progress:
    """The run's job advances by units of 100; its last unit waits for ``job_finish``."""

    def __init__(self, run: TrainingRun, on_progress):
        self.job_id = run.job_id
        self.on_progress = on_progress
        self.done = 0

    def to(self, units: int) -> None:
        units = min(units, 99)
        if self.job_id and units > self.done:
            job_progress(job_id=self.job_id, done=units - self.done)
        self.done = max(self.done, units)
        if self.on_progress:
            self.on_progress(self.done, 100)


ERROR_SUMMARY_CHARS = 500


def _finished(
    run: TrainingRun,
    model_version: ModelVersion | None = None,
    metrics: dict | None = None,
    error: str = "",
) -> dict:
    """The ``retraining.finished`` event's payload: the registered model's version, role and
    figures when the run is done; when it failed, nulls and the reason (its first line, cut)."""
    metrics = metrics or {}
    return {
        "training_run": str(run.pk),
        "status": TrainingRun.State.FAILED.value if error else TrainingRun.State.DONE.value,
        "model_version": model_version.version if model_version else None,
        "role": model_version.role if model_version else None,
        "challenger": metrics.get("challenger"),
        "champion": metrics.get("champion"),
        "error": (error.strip().splitlines() or [""])[0][:ERROR_SUMMARY_CHARS],
    }


def training_run_execute(*, run_id, on_progress=None) -> TrainingRun:
    """Export, fit, evaluate and register. A no-op once done; a failure is recorded on the run
    and its job (with the reason) and not raised. Run again after a lost worker, it starts over.
    """
    run = TrainingRun.objects.select_related(
        "use_case", "base_model_version", "created_by", "job"
    ).get(pk=run_id)
    if run.state in (TrainingRun.State.DONE, TrainingRun.State.FAILED):
        return run
    if run.job_id and not job_claim(job_id=run.job_id):
        return run  # another run holds it
    TrainingRun.objects.filter(pk=run.pk).update(
        state=TrainingRun.State.RUNNING, started_at=timezone.now(), error=""
    )
    try:
        _execute(run, _Progress(run, on_progress))
        if on_progress:
            on_progress(100, 100)
    except Exception as exc:
        logger.exception("training run %s failed", run.pk)
        message = exc.detail if isinstance(exc, InvalidInput) else f"{type(exc).__name__}: {exc}"
        message = str(message)
        with transaction.atomic():
            TrainingRun.objects.filter(pk=run.pk).update(
                state=TrainingRun.State.FAILED, error=message[:10_000], finished_at=timezone.now()
            )
            event_record(
                type="retraining.finished",
                use_case_id=run.use_case_id,
                data=_finished(run, error=message or type(exc).__name__),
            )
        if run.job_id:
            job_fail(job_id=run.job_id, error=message)
    run.refresh_from_db()
    return run


def _export(run: TrainingRun, progress: _Progress) -> Export:
    export = export_create(
        use_case=run.use_case,
        actor=run.created_by,
        fmt=Export.Format.PARQUET,
        scope=Export.Scope.LABELLED,
        pii=Export.Pii.OMIT,
    )
    TrainingRun.objects.filter(pk=run.pk).update(export=export)
    export = export_write(
        export_id=export.pk,
        on_progress=lambda done, total: progress.to(EXPORTED * done // max(total, 1)),
    )
    if export.state != Export.State.READY:
        raise RuntimeError(f"the training data could not be exported: {export.error}")
    progress.to(EXPORTED)
    return export


def training_frame(*, use_case: UseCase, export: Export) -> pd.DataFrame:
    """The export read back from its file, oldest decision first (ties by external id)."""
    import pandas as pd

    with export_storage().open(export.file_name, "rb") as handle:
        frame = pd.read_parquet(handle)
    return frame.sort_values(["decided_at", "external_id"], kind="stable").reset_index(drop=True)


def feature_matrix(*, use_case: UseCase, frame: pd.DataFrame) -> pd.DataFrame:
    """The model's input, typed the way scoring types it (``features_frame``): numbers as
    floats, everything else as objects. PII features were not exported: they are missing."""
    import pandas as pd

    exported = export_feature_columns(use_case=use_case, include_pii=False)
    columns = {}
    for spec in use_case.features:
        name = spec["name"]
        if name not in exported:
            values = pd.Series([None] * len(frame), dtype=object)
        else:
            values = frame[exported[name]]
        if spec["type"] in NUMERIC_TYPES:
            columns[name] = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
        else:
            columns[name] = pd.array(values.astype(object).where(values.notna(), None))
    return pd.DataFrame(columns)


def targets(*, use_case: UseCase, frame: pd.DataFrame) -> np.ndarray:
    if use_case.is_classification:
        return frame["human_label"].astype(str).to_numpy(dtype=object)
    return frame["human_value"].astype(float).to_numpy()


def holdout_split(rows: int, fraction: float) -> int:
    """How many of ``rows`` (time-ordered) train; the rest, the latest, are held out."""
    held_out = max(1, math.ceil(rows * fraction))
    return rows - held_out


def evaluate(*, use_case: UseCase, estimator, features: pd.DataFrame, truth) -> dict[str, Any]:
    """How close an estimator comes to the human answers."""
    from sklearn import metrics

    predicted = estimator.predict(features)
    if use_case.is_classification:
        predicted = np.asarray([str(p) for p in predicted], dtype=object)
        return {
            "rows": len(truth),
            "accuracy": float(metrics.accuracy_score(truth, predicted)),
            "macro_f1": float(
                metrics.f1_score(
                    truth,
                    predicted,
                    labels=use_case.labels,
                    average="macro",
                    zero_division=0,
                )
            ),
        }
    predicted = np.asarray(predicted, dtype=float).reshape(-1)
    errors = np.abs(predicted - truth)
    return {
        "rows": len(truth),
        "mae": float(errors.mean()),
        "rmse": float(np.sqrt((errors**2).mean())),
        "within_tolerance": float((errors <= (use_case.tolerance or 0.0)).mean()),
    }


def _span(frame: pd.DataFrame) -> dict[str, Any]:
    return {
        "rows": len(frame),
        "first_decided_at": frame["decided_at"].iloc[0].isoformat() if len(frame) else None,
        "last_decided_at": frame["decided_at"].iloc[-1].isoformat() if len(frame) else None,
    }


def _execute(run: TrainingRun, progress: _Progress) -> None:
    import skops.io as sio
    from sklearn.base import clone

    use_case = run.use_case
    export = _export(run, progress)
    frame = training_frame(use_case=use_case, export=export)
    features = feature_matrix(use_case=use_case, frame=frame)
    truth = targets(use_case=use_case, frame=frame)
    cut = holdout_split(len(frame), run.holdout_fraction)
    if cut < 1:
        raise InvalidInput({"holdout_fraction": ["nothing is left to train on"]})
    if use_case.is_classification and len(set(truth[:cut])) < 2:
        raise InvalidInput({"items": ["the training share holds a single label: nothing to learn"]})
    progress.to(LOADED)

    recipe = estimator_for(run.base_model_version)
    model = clone(recipe)
    started = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(features.iloc[:cut], truth[:cut])
    fit_seconds = time.perf_counter() - started
    progress.to(FITTED)

    held_out = features.iloc[cut:]
    champion = champion_get(use_case=use_case) or run.base_model_version
    metrics = {
        "task_type": use_case.task_type,
        "train": _span(frame.iloc[:cut]),
        "holdout": {"fraction": run.holdout_fraction, **_span(frame.iloc[cut:])},
        "challenger": evaluate(
            use_case=use_case, estimator=model, features=held_out, truth=truth[cut:]
        ),
        "champion": {
            "version": champion.version,
            **evaluate(
                use_case=use_case,
                estimator=estimator_for(champion),
                features=held_out,
                truth=truth[cut:],
            ),
        },
        "recipe": {
            "base_version": run.base_model_version.version,
            "estimator": f"{type(model).__module__}.{type(model).__qualname__}",
        },
        "dataset": {
            "export": str(export.pk),
            "file": export.file_name,
            "sha256": export.sha256,
            "rows": export.row_count,
        },
        "fit_seconds": round(fit_seconds, 3),
        "warnings": sorted({str(w.message)[:300] for w in caught})[:10],
    }
    progress.to(EVALUATED)

    notes = (
        f"Retrained from {run.base_model_version.version} on export {export.pk} "
        f"({export.row_count} human-labelled items, sha256 {export.sha256}); "
        f"held out the latest {run.holdout_fraction:.0%} by decision time."
    )
    with transaction.atomic():
        model_version = model_version_register(
            use_case=use_case,
            version=run.version,
            data=sio.dumps(model),
            actor=run.created_by,
            reference=features.iloc[:cut],
            source=ModelVersion.Source.RETRAINED,
            metrics=metrics,
            notes=notes,
        )
        if model_version.role != ModelVersion.Role.CHAMPION:
            model_version = model_version_challenge(
                use_case=use_case,
                version=model_version.version,
                actor=run.created_by,
                reason=f"retrained on export {export.pk}",
            )
        TrainingRun.objects.filter(pk=run.pk).update(
            state=TrainingRun.State.DONE,
            model_version=model_version,
            metrics=metrics,
            finished_at=timezone.now(),
        )
        event_record(
            type="retraining.finished",
            use_case_id=use_case.pk,
            data=_finished(run, model_version, metrics),
        )
    if run.job_id:
        job_finish(
            job_id=run.job_id,
            result={
                "training_run": str(run.pk),
                "model_version": model_version.version,
                "export": str(export.pk),
                "challenger": metrics["challenger"],
                "champion": metrics["champion"],
            },
        )
