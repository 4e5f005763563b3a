"""Backtests and replays: score a model version over a window of human-labelled history.

One job does both:

* the trade-off curve: for each of 100 confidence thresholds, the share of the window's items
  the model would have decided alone (automation rate) and the share of those it got wrong
  against the human label (error rate);
* the replay: every item routed again, through the *current* policy with this model's output
  and the item's sticky buckets, next to how it was routed at the time.

Only items with a human answer can be judged, so items the model decided alone and nobody
audited are not in the window (the page says so).
"""

import logging
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from deployments.ml.scoring import features_frame, score_columns
from deployments.models import ModelVersion, UseCase
from deployments.policy import Buckets, NullOutput, Route, TaskReason, assess_output, route
from deployments.selectors import model_version_get, policy_current
from deployments.services.estimators import estimator_for
from deployments.services.policies import policy_spec
from reviewapp.core.errors import InvalidInput, NotFound
from reviewapp.core.jobs import job_claim, job_create, job_fail, job_finish, job_progress
from reviewapp.core.models import Job
from reviewapp.reviews.models import Item

logger = logging.getLogger(__name__)

THRESHOLDS = np.round(np.linspace(0.01, 1.0, 100), 2)
ROUTES = [r.value for r in Route]


def _labelled_items(use_case: UseCase, params: dict[str, Any]):
    items = Item.objects.filter(use_case=use_case, decision_source=Item.Source.HUMAN)
    if params.get("since"):
        items = items.filter(received_at__gte=datetime.fromisoformat(params["since"]))
    return items.filter(received_at__lt=datetime.fromisoformat(params["until"]))


@transaction.atomic
def backtest_start(
    *,
    use_case: UseCase,
    actor,
    model_version: Any,
    since: datetime | None = None,
    until: datetime | None = None,
    now=None,
) -> Job:
    """Queue a backtest of ``model_version`` over the items received in [since, until) that
    humans decided. ``until`` defaults to now and is frozen into the job, so the job's result
    describes a fixed window."""
    now = now or timezone.now()
    if not isinstance(model_version, str) or not model_version:
        raise InvalidInput({"model_version": ["the version to backtest is required"]})
    try:
        version = model_version_get(use_case=use_case, version=model_version)
    except NotFound:
        raise InvalidInput({"model_version": [f"no model version {model_version!r}"]}) from None
    if version.source == ModelVersion.Source.EXTERNAL:
        raise InvalidInput(
            {"model_version": ["this version is served outside the app; it cannot be rescored"]}
        )
    until = until or now
    if since is not None and since >= until:
        raise InvalidInput({"until": ["must be after since"]})
    params = {
        "model_version": version.version,
        "since": since.isoformat() if since else None,
        "until": until.isoformat(),
    }
    # The tasks module imports this service to run it, so the task is imported here.
    from reviewapp.control.tasks import run_backtest

    job = job_create(
        kind=Job.Kind.BACKTEST,
        total=_labelled_items(use_case, params).count(),
        use_case=use_case,
        created_by=actor,
        params=params,
    )
    run_backtest.delay_on_commit(job_id=str(job.pk))
    return job


