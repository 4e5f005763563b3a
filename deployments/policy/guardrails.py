"""Guardrails as pure Python: a policy's ``guardrails`` JSON parsed, readings in, verdicts out.

The schema (every key optional)::

    {"fallback_level": "assisted",
     "override_rate": {"max": 0.2, "window": 200},       # over the last N reviewed items
     "null_output_rate": {"max": 0.05, "window": 500},   # over the last N model outputs
     "drift_psi": {"max": 0.25, "window": 1000},         # worst feature PSI, last N items
     "audit_error_rate": {"max": 0.1, "window": 100},    # over the last N audits
     "webhook_url": "https://..."}

Each limit may also name ``min_sample``: the fewest observations it is judged on. Below that a
guardrail is *insufficient*, neither breached nor holding, so a handful of early items cannot
trip it (or vouch for a ramp step). Counting the observations is the caller's job; this module
only compares what it is given, so every rule is testable without a database or a clock.

A rate limit is judged by the evidence, not by the bare rate
(``deployments.statistics.sequential``): it breaches when a sequential test or the window's
Wilson lower bound says the rate is over the limit, holds only when the Wilson upper bound is
under it, and is otherwise still watching (shown as insufficient). Three optional keys tune it::

    "override_rate": {"max": 0.05, "window": 1000,
                      "margin": 0.05,       # catch a rise to max + margin fast (default: 2 x max)
                      "alpha": 0.001,       # false alarms per check at a rate at the limit
                      "confidence": 0.95}   # of the interval a hold needs (and shown)

Drift (PSI) is a plain threshold, judged from ``min_sample`` items on.
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from deployments.policy.routing import Level
from deployments.statistics.sequential import (
    DEFAULT_ALPHA,
    DEFAULT_CONFIDENCE,
    DELAY_HORIZON,
    RateJudgement,
    RateTest,
    default_margin,
    rate_judge,
)

LEVEL_ORDER = (Level.HUMAN_ONLY, Level.SHADOW, Level.ASSISTED, Level.PARTIAL, Level.FULL)
DEFAULT_FALLBACK = Level.ASSISTED
FALLBACK_LEVELS = (Level.HUMAN_ONLY, Level.SHADOW, Level.ASSISTED, Level.PARTIAL)
MAX_WINDOW = 100_000
MAX_URL_LENGTH = 2000


@dataclass(frozen=True, slots=True)
class GuardrailKind:
    name: str
    label: str
    observations: str  # what one observation is, for messages: "reviewed items"
    is_rate: bool
    default_window: int
    default_min_sample: int
    max_limit: float


KINDS = (
    GuardrailKind("override_rate", "override rate", "reviewed items", True, 200, 30, 1.0),
    GuardrailKind("null_output_rate", "null-output rate", "model outputs", True, 500, 30, 1.0),
    GuardrailKind("drift_psi", "input shift (worst feature)", "items", False, 1000, 200, 100.0),
    GuardrailKind("audit_error_rate", "audit error rate", "audits", True, 100, 20, 1.0),
)
KIND_BY_NAME = {kind.name: kind for kind in KINDS}
TOP_LEVEL_KEYS = frozenset({"fallback_level", "webhook_url", *KIND_BY_NAME})
RATE_TEST_KEYS = ("margin", "alpha", "confidence")
LIMIT_KEYS = frozenset({"max", "window", "min_sample", *RATE_TEST_KEYS})
MAX_ALPHA = 0.1
CONFIDENCE_RANGE = (0.5, 0.9999)


def level_rank(level: Level | str) -> int:
    return LEVEL_ORDER.index(Level(level))


@dataclass(frozen=True, slots=True)
class Limit:
    """One guardrail's settings. ``margin``/``alpha``/``confidence`` tune a rate's test; left
    None (as for drift) they take the defaults."""

    name: str
    max: float
    window: int
    min_sample: int
    margin: float | None = None
    alpha: float | None = None
    confidence: float | None = None

    @property
    def kind(self) -> GuardrailKind:
        return KIND_BY_NAME[self.name]

    @property
    def test(self) -> RateTest:
        margin = default_margin(self.max) if self.margin is None else self.margin
        return RateTest(
            p0=self.max,
            p1=min(self.max + margin, 1.0),
            alpha=DEFAULT_ALPHA if self.alpha is None else self.alpha,
            confidence=DEFAULT_CONFIDENCE if self.confidence is None else self.confidence,
            window=self.window,
        )


@dataclass(frozen=True, slots=True)
class GuardrailConfig:
    limits: tuple[Limit, ...] = ()
    fallback_level: Level = DEFAULT_FALLBACK
    webhook_url: str = ""

    def limit(self, name: str) -> Limit | None:
        return next((limit for limit in self.limits if limit.name == name), None)


class GuardrailsInvalid(ValueError):
    """The guardrails JSON does not fit the schema; ``errors`` names each bad field."""

    def __init__(self, errors: dict):
        super().__init__(errors)
        self.errors = errors


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _whole(value: object) -> bool:
    return _number(value) and float(value) == int(value)


def _limit_parse(kind: GuardrailKind, raw: object) -> tuple[Limit | None, dict]:
    if not isinstance(raw, dict):
        return None, {"non_field_errors": ["must be an object with max (and window)"]}
    errors: dict[str, list[str]] = {}
    unknown = sorted(set(raw) - LIMIT_KEYS)
    for key in unknown:
        errors[key] = ["unknown field"]
    high = kind.max_limit
    maximum = raw.get("max")
    if maximum is None:
        errors["max"] = ["required"]
    elif not _number(maximum) or not 0 <= maximum <= high:
        errors["max"] = [f"must be a number in [0, {high:g}]"]
    window = raw.get("window", kind.default_window)
    if not _whole(window) or not 1 <= window <= MAX_WINDOW:
        errors["window"] = [f"must be a whole number in [1, {MAX_WINDOW}]"]
    min_sample = raw.get("min_sample")
    if min_sample is not None and (not _whole(min_sample) or not 1 <= min_sample <= MAX_WINDOW):
        errors["min_sample"] = [f"must be a whole number in [1, {MAX_WINDOW}]"]
    tuning = _rate_test_parse(kind, raw, maximum if "max" not in errors else None, errors)
    if errors:
        return None, errors
    window = int(window)
    if min_sample is None:
        min_sample = min(window, kind.default_min_sample)
    if min_sample > window:
        return None, {"min_sample": ["cannot exceed the window"]}
    return Limit(kind.name, float(maximum), window, int(min_sample), **tuning), {}


def _rate_test_parse(kind: GuardrailKind, raw: dict, maximum, errors: dict) -> dict:
    """The rate test's keys with their defaults written in (errors added to ``errors``)."""
    if not kind.is_rate:
        for key in RATE_TEST_KEYS:
            if key in raw:
                errors[key] = ["applies to rate guardrails only (drift is a plain threshold)"]
        return {}
    margin = raw.get("margin")
    if margin is not None and (not _number(margin) or not 0 < margin < 1):
        errors["margin"] = ["must be a number in (0, 1): the rise over max to catch fast"]
    elif margin is not None and maximum is not None and maximum < 1 and maximum + margin >= 1:
        errors["margin"] = ["max + margin must stay under 1"]
    alpha = raw.get("alpha", DEFAULT_ALPHA)
    if not _number(alpha) or not 0 < alpha <= MAX_ALPHA:
        errors["alpha"] = [f"must be a number in (0, {MAX_ALPHA:g}]: false alarms per check"]
    confidence = raw.get("confidence", DEFAULT_CONFIDENCE)
    low, high = CONFIDENCE_RANGE
    if not _number(confidence) or not low <= confidence <= high:
        errors["confidence"] = [f"must be a number in [{low:g}, {high:g}]"]
    if errors or maximum is None:
        return {}
    return {
        "margin": float(default_margin(maximum) if margin is None else margin),
        "alpha": float(alpha),
        "confidence": float(confidence),
    }


