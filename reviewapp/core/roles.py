"""Who may do what: the roles are Django groups; a superuser is an admin.

Every API view and page names the roles it admits; ``tests/core/test_access.py`` checks the
whole table for every role.
"""

from enum import StrEnum

from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import AnonymousUser, Group
from django.contrib.auth.models import User as UserType
from django.core.exceptions import PermissionDenied
from django.db.models import Exists, OuterRef


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


def roles_annotations(user_id: str = "pk") -> dict[str, Exists]:
    """Annotations that read the user's roles in the query that reads the user (one
    ``EXISTS`` per role, on both engines) instead of a query of their own; ``user_id`` names
    the user's id in the annotated query. ``roles_read`` turns them into the cached roles."""
    membership = UserType.groups.through
    return {
        f"role_{role.value}": Exists(
            membership.objects.filter(user_id=OuterRef(user_id), group__name=role.value)
        )
        for role in Role
    }


def roles_read(user: UserType, annotated) -> UserType:
    """Cache on ``user`` the roles that ``roles_annotations`` read onto ``annotated`` (the user
    itself, or the row it was read with)."""
    roles = {role for role in Role if getattr(annotated, f"role_{role.value}")}
    if user.is_superuser:
        roles.add(Role.ADMIN)
    user._review_roles = frozenset(roles)
    return user


class RolesModelBackend(ModelBackend):
    """Django's model backend, whose ``get_user`` (once per signed-in request) reads the
    user's roles in the same query.

    ``settings.AUTHENTICATION_BACKENDS`` lists Django's own ``ModelBackend`` after it only so
    that sessions signed in under that name stay signed in. A username and password this
    backend refuses end the sign-in (``PermissionDenied``, which Django documents as "stop
    here"): the same password is never hashed twice."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is None and password is not None:
            raise PermissionDenied
        return user

    def get_user(self, user_id):
        user = user_with_roles(user_id)
        return user if user is not None and self.user_can_authenticate(user) else None


def user_with_roles(user_id) -> UserType | None:
    """The user, with their roles read in the same query (an authentication backend's
    ``get_user``)."""
    user = UserType._default_manager.annotate(**roles_annotations()).filter(pk=user_id).first()
    return None if user is None else roles_read(user, user)


def has_role(user: UserType | AnonymousUser, *roles: Role) -> bool:
    return bool(user_roles(user) & set(roles))


def role_groups_ensure() -> dict[Role, Group]:
    return {role: Group.objects.get_or_create(name=role.value)[0] for role in Role}
