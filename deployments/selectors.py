"""Reading use cases, policies and model versions, always through what the user may see."""

import threading
import uuid
from datetime import datetime
from functools import cached_property

from django.db import connection
from django.db.models import BooleanField, Max, OuterRef, QuerySet, Subquery
from django.db.models.expressions import RawSQL

from deployments.models import (
    AutomationPolicy,
    ChangeRequest,
    GuardrailBreach,
    GuardrailStatus,
    ModelVersion,
    ModelVersionEvent,
    RampPlan,
    UseCase,
    UseCaseMembership,
)
from reviewapp.core.compiled import CompiledRead
from reviewapp.core.errors import NotFound
from reviewapp.core.models import Job
from reviewapp.core.roles import Role, has_role


def use_cases_visible_to(user) -> QuerySet[UseCase]:
    """Admins see every use case; everyone else the use cases they are members of."""
    if not user.is_authenticated:
        return UseCase.objects.none()
    return _use_cases_visible(admin=has_role(user, Role.ADMIN), user_id=user.pk)


def _use_cases_visible(*, admin: bool, user_id) -> QuerySet[UseCase]:
    if admin:
        return UseCase.objects.all()
    return UseCase.objects.filter(memberships__user_id=user_id)


def use_case_get_for(*, user, slug: str) -> UseCase:
    """The use case, or NotFound when it does not exist or the user may not see it (the two
    are indistinguishable on purpose). It comes with the user's right to see personal data
    (``can_view_pii`` reads it instead of asking again)."""
    if not user.is_authenticated:
        raise NotFound({"detail": f"No use case {slug!r}."})
    if has_role(user, Role.ADMIN):
        use_case = _USE_CASE_FOR_ADMIN.first(slug=slug)
    else:
        use_case = _USE_CASE_FOR_MEMBER.first(slug=slug, user_id=user.pk)
    if use_case is None:
        raise NotFound({"detail": f"No use case {slug!r}."})
    if hasattr(use_case, "viewer_can_view_pii"):
        use_case.pii_right = (user.pk, use_case.viewer_can_view_pii)
    return use_case


# The read every page and API call of a use case makes, compiled once per process
# (``CompiledRead``): as ``use_cases_visible_to`` filters, with a member's PII right. The
# stand-ins are a slug and a user id nothing has.
_STAND_IN_SLUG = "\x00no-such-use-case-7770000201"
_STAND_IN_USER = -7_770_000_202
_USE_CASE_FOR_ADMIN = CompiledRead(
    lambda slug: _use_cases_visible(admin=True, user_id=None).filter(slug=slug)[:1],
    slug=_STAND_IN_SLUG,
)
_USE_CASE_FOR_MEMBER = CompiledRead(
    lambda slug, user_id: (
        _use_cases_visible(admin=False, user_id=user_id)
        .filter(slug=slug)
        .annotate(viewer_can_view_pii=_pii_right_sql(user_id))[:1]
    ),
    slug=_STAND_IN_SLUG,
    user_id=_STAND_IN_USER,
)


def _pii_right_sql(user_id: int) -> RawSQL:
    """``EXISTS`` a membership of the user's in the annotated use case that may see personal
    data. Plain SQL: an ORM ``Exists`` costs more to compile (0.5 ms) than the query it saves."""
    membership = UseCaseMembership._meta
    quote = connection.ops.quote_name
    column = {name: quote(membership.get_field(name).column) for name in ("use_case", "user")}
    sql = (
        f"EXISTS (SELECT 1 FROM {quote(membership.db_table)} m WHERE m.{column['use_case']} = "
        f"{quote(UseCase._meta.db_table)}.{quote(UseCase._meta.pk.column)} AND "
        f"m.{column['user']} = %s AND m.{quote(membership.get_field('can_view_pii').column)})"
    )
    return RawSQL(sql, [user_id], output_field=BooleanField())


