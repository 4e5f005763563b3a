"""Reads compiled once per process answer exactly as the querysets they were built from."""

import pytest
from django.db import connection
from django.db.models import F
from django.test.utils import CaptureQueriesContext

from deployments.models import UseCase
from deployments.selectors import use_case_get_for
from reviewapp.core.compiled import CompiledRead
from reviewapp.core.errors import NotFound
from reviewapp.core.roles import Role
from reviewapp.reviews.models import ReviewTask
from tests.factories import make_use_case, make_user, send_items

pytestmark = pytest.mark.django_db

STAND_IN_SLUG = "\x00no-such-slug"


def test_each_call_answers_for_its_own_values_in_one_query():
    first, second = make_use_case(slug="first"), make_use_case(slug="second")
    read = CompiledRead(
        lambda slug: UseCase.objects.filter(slug=slug).annotate(named=F("name")),
        slug=STAND_IN_SLUG,
    )
    for use_case in (first, second, first):
        with CaptureQueriesContext(connection) as captured:
            found = read.rows(slug=use_case.slug)
        assert [(u.pk, u.named) for u in found] == [(use_case.pk, use_case.name)]
        assert len(captured) == 1
    assert read.first(slug="third") is None


def test_related_objects_come_built_as_the_queryset_builds_them():
    reviewer = make_user(Role.REVIEWER)
    use_case = make_use_case(members=[reviewer], level="human_only")
    send_items(use_case, range(3))
    read = CompiledRead(
        lambda task_id: ReviewTask.objects.select_related("item").filter(pk=task_id),
        task_id=-1,
    )
    expected = dict(
        ReviewTask.objects.filter(use_case=use_case).values_list("pk", "item__external_id")
    )
    assert len(expected) == 3
    for task_id, external_id in expected.items():
        compiled = read.first(task_id=task_id)
        with CaptureQueriesContext(connection) as captured:
            assert compiled.item.external_id == external_id
        assert len(captured) == 0  # the item came with the task


def test_arguments_that_are_not_stand_ins_pick_their_own_compiled_shape():
    for slug, task_type in (
        ("alpha", "classification"),
        ("beta", "regression"),
        ("gamma", "classification"),
    ):
        make_use_case(slug=slug, task_type=task_type)
    read = CompiledRead(
        lambda ordered, task_type: UseCase.objects.filter(task_type=task_type).order_by(
            "slug" if ordered == "up" else "-slug"
        ),
        task_type="\x00no-such-type",
    )
    assert [u.slug for u in read.rows(ordered="up", task_type="classification")] == [
        "alpha",
        "gamma",
    ]
    assert [u.slug for u in read.rows(ordered="down", task_type="classification")] == [
        "gamma",
        "alpha",
    ]
    assert [u.slug for u in read.rows(ordered="up", task_type="regression")] == ["beta"]


def test_a_stand_in_the_orm_would_rewrite_is_refused_by_name():
    read = CompiledRead(
        lambda name: UseCase.objects.filter(name__icontains=name), name="\x00stand-in"
    )
    with pytest.raises(RuntimeError, match=r"lost in compiling: \['name'\]"):
        read.rows(name="Invoices")


def test_a_use_case_is_found_only_by_its_members_and_admins():
    member, outsider, admin = make_user(), make_user(), make_user(Role.ADMIN)
    use_case = make_use_case(members=[member], pii_members=[member])
    assert use_case_get_for(user=member, slug=use_case.slug).pii_right == (member.pk, True)
    assert use_case_get_for(user=admin, slug=use_case.slug).pk == use_case.pk
    with pytest.raises(NotFound):
        use_case_get_for(user=outsider, slug=use_case.slug)
    with pytest.raises(NotFound):
        use_case_get_for(user=member, slug="no-such-use-case")


def _prepared_statements() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [row[0] for row in cursor.fetchall()]


@pytest.mark.postgres
def test_on_postgresql_the_read_is_prepared_once_and_still_answers_after_a_failed_transaction():
    from django.db import DatabaseError, transaction

    first, second = make_use_case(slug="first"), make_use_case(slug="second")
    read = CompiledRead(
        lambda slug: UseCase.objects.filter(slug=slug).annotate(prepared_once=F("slug")),
        slug=STAND_IN_SLUG,
    )
    assert read.first(slug="first").pk == first.pk
    prepared = [s for s in _prepared_statements() if 'AS "prepared_once"' in s]
    assert len(prepared) == 1 and "$1" in prepared[0]
    with pytest.raises(DatabaseError), transaction.atomic():
        assert read.first(slug="second").pk == second.pk
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 / 0")  # the transaction fails
    assert read.first(slug="second").pk == second.pk
    assert [s for s in _prepared_statements() if 'AS "prepared_once"' in s] == prepared


@pytest.mark.postgres
def test_with_prepared_statements_off_nothing_is_prepared(settings):
    settings.DATABASE_PREPARED_STATEMENTS = False
    make_use_case(slug="first")
    read = CompiledRead(
        lambda slug: UseCase.objects.filter(slug=slug).annotate(never_prepared=F("slug")),
        slug=STAND_IN_SLUG,
    )
    assert read.first(slug="first").slug == "first"
    assert not [s for s in _prepared_statements() if 'AS "never_prepared"' in s]


@pytest.mark.postgres
def test_constants_are_written_into_the_statement_and_stand_ins_stay_parameters():
    from reviewapp.core.compiled import constants_inlined

    sql = "SELECT %s AS a, %s AS b, '100%%' AS c, %s AS d, %s AS e"
    marked = [("open", None), (42, "task"), (False, None), ("it's 5%", None)]
    inlined, kept = constants_inlined(sql, marked, connection)
    assert inlined == "SELECT 'open' AS a, %s AS b, '100%%' AS c, false AS d, 'it''s 5%%' AS e"
    assert kept == [(42, "task")]
    with connection.cursor() as cursor:  # the driver reads it back as written
        cursor.execute(inlined, [7])
        assert cursor.fetchone() == ("open", 7, "100%", False, "it's 5%")
    with pytest.raises(RuntimeError, match="fewer placeholders"):
        constants_inlined("SELECT %s", [(1, None), (2, None)], connection)
    with pytest.raises(RuntimeError, match="more placeholders"):
        constants_inlined("SELECT %s, %s", [(1, None)], connection)
