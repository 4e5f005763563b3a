"""Writing use cases, automation policies and model versions."""

import io
import threading
import warnings
from dataclasses import dataclass
from typing import Any

import pandas as pd
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import IntegrityError, transaction
from django.utils import timezone

from deployments.ml.environment import (
    EnvironmentInvalid,
    declared_versions_clean,
    environment_record,
    warnings_describe,
    warnings_recorded,
)
from deployments.ml.latency import (
    TimeoutPool,
    call_in_own_thread,
    latency_over_budget,
    latency_probe,
)
from deployments.ml.loading import LoadedModel, ModelRejected, model_cache, model_load
from deployments.ml.reference import reference_stats_compute
from deployments.ml.scoring import features_frame, score_rows
from deployments.models import (
    AutomationPolicy,
    ModelVersion,
    ModelVersionEvent,
    UseCase,
    UseCaseMembership,
)
from deployments.policy import Level, NullOutput, PolicySpec, assess_output
from deployments.policy.guardrails import GuardrailsInvalid, guardrails_parse
from deployments.schema import feature_schema_clean, schema_example_rows
from deployments.selectors import champion_get, model_version_get, policy_current
from reviewapp.core.errors import Conflict, InvalidInput
from reviewapp.core.events import event_record

POLICY_FIELDS = (
    "level",
    "confidence_threshold",
    "traffic_percent",
    "audit_rate",
    "double_review_rate",
    "guardrails",
)
IMMUTABLE_WITH_ITEMS = ("task_type", "labels", "features", "prediction_source")


def policy_spec(policy: AutomationPolicy) -> PolicySpec:
    return PolicySpec(
        level=Level(policy.level),
        confidence_threshold=policy.confidence_threshold,
        traffic_percent=policy.traffic_percent,
        audit_rate=policy.audit_rate,
        double_review_rate=policy.double_review_rate,
    )


def _labels_clean(task_type: str, labels: Any) -> list[str]:
    if task_type != UseCase.TaskType.CLASSIFICATION:
        if labels:
            raise InvalidInput({"labels": ["only classification use cases have labels"]})
        return []
    if (
        not isinstance(labels, list)
        or len(labels) < 2
        or not all(isinstance(x, str) and x and len(x) <= 200 for x in labels)
    ):
        raise InvalidInput({"labels": ["at least two non-empty label strings are required"]})
    if len(set(labels)) != len(labels):
        raise InvalidInput({"labels": ["labels must be unique"]})
    return labels


@transaction.atomic
def use_case_create(
    *,
    actor,
    slug: str,
    name: str,
    task_type: str,
    features: Any,
    labels: Any = None,
    tolerance: float | None = None,
    value_min: float | None = None,
    value_max: float | None = None,
    prediction_source: str = UseCase.PredictionSource.REGISTRY,
    description: str = "",
    item_view: str = UseCase.ItemView.TABLE,
    latency_budget_ms: int | None = None,
    level: str = Level.HUMAN_ONLY,
    now=None,
) -> UseCase:
    """Create a use case with its first policy (human only unless told); the creator joins it."""
    if UseCase.objects.filter(slug=slug).exists():
        raise InvalidInput({"slug": [f"a use case {slug!r} already exists"]})
    if task_type == UseCase.TaskType.REGRESSION and tolerance is None:
        raise InvalidInput({"tolerance": ["required for regression use cases"]})
    if task_type == UseCase.TaskType.CLASSIFICATION and tolerance is not None:
        raise InvalidInput({"tolerance": ["only regression use cases have a tolerance"]})
    use_case = UseCase.objects.create(
        slug=slug,
        name=name,
        description=description,
        task_type=task_type,
        labels=_labels_clean(task_type, labels),
        tolerance=tolerance,
        value_min=value_min,
        value_max=value_max,
        features=feature_schema_clean(features),
        prediction_source=prediction_source,
        item_view=item_view,
        latency_budget_ms=latency_budget_ms,
        created_by=actor,
    )
    if actor is not None:
        UseCaseMembership.objects.create(use_case=use_case, user=actor, can_view_pii=True)
    AutomationPolicy.objects.create(
        use_case=use_case,
        version=1,
        level=level,
        changed_by=actor,
        changed_by_system=actor is None,
        changed_at=now or timezone.now(),
        reason="use case created",
        audit_rate=0.05,
    )
    return use_case


