"""Who may do what: the roles are Django groups; a superuser is an admin.

Every API view and page names the roles it admits; ``tests/core/test_access.py`` checks the
whole table for every role.
"""

from enum import StrEnum

from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import AnonymousUser, Group
from django.contrib.auth.models import User as UserType
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.db.models.expressions import RawSQL


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


# Each role's bit in ``role_bits``, the sum over the user's groups that are roles.
ROLE_BITS = {role: 1 << n for n, role in enumerate(Role)}


def roles_annotations(model, user_id: str) -> dict[str, RawSQL]:
    """An annotation that reads the user's roles in the query that reads the user, instead of
    a query of their own: ``role_bits``, the sum of the bits (``ROLE_BITS``) of the user's
    groups that are roles. ``user_id`` is the column of ``model``'s table holding the user's
    id. It is plain SQL on purpose: compiling one ``EXISTS`` per role through the ORM cost more
    time per request (2 ms) than the query it saves. ``roles_read`` turns it into the roles."""
    membership = UserType.groups.through._meta
    group = Group._meta
    quote = connection.ops.quote_name
    cases = " ".join(f"WHEN %s THEN {bit}" for bit in ROLE_BITS.values())
    sql = (
        f"SELECT COALESCE(SUM(CASE g.{quote(group.get_field('name').column)} {cases} ELSE 0 "
        f"END), 0) FROM {quote(membership.db_table)} m INNER JOIN {quote(group.db_table)} g "
        f"ON g.{quote(group.pk.column)} = m.{quote(membership.get_field('group').column)} "
        f"WHERE m.{quote(membership.get_field('user').column)} = "
        f"{quote(model._meta.db_table)}.{quote(user_id)}"
    )
    return {"role_bits": RawSQL(sql, [role.value for role in ROLE_BITS])}


def roles_read(user: UserType, annotated) -> UserType:
    """Cache on ``user`` the roles that ``roles_annotations`` read onto ``annotated`` (the user
    itself, or the row it was read with)."""
    bits = int(annotated.role_bits or 0)
    roles = {role for role, bit in ROLE_BITS.items() if bits & bit}
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
    users = UserType._default_manager.annotate(**roles_annotations(UserType, "id"))
    user = users.filter(pk=user_id).first()
    return None if user is None else roles_read(user, user)


def has_role(user: UserType | AnonymousUser, *roles: Role) -> bool:
    return bool(user_roles(user) & set(roles))


def role_groups_ensure() -> dict[Role, Group]:
    return {role: Group.objects.get_or_create(name=role.value)[0] for role in Role}
