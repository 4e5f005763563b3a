"""Simulation study: do the intervals cover, is the weighted estimate unbiased, do the guardrails
keep their false-alarm rate and catch a rise as fast as the guardrails page says?

Streams of items with a known true error rate are routed by the real ``route()`` (real sticky
buckets from ``item_buckets``, a partial-automation policy with audits) and estimated by the
real ``evidence`` and ``guardrails`` code; NumPy draws the model's confidences and mistakes from
fixed seeds, so every run prints the same table.

- Coverage: the share of streams whose 95% interval contains the truth, for the Wilson interval
  of the audit error rate and of the override rate, and for the stratified (inverse-propensity)
  estimate of the model's accuracy over all items.
- Bias: the weighted accuracy against the naive one from reviewed items only. The model is
  wrong more often when unsure, and unsure items are the ones humans review, so the naive
  figure is too pessimistic by design of the routing, not by chance.
- Guardrails: false alarms over 10,000 items with no change (2% errors, limits at 5%), the
  per-check rate with the error rate sitting exactly at the limit, and the delay (median, mean,
  p90) before a jump from 2% to 10% breaches the override and the audit guardrails, next to
  the delay the page states (that of the sequential test alone; the fixed-sample rule can
  only make a breach come sooner, most visibly when the window holds little calm traffic).

No database. ``python benchmarks/bench_statistics.py [--small]``
(or ``python benchmarks/run.py --small statistics``).
"""

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from deployments.policy import (  # noqa: E402
    Level,
    ModelOutput,
    PolicySpec,
    Route,
    TaskReason,
    item_buckets,
    route,
)
from deployments.policy.guardrails import (  # noqa: E402
    Limit,
    guardrail_verdict,
    limit_promise,
    outcomes_reading,
)
from deployments.statistics.evidence import Stratum, stratified, wilson  # noqa: E402

ERROR_RATES = (0.02, 0.05, 0.10)
THRESHOLD = 0.9
# Estimation: half the items are confident enough to be automated, one in ten of those audited.
ESTIMATION_POLICY = PolicySpec(
    level=Level.PARTIAL, confidence_threshold=THRESHOLD, traffic_percent=100.0, audit_rate=0.1
)
# Guardrails: audits at 20% so that the audit guardrail sees about one item in ten.
GUARDED_POLICY = PolicySpec(
    level=Level.PARTIAL, confidence_threshold=THRESHOLD, traffic_percent=100.0, audit_rate=0.2
)
LIMITS = {
    "override_rate": Limit(
        "override_rate", max=0.05, window=1000, min_sample=30, margin=0.05, alpha=0.001,
        confidence=0.95,
    ),
    "audit_error_rate": Limit(
        "audit_error_rate", max=0.05, window=1000, min_sample=20, margin=0.05, alpha=0.001,
        confidence=0.95,
    ),
}  # fmt: skip
BASELINE, RAISED = 0.02, 0.10
QUIET_ITEMS = 10_000
CHECK_EVERY = 10  # observations between two guardrail checks
CHANGE_AFTER = 2_000  # items of calm traffic before the jump
CHUNK = 1_000


# --- the model and the routing ---------------------------------------------------------------


def confidences(rng: np.random.Generator, n: int) -> np.ndarray:
    """The model's confidence: 0.5 + 0.5 * Beta(3, 1), about half of it at or over 0.9."""
    return 0.5 + 0.5 * rng.beta(3.0, 1.0, n)


def error_probabilities(confidence: np.ndarray, error: float, *, linked: bool) -> np.ndarray:
    """The chance the model is wrong on each item; ``linked``: proportional to its doubt (1 - c)
    with the overall rate ``error`` (E[1 - c] = 1/8 under ``confidences``), else flat."""
    if not linked:
        return np.full(confidence.shape, error)
    return error * (1.0 - confidence) * 8.0


@dataclass(frozen=True)
class Routed:
    reviewed: np.ndarray  # bool per item: a human reviewed it (their label is the truth)
    audited: np.ndarray  # bool per item: automated, and audited blind