@transaction.atomic
def use_case_update(*, use_case: UseCase, changes: dict[str, Any]) -> UseCase:
    """Change a use case. Its contract with callers (task type, labels, features, prediction
    source) is fixed once items have arrived: historical items would no longer fit it."""
    use_case = UseCase.objects.select_for_update().get(pk=use_case.pk)
    if use_case.items.exists():
        frozen = [
            f for f in IMMUTABLE_WITH_ITEMS if f in changes and changes[f] != getattr(use_case, f)
        ]
        if frozen:
            raise InvalidInput(
                {
                    f: ["cannot change once items have been received; create a new use case"]
                    for f in frozen
                }
            )
    if "features" in changes:
        changes["features"] = feature_schema_clean(changes["features"])
    task_type = changes.get("task_type", use_case.task_type)
    if "labels" in changes or "task_type" in changes:
        changes["labels"] = _labels_clean(task_type, changes.get("labels", use_case.labels))
    switched = (
        "prediction_source" in changes
        and changes["prediction_source"] != use_case.prediction_source
    )
    for field, value in changes.items():
        setattr(use_case, field, value)
    use_case.save(update_fields=list(changes))
    if switched:
        _roles_fit_source(use_case=use_case)
    return use_case


def _roles_fit_source(*, use_case: UseCase) -> None:
    """After the prediction source changed (only possible before any item arrived), retire the
    champion and challengers of the other kind: uploaded models no longer answer for an external
    use case, and external versions cannot score one that is scored here."""
    external = use_case.prediction_source == UseCase.PredictionSource.EXTERNAL
    live = ModelVersion.objects.filter(
        use_case=use_case, role__in=[ModelVersion.Role.CHAMPION, ModelVersion.Role.CHALLENGER]
    ).defer("artifact")
    for model_version in live:
        if (model_version.source == ModelVersion.Source.EXTERNAL) == external:
            continue
        _role_set(model_version, ModelVersion.Role.RETIRED)
        ModelVersionEvent.objects.create(
            use_case=use_case,
            model_version=model_version,
            action=ModelVersionEvent.Action.RETIRE,
            reason="the use case now takes its predictions from its callers"
            if external
            else "the use case is now scored here",
        )


def guardrails_problems(raw: dict) -> dict:
    """What is wrong with a guardrails object, by field (empty when it is fine)."""
    try:
        guardrails_parse(raw)
        errors = {}
    except GuardrailsInvalid as exc:
        errors = dict(exc.errors)
    url = raw.get("webhook_url")
    if isinstance(url, str) and url and "webhook_url" not in errors:
        try:
            URLValidator(schemes=["http", "https"])(url)
        except ValidationError:
            errors["webhook_url"] = ["not a valid http(s) URL"]
    return errors


def _policy_values_check(values: dict[str, Any]) -> None:
    errors = {}
    if values["level"] not in [level.value for level in Level]:
        errors["level"] = [f"must be one of {', '.join(level.value for level in Level)}"]
    for field, low, high in (
        ("confidence_threshold", 0, 1),
        ("traffic_percent", 0, 100),
        ("audit_rate", 0, 1),
        ("double_review_rate", 0, 1),
    ):
        value = values[field]
        if (
            not isinstance(value, int | float)
            or isinstance(value, bool)
            or not low <= value <= high
        ):
            errors[field] = [f"must be a number in [{low}, {high}]"]
    if not isinstance(values["guardrails"], dict):
        errors["guardrails"] = ["must be an object"]
    else:
        problems = guardrails_problems(values["guardrails"])
        if problems:
            errors["guardrails"] = problems
    if errors:
        raise InvalidInput(errors)


