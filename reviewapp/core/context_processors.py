from reviewapp.core.api import MANAGERS, REVIEWERS
from reviewapp.core.roles import Role, user_roles


def navigation(request) -> dict:
    """Role-aware navigation: each page registers itself in NAV_ITEMS by role."""
    roles = user_roles(request.user) if hasattr(request, "user") else frozenset()
    items = (
        [item for item in NAV_ITEMS if not item["roles"] or roles & item["roles"]] if roles else []
    )
    return {"nav_items": items, "user_roles": sorted(r.value for r in roles)}


NAV_ITEMS: list[dict] = [
    {"label": "Queues", "url_name": "home", "roles": frozenset(Role)},
    {"label": "My work", "url_name": "reviews:my-work", "roles": REVIEWERS},
    {"label": "Escalations", "url_name": "reviews:escalations", "roles": MANAGERS},
    {
        "label": "Control room",
        "url_name": "control-overview",
        "roles": frozenset({Role.MANAGER, Role.ADMIN}),
    },
    {
        "label": "Models",
        "url_name": "control-models-index",
        "roles": frozenset({Role.ML_ENGINEER, Role.MANAGER, Role.ADMIN}),
    },
    {
        "label": "Monitoring",
        "url_name": "monitoring:overview",
        "roles": frozenset({Role.MANAGER, Role.ML_ENGINEER, Role.ADMIN}),
    },
    {
        "label": "Datasets",
        "url_name": "datasets",
        "roles": frozenset({Role.ML_ENGINEER, Role.MANAGER, Role.ADMIN}),
    },
    {"label": "Webhooks", "url_name": "webhooks:page", "roles": MANAGERS},
    {
        "label": "API docs",
        "url_name": "api-docs",
        "roles": frozenset({Role.MANAGER, Role.ML_ENGINEER, Role.ADMIN, Role.INTEGRATION}),
    },
]
