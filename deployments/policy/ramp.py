"""Ramp plans (progressive delivery) as pure Python: where a plan stands, and its next move.

A plan is a rising list of traffic percentages, say 1 -> 5 -> 25 -> 50 -> 100. It moves up one
step once the current step has seen ``advance_after_items`` reviewed items and/or lasted
``advance_after_seconds`` (when both are set, both are needed: a quiet night does not count as
evidence, nor does a burst of items in a minute), and only while every guardrail holds. A
broken guardrail moves it one step back. Counts and elapsed time are passed in.
"""

import math
from dataclasses import dataclass
from enum import StrEnum

MAX_STEPS = 20
MIN_INTERVAL_SECONDS = 60


def ramp_plan_problems(
    *, steps: object, advance_after_items: object, advance_after_seconds: object
) -> dict[str, list[str]]:
    """What is wrong with a plan's settings, by field (empty when it is fine)."""
    errors: dict[str, list[str]] = {}
    if (
        not isinstance(steps, list | tuple)
        or not 1 <= len(steps) <= MAX_STEPS
        or not all(
            isinstance(s, int | float) and not isinstance(s, bool) and math.isfinite(s)
            for s in steps
        )
    ):
        errors["steps"] = [f"a list of 1 to {MAX_STEPS} traffic percentages is required"]
    elif not all(0 < s <= 100 for s in steps):
        errors["steps"] = ["every step must be a percentage above 0 and at most 100"]
    elif any(b <= a for a, b in zip(steps, steps[1:], strict=False)):
        errors["steps"] = ["steps must rise strictly, e.g. 1, 5, 25, 50, 100"]
    for field, value, low in (
        ("advance_after_items", advance_after_items, 1),
        ("advance_after_seconds", advance_after_seconds, MIN_INTERVAL_SECONDS),
    ):
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            errors[field] = [f"must be a whole number of at least {low}"]
    if advance_after_items is None and advance_after_seconds is None:
        errors["advance_after_items"] = [
            "say when a step is done: after a number of reviewed items, an interval, or both"
        ]
    return errors


@dataclass(frozen=True, slots=True)
class RampPlanSpec:
    steps: tuple[float, ...]
    advance_after_items: int | None = None
    advance_after_seconds: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "steps", tuple(self.steps))
        problems = ramp_plan_problems(
            steps=self.steps,
            advance_after_items=self.advance_after_items,
            advance_after_seconds=self.advance_after_seconds,
        )
        if problems:
            raise ValueError(problems)

    @property
    def last(self) -> int:
        return len(self.steps) - 1


@dataclass(frozen=True, slots=True)
class StepProgress:
    """How far the current step has come: reviewed items and seconds since it began."""

    index: int
    reviewed: int
    elapsed_seconds: float


class Move(StrEnum):
    HOLD = "hold"
    ADVANCE = "advance"
    STEP_BACK = "step_back"


@dataclass(frozen=True, slots=True)
class RampMove:
    move: Move
    index: int  # the step the plan is on after the move
    traffic_percent: float
    finished: bool  # the plan has reached its last step
    reason: str


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 86_400 and seconds % 3600 == 0:
        return f"{seconds / 86_400:g} d"
    if seconds >= 3600:
        return f"{seconds / 3600:.3g} h"
    if seconds >= 60:
        return f"{seconds / 60:.3g} min"
    return f"{seconds} s"


def step_requirements(*, plan: RampPlanSpec, progress: StepProgress) -> list[str]:
    """What the current step still waits for (empty when its evidence is complete)."""
    missing = []
    if plan.advance_after_items is not None and progress.reviewed < plan.advance_after_items:
        missing.append(f"{progress.reviewed} of {plan.advance_after_items} reviewed items")
    if (
        plan.advance_after_seconds is not None
        and progress.elapsed_seconds < plan.advance_after_seconds
    ):
        missing.append(
            f"{_duration(progress.elapsed_seconds)} of {_duration(plan.advance_after_seconds)}"
        )
    return missing


def _evidence(plan: RampPlanSpec, progress: StepProgress) -> str:
    parts = []
    if plan.advance_after_items is not None:
        parts.append(f"{progress.reviewed} reviewed items")
    if plan.advance_after_seconds is not None:
        parts.append(_duration(progress.elapsed_seconds))
    return " and ".join(parts)


def ramp_next(*, plan: RampPlanSpec, progress: StepProgress, guardrails_hold: bool) -> RampMove:
    """The plan's next move from where it stands."""
    index = progress.index
    if not 0 <= index <= plan.last:
        raise ValueError(f"step {index} outside the plan's {len(plan.steps)} steps")
    if not guardrails_hold:
        back = max(index - 1, 0)
        return RampMove(
            Move.STEP_BACK,
            back,
            plan.steps[back],
            False,
            f"ramp plan back to step {back + 1} of {len(plan.steps)} "
            f"({plan.steps[back]:g}% of traffic)",
        )
    if index == plan.last:
        return RampMove(Move.HOLD, index, plan.steps[index], True, "the plan is complete")
    missing = step_requirements(plan=plan, progress=progress)
    if missing:
        return RampMove(
            Move.HOLD, index, plan.steps[index], False, "waiting for " + ", ".join(missing)
        )
    ahead = index + 1
    return RampMove(
        Move.ADVANCE,
        ahead,
        plan.steps[ahead],
        ahead == plan.last,
        f"ramp plan step {ahead + 1} of {len(plan.steps)}: {plan.steps[ahead]:g}% of traffic "
        f"after {_evidence(plan, progress)} at {plan.steps[index]:g}% with every guardrail holding",
    )