class _Tally:
    """What a backtest accumulates chunk by chunk: the curve's counts and the replay's."""

    def __init__(self) -> None:
        self.scored = 0
        self.null_outputs = 0
        self.null_reasons: Counter[str] = Counter()
        self.correct = 0
        self.squared_error = 0.0
        self.absolute_error = 0.0
        # Item counts by the index of the highest threshold its confidence reaches (0: none).
        self.automated_at = np.zeros(len(THRESHOLDS) + 1, dtype=np.int64)
        self.wrong_at = np.zeros(len(THRESHOLDS) + 1, dtype=np.int64)
        self.with_confidence = 0
        self.routes_now: Counter[str] = Counter()
        self.routes_then: Counter[str] = Counter()
        self.moves: Counter[tuple[str, str]] = Counter()
        self.tasks: Counter[str] = Counter()
        self.auto_wrong = 0
        # What the cost curve needs: wrong items by (true, predicted) label pair, and the sums
        # of absolute and squared errors, by the same threshold index as ``automated_at``.
        self.wrong_pairs_at: dict[tuple[str, str], np.ndarray] = {}
        self.abs_error_at = np.zeros(len(THRESHOLDS) + 1)
        self.abs_error_sq_at = np.zeros(len(THRESHOLDS) + 1)

    def curve(self, *, regression: bool = False) -> dict[str, list]:
        """The stored curve; the cost curve's extra counts only for the task type that has them
        (label pairs for classification, error sums for regression), to keep the job small."""

        def at_or_above(counts):  # reached index k counts for every threshold up to k
            return np.cumsum(counts[::-1])[::-1][1:]

        automated = at_or_above(self.automated_at)
        wrong = at_or_above(self.wrong_at)
        total = max(self.scored, 1)
        curve = {
            "thresholds": THRESHOLDS.tolist(),
            "automated": automated.tolist(),
            "errors": wrong.tolist(),
            "automation_rate": (automated / total).tolist(),
            "error_rate": [
                (int(w) / int(a)) if a else None for a, w in zip(automated, wrong, strict=True)
            ],
        }
        if regression:
            curve["abs_error"] = at_or_above(self.abs_error_at).tolist()
            curve["abs_error_sq"] = at_or_above(self.abs_error_sq_at).tolist()
        else:
            curve["wrong_pairs"] = [
                {"true": true, "predicted": predicted, "errors": at_or_above(counts).tolist()}
                for (true, predicted), counts in sorted(self.wrong_pairs_at.items())
            ]
        return curve


def _chunk_tally(*, tally: _Tally, use_case: UseCase, spec, estimator, rows: list[tuple]) -> None:
    frame = features_frame([row[1] for row in rows], use_case.features)
    scored = score_columns(
        estimator, frame, task_type=use_case.task_type, tolerance=use_case.tolerance
    )
    classification = use_case.is_classification
    labels = use_case.labels if classification else None
    n = len(rows)
    valid = np.zeros(n, dtype=bool)
    wrong = np.zeros(n, dtype=bool)
    difference = np.zeros(n)  # regression: |model - human|
    pairs: list[tuple[str, str] | None] = [None] * n  # classification: (true, predicted)
    for i, (_pk, _features, human_label, human_value, then, ramp, audit, double) in enumerate(rows):
        if scored.errors[i]:
            verdict = NullOutput(reason=scored.errors[i])
        else:
            confidence = scored.confidence[i]
            verdict = assess_output(
                label=scored.labels[i] if classification else None,
                value=None if classification else scored.values[i],
                confidence=None if confidence != confidence else float(confidence),
                labels=labels,
                value_min=use_case.value_min,
                value_max=use_case.value_max,
            )
        if isinstance(verdict, NullOutput):
            tally.null_reasons[verdict.reason[:120]] += 1
        else:
            valid[i] = True
            if classification:
                wrong[i] = verdict.label != human_label
                pairs[i] = (human_label, verdict.label)
            else:
                difference[i] = abs(verdict.value - human_value)
                wrong[i] = difference[i] > (use_case.tolerance or 0.0)
                tally.squared_error += difference[i] ** 2
                tally.absolute_error += difference[i]
        decision = route(
            policy=spec,
            output=verdict,
            buckets=Buckets(ramp=ramp, audit=audit, double_review=double),
        )
        now_route = decision.route.value
        tally.routes_now[now_route] += 1
        tally.routes_then[then or "pending"] += 1
        tally.moves[(then or "pending", now_route)] += 1
        for task in decision.tasks:
            tally.tasks[task.reason.value] += 1
        if decision.automated and wrong[i]:
            tally.auto_wrong += 1
    tally.scored += n
    tally.null_outputs += int(n - valid.sum())
    tally.correct += int((valid & ~wrong).sum())
    confident = valid & ~np.isnan(scored.confidence)
    tally.with_confidence += int(confident.sum())
    reached = np.searchsorted(THRESHOLDS, scored.confidence[confident], side="right")
    tally.automated_at += np.bincount(reached, minlength=len(THRESHOLDS) + 1)
    tally.wrong_at += np.bincount(
        reached, weights=wrong[confident].astype(float), minlength=len(THRESHOLDS) + 1
    ).astype(np.int64)
    size = len(THRESHOLDS) + 1
    if classification:
        wrong_confident = np.flatnonzero(confident & wrong)
        by_pair: dict[tuple[str, str], list[int]] = {}
        reached_of = dict(zip(np.flatnonzero(confident).tolist(), reached.tolist(), strict=True))
        for i in wrong_confident.tolist():
            by_pair.setdefault(pairs[i], []).append(reached_of[i])
        for pair, indices in by_pair.items():
            counts = tally.wrong_pairs_at.setdefault(pair, np.zeros(size, dtype=np.int64))
            counts += np.bincount(indices, minlength=size)
    else:
        errors = difference[confident]
        tally.abs_error_at += np.bincount(reached, weights=errors, minlength=size)
        tally.abs_error_sq_at += np.bincount(reached, weights=errors**2, minlength=size)


