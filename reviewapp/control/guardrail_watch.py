"""Watching a use case: guardrails read from recent traffic, breaches acted on, ramp plans moved.

``use_case_watch`` runs after decisions and ingestion (queued at most once per
``GUARDRAIL_CHECK_INTERVAL_SECONDS`` per use case by ``use_case_watch_soon``) and on a beat.

Each guardrail looks at the last N observations *since its own last breach and since the
current champion took over*: a breach consumes the evidence that caused it, so after a manager
restores the level the guardrail judges fresh traffic, not the same bad window again; and a
new champion is judged on its own outputs.

On a breach the system writes a policy version (``policy_change(actor=None, reason=...)``)
stepping the level down to the fallback and, when a ramp plan runs, its traffic one step back;
records a ``GuardrailBreach`` per broken guardrail; and queues the webhook after commit, so a
failing webhook can never undo or delay the step-down.
"""

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from deployments.ml.reference import features_psi
from deployments.models import (
    AutomationPolicy,
    GuardrailBreach,
    GuardrailStatus,
    RampPlan,
    UseCase,
)
from deployments.policy import TaskReason
from deployments.policy.guardrails import (
    GuardrailConfig,
    GuardrailsInvalid,
    Limit,
    Reading,
    State,
    Verdict,
    breach_reason,
    guardrails_evaluate,
    guardrails_parse,
    outcomes_reading,
    step_down_level,
)
from deployments.policy.ramp import RampMove, ramp_next
from deployments.selectors import (
    breach_last_per_guardrail,
    champion_changed_at,
    champion_get,
    policy_current,
    ramp_plan_open,
)
from deployments.services.policies import policy_change
from deployments.services.use_cases import use_case_lock
from reviewapp.control.ramp_plans import (
    ramp_plan_spec,
    ramp_plan_step_back,
    ramp_plan_tick,
    ramp_progress,
)
from reviewapp.core.errors import Conflict, NotFound
from reviewapp.core.events import events_record
from reviewapp.reviews.models import Decision, Disagreement, Item

logger = logging.getLogger(__name__)


def guardrails_config(policy: AutomationPolicy) -> GuardrailConfig:
    """The policy's guardrails; a stored configuration that no longer parses (written before
    validation existed) counts as none, loudly."""
    try:
        return guardrails_parse(policy.guardrails)
    except GuardrailsInvalid as exc:
        logger.error(
            "use case %s policy v%s: bad guardrails %s",
            policy.use_case_id,
            policy.version,
            exc.errors,
        )
        return GuardrailConfig()


# --- readings: the observations each guardrail judges, oldest first ---------------------------
#
# Each reader fetches at most ``window`` rows, newest first (the index order), and hands them
# over reversed: the sequential test reads them in the order they happened.


def _since(rows, field_name: str, since: datetime | None):
    return rows.filter(**{f"{field_name}__gt": since}) if since else rows


def _override_reading(*, use_case: UseCase, since, window: int) -> Reading:
    kinds = list(
        _since(
            Decision.objects.filter(
                use_case=use_case,
                kind__in=[Decision.Kind.ACCEPTED, Decision.Kind.OVERRIDDEN],
            ),
            "created_at",
            since,
        )
        .order_by("-created_at", "-id")
        .values_list("kind", flat=True)[:window]
    )
    return outcomes_reading(kind == Decision.Kind.OVERRIDDEN for kind in reversed(kinds))


def _null_output_reading(*, use_case: UseCase, since, window: int) -> Reading:
    errors = list(
        _since(
            Item.objects.filter(use_case=use_case, prediction__isnull=False),
            "received_at",
            since,
        )
        .order_by("-received_at", "-id")
        .values_list("prediction__error", flat=True)[:window]
    )
    return outcomes_reading(bool(error) for error in reversed(errors))


def _audit_error_reading(*, use_case: UseCase, since, window: int) -> Reading:
    audits = list(
        _since(
            Decision.objects.filter(use_case=use_case, task__reason=TaskReason.AUDIT),
            "created_at",
            since,
        )
        .order_by("-created_at", "-id")
        .values_list("pk", flat=True)[:window]
    )
    wrong = (
        set(
            Disagreement.objects.filter(
                decision_id__in=audits, kind=Disagreement.Kind.AUDIT
            ).values_list("decision_id", flat=True)
        )
        if audits
        else set()
    )
    return outcomes_reading(pk in wrong for pk in reversed(audits))


