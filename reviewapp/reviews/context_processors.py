"""Items past their due time, on every page a reviewer or a manager of their use case opens
(the queue waits for someone to notice; this makes sure someone does)."""

from django.utils import timezone

from reviewapp.core.api import REVIEWERS
from reviewapp.core.roles import user_roles
from reviewapp.reviews.selectors import past_due_by_use_case


def past_due_notices(request) -> dict:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated or not user_roles(user) & REVIEWERS:
        return {}
    # Lazy: one query, run only when the base template shows the banner.
    return {"past_due_queues": lambda: past_due_by_use_case(user=user, now=timezone.now())}
