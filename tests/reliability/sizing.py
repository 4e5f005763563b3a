"""How big and how often: RELIABILITY_SCALE and RELIABILITY_SEEDS.

``RELIABILITY_SCALE`` is ``ci`` (the default: a small run that fits a CI job), ``full`` (the
sizes the scenarios are specified at) or a fraction of full size such as ``0.25``.
``RELIABILITY_SEEDS`` is a comma-separated list of seeds; each scenario runs once per seed.
"""

import os

CI_FRACTION = 0.1


def scale() -> float:
    raw = os.environ.get("RELIABILITY_SCALE", "ci").strip().lower()
    if raw == "ci":
        return CI_FRACTION
    if raw == "full":
        return 1.0
    return min(1.0, max(0.001, float(raw)))


def sized(full: int, *, at_least: int = 1) -> int:
    """``full`` scaled down to this run's size."""
    return max(at_least, round(full * scale()))


def seeds() -> list[int]:
    raw = os.environ.get("RELIABILITY_SEEDS", "1")
    return [int(part) for part in raw.split(",") if part.strip()]