def _drift_reading(*, use_case: UseCase, since, window: int) -> Reading:
    champion = champion_get(use_case=use_case)
    reference = champion.reference_stats if champion else None
    if not reference or not reference.get("features"):
        return Reading(None, 0, "no reference statistics for the champion")
    rows = list(
        _since(Item.objects.filter(use_case=use_case), "received_at", since)
        .order_by("-received_at", "-id")
        .values_list("features", flat=True)[:window]
    )
    # Identifiers, personal data and free text take new values all the time by nature; their
    # PSI against the reference would always explode, so drift leaves them out.
    excluded = use_case.drift_exclusions
    judged = [spec for spec in use_case.features if spec["name"] not in excluded]
    psis = features_psi(rows, judged, reference)
    by_feature = {name: value for name, value in psis.items() if value is not None}
    if not by_feature:
        return Reading(None, len(rows))
    worst = max(by_feature, key=by_feature.get)
    return Reading(by_feature[worst], len(rows), f"worst feature: {worst}")


READERS = {
    "override_rate": _override_reading,
    "null_output_rate": _null_output_reading,
    "drift_psi": _drift_reading,
    "audit_error_rate": _audit_error_reading,
}


def guardrail_readings(*, use_case: UseCase, limits: tuple[Limit, ...]) -> dict[str, Reading]:
    """What each configured guardrail observes now (see the module docstring for the window)."""
    last_breach = breach_last_per_guardrail(use_case=use_case)
    champion_since = champion_changed_at(use_case=use_case)
    readings = {}
    for limit in limits:
        starts = [at for at in (last_breach.get(limit.name), champion_since) if at is not None]
        readings[limit.name] = READERS[limit.name](
            use_case=use_case, since=max(starts) if starts else None, window=limit.window
        )
    return readings


# --- acting on what was read -----------------------------------------------------------------


@dataclass
class WatchResult:
    verdicts: tuple[Verdict, ...] = ()
    breaches: list[GuardrailBreach] = field(default_factory=list)
    policy: AutomationPolicy | None = None  # the version the system wrote, if any
    ramp: RampMove | None = None
    resolved: int = 0


def _status_save(*, use_case: UseCase, verdicts: tuple[Verdict, ...], now) -> None:
    readings = {
        v.limit.name: {
            "value": v.reading.value,
            "sample": v.reading.sample,
            "max": v.limit.max,
            "window": v.limit.window,
            "min_sample": v.limit.min_sample,
            "state": v.state.value,
            "text": v.describe(),
            **_evidence(v),
        }
        for v in verdicts
    }
    GuardrailStatus.objects.update_or_create(
        use_case=use_case, defaults={"evaluated_at": now, "readings": readings}
    )


def _evidence(verdict: Verdict) -> dict:
    """A rate's interval and which rule breached it, for the page."""
    if verdict.judgement is None:
        return {}
    estimate = verdict.judgement.estimate
    return {"low": estimate.low, "high": estimate.high, "because": verdict.judgement.because}


def _breaches_record(*, use_case, verdicts, config, policy, now) -> list[GuardrailBreach]:
    champion = champion_get(use_case=use_case)
    breaches = GuardrailBreach.objects.bulk_create(
        GuardrailBreach(
            use_case=use_case,
            guardrail=v.limit.name,
            observed=v.reading.value,
            limit=v.limit.max,
            window=v.limit.window,
            sample_size=v.reading.sample,
            model_version=champion,
            policy=policy,
            detail=v.describe(),
            detected_at=now,
            webhook_url=config.webhook_url,
        )
        for v in verdicts
    )
    events_record(
        type="guardrail.breached",
        use_case_id=use_case.pk,
        datas=[breach_payload(b) for b in breaches],
    )
    return breaches


