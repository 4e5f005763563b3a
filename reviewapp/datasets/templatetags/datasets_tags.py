"""Small filters for the datasets pages: metric changes, durations."""

from django import template

register = template.Library()


@register.filter
def minus(value, other):
    try:
        return float(value) - float(other)
    except (TypeError, ValueError):
        return None


@register.filter
def improves(change, better: str) -> bool:
    """Whether ``change`` is an improvement when ``better`` is "higher" or "lower"."""
    if change is None or change == 0:
        return False
    return change > 0 if better == "higher" else change < 0


@register.filter
def worsens(change, better: str) -> bool:
    if change is None or change == 0:
        return False
    return not improves(change, better)


@register.filter
def seconds(milliseconds) -> str:
    """A duration in milliseconds, read in seconds ("6.2 s")."""
    try:
        return f"{float(milliseconds) / 1000:.1f} s"
    except (TypeError, ValueError):
        return ""