def _result(*, tally: _Tally, use_case: UseCase, policy, version: ModelVersion, params) -> dict:
    judged = tally.scored - tally.null_outputs
    quality: dict[str, Any] = {"judged": judged}
    if use_case.is_classification:
        quality["accuracy"] = tally.correct / judged if judged else None
    else:
        quality["within_tolerance"] = tally.correct / judged if judged else None
        quality["mse"] = tally.squared_error / judged if judged else None
        quality["mae"] = tally.absolute_error / judged if judged else None
    return {
        "model_version": version.version,
        "since": params.get("since"),
        "until": params.get("until"),
        "items": tally.scored,
        "null_outputs": tally.null_outputs,
        "null_reasons": dict(tally.null_reasons.most_common(5)),
        "with_confidence": tally.with_confidence,
        **quality,
        "curve": tally.curve(regression=not use_case.is_classification),
        "policy": {
            "version": policy.version,
            "level": policy.level,
            "confidence_threshold": policy.confidence_threshold,
            "traffic_percent": policy.traffic_percent,
            "audit_rate": policy.audit_rate,
            "double_review_rate": policy.double_review_rate,
        },
        "replay": {
            "routes_now": {r: tally.routes_now.get(r, 0) for r in ROUTES},
            "routes_then": dict(tally.routes_then),
            "moves": [
                {"from": a, "to": b, "items": n} for (a, b), n in sorted(tally.moves.items())
            ],
            "automated_wrong": tally.auto_wrong,
            "tasks": {reason.value: tally.tasks.get(reason.value, 0) for reason in TaskReason},
        },
    }


def backtest_run(*, job_id: str) -> None:
    """Run a queued backtest job to its end (done with its result, or failed with why).

    Idempotent: a job already finished is left alone; a job interrupted mid-run starts over.
    The policy is read once, at the start: the replay shows one consistent policy version.
    """
    job = Job.objects.filter(pk=job_id, kind=Job.Kind.BACKTEST).select_related("use_case").first()
    if job is None or not job_claim(job_id=job.pk):
        return  # gone, ended, or another run holds it
    try:
        use_case = job.use_case
        params = job.params
        version = model_version_get(use_case=use_case, version=params["model_version"])
        estimator = estimator_for(version)
        policy = policy_current(use_case=use_case)
        spec = policy_spec(policy)
        tally = _Tally()
        items = _labelled_items(use_case, params).order_by("pk")
        fields = (
            "pk",
            "features",
            "decision_label",
            "decision_value",
            "route",
            "ramp_bucket",
            "audit_bucket",
            "double_review_bucket",
        )
        last = 0
        chunk = settings.BACKTEST_CHUNK_SIZE
        # The final unit is left to job_finish, so "done" never shows without its result.
        reportable = job.total - 1
        while True:
            rows = list(items.filter(pk__gt=last).values_list(*fields)[:chunk])
            if not rows:
                break
            _chunk_tally(tally=tally, use_case=use_case, spec=spec, estimator=estimator, rows=rows)
            last = rows[-1][0]
            step = min(len(rows), reportable)
            reportable -= max(step, 0)
            job_progress(job_id=job.pk, done=step)
        job_finish(
            job_id=job.pk,
            result=_result(
                tally=tally, use_case=use_case, policy=policy, version=version, params=params
            ),
        )
    except Exception as exc:
        logger.exception("backtest %s failed", job.pk)
        job_fail(job_id=job.pk, error=f"{type(exc).__name__}: {exc}")


def backtest_window_default(*, now=None, days: int = 30) -> tuple[datetime, datetime]:
    now = now or timezone.now()
    return now - timedelta(days=days), now