def _act_on_breaches(*, use_case, policy, config, plan, acting: list[Verdict], now) -> WatchResult:
    step_to = step_down_level(current=policy.level, config=config)
    changes: dict = {}
    if step_to is not None:
        changes["level"] = step_to.value
    reason = breach_reason(verdicts=tuple(acting), step_to=step_to)
    move = None
    if plan is not None:
        move = ramp_next(
            plan=ramp_plan_spec(plan),
            progress=ramp_progress(plan=plan, use_case=use_case, now=now),
            guardrails_hold=False,
        )
        if move.traffic_percent != policy.traffic_percent:
            changes["traffic_percent"] = move.traffic_percent
            reason = f"{reason}; {move.reason}"
    written = (
        policy_change(use_case=use_case, actor=None, changes=changes, reason=reason, now=now)
        if changes
        else None
    )
    if plan is not None:
        ramp_plan_step_back(plan=plan, move=move, because=reason, policy=written, now=now)
    breaches = _breaches_record(
        use_case=use_case, verdicts=acting, config=config, policy=written, now=now
    )
    logger.warning("use case %s: %s", use_case.slug, reason)
    return WatchResult(breaches=breaches, policy=written, ramp=move)


def use_case_watch(*, use_case_id: int, now=None) -> WatchResult:
    """Evaluate a use case's guardrails and move its ramp plan; idempotent for a given state
    of the data (a breach consumes its window, so running twice records it once)."""
    now = now or timezone.now()
    use_case = UseCase.objects.filter(pk=use_case_id).first()
    if use_case is None:
        return WatchResult()
    policy = policy_current(use_case=use_case)
    config = guardrails_config(policy)
    plan = ramp_plan_open(use_case=use_case)
    if not config.limits and plan is None:
        _status_save(use_case=use_case, verdicts=(), now=now)
        return WatchResult()
    # Read outside the transaction: on SQLite a transaction holds the database's write lock.
    verdicts = guardrails_evaluate(
        config=config, readings=guardrail_readings(use_case=use_case, limits=config.limits)
    )
    with transaction.atomic():
        use_case_lock(use_case_id=use_case.pk)
        if policy_current(use_case=use_case).pk != policy.pk:
            return WatchResult(verdicts=verdicts)  # changed meanwhile: the next watch judges it
        plan = ramp_plan_open(use_case=use_case)
        open_names = set(
            GuardrailBreach.objects.filter(use_case=use_case, resolved_at__isnull=True).values_list(
                "guardrail", flat=True
            )
        )
        can_step = step_down_level(current=policy.level, config=config) is not None
        plan_running = plan is not None and plan.state == RampPlan.State.ACTIVE
        # A breach already open, with nothing left to step down, is not news: no new row and
        # no new webhook call for every fresh window of the same bad traffic.
        acting = [
            v
            for v in verdicts
            if v.breached and (v.limit.name not in open_names or can_step or plan_running)
        ]
        result = WatchResult(verdicts=verdicts)
        if acting:
            result = _act_on_breaches(
                use_case=use_case, policy=policy, config=config, plan=plan, acting=acting, now=now
            )
            result.verdicts = verdicts
        holding = [v.limit.name for v in verdicts if v.state is State.HOLDING]
        if holding:
            texts = {v.limit.name: v.describe() for v in verdicts}
            for breach in GuardrailBreach.objects.filter(
                use_case=use_case, guardrail__in=holding, resolved_at__isnull=True
            ):
                breach.resolved_at = now
                breach.resolution = f"held again: {texts[breach.guardrail]}"
                breach.save(update_fields=["resolved_at", "resolution"])
                result.resolved += 1
        still_open = GuardrailBreach.objects.filter(
            use_case=use_case, resolved_at__isnull=True
        ).exists()
        if not acting and plan_running and not still_open and not any(v.breached for v in verdicts):
            result.ramp = ramp_plan_tick(
                use_case=use_case,
                plan=plan,
                progress=ramp_progress(plan=plan, use_case=use_case, now=now),
                now=now,
            )
        _status_save(use_case=use_case, verdicts=verdicts, now=now)
    return result


