"""Plotly figures (plain JSON, drawn by static/js/dashboards.js) from what the selectors read.

Every chart has a title, axis titles with units and a one-line reading of what it shows;
a chart with nothing to show says so instead of drawing empty axes.
"""

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from deployments.models import AutomationPolicy, GuardrailBreach, UseCase
from deployments.statistics.evidence import MIN_EVIDENCE, Estimate, mean_interval, wilson
from reviewapp.monitoring import aggregation, stats
from reviewapp.monitoring.selectors import (
    ROUTES,
    Snapshot,
    estimates_of,
    evidence_of,
    human_baseline_of,
    quality_of,
)

ROUTE_COLOURS = {"auto": "#2456c7", "assisted": "#5fa2f0", "blind": "#9b7fd8", "human": "#98a1b3"}
ROUTE_NAMES = {
    "auto": "auto (model decided)",
    "assisted": "assisted review",
    "blind": "blind review",
    "human": "human only",
}
LIMIT_COLOUR = "#c2312b"
FONT = {"family": "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", "size": 13}


@dataclass
class Chart:
    key: str
    title: str
    reading: str
    figure: dict[str, Any] | None = None
    table: list[dict[str, Any]] = field(default_factory=list)
    empty: str = "Nothing to draw for this period."
    # How the figure is computed, in the statistician's terms: shown folded under the reading,
    # which says the same in plain words.
    method: str = ""

    @property
    def element_id(self) -> str:
        return f"fig-{self.key}"


def _layout(*, x_title: str, y_title: str, **extra) -> dict[str, Any]:
    layout = {
        "margin": {"l": 64, "r": 16, "t": 36, "b": 56},
        "height": 340,
        "font": FONT,
        "paper_bgcolor": "rgba(0,0,0,0)",
        "plot_bgcolor": "#fff",
        "xaxis": {"title": {"text": x_title}, "gridcolor": "#eceef2", "automargin": True},
        "yaxis": {"title": {"text": y_title}, "gridcolor": "#eceef2", "automargin": True},
        "legend": {"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0},
        "hovermode": "x unified",
    }
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(layout.get(key), dict):
            layout[key] = {**layout[key], **value}
        else:
            layout[key] = value
    return layout


def _ranking(
    *,
    labels: list[str],
    values: list[float],
    colour,
    hover: str,
    x_title: str,
    y_title: str,
    xaxis: dict | None = None,
    **layout,
) -> dict[str, Any]:
    """A horizontal bar per label, the first on top (features by drift, reviewers by work)."""
    return {
        "data": [
            {
                "type": "bar",
                "orientation": "h",
                "x": values,
                "y": labels,
                "marker": {"color": colour},
                "hovertemplate": hover + "<extra></extra>",
            }
        ],
        "layout": _layout(
            x_title=x_title,
            y_title=y_title,
            height=max(240, 90 + 24 * len(labels)),
            hovermode="closest",
            showlegend=False,
            xaxis=xaxis or {},
            yaxis={"autorange": "reversed", "type": "category"},
            **layout,
        ),
    }


def number(x: float | None, unit: str = "") -> str:
    """A figure as people read it: 0.396, 47.5, 3,394 (never 3.39e+03)."""
    if x is None:
        return "—"
    text = f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.3g}"
    return text + unit


def _pct(x: float | None, digits: int = 1) -> str:
    return "—" if x is None else f"{100 * x:.{digits}f}%"


def _rate(a: float, b: float) -> float | None:
    return a / b if b else None


def _too_few(chart: Chart, n: int, what: str) -> Chart:
    """A chart whose figure rests on fewer than ``MIN_EVIDENCE`` items draws nothing and says
    so: a line through a handful of points reads as a trend that is not there."""
    chart.empty = f"Too few items (n={n}) for {what}; {MIN_EVIDENCE} are needed."
    chart.reading = f"too few items (n={n})"
    return chart


def _with_interval(estimate: Estimate, text: str) -> str:
    """``text`` (the figure as a phrase) followed by its 95% interval."""
    if estimate.low is None:
        return text
    if estimate.method == "t":
        return f"{text} (95% interval {number(estimate.low)}–{number(estimate.high)})"
    return f"{text} (95% interval {_pct(estimate.low)[:-1]}–{_pct(estimate.high)})"


def _band(name: str, x: list, estimates: list[Estimate], colour: str, **extra) -> list[dict]:
    """A shaded 95% interval: its upper edge, then its lower edge filled up to it. Periods
    without items leave a gap."""
    edge = {
        "type": "scatter",
        "mode": "lines",
        "x": x,
        "line": {"width": 0, "color": colour},
        "hoverinfo": "skip",
        "connectgaps": False,
        "legendgroup": name,
        **extra,
    }
    return [
        {
            **edge,
            "name": f"{name} upper",
            "y": [e.high if e.high != math.inf else None for e in estimates],
            "showlegend": False,
        },
        {
            **edge,
            "name": name,
            "y": [e.low for e in estimates],
            "fill": "tonexty",
            "fillcolor": colour,
            "opacity": 0.2,
        },
    ]


# --- time periods -----------------------------------------------------------------------------


