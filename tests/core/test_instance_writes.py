"""A decision's insert and updates are compiled by Django once per shape and kept: each later
write binds its own values. What is written must be exactly what Django's own statement for
that instance writes, whatever the values (NULL or not, an expression)."""

from unittest import mock

import pytest
from django.db import connection
from django.db.models import F, Q
from django.db.models.sql import InsertQuery, UpdateQuery
from django.utils import timezone

from reviewapp.core import bulk
from reviewapp.core.bulk import _insert_sql, _update_sql
from reviewapp.core.roles import Role
from reviewapp.reviews.models import Decision, Item, ReviewTask
from tests.factories import make_use_case, make_user, send_items

pytestmark = pytest.mark.django_db

ITEM_FIELDS = ("decision_label", "decision_value", "decision_source", "decided_at", "status")


def _django_insert(obj):
    insert = InsertQuery(type(obj))
    insert.insert_values(type(obj)._meta.concrete_fields, [obj])
    [(sql, params)] = insert.get_compiler(connection=connection).as_sql()
    return sql, tuple(params)


def _django_update(obj, names):
    update = UpdateQuery(type(obj))
    update.add_update_values({name: getattr(obj, name) for name in names})
    update.add_q(Q(pk=obj.pk))
    sql, params = update.get_compiler(connection=connection).as_sql()
    return sql, tuple(params)


def _not_compiled():
    """Django's query classes may not be used: the kept statement answers."""
    refused = mock.Mock(side_effect=AssertionError("compiled again"))
    return mock.patch.multiple(bulk, InsertQuery=refused, UpdateQuery=refused)


@pytest.fixture
def task():
    reviewer = make_user(Role.REVIEWER)
    use_case = make_use_case(members=[reviewer], level="human_only")
    send_items(use_case, range(3))
    return ReviewTask.objects.select_related("item", "use_case").first(), reviewer


def test_updates_write_what_djangos_own_statement_writes(task):
    task, _ = task
    item = task.item
    for value, label in ((None, "travel"), (12.5, ""), (None, "office"), (3.0, "")):
        item.decision_label, item.decision_value = label, value
        item.decision_source, item.status = Item.Source.HUMAN, Item.Status.DECIDED
        item.decided_at = timezone.now()
        expected = _django_update(item, ITEM_FIELDS)
        assert _update_sql(item, ITEM_FIELDS) == expected  # compiled by Django, kept
        with _not_compiled():
            assert _update_sql(item, ITEM_FIELDS) == expected
    task.state, task.done_at = ReviewTask.State.DONE, timezone.now()
    expected = _django_update(task, ("state", "done_at"))
    assert _update_sql(task, ("state", "done_at")) == expected
    with _not_compiled():
        assert _update_sql(task, ("state", "done_at")) == expected


def test_an_expression_takes_djangos_own_path_every_time(task):
    task, _ = task
    task.state, task.done_at = ReviewTask.State.DONE, timezone.now()
    _update_sql(task, ("state", "done_at"))  # the plain shape is kept
    task.done_at = F("claimed_at")
    sql, params = _update_sql(task, ("state", "done_at"))
    assert '"claimed_at"' in sql
    assert (sql, tuple(params)) == _django_update(task, ("state", "done_at"))


def test_inserts_write_what_djangos_own_statement_writes(task):
    task, reviewer = task
    now = timezone.now()
    for key, value, label in (("k-1", None, "travel"), (None, 2.5, ""), (None, None, "other")):
        decision = Decision(
            pk=9_000_000 + len(label),
            task=task,
            item=task.item,
            use_case=task.use_case,
            reviewer=reviewer,
            label=label,
            value=value,
            comment="",
            kind=Decision.Kind.BLIND,
            time_spent_ms=10,
            idempotency_key=key,
            created_at=now,
        )
        expected = _django_insert(decision)
        assert _insert_sql(decision) == expected
        with _not_compiled():
            assert _insert_sql(decision) == expected
