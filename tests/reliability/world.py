"""The people and the use case a scenario needs, made by the app's own services (the same
factories the tests use), inside a ``manage.py shell`` of the deployment under test."""

from rest_framework.authtoken.models import Token

from deployments.models import UseCaseMembership
from reviewapp.core.roles import Role
from tests.factories import classifier_bytes, make_use_case, make_user, register_model


def build(*, slug: str = "invoices", level: str = "partial", reviewers: int = 4, **policy) -> dict:
    """A classification use case (``tests.factories.FEATURES``) with a champion ``v1`` at
    ``level``, a manager, an ML engineer and ``reviewers`` members; returns their API tokens."""
    manager = make_user(Role.MANAGER, username=f"{slug}-manager")
    engineer = make_user(Role.ML_ENGINEER, username=f"{slug}-ml")
    people = [make_user(Role.REVIEWER, username=f"{slug}-reviewer{i}") for i in range(reviewers)]
    use_case = make_use_case(slug=slug, members=people, level=level, actor=manager, **policy)
    UseCaseMembership.objects.get_or_create(use_case=use_case, user=manager)
    model_version = register_model(use_case, classifier_bytes(), version="v1", actor=engineer)

    def token(user) -> str:
        return Token.objects.get_or_create(user=user)[0].key

    return {
        "slug": use_case.slug,
        "use_case_id": use_case.pk,
        "model_version_id": model_version.pk,
        "manager": token(manager),
        "engineer": token(engineer),
        "reviewers": [token(user) for user in people],
    }


def serve() -> None:
    """Build worlds on request, one JSON line in, one JSON line out, so a deployment starts
    Django once for all its scenarios. The connection is reopened for each request: the
    database may have been restarted in between."""
    import json
    import sys

    from django.db import connection

    for line in sys.stdin:
        connection.close()
        try:
            answer = {"world": build(**json.loads(line))}
        except Exception as exc:  # reported to the scenario, which fails with it
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        print("WORLD=" + json.dumps(answer), flush=True)