@dataclass
class Periods:
    """The snapshot's hours grouped into the periods the time axes show (hours or days)."""

    step: timedelta
    keys: list[datetime]
    rows: list[dict[str, Any]]

    @property
    def unit(self) -> str:
        return "hour" if self.step == timedelta(hours=1) else "day"

    @property
    def labels(self) -> list[str]:
        return [k.isoformat() for k in self.keys]


def periods_of(snapshot: Snapshot, *, now: datetime) -> Periods:
    hours = sorted(snapshot.hours)
    start = snapshot.window.since or (hours[0] if hours else aggregation.hour_of(now))
    end = snapshot.window.until or aggregation.hour_of(now) + timedelta(hours=1)
    end = min(end, aggregation.hour_of(now) + timedelta(hours=1))
    step = timedelta(hours=1) if end - start <= timedelta(days=3) else timedelta(days=1)

    def key_of(hour: datetime) -> datetime:
        if step == timedelta(hours=1):
            return hour
        return hour.replace(hour=0)

    keys = []
    cursor = key_of(start)
    while cursor < end:
        keys.append(cursor)
        cursor += step
    rows = {k: aggregation._new_hourly() for k in keys}
    for hour, values in snapshot.hours.items():
        key = key_of(hour)
        if key not in rows:
            rows[key] = aggregation._new_hourly()
            keys.append(key)
        aggregation.hourly_merge(rows[key], values)
    keys.sort()
    return Periods(step=step, keys=keys, rows=[rows[k] for k in keys])


# --- automation -------------------------------------------------------------------------------


def _policy_label(policy: AutomationPolicy) -> str:
    text = policy.level.replace("_", " ")
    if policy.level in ("partial", "full") or policy.traffic_percent < 100:
        text += f" · {policy.traffic_percent:g}%"
    if policy.level == "partial":
        text += f" ≥{policy.confidence_threshold:g}"
    return text


def automation_chart(
    periods: Periods, policies: list[AutomationPolicy], totals: dict[str, Any]
) -> Chart:
    routed = totals["items_routed"]
    chart = Chart(
        key="routes",
        title="Share of items by route",
        reading="No items were routed in this period.",
    )
    if not routed:
        return chart
    # Periods without items are left out (a share of nothing is not 0%); the axis still spans
    # the whole window so the gap shows.
    filled = [
        (label, row)
        for label, row in zip(periods.labels, periods.rows, strict=True)
        if row["items_routed"]
    ]
    x = [label for label, _ in filled]
    data = []
    for route in ROUTES:
        data.append(
            {
                "type": "scatter",
                "mode": "lines",
                "stackgroup": "routes",
                "groupnorm": "percent",
                "name": ROUTE_NAMES[route],
                "x": x,
                "y": [row[f"route_{route}"] for _, row in filled],
                "line": {"width": 0.5, "color": ROUTE_COLOURS[route]},
                "hovertemplate": "%{y:.1f}%",
            }
        )
    shapes, annotations = [], []
    first, last = (
        (periods.keys[0], periods.keys[-1] + periods.step) if periods.keys else (None, None)
    )
    for policy in policies:
        if first and not first <= policy.changed_at < last:
            continue
        shapes.append(
            {
                "type": "line",
                "xref": "x",
                "yref": "paper",
                "x0": policy.changed_at.isoformat(),
                "x1": policy.changed_at.isoformat(),
                "y0": 0,
                "y1": 1,
                "line": {"color": "#1d2330", "width": 1, "dash": "dot"},
            }
        )
        annotations.append(
            {
                "x": policy.changed_at.isoformat(),
                "y": 1,
                "xref": "x",
                "yref": "paper",
                "text": _policy_label(policy),
                "showarrow": False,
                "textangle": -90,
                "xanchor": "right",
                "yanchor": "top",
                "font": {"size": 11, "color": "#1d2330"},
                "bgcolor": "rgba(255,255,255,0.75)",
            }
        )
    chart.figure = {
        "data": data,
        "layout": _layout(
            x_title=f"Time (UTC, per {periods.unit})",
            y_title="Share of items routed (%)",
            yaxis={"range": [0, 100], "ticksuffix": "%"},
            xaxis={"range": [first.isoformat(), last.isoformat()]} if first else {},
            shapes=shapes,
            annotations=annotations,
        ),
    }
    auto = totals["route_auto"] / routed
    changes = len(annotations)
    chart.reading = (
        f"The model decided {_pct(auto)} of the {routed:,} items routed in this period; "
        f"dotted lines mark the {changes} policy change{'s' if changes != 1 else ''} "
        "(level, traffic share, threshold)."
    )
    return chart


# --- quality ----------------------------------------------------------------------------------


def _limit_shape(value: float | None, label: str) -> tuple[list, list]:
    if value is None:
        return [], []
    shape = {
        "type": "line",
        "xref": "paper",
        "x0": 0,
        "x1": 1,
        "yref": "y",
        "y0": value,
        "y1": value,
        "line": {"color": LIMIT_COLOUR, "width": 2, "dash": "dash"},
    }
    note = {
        "xref": "paper",
        "x": 1,
        "y": value,
        "yref": "y",
        "text": label,
        "showarrow": False,
        "xanchor": "right",
        "yanchor": "bottom",
        "font": {"size": 11, "color": LIMIT_COLOUR},
    }
    return [shape], [note]