def can_view_pii(*, user, use_case: UseCase) -> bool:
    if has_role(user, Role.ADMIN):
        return True
    # Read with the use case by ``use_case_get_for`` for this user, in this request.
    loaded = getattr(use_case, "pii_right", None)
    if loaded is not None and loaded[0] == user.pk:
        return loaded[1]
    return UseCaseMembership.objects.filter(
        use_case=use_case, user=user, can_view_pii=True
    ).exists()


def policy_current(*, use_case: UseCase) -> AutomationPolicy:
    policy = (
        AutomationPolicy.objects.filter(use_case=use_case)
        .select_related("changed_by", "restored_from")
        .order_by("-version")
        .first()
    )
    if policy is None:  # every use case is created with a policy; this is a broken invariant
        raise RuntimeError(f"use case {use_case.slug} has no automation policy")
    return policy


def policy_history(*, use_case: UseCase) -> QuerySet[AutomationPolicy]:
    return (
        AutomationPolicy.objects.filter(use_case=use_case)
        .select_related("changed_by", "restored_from")
        .order_by("-version")
    )


def model_versions_list(*, use_case: UseCase) -> QuerySet[ModelVersion]:
    return (
        ModelVersion.objects.filter(use_case=use_case)
        .defer("artifact")
        .select_related("created_by")
        .order_by("-created_at", "-id")
    )


SCORING_FIELDS = ("id", "use_case_id", "version", "role", "source", "artifact_sha256")


def champion_get(*, use_case: UseCase) -> ModelVersion | None:
    """The champion, with only what scoring needs loaded (the artifact and the reference
    statistics are large; they load on first access)."""
    return (
        ModelVersion.objects.filter(use_case=use_case, role=ModelVersion.Role.CHAMPION)
        .only(*SCORING_FIELDS)
        .first()
    )


def challengers_list(*, use_case: UseCase) -> list[ModelVersion]:
    return list(
        ModelVersion.objects.filter(use_case=use_case, role=ModelVersion.Role.CHALLENGER)
        .only(*SCORING_FIELDS)
        .order_by("id")
    )


class ScoringConfig:
    """What scoring and routing read of a use case on every item, each part read from the
    database on first use (a request needs one or two of them)."""

    def __init__(self, use_case: UseCase):
        self._use_case = use_case

    @cached_property
    def policy(self) -> AutomationPolicy:
        return policy_current(use_case=self._use_case)

    @cached_property
    def champion(self) -> ModelVersion | None:
        return champion_get(use_case=self._use_case)

    @cached_property
    def challengers(self) -> tuple[ModelVersion, ...]:
        return tuple(challengers_list(use_case=self._use_case))


# Per process: use case id -> (the config stamp it was read under, what was read).
_scoring_configs: dict[int, tuple[int, ScoringConfig]] = {}
# Per thread: use cases whose configuration this thread's open transaction is writing.
_writing = threading.local()


def scoring_config(*, use_case: UseCase) -> ScoringConfig:
    """The current policy, champion and challengers, kept per process under the use case's
    ``config_stamp``: every configuration write (``use_case_lock``) puts a new random stamp on
    the row, so reading the use case, which every request and task does anyway, is the one
    check. Pass a use case read by this request or task.

    A stamp is read before what is kept under it, so what is kept is never older than its
    stamp. While this thread's transaction writes the use case's configuration (it may yet roll
    back), the process's copy is neither read nor written; the stamp of a rolled-back write
    never comes back.
    """
    writing = getattr(_writing, "use_case_ids", set())
    if use_case.pk in writing:
        if connection.in_atomic_block:
            return ScoringConfig(use_case)  # this caller's own reads, shared with nobody
        writing.discard(use_case.pk)  # the write ended, committed or rolled back
    stamp = use_case.config_stamp
    kept = _scoring_configs.get(use_case.pk)
    if kept is not None and kept[0] == stamp:
        return kept[1]
    config = ScoringConfig(use_case)
    if len(_scoring_configs) > 10_000:  # never grows without bound
        _scoring_configs.clear()
    _scoring_configs[use_case.pk] = (stamp, config)
    return config


