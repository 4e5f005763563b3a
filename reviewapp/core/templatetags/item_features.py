"""``{% item_features display %}``: one item's features, drawn the same way on every page."""

from django import template

register = template.Library()


@register.inclusion_tag("core/_item_features.html")
def item_features(display: dict, caption: str = ""):
    return {"display": display, "caption": caption}