def guardrail_max(guardrails: dict, name: str) -> float | None:
    entry = (guardrails or {}).get(name)
    if isinstance(entry, dict) and isinstance(entry.get("max"), int | float):
        return float(entry["max"])
    return None


def guardrail_text(guardrails: dict, name: str) -> str:
    limit = guardrail_max(guardrails, name)
    window = ((guardrails or {}).get(name) or {}).get("window") if limit is not None else None
    text = f"guardrail {limit:g}" if limit is not None else ""
    if window:
        text += f" over {window} items"
    return text


def _line(name: str, x, y, colour: str, **extra) -> dict[str, Any]:
    return {
        "type": "scatter",
        "mode": "lines+markers",
        "name": name,
        "x": x,
        "y": y,
        "connectgaps": False,
        "line": {"color": colour, "width": 2},
        "marker": {"size": 5},
        **extra,
    }


def override_chart(periods: Periods, totals: dict, guardrails: dict) -> Chart:
    judged = totals["decisions_accepted"] + totals["decisions_overridden"]
    chart = Chart(
        key="override",
        title="Override rate",
        reading="No reviewer was shown a suggestion in this period (assisted reviews give "
        "the override rate).",
    )
    if not judged:
        return chart
    if judged < MIN_EVIDENCE:
        return _too_few(chart, judged, "an override rate")
    per_period = [
        wilson(r["decisions_overridden"], r["decisions_accepted"] + r["decisions_overridden"])
        for r in periods.rows
    ]
    limit = guardrail_max(guardrails, "override_rate")
    shapes, notes = _limit_shape(limit, guardrail_text(guardrails, "override_rate"))
    overall = totals["decisions_overridden"] / judged
    chart.figure = {
        "data": [
            *_band("95% interval", periods.labels, per_period, "rgba(36,86,199,0.25)"),
            _line(
                "overridden / suggestions shown",
                periods.labels,
                [e.value for e in per_period],
                "#2456c7",
                customdata=[e.n for e in per_period],
                hovertemplate="%{y:.1%} of %{customdata}",
            ),
        ],
        "layout": _layout(
            x_title=f"Time (UTC, per {periods.unit})",
            y_title="Suggestions overridden (%)",
            yaxis={"tickformat": ".0%", "rangemode": "tozero"},
            shapes=shapes,
            annotations=notes,
        ),
    }
    verdict = ""
    if limit is not None:
        verdict = " — within" if overall <= limit else " — above"
        verdict += f" the {limit:.0%} guardrail"
    rate = _with_interval(wilson(totals["decisions_overridden"], judged), _pct(overall))
    chart.reading = (
        f"Reviewers overrode {rate} of the {judged:,} suggestions they were shown{verdict}."
    )
    return chart


def accuracy_chart(use_case: UseCase, periods: Periods, totals: dict, guardrails: dict) -> Chart:
    quality = quality_of(use_case, totals)
    baseline = human_baseline_of(use_case, totals)
    classification = use_case.is_classification
    chart = Chart(
        key="accuracy",
        title="Accuracy against human labels" if classification else "Error against human values",
        reading="No human has labelled an item the model scored in this period.",
    )
    if not quality["labelled"]:
        return chart
    if quality["labelled"] < MIN_EVIDENCE:
        return _too_few(chart, quality["labelled"], "a quality figure")
    x = periods.labels
    evidence = evidence_of(use_case, totals)
    estimates = estimates_of(use_case, totals)
    data = []
    shapes, notes = [], []
    if classification:
        per_period = [wilson(r["agree"], r["labelled"]) for r in periods.rows]
        data += _band("95% interval", x, per_period, "rgba(36,86,199,0.25)")
        data.append(
            _line(
                "agreement with first human label",
                x,
                [e.value for e in per_period],
                "#2456c7",
                customdata=[e.n for e in per_period],
                hovertemplate="%{y:.1%} of %{customdata}",
            )
        )
        data.append(
            _line(
                "model vs blind labels only",
                x,
                [_rate(r["agree_blind"], r["labelled_blind"]) for r in periods.rows],
                "#5fa2f0",
                hovertemplate="%{y:.1%}",
                line={"color": "#5fa2f0", "width": 2, "dash": "dot"},
            )
        )
        data.append(
            _line(
                "human vs human (double review)",
                x,
                [_rate(r["double_agree"], r["double_reviewed"]) for r in periods.rows],
                "#2f9e6b",
                hovertemplate="%{y:.1%}",
            )
        )
        audit_limit = guardrail_max(guardrails, "audit_error_rate")
        if totals["audits"]:
            data.append(
                _line(
                    "audit error rate",
                    x,
                    [_rate(r["audit_errors"], r["audits"]) for r in periods.rows],
                    "#d9822b",
                    hovertemplate="%{y:.1%}",
                )
            )
        if audit_limit is not None:
            shapes, notes = _limit_shape(
                audit_limit, "audit error " + guardrail_text(guardrails, "audit_error_rate")
            )
        layout = _layout(
            x_title=f"Time (UTC, per {periods.unit})",
            y_title="Share of items (%)",
            yaxis={"tickformat": ".0%", "range": [0, 1.02]},
            shapes=shapes,
            annotations=notes,
        )
        human = evidence["human_agreement"]
        weighted = estimates["model_accuracy"]
        chart.reading = (
            "The model agreed with the first human label on "
            + _with_interval(evidence["accuracy"], _pct(quality["accuracy"]))
            + f" of {quality['labelled']:,} labelled items"
            + (
                "; weighted for how items were sampled for review and audit, its accuracy "
                "over all scored items is " + _with_interval(weighted, _pct(weighted.value))
                if weighted.value is not None and not weighted.too_few
                else ""
            )
            + (
                f"; two humans agreed with each other on {_pct(human.value)} of "
                f"{human.n:,} double-reviewed items."
                if human.value is not None
                else "; no double review in this period gives a human baseline."
            )
        )
    else:
        per_period = [
            mean_interval(r["labelled"], r["abs_error_sum"], r["sq_error_sum"])
            for r in periods.rows
        ]
        data += _band("95% interval", x, per_period, "rgba(36,86,199,0.25)")
        data.append(
            _line(
                "model MAE",
                x,
                [e.value for e in per_period],
                "#2456c7",
                customdata=[e.n for e in per_period],
                hovertemplate="%{y:.3g} over %{customdata}",
            )
        )
        data.append(
            _line(
                "human vs human MAE (double review)",
                x,
                [_rate(r["double_abs_error_sum"], r["double_reviewed"]) for r in periods.rows],
                "#2f9e6b",
            )
        )
        layout = _layout(
            x_title=f"Time (UTC, per {periods.unit})",
            y_title="Mean absolute error (value units)",
            yaxis={"rangemode": "tozero"},
        )
        chart.reading = (
            f"Against {quality['labelled']:,} human values the model's MAE is "
            + _with_interval(evidence["mae"], number(quality["mae"]))
            + " and MSE "
            + _with_interval(evidence["mse"], number(quality["mse"]))
            + (
                f"; two humans differ by {number(baseline['mae'])} on average."
                if baseline["mae"] is not None
                else "; no double review in this period gives a human baseline."
            )
        )
    chart.figure = {"data": data, "layout": layout}
    return chart


