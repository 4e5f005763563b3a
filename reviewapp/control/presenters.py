"""How the control room shows policies, guardrails, comparisons and backtests.

Plain data out (dicts, lists, Plotly figure JSON) for templates and the page's script; no
queries here, callers pass in what they read.
"""

import json
from typing import Any

import plotly.graph_objects as go

from deployments.models import AutomationPolicy
from deployments.policy import Level
from deployments.policy.guardrails import (
    KINDS,
    LEVEL_ORDER,
    GuardrailsInvalid,
    guardrails_parse,
    limit_promise,
)
from deployments.statistics.evidence import Estimate, wilson
from deployments.statistics.sequential import DEFAULT_ALPHA, DEFAULT_CONFIDENCE, default_margin
from reviewapp.control.comparison import Comparison

LEVEL_HELP: dict[str, dict[str, str]] = {
    Level.HUMAN_ONLY: {
        "title": "Human only",
        "reviewers": "decide every item; no suggestion is shown.",
        "callers": "always wait for a human; the model is never asked.",
    },
    Level.SHADOW: {
        "title": "Shadow",
        "reviewers": "decide every item blind while the model scores it silently.",
        "callers": "always wait for a human; disagreements become retraining data.",
    },
    Level.ASSISTED: {
        "title": "Assisted",
        "reviewers": "see the model's suggestion and confidence, and accept or override it.",
        "callers": "wait for the reviewer's decision.",
    },
    Level.PARTIAL: {
        "title": "Partial",
        "reviewers": "get only the items the model is unsure of, plus a blind audit sample.",
        "callers": "get the model's answer at once when it is confident (within the ramp).",
    },
    Level.FULL: {
        "title": "Full",
        "reviewers": "only audit a blind sample of the model's decisions.",
        "callers": "get the model's answer at once for every item within the ramp.",
    },
}

LEVELS = [{"value": level.value, **LEVEL_HELP[level]} for level in LEVEL_ORDER]

FIELD_LABELS = {
    "level": "level",
    "confidence_threshold": "threshold",
    "traffic_percent": "ramp",
    "audit_rate": "audit rate",
    "double_review_rate": "double review",
}


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.3g}%"


def policy_value(field: str, value: Any) -> str:
    if field == "level":
        return LEVEL_HELP[Level(value)]["title"]
    if field == "traffic_percent":
        return f"{value:g}%"
    if field in ("audit_rate", "double_review_rate"):
        return _percent(value)
    if field == "confidence_threshold":
        return f"{value:g}"
    return json.dumps(value) if isinstance(value, dict | list) else str(value)


