"""Decisions, policy versions, model promotions and ramp events: written once, never changed.

Every interface is tried (API, admin, ORM, raw SQL on PostgreSQL); each must refuse and leave
the row as it was. The one way past is ``history_rewrite()``, for the demo seeder.
"""

import pytest
from django.db import IntegrityError, connection, transaction
from django.test import Client

from deployments.models import AutomationPolicy, ModelVersion, ModelVersionEvent, RampPlanEvent
from deployments.services.model_versions import model_version_promote
from reviewapp.control.ramp_plans import ramp_plan_start
from reviewapp.core.append_only import AppendOnlyError, HistoryKept, history_rewrite
from reviewapp.core.roles import Role
from reviewapp.reviews.models import Decision
from tests.control.helpers import review_all, send
from tests.factories import constant_classifier_bytes, make_use_case, make_user, register_model

pytestmark = pytest.mark.django_db

AUDIT_MODELS = [AutomationPolicy, Decision, ModelVersionEvent, RampPlanEvent]


@pytest.fixture
def history():
    """One real row of each append-only table, written by the services that own them."""
    manager, reviewer = make_user(Role.MANAGER), make_user(Role.REVIEWER)
    use_case = make_use_case(members=[manager, reviewer], level="partial")
    register_model(use_case, constant_classifier_bytes("office", 0.8))
    register_model(use_case, constant_classifier_bytes("travel", 0.8), version="v2")
    ramp_plan_start(
        use_case=use_case, actor=manager, steps=[100], advance_after_items=10, reason="go"
    )
    send(use_case, range(3))
    review_all(use_case, reviewer, lambda task: "travel")
    rows = {model: model.objects.filter(**_of(model, use_case)).first() for model in AUDIT_MODELS}
    assert all(rows.values()), rows
    return {"use_case": use_case, "manager": manager, "rows": rows}


def _of(model, use_case) -> dict:
    return {"plan__use_case": use_case} if model is RampPlanEvent else {"use_case": use_case}


def _snapshot(model) -> list[tuple]:
    return list(model.objects.order_by("pk").values_list())


@pytest.mark.parametrize("model", AUDIT_MODELS, ids=lambda m: m.__name__)
def test_the_orm_refuses_to_change_or_remove_a_row(history, model):
    row = history["rows"][model]
    before = _snapshot(model)
    attempts = [
        lambda: row.save(),
        lambda: row.delete(),
        lambda: model.objects.filter(pk=row.pk).update(pk=row.pk),
        lambda: model.objects.filter(pk=row.pk).delete(),
        lambda: model.objects.bulk_update([row], fields=["pk"]),
    ]
    for attempt in attempts:
        with pytest.raises(AppendOnlyError, match="append-only"):
            attempt()
    assert _snapshot(model) == before


def test_deleting_a_parent_would_take_its_history_and_is_refused(history):
    plan = history["rows"][RampPlanEvent].plan
    before = {model: _snapshot(model) for model in AUDIT_MODELS}
    with pytest.raises(AppendOnlyError, match="cascade"), transaction.atomic():
        plan.delete()
    assert {model: _snapshot(model) for model in AUDIT_MODELS} == before


def test_new_rows_are_still_written(history):
    use_case, manager = history["use_case"], history["manager"]
    before = ModelVersionEvent.objects.count()
    model_version_promote(use_case=use_case, version="v2", actor=manager, reason="better")
    assert ModelVersionEvent.objects.count() == before + 1


def test_history_rewrite_is_the_one_way_past_and_ends_with_its_block(history):
    event = history["rows"][ModelVersionEvent]
    with history_rewrite():
        ModelVersionEvent.objects.filter(pk=event.pk).update(reason="backdated by the seeder")
    assert ModelVersionEvent.objects.get(pk=event.pk).reason == "backdated by the seeder"
    with pytest.raises(AppendOnlyError):
        ModelVersionEvent.objects.filter(pk=event.pk).update(reason="again")


def test_a_failed_change_leaves_neither_the_change_nor_its_audit_row(history):
    """The role change and its event share one transaction: when writing the event fails
    (here the actor is not a user), the promotion is undone too."""
    use_case = history["use_case"]
    roles = dict(ModelVersion.objects.filter(use_case=use_case).values_list("version", "role"))
    events = ModelVersionEvent.objects.count()
    with pytest.raises(ValueError, match="actor"):
        model_version_promote(use_case=use_case, version="v2", actor="mallory", reason="x")
    after = dict(ModelVersion.objects.filter(use_case=use_case).values_list("version", "role"))
    assert after == roles and roles["v2"] != "champion"
    assert ModelVersionEvent.objects.count() == events