def _value_label(use_case: UseCase, key: str) -> str:
    centre = stats.value_bin_centre(
        int(key),
        value_min=use_case.value_min,
        value_max=use_case.value_max,
        tolerance=use_case.tolerance,
    )
    return f"{centre:.4g}"


def confusion_chart(use_case: UseCase, totals: dict) -> Chart:
    cells = totals["confusion"]
    chart = Chart(
        key="confusion",
        title="Confusion matrix (model vs first human answer)",
        reading="No labelled items in this period.",
    )
    if not cells:
        return chart
    pairs = {tuple(k.split("|", 1)): n for k, n in cells.items()}
    if use_case.is_classification:
        labels = [str(x) for x in use_case.labels]
        axis = labels
        names = labels
    else:
        keys = sorted({int(a) for a, _ in pairs} | {int(b) for _, b in pairs})
        axis = [str(k) for k in keys]
        names = [_value_label(use_case, k) for k in axis]
    z = [[pairs.get((predicted, human), 0) for predicted in axis] for human in axis]
    total = sum(pairs.values())
    diagonal = sum(pairs.get((a, a), 0) for a in axis)
    off = sorted(((n, a, b) for (a, b), n in pairs.items() if a != b), reverse=True)
    chart.figure = {
        "data": [
            {
                "type": "heatmap",
                "x": names,
                "y": names,
                "z": z,
                "colorscale": [[0, "#f4f6fb"], [1, "#2456c7"]],
                "text": z,
                "texttemplate": "%{text}",
                "hovertemplate": "model %{x}, human %{y}: %{z} items<extra></extra>",
                "colorbar": {"title": {"text": "items"}},
            }
        ],
        "layout": _layout(
            x_title="Model's answer" + ("" if use_case.is_classification else " (bin centre)"),
            y_title="Human's answer" + ("" if use_case.is_classification else " (bin centre)"),
            height=380,
            hovermode="closest",
            xaxis={"type": "category", "gridcolor": "rgba(0,0,0,0)"},
            yaxis={"type": "category", "autorange": "reversed", "gridcolor": "rgba(0,0,0,0)"},
        ),
    }
    reading = f"{_pct(_rate(diagonal, total))} of {total:,} labelled items lie on the diagonal"
    if off:
        n, a, b = off[0]
        label = (
            (lambda k: k) if use_case.is_classification else (lambda k: _value_label(use_case, k))
        )
        reading += f"; the most common mistake is {label(a)} for {label(b)} ({n:,} items)."
    else:
        reading += "."
    chart.reading = reading
    return chart