def _flatten(prefix: str, value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        for key, inner in value.items():
            flat.update(_flatten(f"{prefix}.{key}", inner))
        return flat
    return {prefix: value}


def policy_changes(previous: AutomationPolicy | None, policy: AutomationPolicy) -> list[dict]:
    """What a version changed against the one before it, field by field (guardrails by key)."""
    if previous is None:
        return []
    changes = []
    for field, label in FIELD_LABELS.items():
        before, after = getattr(previous, field), getattr(policy, field)
        if before != after:
            changes.append(
                {
                    "field": label,
                    "before": policy_value(field, before),
                    "after": policy_value(field, after),
                }
            )
    before = _flatten("guardrails", previous.guardrails or {})
    after = _flatten("guardrails", policy.guardrails or {})
    for key in sorted(set(before) | set(after)):
        if before.get(key) != after.get(key):
            changes.append(
                {
                    "field": key,
                    "before": "—" if key not in before else str(before[key]),
                    "after": "—" if key not in after else str(after[key]),
                }
            )
    return changes


def policy_history_rows(policies: list[AutomationPolicy]) -> list[dict]:
    """Newest first, each with its changes against the version before it."""
    ordered = sorted(policies, key=lambda p: p.version)
    rows = []
    for index, policy in enumerate(ordered):
        previous = ordered[index - 1] if index else None
        rows.append({"policy": policy, "changes": policy_changes(previous, policy)})
    return rows[::-1]


# --- guardrails form -----------------------------------------------------------------------


def guardrail_form_rows(guardrails: dict, readings: dict) -> list[dict]:
    """One row per kind of guardrail for the form: its settings (rates in percent), what it
    promises (false alarms, detection delay) when its settings parse, and the last reading."""
    rows = []
    for kind in KINDS:
        configured = guardrails.get(kind.name) or {}
        maximum = configured.get("max")
        row = {
            "name": kind.name,
            "label": kind.label,
            "observations": kind.observations,
            "is_rate": kind.is_rate,
            "enabled": bool(configured),
            "max": _form_number(maximum, kind.is_rate),
            "window": configured.get("window", kind.default_window),
            "min_sample": configured.get("min_sample", ""),
            "default_min_sample": min(
                kind.default_min_sample, configured.get("window", kind.default_window)
            ),
            "reading": readings.get(kind.name),
            "promise": _limit_promise(kind.name, configured),
        }
        if kind.is_rate:
            row.update(
                margin=_form_number(configured.get("margin"), True),
                alpha=_form_number(configured.get("alpha"), True),
                confidence=_form_number(configured.get("confidence"), True),
                default_margin=_form_number(default_margin(maximum or 0.0), True),
                default_alpha=_form_number(DEFAULT_ALPHA, True),
                default_confidence=_form_number(DEFAULT_CONFIDENCE, True),
            )
        rows.append(row)
    return rows


def _form_number(value, is_rate: bool) -> str:
    if value is None or isinstance(value, str):
        return value or ""
    return f"{value * 100 if is_rate else value:.6g}"


def _limit_promise(name: str, configured: dict) -> str:
    if not configured:
        return ""
    try:
        limit = guardrails_parse({name: configured}).limit(name)
    except GuardrailsInvalid:
        return ""
    return limit_promise(limit)


def reading_value(kind_is_rate: bool, value: float | None) -> str:
    if value is None:
        return "—"
    return _percent(value) if kind_is_rate else f"{value:.3g}"


# --- figures (Plotly JSON, drawn by static/js/control.js) --------------------------------------

FONT = {"family": "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", "size": 13}
COLOURS = ["#2456c7", "#c2410c", "#15803d", "#7c3aed", "#be185d", "#0f766e"]


def _layout(**extra) -> dict:
    layout = {
        "font": FONT,
        "margin": {"l": 56, "r": 56, "t": 40, "b": 48},
        "paper_bgcolor": "#fff",
        "plot_bgcolor": "#fff",
        "hovermode": "closest",
        "legend": {"orientation": "h", "y": -0.22},
    }
    layout.update(extra)
    return layout


def _figure_json(figure: go.Figure) -> dict:
    # plotly's own encoder turns NumPy arrays into plain JSON; {% json_data %} takes the dict.
    return json.loads(figure.to_json())


def tradeoff_figure(result: dict, *, current_threshold: float | None) -> dict:
    """Automation rate against error rate, one point per threshold, the current one marked."""
    curve = result["curve"]
    thresholds = curve["thresholds"]
    automation = [r * 100 for r in curve["automation_rate"]]
    errors = [None if e is None else e * 100 for e in curve["error_rate"]]
    hover = [
        f"threshold {t:.2f}<br>automated {a:.1f}% ({n:,} items)<br>"
        + ("error rate —" if e is None else f"error rate {e:.2f}% ({w:,} wrong)")
        for t, a, e, n, w in zip(
            thresholds, automation, errors, curve["automated"], curve["errors"], strict=True
        )
    ]
    figure = go.Figure()
    figure.add_trace(
        go.Scatter(
            x=automation,
            y=errors,
            mode="lines+markers",
            name="threshold 0.01 … 1.00",
            marker={"size": 5, "color": thresholds, "colorscale": "Blues", "showscale": False},
            line={"color": "#8aa4d6", "width": 1.5},
            hovertext=hover,
            hoverinfo="text",
        )
    )
    if current_threshold is not None:
        index = min(range(len(thresholds)), key=lambda i: abs(thresholds[i] - current_threshold))
        figure.add_trace(
            go.Scatter(
                x=[automation[index]],
                y=[errors[index]],
                mode="markers+text",
                name=f"current threshold {current_threshold:g}",
                marker={"size": 14, "symbol": "star", "color": "#c2410c"},
                text=[f"now: {current_threshold:g}"],
                textposition="top center",
                hovertext=[hover[index]],
                hoverinfo="text",
            )
        )
    figure.update_layout(
        **_layout(
            title={"text": "Automation against error", "x": 0.01},
            xaxis={"title": "automated (% of items)", "rangemode": "tozero", "ticksuffix": "%"},
            yaxis={
                "title": "error rate of automated items",
                "rangemode": "tozero",
                "ticksuffix": "%",
            },
        )
    )
    return _figure_json(figure)


def threshold_figure(result: dict, *, current_threshold: float | None) -> dict:
    """Both rates against the threshold, with the current threshold as a vertical line."""
    curve = result["curve"]
    figure = go.Figure()
    figure.add_trace(
        go.Scatter(
            x=curve["thresholds"],
            y=[r * 100 for r in curve["automation_rate"]],
            name="automated",
            line={"color": COLOURS[0]},
        )
    )
    figure.add_trace(
        go.Scatter(
            x=curve["thresholds"],
            y=[None if e is None else e * 100 for e in curve["error_rate"]],
            name="error rate (right axis)",
            line={"color": COLOURS[1]},
            yaxis="y2",
        )
    )
    shapes = []
    if current_threshold is not None:
        shapes.append(
            {
                "type": "line",
                "x0": current_threshold,
                "x1": current_threshold,
                "yref": "paper",
                "y0": 0,
                "y1": 1,
                "line": {"color": "#c2410c", "dash": "dot"},
            }
        )
    figure.update_layout(
        **_layout(
            title={"text": "Both rates by threshold", "x": 0.01},
            xaxis={"title": "confidence threshold", "range": [0, 1]},
            yaxis={"title": "automated", "range": [0, 105], "ticksuffix": "%"},
            yaxis2={
                "title": "error rate of automated",
                "overlaying": "y",
                "side": "right",
                "rangemode": "tozero",
                "ticksuffix": "%",
                "tickformat": ".1f",
                "showgrid": False,
            },
            shapes=shapes,
        )
    )
    return _figure_json(figure)


def calibration_figure(comparison: Comparison) -> dict:
    """Reliability diagram: mean confidence against observed accuracy, per version."""
    figure = go.Figure()
    figure.add_trace(
        go.Scatter(
            x=[0, 100],
            y=[0, 100],
            mode="lines",
            name="perfectly calibrated",
            line={"color": "#9aa3b2", "dash": "dash"},
            hoverinfo="skip",
        )
    )
    for index, stats in enumerate(comparison.stats):
        bins = stats.calibration
        figure.add_trace(
            go.Scatter(
                x=[b["confidence"] * 100 for b in bins],
                y=[b["accuracy"] * 100 for b in bins],
                mode="lines+markers",
                name=f"{stats.version.version} ({stats.version.role})",
                marker={"size": [6 + min(14, b["count"] ** 0.5) for b in bins]},
                line={"color": COLOURS[index % len(COLOURS)]},
                hovertext=[
                    f"confidence {b['low']:.1f}–{b['high']:.1f}: {b['count']:,} items, "
                    f"right {b['accuracy']:.0%}"
                    for b in bins
                ],
                hoverinfo="text",
            )
        )
    figure.update_layout(
        **_layout(
            title={"text": "Calibration against humans", "x": 0.01},
            xaxis={"title": "mean confidence", "range": [-2, 102], "ticksuffix": "%"},
            yaxis={"title": "right against humans", "range": [-3, 103], "ticksuffix": "%"},
        )
    )
    return _figure_json(figure)


def whatif_curve(job) -> dict | None:
    """The part of a finished backtest the policy editor's what-if needs."""
    if job is None or not job.result.get("curve"):
        return None
    result = job.result
    return {
        "job": str(job.pk),
        "model_version": result["model_version"],
        "since": result.get("since"),
        "until": result.get("until"),
        "items": result["items"],
        "thresholds": result["curve"]["thresholds"],
        "automation_rate": result["curve"]["automation_rate"],
        "error_rate": result["curve"]["error_rate"],
        # The counts behind each error rate, so the page can give its interval as it moves.
        "automated": result["curve"]["automated"],
        "errors": result["curve"]["errors"],
    }


def backtest_accuracy(result: dict) -> Estimate:
    """The backtest's accuracy (or share within tolerance) with its Wilson interval."""
    share = result.get("accuracy", result.get("within_tolerance"))
    judged = result.get("judged") or 0
    return wilson(round(share * judged), judged) if share is not None else wilson(0, 0)


def whatif_at(curve: dict | None, threshold: float) -> dict | None:
    """The curve read at ``threshold`` (the page's script does the same as the slider moves)."""
    if not curve:
        return None
    thresholds = curve["thresholds"]
    index = min(range(len(thresholds)), key=lambda i: abs(thresholds[i] - threshold))
    return {
        "threshold": thresholds[index],
        "automation_rate": curve["automation_rate"][index],
        "error_rate": curve["error_rate"][index],
        "automated": curve["automated"][index],
        "errors": curve["errors"][index],
    }