@transaction.atomic
def policy_change(
    *,
    use_case: UseCase,
    actor,
    changes: dict[str, Any],
    reason: str,
    now=None,
    restored_from: AutomationPolicy | None = None,
) -> AutomationPolicy:
    """Write a new policy version from the current one with ``changes`` applied.

    ``actor`` None means the system made the change (a guardrail breach, a ramp plan step).
    The use case row is locked so concurrent changes get consecutive versions.
    """
    if not isinstance(reason, str) or not reason.strip():
        raise InvalidInput({"reason": ["a reason is required for every policy change"]})
    unknown = set(changes) - set(POLICY_FIELDS)
    if unknown:
        raise InvalidInput({name: ["not a policy field"] for name in sorted(unknown)})
    UseCase.objects.select_for_update().filter(pk=use_case.pk).first()
    current = policy_current(use_case=use_case)
    values = {field: getattr(current, field) for field in POLICY_FIELDS}
    values.update(changes)
    _policy_values_check(values)
    policy = AutomationPolicy.objects.create(
        use_case=use_case,
        version=current.version + 1,
        changed_by=actor,
        changed_by_system=actor is None,
        changed_at=now or timezone.now(),
        reason=reason.strip(),
        restored_from=restored_from,
        **values,
    )
    event_record(type="policy.changed", use_case_id=use_case.pk, data=_policy_changed(policy))
    return policy


def _policy_changed(policy: AutomationPolicy) -> dict:
    """The ``policy.changed`` event's payload: who (None: a guardrail or ramp step), why, what."""
    return {
        "use_case": policy.use_case.slug,
        "version": policy.version,
        "level": policy.level,
        "by": policy.changed_by.get_username() if policy.changed_by else None,
        "by_system": policy.changed_by_system,
        "reason": policy.reason,
        "restored_from": policy.restored_from.version if policy.restored_from else None,
    }


def policy_restore(*, use_case: UseCase, version: int, actor, reason: str = "") -> AutomationPolicy:
    """Make an earlier version current again, as a new version that points back at it."""
    earlier = AutomationPolicy.objects.filter(use_case=use_case, version=version).first()
    if earlier is None:
        raise InvalidInput({"version": [f"no policy version {version}"]})
    return policy_change(
        use_case=use_case,
        actor=actor,
        changes={field: getattr(earlier, field) for field in POLICY_FIELDS},
        reason=reason or f"restored version {version}",
        restored_from=earlier,
    )


# --- model versions ---------------------------------------------------------------------------


def _cache_key(model_version: ModelVersion) -> tuple[int, str]:
    return (model_version.pk, model_version.artifact_sha256)


def estimator_cached(model_version: ModelVersion):
    """The loaded estimator if this process has it already, else None."""
    return model_cache.get(_cache_key(model_version))


def artifact_bytes(model_version: ModelVersion) -> bytes | None:
    data = ModelVersion.objects.values_list("artifact", flat=True).get(pk=model_version.pk)
    return None if data is None else bytes(data)


def _model_load_limited(*, data: bytes, record_warnings: bool = False) -> LoadedModel:
    return model_load(
        data=data,
        max_bytes=settings.MODEL_UPLOAD_MAX_BYTES,
        max_uncompressed_bytes=settings.MODEL_UPLOAD_MAX_UNCOMPRESSED_BYTES,
        timeout_seconds=settings.MODEL_LOAD_TIMEOUT_SECONDS,
        record_warnings=record_warnings,
    )


def estimator_load(*, model_version: ModelVersion, data: bytes | None):
    """Load ``data`` (the version's artifact) into this process's cache. No database access,
    so it may run on a scoring thread. Raises ModelRejected when it cannot be loaded."""
    if data is None:
        raise ModelRejected(f"{model_version.version} has no artifact: it is served elsewhere")
    loaded = _model_load_limited(data=data)
    model_cache.put(_cache_key(model_version), loaded.estimator)
    return loaded.estimator


def estimator_for(model_version: ModelVersion):
    """The loaded estimator of a model version, from this process's cache when possible."""
    estimator = estimator_cached(model_version)
    if estimator is None:
        estimator = estimator_load(model_version=model_version, data=artifact_bytes(model_version))
    return estimator


_realtime_pool: TimeoutPool | None = None
_realtime_pool_lock = threading.Lock()


def realtime_scoring_pool() -> TimeoutPool:
    """The threads that run realtime model calls under a latency budget (one pool a process)."""
    global _realtime_pool
    if _realtime_pool is None:
        with _realtime_pool_lock:
            if _realtime_pool is None:
                _realtime_pool = TimeoutPool(
                    max_workers=settings.REALTIME_SCORING_THREADS, name="realtime-scoring"
                )
    return _realtime_pool


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


