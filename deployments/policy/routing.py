"""route(policy, output, buckets) -> what happens to one item.

| level        | in the ramp, valid output                 | otherwise                      |
|--------------|-------------------------------------------|--------------------------------|
| human_only   | model not consulted: ``human``            | ``human``                      |
| shadow       | ``blind`` review (model scored silently)  | ``human`` review               |
| assisted     | ``assisted`` review (suggestion shown)    | ``human`` review               |
| partial      | ``auto`` if confidence >= threshold,      | valid: ``assisted``,           |
|              | else ``assisted``                         | null output: ``human``         |
| full         | ``auto``                                  | valid: ``assisted``, null: ``human`` |

Automated items are audited blind when their audit bucket falls under ``audit_rate``; reviewed
items get a second, blind review when their double-review bucket falls under
``double_review_rate``. A null output never reaches a caller as a decision and never shows a
suggestion: the item goes to a human.
"""

from dataclasses import dataclass
from enum import StrEnum

from deployments.policy.buckets import Buckets, rate_to_buckets
from deployments.policy.outputs import ModelOutput, NullOutput


class Level(StrEnum):
    HUMAN_ONLY = "human_only"
    SHADOW = "shadow"
    ASSISTED = "assisted"
    PARTIAL = "partial"
    FULL = "full"


class Route(StrEnum):
    AUTO = "auto"
    ASSISTED = "assisted"
    BLIND = "blind"
    HUMAN = "human"


class TaskReason(StrEnum):
    REVIEW = "review"
    AUDIT = "audit"
    DOUBLE_REVIEW = "double_review"


@dataclass(frozen=True, slots=True)
class PolicySpec:
    level: Level
    confidence_threshold: float = 0.9
    traffic_percent: float = 100.0
    audit_rate: float = 0.0
    double_review_rate: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "level", Level(self.level))
        if not 0.0 <= self.confidence_threshold <= 1.0:
            raise ValueError("confidence_threshold outside [0, 1]")
        if not 0.0 <= self.traffic_percent <= 100.0:
            raise ValueError("traffic_percent outside [0, 100]")
        if not 0.0 <= self.audit_rate <= 1.0:
            raise ValueError("audit_rate outside [0, 1]")
        if not 0.0 <= self.double_review_rate <= 1.0:
            raise ValueError("double_review_rate outside [0, 1]")


@dataclass(frozen=True, slots=True)
class TaskSpec:
    reason: TaskReason
    show_suggestion: bool


@dataclass(frozen=True, slots=True)
class RoutingDecision:
    route: Route
    in_ramp: bool
    tasks: tuple[TaskSpec, ...]

    @property
    def automated(self) -> bool:
        return self.route is Route.AUTO


def consults_model(level: Level | str) -> bool:
    """Whether the champion is asked at all; under human_only it never is."""
    return Level(level) is not Level.HUMAN_ONLY


def in_ramp(*, policy: PolicySpec, buckets: Buckets) -> bool:
    return buckets.ramp < rate_to_buckets(policy.traffic_percent / 100.0)


def _sampled(bucket: int, rate: float) -> bool:
    return bucket < rate_to_buckets(rate)


def _reviewed(route_: Route, *, policy: PolicySpec, buckets: Buckets, ramp: bool):
    review = TaskSpec(TaskReason.REVIEW, show_suggestion=route_ is Route.ASSISTED)
    tasks = [review]
    if _sampled(buckets.double_review, policy.double_review_rate):
        tasks.append(TaskSpec(TaskReason.DOUBLE_REVIEW, show_suggestion=False))
    return RoutingDecision(route=route_, in_ramp=ramp, tasks=tuple(tasks))


def route(
    *, policy: PolicySpec, output: ModelOutput | NullOutput | None, buckets: Buckets
) -> RoutingDecision:
    """Route one item. ``output`` is None only when the model was not consulted."""
    ramp = in_ramp(policy=policy, buckets=buckets)
    level = policy.level
    valid = isinstance(output, ModelOutput)

    if level is Level.HUMAN_ONLY or not valid:
        return _reviewed(Route.HUMAN, policy=policy, buckets=buckets, ramp=ramp)
    if level is Level.SHADOW:
        return _reviewed(
            Route.BLIND if ramp else Route.HUMAN, policy=policy, buckets=buckets, ramp=ramp
        )
    if level is Level.ASSISTED:
        return _reviewed(
            Route.ASSISTED if ramp else Route.HUMAN, policy=policy, buckets=buckets, ramp=ramp
        )

    confident = output.confidence is not None and output.confidence >= policy.confidence_threshold
    decides_alone = ramp and (level is Level.FULL or confident)
    if not decides_alone:
        return _reviewed(Route.ASSISTED, policy=policy, buckets=buckets, ramp=ramp)
    tasks: tuple[TaskSpec, ...] = ()
    if _sampled(buckets.audit, policy.audit_rate):
        tasks = (TaskSpec(TaskReason.AUDIT, show_suggestion=False),)
    return RoutingDecision(route=Route.AUTO, in_ramp=ramp, tasks=tasks)
