"""What the control room's views share: a page or its partial, the use case header, and a
service's field errors as the form names them."""

from typing import Any

from django.shortcuts import render

from deployments.selectors import (
    breaches_open,
    change_requests_list,
    policy_current,
)
from reviewapp.core.api import MANAGERS
from reviewapp.core.roles import user_roles


def flat_errors(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """A service's field errors as ``{"guardrails.override_rate.max": [...]}``."""
    if isinstance(detail, dict):
        flat: dict[str, list[str]] = {}
        for key, inner in detail.items():
            flat.update(flat_errors(inner, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    if isinstance(detail, list) and all(isinstance(x, str) for x in detail):
        return {prefix or "non_field_errors": detail}
    return {prefix or "non_field_errors": [str(detail)]}


def page_or_part(request, template: str, partial: str | None, context: dict, status: int = 200):
    """The whole page, or for htmx its ``partial`` (when one is named)."""
    name = f"{template}#{partial}" if partial and request.htmx else template
    return render(request, name, context, status=status)


def use_case_header(request, use_case) -> dict:
    roles = user_roles(request.user)
    return {
        "use_case": use_case,
        "policy": policy_current(use_case=use_case),
        "is_manager": bool(roles & MANAGERS),
        "open_breaches": list(breaches_open(use_cases=[use_case])),
        "change_requests": list(change_requests_list(use_case=use_case, pending_only=True)),
    }