def residuals_chart(use_case: UseCase, totals: dict) -> Chart:
    """A regression's errors (human value minus the model's), counted in steps of one value
    bin: the model's value and the human's are each known to their bin (the rollups keep
    bins, not raw values), so an error is a whole number of bin widths."""
    chart = Chart(
        key="residuals",
        title="Errors (human value − model's value)",
        reading="No labelled items in this period.",
    )
    cells = totals["confusion"]
    if not cells:
        return chart
    width = stats.value_bin_width(
        value_min=use_case.value_min, value_max=use_case.value_max, tolerance=use_case.tolerance
    )
    steps: dict[int, int] = defaultdict(int)
    for key, n in cells.items():
        predicted, human = (int(part) for part in key.split("|", 1))
        steps[human - predicted] += n
    low, high = min(steps), max(steps)
    x = [k * width for k in range(low, high + 1)]
    y = [steps.get(k, 0) for k in range(low, high + 1)]
    total = sum(y)
    colours = ["#2f9e6b" if k == 0 else "#2456c7" for k in range(low, high + 1)]
    chart.figure = {
        "data": [
            {
                "type": "bar",
                "x": x,
                "y": y,
                "marker": {"color": colours},
                "hovertemplate": "error %{x:.3g}: %{y} items<extra></extra>",
            }
        ],
        "layout": _layout(
            x_title=f"Human value − model's value (value units, steps of {width:.3g})",
            y_title="Labelled items",
            showlegend=False,
            bargap=0.05,
            yaxis={"rangemode": "tozero"},
        ),
    }
    same = steps.get(0, 0)
    under = sum(n for k, n in steps.items() if k > 0)
    over = sum(n for k, n in steps.items() if k < 0)
    chart.reading = (
        f"Of {total:,} labelled items, {_pct(_rate(same, total))} had the model's value in the "
        f"same bin ({width:.3g} wide) as the human's; the model was too low on "
        f"{_pct(_rate(under, total))} and too high on {_pct(_rate(over, total))}."
    )
    return chart


def calibration_chart(use_case: UseCase, totals: dict) -> Chart:
    cells = totals["calibration"]
    classification = use_case.is_classification
    chart = Chart(
        key="calibration",
        title="Calibration (reliability diagram)"
        if classification
        else "Calibration (predicted vs human)",
        reading="No labelled items with a confidence in this period."
        if classification
        else "No labelled items in this period.",
    )
    bins = sorted({int(k.split(":")[0]) for k in cells})
    if not bins:
        return chart
    n = [cells.get(f"{b}:n", 0) for b in bins]
    x = [cells.get(f"{b}:x", 0) / c for b, c in zip(bins, n, strict=True)]
    y = [cells.get(f"{b}:y", 0) / c for b, c in zip(bins, n, strict=True)]
    low, high = (0, 1) if classification else (min(x + y), max(x + y))
    sizes = [8 + 22 * (c / max(n)) ** 0.5 for c in n]
    data = [
        {
            "type": "scatter",
            "mode": "lines",
            "name": "perfectly calibrated",
            "x": [low, high],
            "y": [low, high],
            "line": {"color": "#98a1b3", "dash": "dash", "width": 1},
            "hoverinfo": "skip",
        },
        {
            "type": "scatter",
            "mode": "lines+markers",
            "name": "model",
            "x": x,
            "y": y,
            "customdata": n,
            "marker": {"size": sizes, "color": "#2456c7"},
            "line": {"color": "#2456c7"},
            "hovertemplate": (
                "confidence %{x:.2f} → correct %{y:.1%} (%{customdata} items)<extra></extra>"
                if classification
                else "predicted %{x:.3g} → human %{y:.3g} (%{customdata} items)<extra></extra>"
            ),
        },
    ]
    if classification:
        gap = sum(abs(a - b) * c for a, b, c in zip(x, y, n, strict=True)) / sum(n)
        layout = _layout(
            x_title="Model confidence (mean per bin, 0–1)",
            y_title="Human agreed (%)",
            hovermode="closest",
            xaxis={"range": [0, 1.02]},
            yaxis={"range": [0, 1.02], "tickformat": ".0%"},
        )
        chart.reading = (
            f"Confidence vs. being right, over {sum(n):,} labelled items: the confidence is "
            f"off from how often the model was right by {gap:.1%} on average; points under the "
            "diagonal are over-confident."
        )
        chart.method = (
            "The gap is the expected calibration error: the mean, weighted by items, of "
            "|mean confidence − share right| over the confidence bins."
        )
    else:
        layout = _layout(
            x_title="Predicted value (mean per bin)",
            y_title="Human value (mean per bin)",
            hovermode="closest",
        )
        chart.reading = (
            f"Mean human value per bin of predicted value over {sum(n):,} labelled items; "
            "points above the diagonal mean the model under-estimates there."
        )
    chart.figure = {"data": data, "layout": layout}
    return chart


# --- inputs -----------------------------------------------------------------------------------

DRIFT_BANDS = ((0.0, 0.1, "rgba(47,158,107,0.10)"), (0.1, 0.25, "rgba(217,130,43,0.14)"))
DRIFT_TOP = 20
DRIFT_METHOD = (
    "Input shift is the population stability index (PSI) of each feature against the training "
    "data, on its training deciles (numbers) or categories: Σ (now − then) · ln(now / then). "
    "Under 0.1 is usually noise, 0.1–0.25 a moderate shift, 0.25 or more a major one."
)


