"""Single sign-on: the provider's groups claim decides roles and use-case memberships.

The rule (names configurable with ``OIDC_GROUPS_CLAIM`` and ``OIDC_GROUP_PREFIX``): in the
``groups`` claim, ``reviewapp:<role>`` (``reviewer``, ``manager``, ``ml_engineer``,
``integration``, ``admin``) grants that role and ``reviewapp:use-case:<slug>`` a membership of
that use case. Both are recomputed at every sign-in: a group gone at the provider is a role or
membership gone here. Someone with none of the app's groups is refused.
"""

from django.conf import settings
from django.db import transaction
from mozilla_django_oidc.auth import OIDCAuthenticationBackend

from deployments.models import UseCase, UseCaseMembership
from reviewapp.core.roles import Role, role_groups_ensure, user_with_roles

USE_CASE = "use-case:"


def groups_claim_parse(claims: dict) -> tuple[set[Role], set[str]]:
    """The roles and use-case slugs the claims grant."""
    raw = claims.get(settings.OIDC_GROUPS_CLAIM) or []
    if isinstance(raw, str):
        raw = [raw]
    prefix = settings.OIDC_GROUP_PREFIX
    names = [g[len(prefix) :] for g in raw if isinstance(g, str) and g.startswith(prefix)]
    roles = {Role(n) for n in names if n in {r.value for r in Role}}
    slugs = {n[len(USE_CASE) :] for n in names if n.startswith(USE_CASE)}
    return roles, slugs


@transaction.atomic
def user_access_from_claims(*, user, claims: dict) -> None:
    roles, slugs = groups_claim_parse(claims)
    groups = role_groups_ensure()
    user.groups.remove(*[groups[r] for r in Role if r not in roles])
    user.groups.add(*[groups[r] for r in roles])
    UseCaseMembership.objects.filter(user=user).exclude(use_case__slug__in=slugs).delete()
    for use_case in UseCase.objects.filter(slug__in=slugs):
        UseCaseMembership.objects.get_or_create(user=user, use_case=use_case)
    user._review_roles = None


class GroupClaimsBackend(OIDCAuthenticationBackend):
    def get_user(self, user_id):
        return user_with_roles(user_id)  # the roles in the same query

    def verify_claims(self, claims) -> bool:
        roles, slugs = groups_claim_parse(claims)
        return super().verify_claims(claims) and bool(roles or slugs)

    def create_user(self, claims):
        user = super().create_user(claims)
        user.set_unusable_password()
        user.save(update_fields=["password"])
        user_access_from_claims(user=user, claims=claims)
        return user

    def update_user(self, user, claims):
        user_access_from_claims(user=user, claims=claims)
        return user