def item_keys(n: int, salt: str) -> list:
    return [item_buckets(salt=salt, key=f"item-{i}") for i in range(n)]


def routed(policy: PolicySpec, buckets: Sequence, confidence: np.ndarray) -> Routed:
    reviewed = np.zeros(len(confidence), dtype=bool)
    audited = np.zeros(len(confidence), dtype=bool)
    for i, (bucket, c) in enumerate(zip(buckets, confidence, strict=True)):
        decision = route(
            policy=policy, output=ModelOutput(label="yes", confidence=float(c)), buckets=bucket
        )
        reviewed[i] = decision.route is not Route.AUTO
        audited[i] = any(task.reason is TaskReason.AUDIT for task in decision.tasks)
    return Routed(reviewed, audited)


# --- (a) coverage and (b) bias ---------------------------------------------------------------


@dataclass(frozen=True)
class Estimation:
    error: float
    streams: int
    items: int
    wilson_audit: float  # coverage of the 95% Wilson interval of the audit error rate
    wilson_override: float  # ... of the override rate (reviewed items the model got wrong)
    stratified: float  # ... of the stratified estimate of accuracy over all items
    undefined: int  # streams without a single audit (no stratified estimate)
    weighted_bias: float  # mean (estimate - truth) of the accuracy, stratified
    naive_bias: float  # mean (estimate - truth) of the accuracy from reviewed items only
    audits: float  # mean audits per stream


def _conditional_error(error: float, automated: bool, seed: int) -> float:
    """The true error rate among automated (or reviewed) items, from a million draws."""
    rng = np.random.default_rng(seed)
    c = confidences(rng, 1_000_000)
    p = error_probabilities(c, error, linked=True)
    return float(p[(c >= THRESHOLD) == automated].mean())


def estimation_study(error: float, *, streams: int, items: int, seed: int) -> Estimation:
    rng = np.random.default_rng(seed)
    buckets = item_keys(items, salt=f"estimation-{seed}")
    truth_audit = _conditional_error(error, True, seed + 1)
    truth_override = _conditional_error(error, False, seed + 1)
    hits = {"audit": 0, "override": 0, "stratified": 0}
    undefined = 0
    weighted, naive, audits = [], [], []
    for _ in range(streams):
        c = confidences(rng, items)
        wrong = rng.random(items) < error_probabilities(c, error, linked=True)
        way = routed(ESTIMATION_POLICY, buckets, c)
        automated = ~way.reviewed
        audit = wilson(int(wrong[way.audited].sum()), int(way.audited.sum()))
        override = wilson(int(wrong[way.reviewed].sum()), int(way.reviewed.sum()))
        hits["audit"] += audit.low is not None and audit.low <= truth_audit <= audit.high
        hits["override"] += override.low <= truth_override <= override.high
        accuracy = 1.0 - float(wrong.mean())  # the stream's own accuracy: what is estimated
        estimate = stratified(
            [
                Stratum(
                    int(automated.sum()),
                    int(way.audited.sum()),
                    int((~wrong[way.audited]).sum()),
                ),
                Stratum(
                    int(way.reviewed.sum()),
                    int(way.reviewed.sum()),
                    int((~wrong[way.reviewed]).sum()),
                ),
            ]
        )
        audits.append(int(way.audited.sum()))
        if estimate.value is None:
            undefined += 1
        else:
            hits["stratified"] += estimate.low <= accuracy <= estimate.high
            weighted.append(estimate.value - accuracy)
        naive.append(1.0 - float(wrong[way.reviewed].mean()) - accuracy)
    defined = streams - undefined
    return Estimation(
        error=error,
        streams=streams,
        items=items,
        wilson_audit=hits["audit"] / streams,
        wilson_override=hits["override"] / streams,
        stratified=hits["stratified"] / defined if defined else float("nan"),
        undefined=undefined,
        weighted_bias=float(np.mean(weighted)) if weighted else float("nan"),
        naive_bias=float(np.mean(naive)),
        audits=float(np.mean(audits)),
    )


# --- (c) false alarms and (d) detection delay ------------------------------------------------


