"""How a model version's environment and latency look to managers and ML teams.

Plain data out for the API; no queries here, callers pass in what they read.
"""

from typing import Any

from deployments.ml.environment import LIBRARIES, library_version, serving_versions
from deployments.ml.latency import latency_over_budget
from deployments.models import ModelVersion


def _versions_match(saved: str | None, serving: str | None) -> bool | None:
    if saved is None or serving is None:
        return None
    return saved == serving


def model_version_environment_public(model_version: ModelVersion) -> dict[str, Any]:
    """Saved-with versions beside serving versions, one row per library, and the warnings.

    ``recorded`` is False for an external version (its environment is the caller's) and for
    versions uploaded before environments were recorded.
    """
    stored = model_version.environment or {}
    served_outside = model_version.source == ModelVersion.Source.EXTERNAL
    saved: dict[str, str | None] = stored.get("saved_with") or {}
    names = list(dict.fromkeys([*LIBRARIES, *saved]))
    serving = dict(serving_versions())
    for name in names:
        if name not in serving:
            serving[name] = library_version(name)
    sources = stored.get("saved_with_source") or {}
    used = set(stored.get("used_by_file") or [])
    libraries = [
        {
            "library": name,
            "saved": saved.get(name),
            "saved_source": sources.get(name),
            "serving": serving.get(name),
            "matches": _versions_match(saved.get(name), serving.get(name)),
            "used_by_file": name in used,
        }
        for name in names
    ]
    warnings = list(stored.get("warnings") or [])
    checked = stored.get("checked_with") or {}
    saved_sklearn, now_sklearn = saved.get("scikit-learn"), serving.get("scikit-learn")
    if (
        saved_sklearn
        and checked.get("scikit-learn")
        and now_sklearn != checked["scikit-learn"]
        and saved_sklearn != now_sklearn
    ):
        warnings.append(
            f"This server now runs scikit-learn {now_sklearn} (the model was checked with "
            f"{checked['scikit-learn']}); it was saved with {saved_sklearn}, and scikit-learn "
            "warns that such a mismatch might lead to breaking code or invalid results."
        )
    return {
        "recorded": bool(stored) and not served_outside,
        "served_outside": served_outside,
        "saved_with": {name: saved.get(name) for name in names},
        "serving": {name: serving.get(name) for name in names},
        "checked_with": checked,
        "skops_protocol": stored.get("skops_protocol"),
        "libraries": libraries if stored else [],
        "warnings": warnings,
    }


def model_version_latency_public(
    model_version: ModelVersion, *, budget_ms: int | None
) -> dict[str, Any]:
    """The single-row scoring latency measured at upload against the use case's budget now."""
    latency = model_version.latency or {}
    return {
        "measured": bool(latency),
        "p50_ms": latency.get("p50_ms"),
        "p95_ms": latency.get("p95_ms"),
        "p99_ms": latency.get("p99_ms"),
        "max_ms": latency.get("max_ms"),
        "calls": latency.get("calls"),
        "stopped_early": latency.get("stopped_early"),
        "measured_at": latency.get("measured_at"),
        "budget_ms": budget_ms,
        "over_budget": latency_over_budget(latency, budget_ms),
    }