# Per process: the use cases whose next watch is already queued, with the time before which
# no other can be (the queued one's time plus the interval). Only this module writes the
# throttle, so until then every caller in this process would lose the conditional update:
# it is skipped, two queries fewer on every ingestion and decision.
_watch_not_before: dict[int, datetime] = {}


def use_case_watch_soon(*, use_case_id: int, now=None) -> bool:
    """Queue a watch of the use case unless one was queued within the check interval.

    Called after every decision and ingestion, so it must be cheap: one conditional UPDATE that
    exactly one of many concurrent callers wins, and none at all while this process knows the
    interval since the last queued watch has not passed. The watch runs after the caller's
    commit and can never fail the caller (a guardrail check must not lose a decision).
    """
    # The tasks module imports this service to run it, so the task is imported here.
    from reviewapp.control.tasks import watch_use_case

    now = now or timezone.now()
    interval = timedelta(seconds=settings.GUARDRAIL_CHECK_INTERVAL_SECONDS)
    not_before = _watch_not_before.get(use_case_id)
    # A clock that went back (an injected one) makes the note meaningless: ask the database.
    if not_before is not None and not_before - interval <= now < not_before:
        return False
    due = Q(enqueued_at__isnull=True) | Q(enqueued_at__lte=now - interval)
    won = GuardrailStatus.objects.filter(due, use_case_id=use_case_id).update(enqueued_at=now)
    queued_at = now
    if not won:
        status, won = GuardrailStatus.objects.get_or_create(
            use_case_id=use_case_id, defaults={"enqueued_at": now}
        )
        queued_at = status.enqueued_at or now
    if won:
        # Never fails the caller, nor holds it long on a hung broker (reviewapp.celery.Task).
        watch_use_case.delay_on_commit(use_case_id=use_case_id)
    # Noted once committed: a rolled-back caller queued nothing, and the next caller must try.
    transaction.on_commit(lambda: _watch_note(use_case_id, queued_at + interval))
    return bool(won)


def _watch_note(use_case_id: int, not_before: datetime) -> None:
    if len(_watch_not_before) > 10_000:  # use cases come and go: never grows without bound
        _watch_not_before.clear()
    _watch_not_before[use_case_id] = not_before


def watch_notes_clear() -> None:
    """Forget what this process knows of queued watches (tests, whose clocks jump)."""
    _watch_not_before.clear()


def use_cases_watch_all(*, now=None) -> int:
    """The beat's sweep: queue a watch of every use case (ramp plans on an interval move even
    when no traffic arrives to trigger a watch)."""
    count = 0
    for use_case_id in UseCase.objects.values_list("pk", flat=True):
        count += use_case_watch_soon(use_case_id=use_case_id, now=now)
    return count


@transaction.atomic
def guardrail_breach_resolve(*, use_case: UseCase, breach_id: int, actor, note: str = "", now=None):
    """A manager closes a breach (it leaves the banner; the level stays where it is)."""
    breach = (
        GuardrailBreach.objects.select_for_update().filter(pk=breach_id, use_case=use_case).first()
    )
    if breach is None:
        raise NotFound({"breach": ["no such breach"]})
    if breach.resolved_at is not None:
        raise Conflict({"detail": "This breach is already resolved."})
    breach.resolved_at = now or timezone.now()
    breach.resolved_by = actor
    breach.resolution = (note or "").strip() or f"resolved by {actor}"
    breach.save(update_fields=["resolved_at", "resolved_by", "resolution"])
    return breach


# --- the webhook -----------------------------------------------------------------------------


def breach_payload(breach: GuardrailBreach) -> dict:
    policy = breach.policy
    return {
        "event": "guardrail.breached",
        "use_case": breach.use_case.slug,
        "guardrail": breach.guardrail,
        "observed": breach.observed,
        "limit": breach.limit,
        "window": breach.window,
        "sample_size": breach.sample_size,
        "detail": breach.detail,
        "detected_at": breach.detected_at.isoformat(),
        "model_version": breach.model_version.version if breach.model_version_id else None,
        "policy": None
        if policy is None
        else {
            "version": policy.version,
            "level": policy.level,
            "traffic_percent": policy.traffic_percent,
            "reason": policy.reason,
        },
    }
