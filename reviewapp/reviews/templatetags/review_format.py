"""Small display filters for the review pages: ages, rates, names with underscores."""

from django import template

register = template.Library()


@register.filter
def age(seconds) -> str:
    """How long something has waited, to the precision a person cares about: "45 s",
    "12 min", "3 h 05 min", "2 d 4 h"."""
    if seconds is None or seconds == "":
        return "—"
    seconds = max(0, int(float(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


@register.filter
def percent(rate, digits: int = 0) -> str:
    if rate is None or rate == "":
        return "—"
    return f"{float(rate) * 100:.{int(digits)}f}%"


@register.filter
def words(name) -> str:
    """``ml_engineer`` -> ``ml engineer``."""
    return str(name).replace("_", " ")