def drift_chart(
    features: list[dict[str, Any]], guardrails: dict, reference_version: str | None
) -> Chart:
    scored = [f for f in features if f["psi"] is not None]
    chart = Chart(
        key="drift",
        title="Input shift: how far inputs moved from training, worst first",
        reading="No items scored by a model with a training reference in this period."
        if reference_version is None or not scored
        else "",
    )
    if not scored:
        return chart
    top = scored[:DRIFT_TOP]
    worst = max(f["psi"] for f in top)
    x_max = max(0.3, worst * 1.1)
    # A feature that moved completely has a PSI in the tens: a log axis keeps the 0.1 and 0.25
    # bands readable next to it.
    log = worst > 1
    x_min = 0.005 if log else 0.0
    shapes = [
        {
            "type": "rect",
            "xref": "x",
            "yref": "paper",
            "x0": max(low, x_min),
            "x1": high,
            "y0": 0,
            "y1": 1,
            "fillcolor": colour,
            "line": {"width": 0},
            "layer": "below",
        }
        for low, high, colour in DRIFT_BANDS
    ] + [
        {
            "type": "rect",
            "xref": "x",
            "yref": "paper",
            "x0": 0.25,
            "x1": x_max,
            "y0": 0,
            "y1": 1,
            "fillcolor": "rgba(194,49,43,0.10)",
            "line": {"width": 0},
            "layer": "below",
        }
    ]
    notes = [
        {
            "x": x,
            "y": 1,
            "xref": "x",
            "yref": "paper",
            "text": text,
            "showarrow": False,
            "yanchor": "bottom",
            "font": {"size": 11, "color": "#5b6475"},
        }
        # Annotations on a log axis are placed in log10 units (shapes take plain values).
        for x, text in (
            (math.log10((0.1 * x_min) ** 0.5) if log else 0.05, "stable"),
            (math.log10((0.1 * 0.25) ** 0.5) if log else 0.175, "moderate"),
            (math.log10((0.25 * x_max) ** 0.5) if log else (0.25 + x_max) / 2, "major"),
        )
    ]
    limit = guardrail_max(guardrails, "drift_psi")
    if limit is not None:
        shapes.append(
            {
                "type": "line",
                "xref": "x",
                "yref": "paper",
                "x0": limit,
                "x1": limit,
                "y0": 0,
                "y1": 1,
                "line": {"color": LIMIT_COLOUR, "width": 2, "dash": "dash"},
            }
        )
    colours = [
        "#c2312b" if f["psi"] >= 0.25 else "#d9822b" if f["psi"] >= 0.1 else "#2f9e6b" for f in top
    ]
    chart.figure = _ranking(
        labels=[f["feature"] for f in top],
        values=[f["psi"] for f in top],
        colour=colours,
        hover="%{y}: shift %{x:.3f}",
        x_title="Input shift (0 = same as training" + (", log scale)" if log else ")"),
        y_title="Feature",
        xaxis={
            "type": "log",
            "range": [math.log10(x_min), math.log10(x_max)],
            "dtick": 1,
            "tickformat": ",~g",
        }
        if log
        else {"range": [0, x_max]},
        shapes=shapes,
        annotations=notes,
    )
    major = [f["feature"] for f in scored if f["psi"] >= 0.25]
    moderate = [f for f in scored if 0.1 <= f["psi"] < 0.25]
    chart.reading = (
        f"Against the training data of {reference_version}: "
        + (
            f"{len(major)} feature{'s' if len(major) != 1 else ''} moved a lot "
            f"(0.25 or more: {', '.join(major[:4])}{'…' if len(major) > 4 else ''})"
            if major
            else "no feature moved a lot (all under 0.25)"
        )
        + f", {len(moderate)} moderately (0.1–0.25), of {len(scored)} checked; 0 = same as "
        "training."
    )
    chart.method = DRIFT_METHOD
    return chart


def missing_chart(features: list[dict[str, Any]]) -> Chart:
    with_rows = [f for f in features if f["rows"]]
    chart = Chart(
        key="missing", title="Missing values per feature", reading="No items in this period."
    )
    if not with_rows:
        return chart
    if not any(f["missing_rate"] for f in with_rows):
        chart.reading = (
            f"No feature was missing in the {with_rows[0]['rows']:,} items of this period; "
            "the table below has every feature's statistics."
        )
        return chart
    ranked = sorted(with_rows, key=lambda f: (-(f["missing_rate"] or 0), f["feature"]))[:DRIFT_TOP]
    chart.figure = _ranking(
        labels=[f["feature"] for f in ranked],
        values=[f["missing_rate"] for f in ranked],
        colour="#5fa2f0",
        hover="%{y}: %{x:.1%} missing",
        x_title="Items with the feature missing (%)",
        y_title="Feature",
        xaxis={
            "tickformat": ".0%",
            "range": [0, max(0.05, max(f["missing_rate"] for f in ranked) * 1.1)],
        },
    )
    most = ranked[0]
    chart.reading = (
        f"{most['feature']} is missing most often ({_pct(most['missing_rate'])} of "
        f"{most['rows']:,} items)"
        if most["missing_rate"]
        else f"No feature was missing in the {most['rows']:,} items of this period"
    ) + "; the table below has every feature's statistics."
    return chart


# --- outputs ----------------------------------------------------------------------------------


