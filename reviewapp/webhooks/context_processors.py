"""The notice of a paused webhook endpoint, on every page its manager opens (not only on the
webhooks page, which nobody visits while all is well)."""

from reviewapp.core.api import MANAGERS
from reviewapp.core.roles import user_roles
from reviewapp.webhooks.selectors import endpoints_visible_to


def webhook_notices(request) -> dict:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated or not user_roles(user) & MANAGERS:
        return {}  # reviewers, the app's all-day users, pay no query for it
    paused = endpoints_visible_to(user).filter(active=True, paused_at__isnull=False).count()
    return {"webhooks_paused": paused}