@dataclass
class Observations:
    """What each guardrail has seen so far: its outcomes in order and the item of each."""

    outcomes: list
    items: list

    def add(self, outcomes: np.ndarray, items: np.ndarray) -> None:
        self.outcomes.extend(bool(x) for x in outcomes)
        self.items.extend(int(i) for i in items)


def first_breach(limit: Limit, seen: Observations, checked: int) -> tuple[int | None, int]:
    """Check every CHECK_EVERY observations after ``checked``, as the watch would; (the count
    of observations at the first breach or None, the count checked up to)."""
    at = checked + CHECK_EVERY
    while at <= len(seen.outcomes):
        window = seen.outcomes[max(0, at - limit.window) : at]
        if guardrail_verdict(limit=limit, reading=outcomes_reading(window)).breached:
            return at, at
        at += CHECK_EVERY
    return None, at - CHECK_EVERY


def _guarded_chunk(rng, buckets, start: int, error: float, seen: dict) -> None:
    """Route CHUNK items with a flat error rate; feed each guardrail its observations."""
    c = confidences(rng, CHUNK)
    wrong = rng.random(CHUNK) < error
    way = routed(GUARDED_POLICY, buckets[start : start + CHUNK], c)
    positions = np.arange(start, start + CHUNK)
    seen["override_rate"].add(wrong[way.reviewed], positions[way.reviewed])
    seen["audit_error_rate"].add(wrong[way.audited], positions[way.audited])


@dataclass(frozen=True)
class Quiet:
    rate: float
    streams: int
    alarms: dict  # guardrail -> streams with a breach
    checks: dict  # guardrail -> checks made
    items: int


def quiet_study(rate: float, *, streams: int, items: int, seed: int) -> Quiet:
    """Streams that never change: every breach is a false alarm."""
    rng = np.random.default_rng(seed)
    buckets = item_keys(items, salt=f"quiet-{seed}")
    alarms = dict.fromkeys(LIMITS, 0)
    checks = dict.fromkeys(LIMITS, 0)
    for _ in range(streams):
        seen = {name: Observations([], []) for name in LIMITS}
        for start in range(0, items, CHUNK):
            _guarded_chunk(rng, buckets, start, rate, seen)
        for name, limit in LIMITS.items():
            breach, checked = first_breach(limit, seen[name], 0)
            alarms[name] += breach is not None
            checks[name] += (breach or checked) // CHECK_EVERY
    return Quiet(rate, streams, alarms, checks, items)


@dataclass(frozen=True)
class Detection:
    name: str
    delays: list  # observations after the change until the breach
    delays_items: list  # items after the change until the breach
    early: int  # streams that breached before the change (false alarms)
    missed: int  # streams not breached within the horizon
    stated_median: int | None
    stated_p90: int | None


def detection_study(*, streams: int, horizon: int, seed: int) -> dict[str, Detection]:
    rng = np.random.default_rng(seed)
    buckets = item_keys(CHANGE_AFTER + horizon, salt=f"jump-{seed}")
    found = {name: {"delays": [], "items": [], "early": 0, "missed": 0} for name in LIMITS}
    for _ in range(streams):
        seen = {name: Observations([], []) for name in LIMITS}
        for start in range(0, CHANGE_AFTER, CHUNK):
            _guarded_chunk(rng, buckets, start, BASELINE, seen)
        pending = {}
        for name, limit in LIMITS.items():
            breach, checked = first_breach(limit, seen[name], 0)
            if breach is not None:
                found[name]["early"] += 1
            else:
                pending[name] = (len(seen[name].outcomes), checked)
        start = CHANGE_AFTER
        while pending and start < CHANGE_AFTER + horizon:
            _guarded_chunk(rng, buckets, start, RAISED, seen)
            start += CHUNK
            for name, (before, checked) in list(pending.items()):
                breach, checked = first_breach(LIMITS[name], seen[name], checked)
                if breach is None:
                    pending[name] = (before, checked)
                    continue
                found[name]["delays"].append(breach - before)
                found[name]["items"].append(seen[name].items[breach - 1] + 1 - CHANGE_AFTER)
                del pending[name]
        for name in pending:
            found[name]["missed"] += 1
    result = {}
    for name, limit in LIMITS.items():
        stated = limit.test.delay()
        result[name] = Detection(
            name,
            found[name]["delays"],
            found[name]["items"],
            found[name]["early"],
            found[name]["missed"],
            stated.median,
            stated.p90,
        )
    return result


