"""Writing model versions: registering uploads and callers' versions, and the role changes
(promote, challenge, retire, rollback) that decide which model answers for a use case."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from deployments.ml.environment import (
    EnvironmentInvalid,
    declared_versions_clean,
    environment_record,
    warnings_describe,
)
from deployments.ml.latency import latency_over_budget
from deployments.ml.loading import ModelRejected
from deployments.ml.reference import reference_stats_compute
from deployments.models import ModelVersion, ModelVersionEvent, UseCase
from deployments.schema import schema_example_rows
from deployments.selectors import champion_get, model_version_get
from deployments.services.estimators import estimator_cache_put, model_load_limited
from deployments.services.model_uploads import model_check, reference_frame
from deployments.services.use_cases import use_case_lock
from reviewapp.core.errors import Conflict, InvalidInput
from reviewapp.core.events import event_record

if TYPE_CHECKING:
    import pandas as pd

REASON_REQUIRED = "a reason is required to change the champion"
NO_MODELS_HERE = "this use case takes predictions from its callers; it has no models here"


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
        loaded = model_load_limited(data=data, record_warnings=True)
        if use_case.is_classification and not hasattr(loaded.estimator, "predict_proba"):
            raise ModelRejected("a classifier needs predict_proba")
        frame = reference_frame(use_case=use_case, reference=reference)
        stats = reference_stats_compute(frame, use_case.features)
        checked = model_check(
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
    estimator_cache_put(model_version=model_version, estimator=loaded.estimator)
    return model_version


@transaction.atomic
def _model_version_store(*, model_version: ModelVersion, actor) -> None:
    """Insert a checked model version; the first of its use case becomes champion."""
    use_case = use_case_lock(use_case_id=model_version.use_case_id)
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
    _model_changed_record(model_version, "register", actor)
    if first:
        ModelVersionEvent.objects.create(
            use_case=use_case,
            model_version=model_version,
            action=ModelVersionEvent.Action.PROMOTE,
            actor=actor,
            reason="first model of the use case",
        )
        _model_changed_record(model_version, "promote", actor, "first model of the use case")


def _model_changed_record(
    model_version: ModelVersion, action: str, actor, reason: str = ""
) -> None:
    """Append the ``model.changed`` event, in the caller's transaction."""
    event_record(
        type="model.changed",
        use_case_id=model_version.use_case_id,
        data={
            "use_case": model_version.use_case.slug,
            "action": action,
            "version": model_version.version,
            "role": model_version.role,
            "by": actor.get_username() if actor else None,
            "reason": reason,
        },
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
        use_case_lock(use_case_id=use_case.pk)
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
        _model_changed_record(
            model_version, "register", None, "first seen in a caller's prediction"
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


def _role_set(model_version: ModelVersion, role: str) -> None:
    model_version.role = role
    model_version.save(update_fields=["role"])


@dataclass(frozen=True)
class _Transition:
    """How one kind of role change treats its target; ``_transition`` does the rest."""

    action: str  # the history event it appends
    role: str  # the role the target takes; taking the champion's retires the old champion
    champion_refused: str = ""  # the conflict when the target is the champion ("" allows it)
    done_when_in_role: bool = False  # a target already in ``role`` is left as it is, no event
    needs_artifact: bool = True  # the target must be a model this app can score with
    reason_required: bool = False  # changing the champion is deliberate: the caller says why


_PROMOTE = _Transition(
    action=ModelVersionEvent.Action.PROMOTE,
    role=ModelVersion.Role.CHAMPION,
    champion_refused="{version!r} is already the champion",
    reason_required=True,
)
_CHALLENGE = _Transition(
    action=ModelVersionEvent.Action.CHALLENGE,
    role=ModelVersion.Role.CHALLENGER,
    champion_refused="{version!r} is the champion; promote another first",
    done_when_in_role=True,
)
_RETIRE = _Transition(
    action=ModelVersionEvent.Action.RETIRE,
    role=ModelVersion.Role.RETIRED,
    champion_refused="{version!r} is the champion; promote another first",
    done_when_in_role=True,
    needs_artifact=False,
)
_ROLLBACK = _Transition(
    action=ModelVersionEvent.Action.ROLLBACK,
    role=ModelVersion.Role.CHAMPION,
    reason_required=True,
)


@transaction.atomic
def _transition(
    *,
    use_case: UseCase,
    transition: _Transition,
    target_get: Callable[[ModelVersion | None], ModelVersion],
    actor,
    reason: str,
) -> ModelVersion:
    """Change the role of the version ``target_get`` picks (given the current champion, read
    under the use case's lock) and append the event to the use case's model history."""
    reason = reason.strip() if isinstance(reason, str) else ""
    if transition.reason_required and not reason:
        raise InvalidInput({"reason": [REASON_REQUIRED]})
    use_case_lock(use_case_id=use_case.pk)
    takes_champion = transition.role == ModelVersion.Role.CHAMPION
    champion = champion_get(use_case=use_case) if takes_champion else None
    target = target_get(champion)
    if transition.champion_refused and target.role == ModelVersion.Role.CHAMPION:
        raise Conflict({"version": [transition.champion_refused.format(version=target.version)]})
    if transition.done_when_in_role and target.role == transition.role:
        return target
    if transition.needs_artifact:
        _served_here_check(use_case=use_case, model_version=target)
    if champion is not None:  # retired first: a use case never has two champions
        _role_set(champion, ModelVersion.Role.RETIRED)
    _role_set(target, transition.role)
    ModelVersionEvent.objects.create(
        use_case=use_case,
        model_version=target,
        action=transition.action,
        previous_champion=champion,
        actor=actor,
        reason=reason,
    )
    _model_changed_record(target, transition.action, actor, reason)
    return target


def _named(*, use_case: UseCase, version: str) -> Callable[[ModelVersion | None], ModelVersion]:
    return lambda champion: model_version_get(use_case=use_case, version=version)


def model_version_promote(*, use_case: UseCase, version: str, actor, reason: str) -> ModelVersion:
    """Make ``version`` the champion; the old champion retires (and can be rolled back to)."""
    return _transition(
        use_case=use_case,
        transition=_PROMOTE,
        target_get=_named(use_case=use_case, version=version),
        actor=actor,
        reason=reason,
    )


def model_version_challenge(
    *, use_case: UseCase, version: str, actor, reason: str = ""
) -> ModelVersion:
    """Run ``version`` as a challenger: it scores every new item in shadow."""
    return _transition(
        use_case=use_case,
        transition=_CHALLENGE,
        target_get=_named(use_case=use_case, version=version),
        actor=actor,
        reason=reason,
    )


def model_version_retire(
    *, use_case: UseCase, version: str, actor, reason: str = ""
) -> ModelVersion:
    """Take ``version`` out of service; the champion cannot be retired without a successor."""
    return _transition(
        use_case=use_case,
        transition=_RETIRE,
        target_get=_named(use_case=use_case, version=version),
        actor=actor,
        reason=reason,
    )


def _champion_before(*, use_case: UseCase) -> Callable[[ModelVersion | None], ModelVersion]:
    def target_get(champion: ModelVersion | None) -> ModelVersion:
        last_change = (
            ModelVersionEvent.objects.filter(
                use_case=use_case,
                model_version=champion,
                action__in=[ModelVersionEvent.Action.PROMOTE, ModelVersionEvent.Action.ROLLBACK],
            )
            .select_related("previous_champion")
            .first()
            if champion is not None
            else None
        )
        if last_change is None or last_change.previous_champion is None:
            raise Conflict({"detail": "There is no previous champion to roll back to."})
        return last_change.previous_champion

    return target_get


def model_version_rollback(*, use_case: UseCase, actor, reason: str) -> ModelVersion:
    """Make the champion before the current one champion again."""
    return _transition(
        use_case=use_case,
        transition=_ROLLBACK,
        target_get=_champion_before(use_case=use_case),
        actor=actor,
        reason=reason,
    )
