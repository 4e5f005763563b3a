"""Reading what a model upload brings (the file, a reference sample) and proving the model
works here: it scores its reference rows with usable outputs, within a time limit."""

from __future__ import annotations

import io
import threading
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.conf import settings

from deployments.ml.environment import warnings_describe, warnings_recorded
from deployments.ml.latency import call_in_own_thread, latency_probe
from deployments.ml.loading import ModelRejected
from deployments.ml.scoring import features_frame, score_rows
from deployments.models import UseCase
from deployments.policy import NullOutput, assess_output
from reviewapp.core.errors import InvalidInput

if TYPE_CHECKING:
    import pandas as pd


def model_upload_read(*, upload) -> bytes:
    """The bytes of an uploaded model file, refused by its size before it is read into memory."""
    limit = settings.MODEL_UPLOAD_MAX_BYTES
    if upload.size is not None and upload.size > limit:
        raise InvalidInput({"file": [f"the file is {upload.size} bytes; the limit is {limit}"]})
    return upload.read(limit + 1)


def reference_upload_read(*, upload) -> pd.DataFrame | None:
    """An uploaded CSV or Parquet sample of the training features (None when absent)."""
    if upload is None:
        return None
    import pandas as pd  # an upload's process only; the others never read a sample

    raw = upload.read()
    try:
        if raw[:4] == b"PAR1":
            return pd.read_parquet(io.BytesIO(raw))
        return pd.read_csv(io.BytesIO(raw))
    except Exception as exc:
        raise InvalidInput({"reference": [f"not a readable CSV or Parquet file: {exc}"]}) from exc


def _check_scores_reference(*, use_case: UseCase, estimator, sample: list[dict]) -> None:
    """Score the reference sample rows: a model that cannot score them here is refused now,
    not discovered on live traffic."""
    outputs = score_rows(
        estimator,
        sample,
        use_case.features,
        task_type=use_case.task_type,
        tolerance=use_case.tolerance,
    )
    errors = sorted({o.error for o in outputs if o.error})
    if errors:
        raise ModelRejected(
            f"the model fails on {sum(bool(o.error) for o in outputs)} of its {len(outputs)} "
            f"reference rows in this environment: {errors[0]}"
        )
    labels = use_case.labels if use_case.is_classification else None
    for output in outputs:
        verdict = assess_output(
            label=output.label,
            value=output.value,
            confidence=output.confidence,
            labels=labels,
            value_min=use_case.value_min,
            value_max=use_case.value_max,
        )
        if isinstance(verdict, NullOutput):
            raise ModelRejected(
                f"the model's output on its reference rows is unusable: {verdict.reason}"
            )


@dataclass(frozen=True)
class ModelCheck:
    scoring_warnings: list[str]
    latency: dict[str, Any]


def model_check(*, use_case: UseCase, estimator, sample: list[dict]) -> ModelCheck:
    """Prove the model scores its reference rows here, then time single-row calls on them.

    Runs on its own thread with a time limit: a model that never answers is refused instead
    of holding the upload forever. Raises ModelRejected.
    """

    if not sample:  # a use case without features: nothing to score
        return ModelCheck(scoring_warnings=[], latency={})
    # Set once the upload has given up: a model that answers late is not timed for nobody.
    abandoned = threading.Event()

    def check() -> ModelCheck:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            _check_scores_reference(use_case=use_case, estimator=estimator, sample=sample)
        latency = latency_probe(
            lambda i: score_rows(
                estimator,
                [sample[i % len(sample)]],
                use_case.features,
                task_type=use_case.task_type,
                tolerance=use_case.tolerance,
            ),
            calls=settings.MODEL_LATENCY_PROBE_CALLS,
            max_seconds=settings.MODEL_LATENCY_PROBE_MAX_SECONDS,
            abandoned=abandoned.is_set,
        )
        return ModelCheck(
            scoring_warnings=warnings_describe(
                warnings_recorded(caught), stage="while scoring the reference rows"
            ),
            latency=latency,
        )

    limit = settings.MODEL_CHECK_TIMEOUT_SECONDS
    outcome = call_in_own_thread(check, timeout=limit)
    if not outcome.done:
        abandoned.set()
        raise ModelRejected(
            f"the model gave no answer on its reference rows within {limit:g} s in this environment"
        )
    return outcome.value


def reference_frame(*, use_case: UseCase, reference: pd.DataFrame | None) -> pd.DataFrame:
    if reference is not None:
        missing = [n for n in use_case.feature_names if n not in reference.columns]
        if missing:
            raise InvalidInput(
                {"reference": [f"missing feature columns: {', '.join(missing[:20])}"]}
            )
        return reference[use_case.feature_names]
    recent = list(use_case.items.order_by("-received_at").values_list("features", flat=True)[:5000])
    return features_frame(recent, use_case.features)