def _model_check(*, use_case: UseCase, estimator, sample: list[dict]) -> ModelCheck:
    """Prove the model scores its reference rows here, then time single-row calls on them.

    Runs on its own thread with a time limit: a model that never answers is refused instead
    of holding the upload forever. Raises ModelRejected.
    """

    if not sample:  # a use case without features: nothing to score
        return ModelCheck(scoring_warnings=[], latency={})

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
        raise ModelRejected(
            f"the model gave no answer on its reference rows within {limit:g} s in this environment"
        )
    return outcome.value


def _reference_frame(*, use_case: UseCase, reference: pd.DataFrame | None) -> pd.DataFrame:
    if reference is not None:
        missing = [n for n in use_case.feature_names if n not in reference.columns]
        if missing:
            raise InvalidInput(
                {"reference": [f"missing feature columns: {', '.join(missing[:20])}"]}
            )
        return reference[use_case.feature_names]
    recent = list(use_case.items.order_by("-received_at").values_list("features", flat=True)[:5000])
    return features_frame(recent, use_case.features)


NO_MODELS_HERE = "this use case takes predictions from its callers; it has no models here"


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
    raw = upload.read()
    try:
        if raw[:4] == b"PAR1":
            return pd.read_parquet(io.BytesIO(raw))
        return pd.read_csv(io.BytesIO(raw))
    except Exception as exc:
        raise InvalidInput({"reference": [f"not a readable CSV or Parquet file: {exc}"]}) from exc


def model_version_register(
    *,
    use_case: UseCase,
    version: str,
    data: bytes,
    actor,
    reference: pd.DataFrame | None = None,
    source: str = ModelVersion.Source.UPLOAD,
    metrics: dict | None = None,
    notes: str = "",
    environment: Any = None,
    now=None,
) -> ModelVersion:
    """Register an uploaded skops model; the first model of a use case becomes its champion.

    ``reference`` is a sample of the training features; without it, the use case's most recent
    items stand in as the reference for drift checks. ``environment`` is the uploader's own
    record of its library versions (``{"numpy": "1.26.4", "python": "3.11.9"}``), kept beside
    what the file itself records. The model is refused unless it loads here and scores its
    reference rows; its single-row latency is measured and compared with the use case's budget.
    The checks take seconds, so they run before the transaction: no lock is held meanwhile (on
    SQLite the write lock would stall live traffic).
    """
    if not isinstance(version, str) or not version.strip() or len(version) > 64:
        raise InvalidInput({"version": ["a version name of 1 to 64 characters is required"]})
    if use_case.prediction_source == UseCase.PredictionSource.EXTERNAL:
        raise InvalidInput({"file": [NO_MODELS_HERE]})
    if ModelVersion.objects.filter(use_case=use_case, version=version).exists():
        raise InvalidInput({"version": [f"version {version!r} already exists"]})
    try:
        declared = declared_versions_clean(environment)
    except EnvironmentInvalid as exc:
        raise InvalidInput({"environment": [str(exc)]}) from exc
    try:
        loaded = _model_load_limited(data=data, record_warnings=True)
        if use_case.is_classification and not hasattr(loaded.estimator, "predict_proba"):
            raise ModelRejected("a classifier needs predict_proba")
        frame = _reference_frame(use_case=use_case, reference=reference)
        stats = reference_stats_compute(frame, use_case.features)
        checked = _model_check(
            use_case=use_case,
            estimator=loaded.estimator,
            sample=stats["sample"] or schema_example_rows(use_case.features),
        )
    except ModelRejected as exc:
        raise InvalidInput({"file": [str(exc)]}) from exc
    now = now or timezone.now()
    environment_stored = environment_record(
        saved_in_file=loaded.saved_versions,
        declared=declared,
        load_warnings=warnings_describe(loaded.warnings, stage="while loading"),
        scoring_warnings=checked.scoring_warnings,
    )
    budget = use_case.latency_budget_ms
    latency = {
        **checked.latency,
        "measured_at": now.isoformat(),
        "budget_ms": budget,
        "over_budget": latency_over_budget(checked.latency, budget),
    }
    model_version = ModelVersion(
        use_case=use_case,
        version=version,
        source=source,
        artifact=data,
        artifact_sha256=loaded.sha256,
        artifact_size=loaded.size,
        estimator=loaded.estimator_name,
        reference_stats=stats,
        environment=environment_stored,
        latency=latency,
        metrics=metrics or {},
        notes=notes,
        created_by=actor,
    )
    _model_version_store(model_version=model_version, actor=actor)
    model_cache.put(_cache_key(model_version), loaded.estimator)
    return model_version