# --- the report ------------------------------------------------------------------------------


def _spread(values: list, width: int) -> str:
    """Median, mean and 90th percentile, the median in a column ``width`` wide."""
    if not values:
        return f"{'—':>{width}}{'—':>8}{'—':>8}"
    array = np.asarray(values, dtype=float)
    median, mean, p90 = np.median(array), array.mean(), np.percentile(array, 90)
    return f"{median:>{width}.0f}{mean:>8.0f}{p90:>8.0f}"


def main(small: bool = False) -> None:
    streams, items = (100, 1000) if small else (500, 3000)
    quiet_streams, jump_streams = (20, 30) if small else (100, 200)
    print(
        f"Statistics simulation ({streams} streams of {items} items per error rate; "
        f"policy: partial, threshold {THRESHOLD}, audit rate {ESTIMATION_POLICY.audit_rate})"
    )
    print("\n(a) coverage of 95% intervals, (b) bias of the accuracy estimate (points)")
    print(
        f"{'true error':>10}{'audits':>8}{'Wilson audit':>14}{'Wilson override':>17}"
        f"{'stratified':>12}{'weighted bias':>15}{'naive bias':>12}"
    )
    for n, error in enumerate(ERROR_RATES):
        study = estimation_study(error, streams=streams, items=items, seed=100 + n)
        print(
            f"{error:>10.0%}{study.audits:>8.0f}{study.wilson_audit:>14.1%}"
            f"{study.wilson_override:>17.1%}{study.stratified:>12.1%}"
            f"{study.weighted_bias * 100:>+15.2f}{study.naive_bias * 100:>+12.2f}"
            + (f"  ({study.undefined} streams without an audit)" if study.undefined else "")
        )
    print(
        f"\n(c) false alarms over {QUIET_ITEMS:,} items, no change "
        f"(audit rate {GUARDED_POLICY.audit_rate}, checks every {CHECK_EVERY} observations)"
    )
    for name, limit in LIMITS.items():
        print(f"  {name}: max {limit.max:.0%}, window {limit.window}: {limit_promise(limit)}")
    print(f"{'error rate':>12}{'guardrail':>18}{'streams alarmed':>17}{'per check':>11}")
    for n, rate in enumerate((BASELINE, LIMITS["override_rate"].max)):
        quiet = quiet_study(rate, streams=quiet_streams, items=QUIET_ITEMS, seed=200 + n)
        for name in LIMITS:
            per_check = quiet.alarms[name] / max(quiet.checks[name], 1)
            shown = f"{rate:.0%}" + (" (limit)" if rate == LIMITS[name].max else "")
            print(
                f"{shown:>12}{name:>18}{quiet.alarms[name]:>7} of {quiet.streams:<7}"
                f"{per_check:>11.3%}"
            )
    horizon = 20_000 if small else 40_000
    print(
        f"\n(d) delay from a jump {BASELINE:.0%} -> {RAISED:.0%} to the breach "
        f"({jump_streams} streams, after {CHANGE_AFTER:,} calm items)"
    )
    print(
        f"{'guardrail':>18}{'obs. median':>13}{'mean':>8}{'p90':>8}"
        f"{'items median':>14}{'mean':>8}{'p90':>8}{'stated obs. median/p90':>24}{'missed':>8}"
    )
    for name, found in detection_study(streams=jump_streams, horizon=horizon, seed=300).items():
        stated = f"{found.stated_median}/{found.stated_p90}"
        print(
            f"{name:>18}{_spread(found.delays, 13)}{_spread(found.delays_items, 14)}"
            f"{stated:>24}{found.missed:>8}"
            + (f"  ({found.early} false alarms before the jump)" if found.early else "")
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="CI-size run")
    main(small=parser.parse_args().small)
