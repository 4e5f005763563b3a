"""Small formatting filters for the control room's templates."""

from django import template

from reviewapp.control.presenters import LEVEL_HELP

register = template.Library()


@register.filter
def percent(value, digits: int = 1) -> str:
    """0.1234 -> "12.3%"; None -> "—"."""
    if value is None or value == "":
        return "—"
    return f"{float(value) * 100:.{int(digits)}f}%"


@register.filter
def number(value, digits: int = 3) -> str:
    """A float with ``digits`` significant digits; None -> "—"."""
    if value is None or value == "":
        return "—"
    return f"{float(value):.{int(digits)}g}"


@register.filter
def duration(seconds) -> str:
    """Seconds as a short human duration: 90 -> "1.5 min", 7200 -> "2 h"."""
    if seconds is None:
        return "—"
    seconds = float(seconds)
    if seconds >= 86_400:
        return f"{seconds / 86_400:.3g} d"
    if seconds >= 3600:
        return f"{seconds / 3600:.3g} h"
    if seconds >= 60:
        return f"{seconds / 60:.3g} min"
    return f"{seconds:.0f} s"


@register.filter
def get(mapping, key):
    return mapping.get(key) if hasattr(mapping, "get") else None


@register.filter
def level_title(level) -> str:
    """ "human_only" -> "Human only"."""
    try:
        return LEVEL_HELP[level]["title"]
    except KeyError:
        return str(level)


@register.filter
def index(sequence, position):
    """``sequence[position]``, or None when there is no such position."""
    try:
        return sequence[int(position)]
    except (TypeError, ValueError, IndexError):
        return None


COST_FIELDS = {
    "error_cost": "what a wrong automated decision costs",
    "review_minutes": "minutes a review",
    "hourly_cost": "what a reviewer hour costs",
}


@register.filter
def cost_field(name: str) -> str:
    return COST_FIELDS.get(name, name)
