"""What the datasets commands act on, named on their command line."""

from django.contrib.auth import get_user_model
from django.core.management.base import CommandError

from deployments.models import UseCase


def use_case_and_user(*, slug: str, username: str | None):
    """The use case and the user the command acts for (None: the command line itself)."""
    use_case = UseCase.objects.filter(slug=slug).first()
    if use_case is None:
        raise CommandError(f"No use case {slug!r}.")
    if not username:
        return use_case, None
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise CommandError(f"No user {username!r}.")
    return use_case, user