def scoring_config_writing(*, use_case_id: int) -> None:
    """This thread's transaction writes the use case's configuration: forget what this process
    kept of it, and keep nothing until the transaction ends (``scoring_config_written``)."""
    _scoring_configs.pop(use_case_id, None)
    ids = getattr(_writing, "use_case_ids", None)
    if ids is None:
        ids = _writing.use_case_ids = set()
    ids.add(use_case_id)


def scoring_config_written(*, use_case_id: int) -> None:
    getattr(_writing, "use_case_ids", set()).discard(use_case_id)
    _scoring_configs.pop(use_case_id, None)


def scoring_configs_forget() -> None:
    """Forget everything kept (tests, whose databases come and go)."""
    _scoring_configs.clear()
    getattr(_writing, "use_case_ids", set()).clear()


def model_version_get(*, use_case: UseCase, version: str, field: str = "version") -> ModelVersion:
    """The named version (its artifact deferred); NotFound names ``field``, the caller's
    name for the version it was given."""
    model_version = (
        ModelVersion.objects.filter(use_case=use_case, version=version).defer("artifact").first()
    )
    if model_version is None:
        raise NotFound({field: [f"No model version {version!r} for {use_case.slug}."]})
    return model_version


def model_version_artifact(model_version: ModelVersion) -> bytes | None:
    """The uploaded ``.skops`` bytes (read only when asked: they are deferred elsewhere), or
    None for a version whose predictions come from outside."""
    data = (
        ModelVersion.objects.filter(pk=model_version.pk).values_list("artifact", flat=True).first()
    )
    return bytes(data) if data else None


def policies_current_for(use_cases) -> dict[int, AutomationPolicy]:
    """The current policy of each use case, in one query: use case id -> policy."""
    latest = (
        AutomationPolicy.objects.filter(use_case=OuterRef("use_case"))
        .order_by("-version")
        .values("version")[:1]
    )
    rows = AutomationPolicy.objects.filter(
        use_case__in=use_cases, version=Subquery(latest)
    ).select_related("changed_by")
    return {policy.use_case_id: policy for policy in rows}


def model_roles_for(use_cases) -> dict[int, dict[str, list[ModelVersion]]]:
    """Champion and challengers of each use case, in one query."""
    result: dict[int, dict[str, list[ModelVersion]]] = {}
    rows = (
        ModelVersion.objects.filter(
            use_case__in=use_cases,
            role__in=[ModelVersion.Role.CHAMPION, ModelVersion.Role.CHALLENGER],
        )
        .defer("artifact", "reference_stats")
        .order_by("id")
    )
    for model_version in rows:
        roles = result.setdefault(model_version.use_case_id, {"champion": [], "challenger": []})
        roles[model_version.role].append(model_version)
    return result


def champion_changed_at(*, use_case: UseCase) -> datetime | None:
    """When the current champion took over from another one (promotion or rollback). The
    first champion of a use case took over from nobody: every output is its own."""
    return ModelVersionEvent.objects.filter(
        use_case=use_case,
        action__in=[ModelVersionEvent.Action.PROMOTE, ModelVersionEvent.Action.ROLLBACK],
        previous_champion__isnull=False,
    ).aggregate(at=Max("created_at"))["at"]


def breaches_open(*, use_cases) -> QuerySet[GuardrailBreach]:
    """Breaches nobody has resolved yet, newest first, for the banner."""
    return (
        GuardrailBreach.objects.filter(use_case__in=use_cases, resolved_at__isnull=True)
        .select_related("use_case", "policy")
        .order_by("-detected_at", "-id")
    )