def guardrails_parse(raw: object) -> GuardrailConfig:
    """Parse a policy's guardrails JSON, or raise GuardrailsInvalid naming every bad field."""
    if raw is None or raw == {}:
        return GuardrailConfig()
    if not isinstance(raw, dict):
        raise GuardrailsInvalid({"non_field_errors": ["must be an object"]})
    errors: dict = {}
    for key in sorted(set(raw) - TOP_LEVEL_KEYS):
        errors[key] = [f"unknown field; expected one of {', '.join(sorted(TOP_LEVEL_KEYS))}"]
    fallback = raw.get("fallback_level", DEFAULT_FALLBACK.value)
    if fallback not in [level.value for level in FALLBACK_LEVELS]:
        errors["fallback_level"] = [
            f"must be one of {', '.join(level.value for level in FALLBACK_LEVELS)}"
        ]
    webhook = raw.get("webhook_url")
    webhook = "" if webhook is None else webhook
    if not isinstance(webhook, str) or len(webhook) > MAX_URL_LENGTH:
        errors["webhook_url"] = [f"must be a URL of at most {MAX_URL_LENGTH} characters"]
    elif webhook and not webhook.startswith(("http://", "https://")):
        errors["webhook_url"] = ["must start with http:// or https://"]
    limits = []
    for kind in KINDS:
        if raw.get(kind.name) is None:
            continue
        limit, problems = _limit_parse(kind, raw[kind.name])
        if problems:
            errors[kind.name] = problems
        else:
            limits.append(limit)
    if errors:
        raise GuardrailsInvalid(errors)
    return GuardrailConfig(
        limits=tuple(limits), fallback_level=Level(fallback), webhook_url=webhook
    )


