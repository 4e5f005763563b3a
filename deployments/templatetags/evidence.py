"""One way to show a figure with its evidence, on every page.

``{{ estimate|pct_interval }}`` renders "76.7% (74.4–78.9%, n=454)" with a tooltip naming the
interval's method; ``num_interval`` does the same for an error in value units (MSE, MAE) and
``count_interval`` for an estimated number of items; where a page holds only the counts,
``{% rate_interval successes n %}`` makes the Wilson estimate. A figure built on fewer than
``MIN_EVIDENCE`` items reads "too few items (n=12)": a bare percentage of a handful of items
is noise a manager would act on. Each filter takes an ``Estimate`` or its ``as_dict()`` (what
the metrics API returns).
"""

from collections.abc import Callable

from django import template
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from deployments.statistics.evidence import MIN_EVIDENCE, Estimate, wilson

register = template.Library()

METHODS = {
    "wilson": "95% Wilson score interval",
    "t": "95% Student-t interval",
    "stratified": "95% interval of a stratified estimate weighted by sampling probability",
    "none": "no interval",
}


def _fields(estimate: Estimate | dict | None) -> dict | None:
    if estimate is None or estimate == "":
        return None
    return estimate.as_dict() if isinstance(estimate, Estimate) else estimate


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _num(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.3g}"


def _count(x: float) -> str:
    return f"{x:,.0f}"


def _render(estimate, fmt: Callable[[float], str], unit: str, *, value: bool = True) -> str:
    fields = _fields(estimate)
    if fields is None:
        return "—"
    n = fields["n"]
    method = METHODS.get(fields["method"], fields["method"])
    if fields["value"] is None:
        if not n:
            return mark_safe('<span class="evidence none" title="no items">—</span>')
        return format_html(
            '<span class="evidence none" title="{}">not estimable (n={})</span>',
            "a stratum with items has no labels yet",
            n,
        )
    if fields["too_few"]:
        return format_html(
            '<span class="evidence too-few" title="{} items are needed for a figure">'
            "too few items (n={})</span>",
            MIN_EVIDENCE,
            n,
        )
    high = fields["high"]
    return format_html(
        '<span class="evidence" title="{}, n = {} items">{}'
        '<span class="interval">({}–{}{}, n={})</span></span>',
        method,
        f"{n:,}",
        f"{fmt(fields['value'])}{unit} " if value else "",
        fmt(fields["low"]),
        "∞" if high is None or high == float("inf") else fmt(high),
        unit,
        f"{n:,}",
    )


@register.filter
def pct_interval(estimate) -> str:
    return _render(estimate, _pct, "%")


@register.filter
def num_interval(estimate) -> str:
    return _render(estimate, _num, "")


@register.filter
def count_interval(estimate) -> str:
    return _render(estimate, _count, "")


@register.simple_tag
def rate_interval(successes, n, value: bool = True) -> str:
    """``successes`` of ``n`` as a percentage with its Wilson interval (``value=False``: the
    interval alone, beside a figure the page already shows)."""
    if n is None or successes is None:
        return "—"
    return _render(wilson(successes, n), _pct, "%", value=value)
