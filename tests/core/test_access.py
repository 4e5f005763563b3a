"""Every API endpoint against every role: the declared policy, checked as a table."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from reviewapp.core.roles import Role
from tests.factories import classifier_bytes, invoice, make_use_case, make_user, register_model
from tests.html import local_assets

# The access table is about roles and memberships; the database engine only stores them, so
# the PostgreSQL pass leaves this module out (see conftest.pytest_collection_modifyitems).
pytestmark = [pytest.mark.django_db, pytest.mark.engine_agnostic]

R, M, ML, IN, A = Role.REVIEWER, Role.MANAGER, Role.ML_ENGINEER, Role.INTEGRATION, Role.ADMIN
EVERYONE = {R, M, ML, IN, A}

NO_SUCH = "00000000-0000-0000-0000-000000000000"

# (name, method, path template, body factory, roles allowed)
ENDPOINTS = [
    ("list use cases", "get", "/api/v1/use-cases/", None, EVERYONE),
    (
        "create use case",
        "post",
        "/api/v1/use-cases/",
        lambda ctx: {
            "slug": f"new-{ctx['n']}",
            "name": "New",
            "task_type": "classification",
            "labels": ["a", "b"],
            "features": [{"name": "f", "type": "number"}],
        },
        {M, A},
    ),
    ("read use case", "get", "/api/v1/use-cases/{slug}/", None, EVERYONE),
    (
        "change use case",
        "patch",
        "/api/v1/use-cases/{slug}/",
        lambda ctx: {"name": "Renamed"},
        {M, A},
    ),
    ("read policy", "get", "/api/v1/use-cases/{slug}/policy/", None, EVERYONE),
    ("outcome feed", "get", "/api/v1/use-cases/{slug}/outcomes/", None, {M, ML, IN, A}),
    ("list webhooks", "get", "/api/v1/webhooks/", None, {M, A}),
    (
        "register webhook",
        "post",
        "/api/v1/webhooks/",
        lambda ctx: {"url": "http://10.0.0.1/", "events": ["outcome.decided"]},
        {M, A},
    ),
    ("read webhook", "get", "/api/v1/webhooks/999999/", None, {M, A}),
    ("change webhook", "patch", "/api/v1/webhooks/999999/", lambda ctx: {"active": False}, {M, A}),
    ("delete webhook", "delete", "/api/v1/webhooks/999999/", None, {M, A}),
    ("rotate webhook secret", "post", "/api/v1/webhooks/999999/secret/", None, {M, A}),
    ("send a test event", "post", "/api/v1/webhooks/999999/test/", None, {M, A}),
    ("webhook deliveries", "get", "/api/v1/webhooks/999999/deliveries/", None, {M, A}),
    (
        "retry a delivery",
        "post",
        "/api/v1/webhooks/999999/deliveries/1/retry/",
        None,
        {M, A},
    ),
    (
        "change policy",
        "patch",
        "/api/v1/use-cases/{slug}/policy/",
        lambda ctx: {"level": "shadow", "reason": "access test"},
        {M, A},
    ),
    (
        "replace policy",
        "put",
        "/api/v1/use-cases/{slug}/policy/",
        lambda ctx: {
            "level": "shadow",
            "confidence_threshold": 0.9,
            "traffic_percent": 100,
            "audit_rate": 0.05,
            "double_review_rate": 0,
            "reason": "access test",
        },
        {M, A},
    ),
    ("policy history", "get", "/api/v1/use-cases/{slug}/policy/history/", None, EVERYONE),
    ("change requests", "get", "/api/v1/use-cases/{slug}/change-requests/", None, EVERYONE),
    (
        "approve change request",
        "post",
        "/api/v1/use-cases/{slug}/change-requests/999999/approve/",
        lambda ctx: {"reason": "ok"},
        {M, A},
    ),
    (
        "reject change request",
        "post",
        "/api/v1/use-cases/{slug}/change-requests/999999/reject/",
        lambda ctx: {"reason": "no"},
        {M, A},
    ),
    (
        "restore policy",
        "post",
        "/api/v1/use-cases/{slug}/policy/history/1/restore/",
        lambda ctx: {"reason": "back to the first"},
        {M, A},
    ),
    ("list models", "get", "/api/v1/use-cases/{slug}/models/", None, {M, ML, A}),
    (
        "upload model",
        "post",
        "/api/v1/use-cases/{slug}/models/",
        lambda ctx: {
            "version": f"up-{ctx['n']}",
            "file": SimpleUploadedFile("m.skops", ctx["model"]),
        },
        {M, ML, A},
    ),
    (
        "promote model",
        "post",
        "/api/v1/use-cases/{slug}/models/v2/promote/",
        lambda ctx: {"reason": "better"},
        {M, ML, A},
    ),
    ("challenge model", "post", "/api/v1/use-cases/{slug}/models/v2/challenge/", None, {M, ML, A}),
    ("model artifact", "get", "/api/v1/use-cases/{slug}/models/v2/artifact/", None, {M, ML, A}),
    (
        "rollback model",
        "post",
        "/api/v1/use-cases/{slug}/models/rollback/",
        lambda ctx: {"reason": "worse"},
        {M, ML, A},
    ),
    (
        "send item",
        "post",
        "/api/v1/use-cases/{slug}/items/",
        lambda ctx: invoice(1000 + ctx["n"]),
        {IN, M, ML, A},
    ),
    (
        "send batch",
        "post",
        "/api/v1/use-cases/{slug}/items/batch/",
        lambda ctx: {"items": [invoice(2000 + ctx["n"])]},
        {IN, M, ML, A},
    ),
    ("read item", "get", "/api/v1/use-cases/{slug}/items/inv-1/", None, {IN, M, ML, A}),
    ("read job", "get", "/api/v1/jobs/{job}/", None, EVERYONE),
    ("list API tokens", "get", "/api/v1/tokens/", None, EVERYONE),
    ("make an API token", "post", "/api/v1/tokens/", lambda ctx: {"name": "access"}, EVERYONE),
    ("revoke an API token", "delete", "/api/v1/tokens/999999/", None, EVERYONE),
    ("claim next", "post", "/api/v1/use-cases/{slug}/review/next/", None, {R, M, A}),
    (
        "decide",
        "post",
        "/api/v1/review/tasks/{task}/decision/",
        lambda ctx: {"label": "office"},
        {R, M, A},
    ),
    ("skip", "post", "/api/v1/review/tasks/{task}/skip/", None, {R, M, A}),
    ("export disagreements", "get", "/api/v1/use-cases/{slug}/disagreements/", None, {M, ML, A}),
    ("metrics", "get", "/api/v1/use-cases/{slug}/metrics/", None, {M, ML, A}),
    ("readiness", "get", "/api/v1/use-cases/{slug}/readiness/", None, {M, ML, A}),
    ("slices", "get", "/api/v1/use-cases/{slug}/slices/?feature=kind", None, {M, ML, A}),
    (
        "start backtest",
        "post",
        "/api/v1/use-cases/{slug}/backtests/",
        lambda ctx: {"model_version": "v1"},
        {M, ML, A},
    ),
    ("list backtests", "get", "/api/v1/use-cases/{slug}/backtests/", None, {M, ML, A}),
    ("read backtest", "get", "/api/v1/use-cases/{slug}/backtests/{job}/", None, {M, ML, A}),
    ("prometheus metrics", "get", "/metrics", None, {M, ML, A}),
    ("list exports", "get", "/api/v1/use-cases/{slug}/exports/", None, {M, ML, A}),
    (
        "start export",
        "post",
        "/api/v1/use-cases/{slug}/exports/",
        lambda ctx: {"format": "csv"},
        {M, ML, A},
    ),
    ("read export", "get", "/api/v1/use-cases/{slug}/exports/" + NO_SUCH + "/", None, {M, ML, A}),
    (
        "download export",
        "get",
        "/api/v1/use-cases/{slug}/exports/" + NO_SUCH + "/download/",
        None,
        {M, ML, A},
    ),
    ("list retrainings", "get", "/api/v1/use-cases/{slug}/retrainings/", None, {M, ML, A}),
    ("start retraining", "post", "/api/v1/use-cases/{slug}/retrainings/", None, {M, ML, A}),
    (
        "read retraining",
        "get",
        "/api/v1/use-cases/{slug}/retrainings/" + NO_SUCH + "/",
        None,
        {M, ML, A},
    ),
    (
        "disagreement matrix",
        "get",
        "/api/v1/use-cases/{slug}/disagreements/matrix/",
        None,
        {M, ML, A},
    ),
    ("item history", "get", "/api/v1/use-cases/{slug}/items/inv-1/history/", None, {M, ML, A}),
]


@pytest.fixture
def ctx(api):
    users = {role: make_user(role) for role in Role}
    use_case = make_use_case(members=users.values(), level="assisted")
    model = classifier_bytes()
    register_model(use_case, model)
    register_model(use_case, classifier_bytes(seed=1), version="v2")
    caller = users[IN]
    api(caller).post(f"/api/v1/use-cases/{use_case.slug}/items/", invoice(1), format="json")
    job = (
        api(caller)
        .post(
            f"/api/v1/use-cases/{use_case.slug}/items/batch/",
            {"items": [invoice(2)]},
            format="json",
        )
        .json()["job"]
    )
    return {"users": users, "use_case": use_case, "model": model, "job": job, "n": 0}


def _call(client, method, path, body):
    if method == "get":
        return client.get(path)
    multipart = body and any(isinstance(v, SimpleUploadedFile) for v in body.values())
    return getattr(client, method)(path, body, format="multipart" if multipart else "json")


@pytest.mark.parametrize(
    ("name", "method", "template", "body", "allowed"), ENDPOINTS, ids=[e[0] for e in ENDPOINTS]
)
def test_endpoint_admits_exactly_its_roles(api, ctx, name, method, template, body, allowed):
    from reviewapp.reviews.services.review import review_task_claim

    use_case = ctx["use_case"]
    for role in [None, *Role]:
        ctx["n"] += 1
        user = ctx["users"].get(role)
        task = (
            review_task_claim(use_case=use_case, user=user)
            if user is not None and (role in {R, M, A})
            else None
        )
        path = template.format(
            slug=use_case.slug, job=ctx["job"], task=task.pk if task else 999_999
        )
        response = _call(api(user), method, path, body(ctx) if body else None)
        code = response.status_code
        if role is None:
            assert code == 401, (name, "anonymous", code)
            assert "slug" not in response.content.decode()
        elif role in allowed:
            assert code < 500 and code not in (401, 403), (name, role, code, response.content)
        else:
            assert code == 403, (name, role, code)


def test_a_user_outside_the_use_case_gets_404_and_changes_nothing(api, ctx):
    outsider = make_user(Role.MANAGER)
    slug = ctx["use_case"].slug
    assert api(outsider).get(f"/api/v1/use-cases/{slug}/").status_code == 404
    assert (
        api(outsider)
        .patch(f"/api/v1/use-cases/{slug}/policy/", {"level": "full", "reason": "x"}, format="json")
        .status_code
        == 404
    )
    assert api(outsider).get(f"/api/v1/jobs/{ctx['job']}/").status_code == 404
    assert api(outsider).get("/api/v1/use-cases/").json() == []
    assert ctx["use_case"].policies.count() == 2  # created + test set-up, nothing more


def test_schema_and_docs_are_served_offline(client):
    schema = client.get("/api/schema/")
    assert schema.status_code == 200
    text = schema.content.decode()
    for path in (
        "/api/v1/use-cases/{slug}/items/",
        "/api/v1/review/tasks/{task_id}/decision/",
        "/api/v1/use-cases/{slug}/disagreements/",
    ):
        assert path in text
    docs = client.get("/api/docs/").content.decode()
    assert "swagger-ui" in docs and local_assets(docs)


# Pages (browser sessions): (name, method, path template, form body factory, roles allowed).
# Anonymous visitors are sent to the login page instead of getting 401; other roles get 403.
task_page = "/queue/{slug}/tasks/{task}/"
CONTROL = "/control/use-cases/{slug}/"
PAGES = [
    ("home page", "get", "/", None, EVERYONE),
    ("API tokens page", "get", "/tokens/", None, EVERYONE),
    ("make an API token page", "post", "/tokens/new/", lambda ctx: {"name": "page"}, EVERYONE),
    ("revoke an API token page", "post", "/tokens/999999/revoke/", None, EVERYONE),
    ("webhooks page", "get", "/webhooks/", None, {M, A}),
    (
        "register a webhook page",
        "post",
        "/webhooks/new/",
        lambda ctx: {"url": "http://10.0.0.1/", "events": "outcome.decided"},
        {M, A},
    ),
    ("webhook action", "post", "/webhooks/999999/test/", None, {M, A}),
    ("retry a delivery page", "post", "/webhooks/999999/deliveries/1/retry/", None, {M, A}),
    ("queue page", "get", "/queue/{slug}/", None, {R, M, A}),
    ("queue size", "get", "/queue/{slug}/stats/", None, {R, M, A}),
    ("decide from the page", "post", task_page + "decide/", None, {R, M, A}),
    ("skip from the page", "post", task_page + "skip/", None, {R, M, A}),
    ("escalate from the page", "post", task_page + "escalate/", None, {R, M, A}),
    ("answer a gold item", "post", "/queue/{slug}/gold/999999/decide/", None, {R, M, A}),
    ("skip a gold item", "post", "/queue/{slug}/gold/999999/skip/", None, {R, M, A}),
    ("escalate a gold item", "post", "/queue/{slug}/gold/999999/escalate/", None, {R, M, A}),
    ("my work page", "get", "/my-work/", None, {R, M, A}),
    ("escalations page", "get", "/escalations/", None, {M, A}),
    ("resolve an escalation", "post", "/escalations/999999/resolve/", None, {M, A}),
    ("control room", "get", "/control/", None, {M, A}),
    ("models index", "get", "/control/models/", None, {M, ML, A}),
    ("policy editor", "get", CONTROL, None, {M, A}),
    (
        "change policy page",
        "post",
        f"{CONTROL}policy/",
        lambda ctx: {
            "level": "shadow",
            "confidence_threshold": "0.9",
            "traffic_percent": "100",
            "audit_rate": "5",
            "double_review_rate": "0",
            "reason": f"access {ctx['n']}",
        },
        {M, A},
    ),
    ("restore policy page", "post", f"{CONTROL}policy/1/restore/", None, {M, A}),
    ("four-eyes setting page", "post", f"{CONTROL}four-eyes/", None, {M, A}),
    ("suggestion pre-pick page", "post", f"{CONTROL}suggestion-preselected/", None, {M, A}),
    ("gold rate page", "post", f"{CONTROL}gold-rate/", None, {M, A}),
    ("queue order page", "post", f"{CONTROL}queue-order/", None, {M, A}),
    ("costs page", "post", f"{CONTROL}costs/", None, {M, A}),
    (
        "decide change request page",
        "post",
        f"{CONTROL}change-requests/999999/reject/",
        lambda ctx: {"reason": "no"},
        {M, A},
    ),
    ("guardrails page", "get", f"{CONTROL}guardrails/", None, {M, A}),
    ("check guardrails", "post", f"{CONTROL}guardrails/check/", None, {M, A}),
    ("resolve breach", "post", f"{CONTROL}breaches/999999/resolve/", None, {M, A}),
    ("ramp page", "get", f"{CONTROL}ramp/", None, {M, A}),
    ("reviewers page", "get", f"{CONTROL}reviewers/", None, {M, A}),
    ("pause ramp", "post", f"{CONTROL}ramp/pause/", None, {M, A}),
    ("models page", "get", f"{CONTROL}models/", None, {M, ML, A}),
    ("challenge model page", "post", f"{CONTROL}models/v2/challenge/", None, {M, ML, A}),
    ("rollback model page", "post", f"{CONTROL}models/rollback/", None, {M, ML, A}),
    ("item page", "get", f"{CONTROL}items/inv-1/", None, {M, ML, A}),
    ("backtests page", "get", f"{CONTROL}backtests/", None, {M, ML, A}),
    ("readiness page", "get", f"{CONTROL}readiness/?feature=kind", None, {M, ML, A}),
    (
        "start backtest page",
        "post",
        f"{CONTROL}backtests/",
        lambda ctx: {"model_version": "v1"},
        {M, ML, A},
    ),
    ("backtest page", "get", CONTROL + "backtests/{job}/", None, {M, ML, A}),
    ("monitoring overview", "get", "/monitoring/", None, {M, ML, A}),
    ("system page", "get", "/monitoring/system/", None, {M, A}),
    ("dashboard", "get", "/monitoring/{slug}/", None, {M, ML, A}),
    *[
        (f"dashboard {tab}", "get", f"/monitoring/{{slug}}/{tab}/", None, {M, ML, A})
        for tab in ("automation", "quality", "inputs", "outputs", "software")
    ],
    ("datasets", "get", "/datasets/", None, {M, ML, A}),
    ("disagreement explorer", "get", "/datasets/{slug}/", None, {M, ML, A}),
    ("item history page", "get", "/datasets/{slug}/items/inv-1", None, {M, ML, A}),
    ("exports page", "get", "/datasets/{slug}/exports/", None, {M, ML, A}),
    (
        "export download page",
        "get",
        "/datasets/{slug}/exports/" + NO_SUCH + "/download/",
        None,
        {M, ML, A},
    ),
    (
        "export manifest page",
        "get",
        "/datasets/{slug}/exports/" + NO_SUCH + "/manifest/",
        None,
        {M, ML, A},
    ),
    ("retraining page", "get", "/datasets/{slug}/retraining/", None, {M, ML, A}),
    (
        "delete export page",
        "post",
        "/datasets/{slug}/exports/" + NO_SUCH + "/delete/",
        None,
        {M, ML, A},
    ),
]


@pytest.mark.parametrize(
    ("name", "method", "template", "body", "allowed"), PAGES, ids=[p[0] for p in PAGES]
)
def test_page_admits_exactly_its_roles(ctx, name, method, template, body, allowed):
    from django.test import Client

    from reviewapp.reviews.services.review import review_task_claim

    use_case = ctx["use_case"]
    for role in [None, *Role]:
        ctx["n"] += 1
        user = ctx["users"].get(role)
        client = Client()
        if user is not None:
            client.force_login(user)
        task = review_task_claim(use_case=use_case, user=user) if role in {R, M, A} else None
        path = template.format(
            slug=use_case.slug, job=ctx["job"], task=task.pk if task else 999_999
        )
        data = body(ctx) if body else {}
        response = client.get(path) if method == "get" else client.post(path, data)
        code = response.status_code
        if role is None:
            assert code == 302 and "/accounts/login/" in response["Location"], (name, code)
        elif role in allowed:
            assert code < 500 and code not in (401, 403), (name, role, code)
        else:
            assert code == 403, (name, role, code)


@pytest.mark.parametrize(
    ("name", "template"),
    [(p[0], p[2]) for p in PAGES if p[1] == "get" and "{slug}" in p[2] and "{task}" not in p[2]],
)
def test_use_case_pages_are_404_to_non_members(client, ctx, name, template):
    client.force_login(make_user(Role.MANAGER))
    path = template.format(slug=ctx["use_case"].slug, job=ctx["job"])
    assert client.get(path).status_code == 404, name


# URLs open to everyone by design; anything else must appear in ENDPOINTS or PAGES above.
PUBLIC = {
    "healthz": "liveness probe, says only whether the database answers",
    "accounts/login/": "the sign-in form",
    "accounts/logout/": "signing out",
    "accounts/refused/": "says single sign-on found none of the app's groups",
    "oidc/authenticate/": "starts single sign-on (404 while it is off)",
    "oidc/callback/": "the provider's answer to single sign-on",
    "api/schema/": "the OpenAPI document (no data)",
    "api/docs/": "Swagger UI for it",
}


def _routes(patterns, prefix=""):
    from django.urls import URLResolver

    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _routes(pattern.url_patterns, prefix + str(pattern.pattern))
        else:
            yield prefix + str(pattern.pattern)


def test_every_url_has_a_declared_access_policy():
    """A new URL fails here until it is added to ENDPOINTS or PAGES (or, rarely, PUBLIC)."""
    from django.urls import get_resolver, resolve

    # Django's admin checks is_staff and model permissions itself.
    served = {
        route for route in _routes(get_resolver().url_patterns) if not route.startswith("admin/")
    }
    declared = {
        resolve(template.format(slug="s", job=NO_SUCH, task=1).split("?")[0]).route
        for _name, _method, template, _body, _allowed in [*ENDPOINTS, *PAGES]
    }
    assert served - declared - set(PUBLIC) == set()
    assert set(PUBLIC) <= served


def _row_counts() -> dict[str, int]:
    from django.apps import apps

    return {model._meta.label: model.objects.count() for model in apps.get_models()}


SCOPED = [e for e in [*ENDPOINTS, *PAGES] if {"{slug}", "{job}", "{task}"} & set(e[2].split("/"))]


def test_objects_of_a_use_case_are_404_to_non_members_and_nothing_changes(api, ctx):
    """Every role an endpoint admits, once outside the use case, finds nothing there (404,
    the same answer as for a use case that does not exist) and changes nothing."""
    from django.test import Client

    from reviewapp.reviews.services.review import review_task_claim

    use_case = ctx["use_case"]
    task = review_task_claim(use_case=use_case, user=ctx["users"][R])
    assert len(SCOPED) > 60
    for name, method, template, body, allowed in SCOPED:
        path = template.format(slug=use_case.slug, job=ctx["job"], task=task.pk)
        is_page = not path.startswith(("/api/", "/metrics"))
        for role in sorted(allowed - {A}):  # an admin sees every use case
            ctx["n"] += 1
            outsider = make_user(role)
            if is_page:
                client = Client()
                client.force_login(outsider)
            else:
                client = api(outsider)  # makes the outsider's token: before the counting
            data = body(ctx) if body else None
            before = _row_counts()
            if is_page:
                response = client.get(path) if method == "get" else client.post(path, data or {})
            else:
                response = _call(client, method, path, data)
            assert response.status_code == 404, (name, role, response.status_code)
            assert _row_counts() == before, (name, role)
            assert use_case.name not in response.content.decode(), (name, role)


HOSTILE_PARAMS = [
    # (parameters that would select or order rows by a reviewer's password hash, their mirror)
    ({"reviewer__password__startswith": "pbkdf2"}, {"reviewer__password__startswith": "zz"}),
    ({"ordering": "reviewer__password"}, {"ordering": "-reviewer__password"}),
    ({"order_by": "reviewer__password"}, {"order_by": "-reviewer__password"}),
    ({"sort": "changed_by__password"}, {"sort": "-changed_by__password"}),
    ({"o": "task__decision__reviewer__password"}, {"o": "-task__decision__reviewer__password"}),
    ({"created_by__password__regex": "^pbkdf2"}, {"created_by__password__regex": "^zz"}),
    ({"actor__password__gt": ""}, {"actor__password__lt": ""}),
]


def _decided_and_disagreed(ctx) -> None:
    """Rows for every list to hold: a human decision that differs from the model."""
    from reviewapp.reviews.services.review import review_task_claim, review_task_decide

    use_case, reviewer = ctx["use_case"], ctx["users"][R]
    while (task := review_task_claim(use_case=use_case, user=reviewer)) is not None:
        suggested = task.item.predictions.values_list("label", flat=True).first()
        label = next(label for label in use_case.labels if label != suggested)
        review_task_decide(task=task, user=reviewer, label=label)


def test_no_query_parameter_reaches_a_field_outside_the_allowlist(api, ctx):
    """A filter or ordering on a password hash either is refused (4xx) or has no effect: the
    answer is the same whichever way it would sort or whichever prefix it would match."""
    from django.test import Client

    _decided_and_disagreed(ctx)
    admin = ctx["users"][A]
    pages = Client()
    pages.force_login(admin)
    lists = [(e[0], e[2]) for e in [*ENDPOINTS, *PAGES] if e[1] == "get"]
    assert len(lists) > 40
    for name, template in lists:
        path = template.format(slug=ctx["use_case"].slug, job=ctx["job"], task=1)
        client = api(admin) if path.startswith(("/api/", "/metrics")) else pages
        plain = client.get(path)
        for params, mirror in HOSTILE_PARAMS:
            one, other = client.get(path, params), client.get(path, mirror)
            assert one.status_code < 500 and one.status_code == other.status_code, (name, params)
            body = b"".join(one.streaming_content) if one.streaming else one.content
            assert b"pbkdf2_" not in body and b"argon2" not in body, (name, params)
            if one.status_code >= 400:
                continue
            assert one.status_code == plain.status_code, (name, params)
            if path.startswith("/api/") and one["Content-Type"].startswith("application/json"):
                assert one.json() == other.json(), (name, params)