def null_outputs_chart(periods: Periods, totals: dict, guardrails: dict) -> Chart:
    chart = Chart(
        key="nulls", title="Null outputs", reading="The model made no prediction in this period."
    )
    if not totals["predictions"]:
        return chart
    x = periods.labels
    limit = guardrail_max(guardrails, "null_output_rate")
    shapes, notes = _limit_shape(limit, guardrail_text(guardrails, "null_output_rate"))
    for shape in shapes:
        shape["yref"] = "y2"
    for note in notes:
        note["yref"] = "y2"
    chart.figure = {
        "data": [
            {
                "type": "bar",
                "name": "null outputs",
                "x": x,
                "y": [r["null_outputs"] for r in periods.rows],
                "marker": {"color": "#c2312b"},
                "hovertemplate": "%{y} null outputs",
            },
            _line(
                "share of predictions",
                x,
                [_rate(r["null_outputs"], r["predictions"]) for r in periods.rows],
                "#1d2330",
                yaxis="y2",
                hovertemplate="%{y:.1%}",
            ),
        ],
        "layout": _layout(
            x_title=f"Time (UTC, per {periods.unit})",
            y_title="Null outputs (items)",
            yaxis={"rangemode": "tozero"},
            yaxis2={
                "title": {"text": "Share of predictions (%)"},
                "overlaying": "y",
                "side": "right",
                "tickformat": ".0%",
                "rangemode": "tozero",
                "showgrid": False,
            },
            margin={"l": 64, "r": 64, "t": 36, "b": 56},
            shapes=shapes,
            annotations=notes,
        ),
    }
    share = totals["null_outputs"] / totals["predictions"]
    chart.reading = (
        f"{totals['null_outputs']:,} of {totals['predictions']:,} predictions ({_pct(share, 2)}) "
        "were unusable and sent their items to a human."
    )
    return chart


def breaches_chart(breaches: list[GuardrailBreach], periods: Periods) -> Chart:
    chart = Chart(
        key="breaches",
        title="Guardrail breaches",
        reading="No guardrail was breached in this period.",
    )
    chart.table = [
        {
            "detected_at": b.detected_at,
            "guardrail": b.guardrail,
            "observed": b.observed,
            "limit": b.limit,
            "window": b.window,
            "model_version": b.model_version.version if b.model_version else "",
            "stepped_down": b.policy_id is not None,
            "resolved_at": b.resolved_at,
        }
        for b in breaches
    ]
    if not breaches:
        return chart
    names = sorted({b.guardrail for b in breaches})
    chart.figure = {
        "data": [
            {
                "type": "scatter",
                "mode": "markers",
                "name": name,
                "x": [b.detected_at.isoformat() for b in breaches if b.guardrail == name],
                "y": [
                    b.observed / b.limit if b.limit else None
                    for b in breaches
                    if b.guardrail == name
                ],
                "customdata": [[b.observed, b.limit] for b in breaches if b.guardrail == name],
                "marker": {"size": 11, "symbol": "x"},
                "hovertemplate": name
                + ": %{customdata[0]:.3g} over limit %{customdata[1]:.3g}<extra></extra>",
            }
            for name in names
        ],
        "layout": _layout(
            x_title="Detected at (UTC)",
            y_title="Observed ÷ limit (×)",
            hovermode="closest",
            yaxis={"rangemode": "tozero"},
            xaxis={
                "range": [
                    periods.keys[0].isoformat(),
                    (periods.keys[-1] + periods.step).isoformat(),
                ]
            }
            if periods.keys
            else {},
            shapes=_limit_shape(1.0, "limit")[0],
        ),
    }
    stepped = sum(1 for b in breaches if b.policy_id)
    chart.reading = (
        f"{len(breaches)} breach{'es' if len(breaches) != 1 else ''} of "
        f"{', '.join(names)}; {stepped} stepped the automation level down."
    )
    return chart


def outputs_chart(use_case: UseCase, totals: dict) -> Chart:
    outputs = totals["outputs"]
    chart = Chart(
        key="outputs",
        title="Predicted classes" if use_case.is_classification else "Predicted values",
        reading="No usable prediction in this period.",
    )
    if not outputs:
        return chart
    human: dict[str, float] = defaultdict(float)
    for cell, n in totals["confusion"].items():
        human[cell.split("|", 1)[1]] += n
    if use_case.is_classification:
        keys = [str(x) for x in use_case.labels] + sorted(
            set(outputs) - set(map(str, use_case.labels))
        )
        names = keys
    else:
        keys = [str(k) for k in sorted({int(k) for k in outputs} | {int(k) for k in human})]
        names = [_value_label(use_case, k) for k in keys]
    predicted_total = sum(outputs.values())
    human_total = sum(human.values())
    data = [
        {
            "type": "bar",
            "name": "model's predictions",
            "x": names,
            "y": [outputs.get(k, 0) / predicted_total for k in keys],
            "marker": {"color": "#2456c7"},
            "hovertemplate": "%{x}: %{y:.1%}",
        }
    ]
    if human_total:
        data.append(
            {
                "type": "bar",
                "name": "human answers (labelled items)",
                "x": names,
                "y": [human.get(k, 0) / human_total for k in keys],
                "marker": {"color": "#98a1b3"},
                "hovertemplate": "%{x}: %{y:.1%}",
            }
        )
    chart.figure = {
        "data": data,
        "layout": _layout(
            x_title="Class" if use_case.is_classification else "Predicted value (bin centre)",
            y_title="Share of answers (%)",
            yaxis={"tickformat": ".0%"},
            xaxis={"type": "category"},
            barmode="group",
        ),
    }
    top = max(keys, key=lambda k: outputs.get(k, 0))
    top_name = names[keys.index(top)]
    chart.reading = (
        f"{predicted_total:,} usable predictions; the most frequent "
        f"{'class' if use_case.is_classification else 'value bin'} is {top_name} "
        f"({_pct(outputs[top] / predicted_total)})"
        + (", next to what humans answered on the items they labelled." if human_total else ".")
    )
    return chart


