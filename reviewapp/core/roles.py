"""Who may do what: the roles are Django groups; a superuser is an admin.

Every API view and page names the roles it admits; ``tests/core/test_access.py`` checks the
whole table for every role.
"""

from enum import StrEnum

from django.contrib.auth.models import AnonymousUser, Group
from django.contrib.auth.models import User as UserType


class Role(StrEnum):
    REVIEWER = "reviewer"
    MANAGER = "manager"
    ML_ENGINEER = "ml_engineer"
    INTEGRATION = "integration"  # an upstream system's service account
    ADMIN = "admin"


ALL_ROLES = frozenset(Role)
STAFF_ROLES = frozenset({Role.MANAGER, Role.ML_ENGINEER, Role.ADMIN})


def user_roles(user: UserType | AnonymousUser) -> frozenset[Role]:
    """The user's roles, cached on the user object for the request."""
    if not user.is_authenticated:
        return frozenset()
    cached = getattr(user, "_review_roles", None)
    if cached is not None:
        return cached
    names = set(user.groups.values_list("name", flat=True))
    roles = {role for role in Role if role.value in names}
    if user.is_superuser:
        roles.add(Role.ADMIN)
    user._review_roles = frozenset(roles)
    return user._review_roles


def has_role(user: UserType | AnonymousUser, *roles: Role) -> bool:
    return bool(user_roles(user) & set(roles))


def role_groups_ensure() -> dict[Role, Group]:
    return {role: Group.objects.get_or_create(name=role.value)[0] for role in Role}