def guardrails_json(config: GuardrailConfig) -> dict:
    """The canonical JSON of a parsed configuration (defaults written out)."""
    body: dict = {}
    if config.limits:
        body["fallback_level"] = config.fallback_level.value
    for limit in config.limits:
        body[limit.name] = {
            "max": limit.max,
            "window": limit.window,
            "min_sample": limit.min_sample,
        }
        if limit.kind.is_rate:
            test = limit.test
            margin = default_margin(limit.max) if limit.margin is None else limit.margin
            body[limit.name].update(margin=margin, alpha=test.alpha, confidence=test.confidence)
    if config.webhook_url:
        body["webhook_url"] = config.webhook_url
    return body


# --- evaluation ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reading:
    """What was observed for one guardrail: ``value`` over ``sample`` observations; for a
    rate, its ``events`` and, when their order is known, ``outcomes`` (oldest first)."""

    value: float | None
    sample: int
    detail: str = ""  # e.g. which feature drifted most
    events: int = 0
    outcomes: tuple[bool, ...] | None = None


def rate_reading(*, events: int, total: int) -> Reading:
    """A rate from counts alone: judged by its Wilson bounds (no order, so no sequential test)."""
    if events < 0 or total < 0 or events > total:
        raise ValueError(f"impossible rate {events}/{total}")
    return Reading(value=events / total if total else None, sample=total, events=events)


def outcomes_reading(outcomes) -> Reading:
    """A rate from its observations in arrival order (oldest first), each True for an event."""
    ordered = tuple(bool(o) for o in outcomes)
    events = sum(ordered)
    return Reading(
        value=events / len(ordered) if ordered else None,
        sample=len(ordered),
        events=events,
        outcomes=ordered,
    )


class State(StrEnum):
    HOLDING = "holding"
    BREACHED = "breached"
    INSUFFICIENT = "insufficient"  # too few observations to judge