# --- software ---------------------------------------------------------------------------------


def latency_chart(periods: Periods, totals: dict) -> Chart:
    chart = Chart(
        key="latency", title="Prediction latency", reading="No timed prediction in this period."
    )
    if not totals["latency_count"]:
        return chart
    x = periods.labels
    series = {q: [] for q in ("p50", "p95", "p99")}
    for row in periods.rows:
        values = stats.duration_percentiles(row["latency_buckets"])
        for q in series:
            series[q].append(values[q])
    colours = {"p50": "#2456c7", "p95": "#d9822b", "p99": "#c2312b"}
    shown = [v for values in series.values() for v in values if v]
    # A log scale only where the values span more than two decades, ticked at powers of ten
    # written out ("0.1", "1", "10", "1,000"); minor "D2" ticks read "2, 5, 2, 5" with no
    # decade beside them, and a single decade would get a single tick.
    log = bool(shown) and max(shown) / min(shown) > 100
    chart.figure = {
        "data": [_line(q, x, series[q], colours[q], hovertemplate="%{y:.3g} ms") for q in series],
        "layout": _layout(
            x_title=f"Time (UTC, per {periods.unit})",
            y_title="ms per item" + (" (log scale)" if log else ""),
            yaxis={"type": "log", "dtick": 1, "tickformat": ",~g"}
            if log
            else {"rangemode": "tozero", "tickformat": ",~g"},
        ),
    }
    overall = stats.duration_percentiles(totals["latency_buckets"])
    chart.reading = (
        f"Half the {totals['latency_count']:,} predictions took under {number(overall['p50'])} "
        f"ms; 95% under {number(overall['p95'])} ms and 99% under {number(overall['p99'])} ms."
    )
    return chart


def throughput_chart(periods: Periods, totals: dict) -> Chart:
    chart = Chart(
        key="throughput", title="Throughput", reading="Nothing was processed in this period."
    )
    if not (totals["items_routed"] or totals["decisions"]):
        return chart
    x = periods.labels
    chart.figure = {
        "data": [
            _line("items routed", x, [r["items_routed"] for r in periods.rows], "#2456c7"),
            _line("model predictions", x, [r["predictions"] for r in periods.rows], "#5fa2f0"),
            _line("human decisions", x, [r["decisions"] for r in periods.rows], "#2f9e6b"),
        ],
        "layout": _layout(
            x_title=f"Time (UTC, per {periods.unit})",
            y_title=f"Count per {periods.unit}",
            yaxis={"rangemode": "tozero"},
        ),
    }
    n = max(len(periods.rows), 1)
    chart.reading = (
        f"On average {totals['items_routed'] / n:,.1f} items routed and "
        f"{totals['decisions'] / n:,.1f} human decisions per {periods.unit}."
    )
    return chart


def queue_chart(periods: Periods, depth_now: int, flow_after: list[int], queue: dict) -> Chart:
    """``flow_after[i]``: tasks created minus decided from the end of period i until now."""
    chart = Chart(key="queue", title="Review queue depth", reading="")
    x = [(k + periods.step).isoformat() for k in periods.keys]
    depth = [max(depth_now - later, 0) for later in flow_after]
    oldest = queue["oldest_waiting_seconds"]
    chart.figure = {
        "data": [
            {
                "type": "scatter",
                "mode": "lines",
                "name": "open tasks",
                "x": x,
                "y": depth,
                "fill": "tozeroy",
                "line": {"color": "#9b7fd8", "shape": "hv"},
                "hovertemplate": "%{y} open tasks",
            }
        ],
        "layout": _layout(
            x_title=f"Time (UTC, end of each {periods.unit})",
            y_title="Open review tasks",
            yaxis={"rangemode": "tozero"},
            showlegend=False,
        ),
    }
    age = "nothing is waiting" if oldest is None else f"the oldest has waited {_duration(oldest)}"
    chart.reading = (
        f"{depth_now:,} tasks are open now ({queue['in_progress']} being worked on); {age}."
    )
    return chart


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def reviewers_chart(totals: dict, names: dict[int, str], hours: float) -> Chart:
    reviewers = totals["reviewers"]
    chart = Chart(
        key="reviewers", title="Reviewer throughput", reading="No human decision in this period."
    )
    if not reviewers:
        return chart
    ranked = sorted(reviewers.items(), key=lambda kv: (-kv[1], kv[0]))[:25]
    labels = [names.get(int(k), f"user {k}") for k, _ in ranked]
    chart.figure = _ranking(
        labels=labels,
        values=[n for _, n in ranked],
        colour="#2f9e6b",
        hover="%{y}: %{x} decisions",
        x_title="Decisions in the period",
        y_title="Reviewer",
    )
    median = stats.duration_percentiles(totals["review_time_buckets"], (50,))["p50"]
    per_hour = totals["decisions"] / hours if hours else None
    chart.reading = (
        f"{len(reviewers)} reviewer{'s' if len(reviewers) != 1 else ''} made "
        f"{totals['decisions']:,} decisions"
        + (f" ({per_hour:,.1f} an hour over the period)" if per_hour else "")
        + (f"; half took less than {_duration(median / 1000)} each." if median else ".")
    )
    return chart