@transaction.atomic
def _model_version_store(*, model_version: ModelVersion, actor) -> None:
    """Insert a checked model version; the first of its use case becomes champion."""
    use_case = UseCase.objects.select_for_update().get(pk=model_version.use_case_id)
    if use_case.prediction_source == UseCase.PredictionSource.EXTERNAL:  # switched meanwhile
        raise InvalidInput({"file": [NO_MODELS_HERE]})
    first = champion_get(use_case=use_case) is None
    model_version.role = ModelVersion.Role.CHAMPION if first else ModelVersion.Role.CANDIDATE
    try:
        with transaction.atomic():
            model_version.save(force_insert=True)
    except IntegrityError as exc:
        version = model_version.version
        raise InvalidInput({"version": [f"version {version!r} already exists"]}) from exc
    ModelVersionEvent.objects.create(
        use_case=use_case,
        model_version=model_version,
        action=ModelVersionEvent.Action.REGISTER,
        actor=actor,
    )
    event_record(
        type="model.changed",
        use_case_id=use_case.pk,
        data=_model_changed(model_version, "register", actor),
    )
    if first:
        ModelVersionEvent.objects.create(
            use_case=use_case,
            model_version=model_version,
            action=ModelVersionEvent.Action.PROMOTE,
            actor=actor,
            reason="first model of the use case",
        )
        event_record(
            type="model.changed",
            use_case_id=use_case.pk,
            data=_model_changed(model_version, "promote", actor),
        )


def model_version_external_get_or_register(*, use_case: UseCase, version: str) -> ModelVersion:
    """The model version an external caller names, registered on first sight.

    The first external version becomes champion (with the same register and promote events an
    upload gets); later ones are challengers until someone promotes them. Roles of external
    versions record what the team stands behind; they cannot change which model answered an
    item (the caller's did), so a prediction from any version, champion or not, routes its
    item and is stored against its own version.
    """
    existing = ModelVersion.objects.filter(use_case=use_case, version=version).defer("artifact")
    model_version = existing.first()
    if model_version is not None:
        return model_version
    with transaction.atomic():
        UseCase.objects.select_for_update().filter(pk=use_case.pk).first()
        model_version = existing.first()
        if model_version is not None:
            return model_version
        first = champion_get(use_case=use_case) is None
        model_version = ModelVersion.objects.create(
            use_case=use_case,
            version=version,
            role=ModelVersion.Role.CHAMPION if first else ModelVersion.Role.CHALLENGER,
            source=ModelVersion.Source.EXTERNAL,
        )
        ModelVersionEvent.objects.create(
            use_case=use_case,
            model_version=model_version,
            action=ModelVersionEvent.Action.REGISTER,
            reason="first seen in a caller's prediction",
        )
        ModelVersionEvent.objects.create(
            use_case=use_case,
            model_version=model_version,
            action=ModelVersionEvent.Action.PROMOTE
            if first
            else ModelVersionEvent.Action.CHALLENGE,
            reason="first version the callers served"
            if first
            else "served by callers beside the champion",
        )
    return model_version


def _served_here_check(*, use_case: UseCase, model_version: ModelVersion) -> None:
    """A use case scored here can only score with a model it holds: an external version (no
    artifact) as its champion or challenger would turn every item into a null output."""
    if (
        use_case.prediction_source == UseCase.PredictionSource.REGISTRY
        and not model_version.artifact_sha256
    ):
        raise Conflict(
            {
                "version": [
                    f"{model_version.version!r} is served outside the app; this use case is "
                    "scored here and needs an uploaded model"
                ]
            }
        )


def _model_changed(model_version: ModelVersion, action: str, actor, reason: str = "") -> dict:
    """The ``model.changed`` event's payload."""
    return {
        "use_case": model_version.use_case.slug,
        "action": action,
        "version": model_version.version,
        "role": model_version.role,
        "by": actor.get_username() if actor else None,
        "reason": reason,
    }


def _role_set(model_version: ModelVersion, role: str) -> None:
    model_version.role = role
    model_version.save(update_fields=["role"])