def breaches_list(
    *,
    use_case: UseCase,
    since: datetime | None = None,
    until: datetime | None = None,
    newest_first: bool = True,
    limit: int = 50,
) -> list[GuardrailBreach]:
    """A use case's breaches detected in [``since``, ``until``), newest first unless told."""
    rows = GuardrailBreach.objects.filter(use_case=use_case).select_related(
        "policy", "model_version", "resolved_by"
    )
    if since is not None:
        rows = rows.filter(detected_at__gte=since)
    if until is not None:
        rows = rows.filter(detected_at__lt=until)
    order = ("-detected_at", "-id") if newest_first else ("detected_at", "id")
    return list(rows.order_by(*order)[:limit])


def breach_last_per_guardrail(*, use_case: UseCase) -> dict[str, datetime]:
    rows = (
        GuardrailBreach.objects.filter(use_case=use_case)
        .values("guardrail")
        .annotate(at=Max("detected_at"))
    )
    return {row["guardrail"]: row["at"] for row in rows}


def guardrail_status_get(*, use_case: UseCase) -> GuardrailStatus | None:
    return GuardrailStatus.objects.filter(use_case=use_case).first()


def ramp_plan_open(*, use_case: UseCase) -> RampPlan | None:
    """The plan that is active or paused, if any (there is at most one)."""
    return (
        RampPlan.objects.filter(use_case=use_case, state__in=RampPlan.OPEN_STATES)
        .select_related("created_by")
        .first()
    )


def ramp_plans_latest(*, use_case: UseCase, limit: int = 5) -> list[RampPlan]:
    return list(
        RampPlan.objects.filter(use_case=use_case)
        .select_related("created_by")
        .prefetch_related("events__actor", "events__policy")
        .order_by("-created_at", "-id")[:limit]
    )


def ramp_plans_open_for(use_cases) -> dict[int, RampPlan]:
    rows = RampPlan.objects.filter(use_case__in=use_cases, state__in=RampPlan.OPEN_STATES)
    return {plan.use_case_id: plan for plan in rows}


def backtests_list(*, use_case: UseCase, limit: int = 20) -> list[Job]:
    return list(
        Job.objects.filter(use_case=use_case, kind=Job.Kind.BACKTEST)
        .select_related("created_by")
        .order_by("-created_at")[:limit]
    )


def backtest_get(*, use_case: UseCase, job_id) -> Job:
    try:
        job_id = uuid.UUID(str(job_id))
    except ValueError:
        raise NotFound({"detail": "No such backtest."}) from None
    job = (
        Job.objects.filter(pk=job_id, use_case=use_case, kind=Job.Kind.BACKTEST)
        .select_related("created_by")
        .first()
    )
    if job is None:
        raise NotFound({"detail": "No such backtest."})
    return job


def backtest_latest(*, use_case: UseCase, model_version: str | None = None) -> Job | None:
    """The newest finished backtest, of ``model_version`` when given."""
    jobs = Job.objects.filter(use_case=use_case, kind=Job.Kind.BACKTEST, state=Job.State.DONE)
    if model_version:
        jobs = jobs.filter(params__model_version=model_version)
    return jobs.order_by("-finished_at", "-created_at").first()


def change_requests_list(*, use_case: UseCase, pending_only: bool = False):
    """A use case's four-eyes requests, newest first, with who asked and who decided."""
    requests = ChangeRequest.objects.filter(use_case=use_case).select_related(
        "requested_by", "decision", "decision__decided_by"
    )
    if pending_only:
        requests = requests.filter(decision__isnull=True)
    return requests


def model_history(*, use_case: UseCase, limit: int = 30) -> list[ModelVersionEvent]:
    """The latest role changes of a use case's models, newest first, with who and why."""
    return list(
        ModelVersionEvent.objects.filter(use_case=use_case)
        .select_related("model_version", "previous_champion", "actor")
        .order_by("-created_at", "-id")[:limit]
    )