@dataclass(frozen=True, slots=True)
class Verdict:
    limit: Limit
    reading: Reading
    state: State
    judgement: RateJudgement | None = None  # a rate's evidence, once there is enough to judge

    @property
    def breached(self) -> bool:
        return self.state is State.BREACHED

    def describe(self) -> str:
        kind = self.limit.kind
        value, limit, sample = self.reading.value, self.limit.max, self.reading.sample
        over = f"over the last {sample} {kind.observations}"
        if self.state is State.INSUFFICIENT and self.judgement is None:
            return (
                f"{kind.label}: {sample} of the {self.limit.min_sample} "
                f"{kind.observations} needed to judge"
            )
        if self.judgement is None:
            sign = ">" if self.breached else "<="
            text = f"{kind.label} {value:.3g} {sign} {limit:.3g} {over}"
            return f"{text} ({self.reading.detail})" if self.reading.detail else text
        estimate = self.judgement.estimate
        interval = f"{self.limit.test.confidence:.0%} CI {estimate.low:.1%}–{estimate.high:.1%}"
        if self.judgement.because == "trend":
            return (
                f"{kind.label} rising above {limit:.1%}: the most recent {kind.observations} "
                f"are well over it ({value:.1%} {over}, {interval})"
            )
        if self.breached:
            return f"{kind.label} {value:.1%} > {limit:.1%} {over} ({interval})"
        if self.state is State.HOLDING:
            return f"{kind.label} {value:.1%} < {limit:.1%} {over} ({interval})"
        return f"{kind.label} {value:.1%} {over} ({interval}): not yet shown under {limit:.1%}"


JUDGED = {"breached": State.BREACHED, "holding": State.HOLDING, "watching": State.INSUFFICIENT}


def limit_promise(limit: Limit) -> str:
    """What the guardrail guarantees, in a manager's words: its false-alarm rate and how soon it
    catches a rise to max + margin (median and 90th percentile, from ``detection_delay``)."""
    kind = limit.kind
    if not kind.is_rate:
        return (
            f"Plain threshold: breaches when the {kind.label} over at least {limit.min_sample} "
            f"{kind.observations} is above {limit.max:.3g}."
        )
    test = limit.test
    if test.p0 >= 1:
        return "A rate cannot exceed 100%: this guardrail never breaches."
    false_alarms = (
        f"False alarms: ≤{test.alpha * 100:.2g}% of checks while the rate is at or under "
        f"{test.p0:.1%}."
    )
    delay = test.delay()
    if delay.median is None:
        return f"{false_alarms} A rise to {test.p1:.1%} takes very long to show: raise the margin."
    text = (
        f"{false_alarms} A rise to {test.p1:.1%} is caught within ~{delay.median} "
        f"{kind.observations} (median; 90% within {_count(delay.p90)})"
    )
    if delay.p90 is None or delay.p90 > limit.window:
        return (
            f"{text}, longer than the window of {limit.window}: the trend test may miss it; "
            "widen the window or the margin."
        )
    return f"{text}."


def _count(steps: int | None) -> str:
    return f"over {DELAY_HORIZON:,}" if steps is None else str(steps)


def guardrail_verdict(*, limit: Limit, reading: Reading) -> Verdict:
    if reading.value is None or reading.sample < limit.min_sample:
        return Verdict(limit, reading, State.INSUFFICIENT)
    if not limit.kind.is_rate:
        state = State.BREACHED if reading.value > limit.max else State.HOLDING
        return Verdict(limit, reading, state)
    judgement = rate_judge(limit.test, reading.outcomes, reading.events, reading.sample)
    return Verdict(limit, reading, JUDGED[judgement.verdict], judgement)


def guardrails_evaluate(
    *, config: GuardrailConfig, readings: Mapping[str, Reading]
) -> tuple[Verdict, ...]:
    """One verdict per configured limit; a limit without a reading has no observations yet."""
    return tuple(
        guardrail_verdict(limit=limit, reading=readings.get(limit.name, Reading(None, 0)))
        for limit in config.limits
    )


def step_down_level(*, current: Level | str, config: GuardrailConfig) -> Level | None:
    """The level a breach steps down to, or None when the current level is already at or
    below the fallback (a breach never raises the level)."""
    if level_rank(current) > level_rank(config.fallback_level):
        return config.fallback_level
    return None


def breach_reason(*, verdicts: tuple[Verdict, ...], step_to: Level | None) -> str:
    """The reason written on the system's policy version: what broke, and what it did."""
    broken = "; ".join(v.describe() for v in verdicts if v.breached)
    if step_to is None:
        return f"guardrail breached: {broken}"
    return f"guardrail breached: {broken}; level stepped down to {step_to.value}"
