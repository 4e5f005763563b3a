"""``{% json_data value "id" %}``: data for the page's scripts that survives htmx swaps.

``json_script`` emits a ``<script type="application/json">``, and htmx (configured with
``allowScriptTags: false`` so nothing it swaps in can run) drops script elements from swapped
content. This puts the JSON in a hidden element's ``data-json`` attribute instead, escaped for
the attribute; scripts read it with ``JSON.parse(element.dataset.json)``.
"""

import json

from django import template
from django.core.serializers.json import DjangoJSONEncoder
from django.utils.html import format_html

register = template.Library()


@register.simple_tag
def json_data(value, element_id: str):
    return format_html(
        '<div hidden id="{}" data-json="{}"></div>',
        element_id,
        json.dumps(value, cls=DjangoJSONEncoder),
    )