@transaction.atomic
def model_version_promote(
    *, use_case: UseCase, version: str, actor, reason: str = ""
) -> ModelVersion:
    """Make ``version`` the champion; the old champion retires (and can be rolled back to)."""
    UseCase.objects.select_for_update().filter(pk=use_case.pk).first()
    target = model_version_get(use_case=use_case, version=version)
    _served_here_check(use_case=use_case, model_version=target)
    previous = champion_get(use_case=use_case)
    if previous is not None and previous.pk == target.pk:
        raise Conflict({"version": [f"{version!r} is already the champion"]})
    if previous is not None:
        _role_set(previous, ModelVersion.Role.RETIRED)
    _role_set(target, ModelVersion.Role.CHAMPION)
    ModelVersionEvent.objects.create(
        use_case=use_case,
        model_version=target,
        action=ModelVersionEvent.Action.PROMOTE,
        previous_champion=previous,
        actor=actor,
        reason=reason,
    )
    event_record(
        type="model.changed",
        use_case_id=use_case.pk,
        data=_model_changed(target, "promote", actor, reason),
    )
    return target


@transaction.atomic
def model_version_challenge(
    *, use_case: UseCase, version: str, actor, reason: str = ""
) -> ModelVersion:
    """Run ``version`` as a challenger: it scores every new item in shadow."""
    UseCase.objects.select_for_update().filter(pk=use_case.pk).first()
    target = model_version_get(use_case=use_case, version=version)
    if target.role == ModelVersion.Role.CHAMPION:
        raise Conflict({"version": [f"{version!r} is the champion; promote another first"]})
    if target.role == ModelVersion.Role.CHALLENGER:
        return target
    _served_here_check(use_case=use_case, model_version=target)
    _role_set(target, ModelVersion.Role.CHALLENGER)
    ModelVersionEvent.objects.create(
        use_case=use_case,
        model_version=target,
        action=ModelVersionEvent.Action.CHALLENGE,
        actor=actor,
        reason=reason,
    )
    event_record(
        type="model.changed",
        use_case_id=use_case.pk,
        data=_model_changed(target, "challenge", actor, reason),
    )
    return target


@transaction.atomic
def model_version_retire(
    *, use_case: UseCase, version: str, actor, reason: str = ""
) -> ModelVersion:
    UseCase.objects.select_for_update().filter(pk=use_case.pk).first()
    target = model_version_get(use_case=use_case, version=version)
    if target.role == ModelVersion.Role.CHAMPION:
        raise Conflict({"version": [f"{version!r} is the champion; promote another first"]})
    if target.role != ModelVersion.Role.RETIRED:
        _role_set(target, ModelVersion.Role.RETIRED)
        ModelVersionEvent.objects.create(
            use_case=use_case,
            model_version=target,
            action=ModelVersionEvent.Action.RETIRE,
            actor=actor,
            reason=reason,
        )
        event_record(
            type="model.changed",
            use_case_id=use_case.pk,
            data=_model_changed(target, "retire", actor, reason),
        )
    return target


@transaction.atomic
def model_version_rollback(*, use_case: UseCase, actor, reason: str = "") -> ModelVersion:
    """Make the champion before the current one champion again."""
    UseCase.objects.select_for_update().filter(pk=use_case.pk).first()
    current = champion_get(use_case=use_case)
    last_change = (
        ModelVersionEvent.objects.filter(
            use_case=use_case,
            model_version=current,
            action__in=[ModelVersionEvent.Action.PROMOTE, ModelVersionEvent.Action.ROLLBACK],
        )
        .select_related("previous_champion")
        .first()
        if current is not None
        else None
    )
    if last_change is None or last_change.previous_champion is None:
        raise Conflict({"detail": "There is no previous champion to roll back to."})
    previous = last_change.previous_champion
    _served_here_check(use_case=use_case, model_version=previous)
    _role_set(current, ModelVersion.Role.RETIRED)
    _role_set(previous, ModelVersion.Role.CHAMPION)
    ModelVersionEvent.objects.create(
        use_case=use_case,
        model_version=previous,
        action=ModelVersionEvent.Action.ROLLBACK,
        previous_champion=current,
        actor=actor,
        reason=reason or f"rolled back from {current.version}",
    )
    event_record(
        type="model.changed",
        use_case_id=use_case.pk,
        data=_model_changed(previous, "rollback", actor, reason),
    )
    return previous
