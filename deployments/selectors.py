"""Reading use cases, policies and model versions, always through what the user may see."""

from django.db.models import QuerySet

from deployments.models import AutomationPolicy, ModelVersion, UseCase, UseCaseMembership
from reviewapp.core.errors import NotFound
from reviewapp.core.roles import Role, has_role


def use_cases_visible_to(user) -> QuerySet[UseCase]:
    """Admins see every use case; everyone else the use cases they are members of."""
    if not user.is_authenticated:
        return UseCase.objects.none()
    if has_role(user, Role.ADMIN):
        return UseCase.objects.all()
    return UseCase.objects.filter(memberships__user=user)


def use_case_get_for(*, user, slug: str) -> UseCase:
    """The use case, or NotFound when it does not exist or the user may not see it (the two
    are indistinguishable on purpose)."""
    use_case = use_cases_visible_to(user).filter(slug=slug).first()
    if use_case is None:
        raise NotFound({"detail": f"No use case {slug!r}."})
    return use_case


def can_view_pii(*, user, use_case: UseCase) -> bool:
    if has_role(user, Role.ADMIN):
        return True
    return UseCaseMembership.objects.filter(
        use_case=use_case, user=user, can_view_pii=True
    ).exists()


def policy_current(*, use_case: UseCase) -> AutomationPolicy:
    policy = (
        AutomationPolicy.objects.filter(use_case=use_case)
        .select_related("changed_by", "restored_from")
        .order_by("-version")
        .first()
    )
    if policy is None:  # every use case is created with a policy; this is a broken invariant
        raise RuntimeError(f"use case {use_case.slug} has no automation policy")
    return policy


def policy_history(*, use_case: UseCase) -> QuerySet[AutomationPolicy]:
    return (
        AutomationPolicy.objects.filter(use_case=use_case)
        .select_related("changed_by", "restored_from")
        .order_by("-version")
    )


def model_versions_list(*, use_case: UseCase) -> QuerySet[ModelVersion]:
    return (
        ModelVersion.objects.filter(use_case=use_case)
        .defer("artifact")
        .select_related("created_by")
        .order_by("-created_at", "-id")
    )


SCORING_FIELDS = ("id", "use_case_id", "version", "role", "source", "artifact_sha256")


def champion_get(*, use_case: UseCase) -> ModelVersion | None:
    """The champion, with only what scoring needs loaded (the artifact and the reference
    statistics are large; they load on first access)."""
    return (
        ModelVersion.objects.filter(use_case=use_case, role=ModelVersion.Role.CHAMPION)
        .only(*SCORING_FIELDS)
        .first()
    )


def challengers_list(*, use_case: UseCase) -> list[ModelVersion]:
    return list(
        ModelVersion.objects.filter(use_case=use_case, role=ModelVersion.Role.CHALLENGER)
        .only(*SCORING_FIELDS)
        .order_by("id")
    )


def model_version_get(*, use_case: UseCase, version: str) -> ModelVersion:
    model_version = (
        ModelVersion.objects.filter(use_case=use_case, version=version).defer("artifact").first()
    )
    if model_version is None:
        raise NotFound({"version": [f"No model version {version!r} for {use_case.slug}."]})
    return model_version