def test_every_change_records_who_when_and_why(history):
    rows = history["rows"]
    policy, event, ramp, decision = (
        rows[AutomationPolicy],
        rows[ModelVersionEvent],
        rows[RampPlanEvent],
        rows[Decision],
    )
    assert policy.changed_at and policy.reason and (policy.changed_by or policy.changed_by_system)
    assert event.created_at and event.action and event.model_version_id
    assert ramp.created_at and ramp.reason and ramp.actor == history["manager"]
    assert decision.created_at and decision.reviewer_id and decision.task_id


def test_the_api_has_no_route_to_edit_or_delete_history(api, history):
    use_case = history["use_case"]
    task = history["rows"][Decision].task_id
    client = api(make_user(Role.ADMIN))
    before = {model: _snapshot(model) for model in AUDIT_MODELS}
    paths = [
        f"/api/v1/use-cases/{use_case.slug}/policy/history/",
        f"/api/v1/review/tasks/{task}/decision/",
        f"/api/v1/use-cases/{use_case.slug}/models/v1/promote/",
        f"/api/v1/use-cases/{use_case.slug}/models/rollback/",
    ]
    for path in paths:
        for method in ("put", "patch", "delete"):
            response = getattr(client, method)(path, {"reason": "rewrite"}, format="json")
            assert response.status_code == 405, (path, method, response.status_code)
    # The current policy can be replaced (a new version) but never deleted.
    policy = f"/api/v1/use-cases/{use_case.slug}/policy/"
    assert client.delete(policy).status_code == 405
    assert {model: _snapshot(model) for model in AUDIT_MODELS} == before


@pytest.mark.parametrize("model", AUDIT_MODELS, ids=lambda m: m.__name__)
def test_the_admin_offers_no_change_or_delete(history, model):
    from django.contrib import admin

    row = history["rows"][model]
    client = Client()
    client.force_login(make_user(Role.ADMIN))
    before = _snapshot(model)
    model_admin = admin.site._registry.get(model)
    if model_admin is not None:
        base = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
        assert client.get(f"{base}{row.pk}/change/").status_code == 200  # readable
        assert client.post(f"{base}{row.pk}/change/", {}).status_code == 403
        assert client.post(f"{base}{row.pk}/delete/", {"post": "yes"}).status_code == 403
        client.post(
            base, {"action": "delete_selected", "_selected_action": [row.pk], "post": "yes"}
        )
    assert _snapshot(model) == before


def _raw(sql: str, params: list) -> None:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)


@pytest.mark.postgres
@pytest.mark.parametrize("model", AUDIT_MODELS, ids=lambda m: m.__name__)
def test_postgres_refuses_raw_update_and_delete(history, model):
    row = history["rows"][model]
    table = model._meta.db_table
    before = _snapshot(model)
    for sql in (f"UPDATE {table} SET id = id WHERE id = %s", f"DELETE FROM {table} WHERE id = %s"):
        with pytest.raises(IntegrityError, match="append-only"):
            _raw(sql, [row.pk])
    assert _snapshot(model) == before


@pytest.mark.postgres
def test_postgres_refuses_the_set_null_a_deleted_actor_would_cause(history):
    """Django nulls a deleted user's ``actor`` on their promotions with a plain UPDATE, past the
    ORM's guard; the database refuses it, so the user stays and so does the record."""
    engineer = make_user(Role.ML_ENGINEER)
    use_case = history["use_case"]
    model_version_promote(use_case=use_case, version="v2", actor=engineer, reason="better")
    with pytest.raises(HistoryKept), transaction.atomic():
        engineer.delete()  # the application refuses first (core.append_only.history_keeper)
    # Past it, the UPDATE Django's deletion collector would run, as plain SQL:
    with (
        pytest.raises(IntegrityError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(
            "UPDATE deployments_modelversionevent SET actor_id = NULL WHERE actor_id = %s",
            [engineer.pk],
        )
    assert ModelVersionEvent.objects.filter(actor=engineer, action="promote").exists()


@pytest.mark.postgres
def test_postgres_lets_history_rewrite_through_and_only_for_its_block(history):
    event = history["rows"][ModelVersionEvent]
    table = ModelVersionEvent._meta.db_table
    with history_rewrite(), connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET reason = 'seeded' WHERE id = %s", [event.pk])
    assert ModelVersionEvent.objects.get(pk=event.pk).reason == "seeded"
    with pytest.raises(IntegrityError, match="append-only"):
        _raw(f"UPDATE {table} SET reason = 'again' WHERE id = %s", [event.pk])
