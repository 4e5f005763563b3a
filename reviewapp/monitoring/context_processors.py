"""Open system alerts (a worker gone, a queue not consumed, too many 5xx) on every page a
manager or an admin opens, not only on the System page, which nobody opens while all is well."""

from reviewapp.core.roles import user_roles
from reviewapp.monitoring.models import SystemAlert
from reviewapp.monitoring.system_views import SYSTEM_ROLES

SHOWN = 3


def system_notices(request) -> dict:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated or not user_roles(user) & SYSTEM_ROLES:
        return {}  # reviewers, the app's all-day users, pay no query for it
    open_alerts = list(
        SystemAlert.objects.filter(cleared_at__isnull=True)
        .order_by("raised_at")
        .values_list("message", flat=True)[: SHOWN + 1]
    )
    return {
        "system_alerts_open": open_alerts[:SHOWN],
        "system_alerts_more": len(open_alerts) > SHOWN,
    }
