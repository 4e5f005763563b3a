"""PostgreSQL keeps items, predictions, tasks and decisions in monthly partitions
(reviewapp/reviews/partitions.py, reviews migration 0008). What a user relies on must not
change: each unique key still refuses a duplicate, the queue still walks its partial index, a
month is created before it is needed, and an archive that empties a month drops it while a
restore brings it back. (The conversion of a database with history: ``.ci/run``, which seeds
one before migrating it and checks every figure before and after.)"""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import IntegrityError, connection, transaction

from reviewapp.archives.services import archive_create, archive_restore
from reviewapp.core.roles import Role
from reviewapp.reviews.models import Decision, Item, Prediction, ReviewTask
from reviewapp.reviews.partitions import (
    BEFORE,
    MONTH_SHIFT,
    PARTITIONED,
    month_number,
    month_start_id,
    partition_name,
    partitions_ensure,
    partitions_for_items,
)
from reviewapp.reviews.services.ingest import item_ingest, items_store_pending
from reviewapp.reviews.services.review import review_task_claim, review_task_decide
from tests.factories import classifier_bytes, invoice, make_use_case, make_user, register_model

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


def _rows(sql, params=None):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _partition_of(model, pk) -> str:
    table = model._meta.db_table
    return _rows(f"SELECT tableoid::regclass::text FROM {table} WHERE id = %s", [pk])[0][0]


def _item(**fields) -> Item:
    """An item stored through the ORM (ids and fields as given; buckets and features filled)."""
    defaults = {"features": {}, "ramp_bucket": 0, "audit_bucket": 0, "double_review_bucket": 0}
    return Item.objects.create(**{**defaults, **fields})


def _decided_item(*, item_id: int, use_case, external_id: str, received) -> Item:
    """An item the model decided when it arrived, stored through the ORM with its id."""
    return _item(
        id=item_id,
        use_case=use_case,
        external_id=external_id,
        features={"amount": 1.0, "kind": "a", "vendor": "V"},
        status=Item.Status.DECIDED,
        route="auto",
        decision_label="travel",
        decision_source=Item.Source.MODEL,
        received_at=received,
        routed_at=received,
        decided_at=received,
    )


def _this_month() -> int:
    (now,) = _rows("SELECT now() AT TIME ZONE 'UTC'")[0]
    return month_number(now.year, now.month)


def _refused_as(constraint: str):
    """The error a duplicate raises names the unique key it breaks, or a month's part of it."""

    class Refused:
        def __enter__(self):
            self.atomic = transaction.atomic()
            self.atomic.__enter__()

        def __exit__(self, kind, error, traceback):
            self.atomic.__exit__(kind, error, traceback)
            assert isinstance(error, IntegrityError), f"not refused: {error!r}"
            # A month's own index reports the duplicate: the key is its parent's.
            (root,) = _rows(
                "SELECT coalesce(pg_partition_root(to_regclass(%s))::text, %s)",
                [error.__cause__.diag.constraint_name] * 2,
            )[0]
            assert root == constraint
            return True

    return Refused()


@pytest.fixture
def reviewed():
    reviewer = make_user(Role.REVIEWER, "alice")
    use_case = make_use_case(slug="parts", members=[reviewer], level="partial", audit_rate=1.0)
    register_model(use_case, classifier_bytes())
    for n in range(6):
        item_ingest(use_case=use_case, **invoice(n))
    task = review_task_claim(use_case=use_case, user=reviewer)
    decision = review_task_decide(task=task, user=reviewer, label="travel").decision
    return use_case, reviewer, task, decision


def test_an_item_and_everything_about_it_live_in_the_month_it_was_stored(reviewed):
    _use_case, _reviewer, task, decision = reviewed
    item = task.item
    month = _this_month()
    assert item.pk >> MONTH_SHIFT == month
    assert item.pk < 2**53  # exact in every JSON client
    assert _partition_of(Item, item.pk) == partition_name("reviews_item", month)
    prediction = Prediction.objects.filter(item=item).first()
    assert _partition_of(Prediction, prediction.pk) == partition_name("reviews_prediction", month)
    assert _partition_of(ReviewTask, task.pk) == partition_name("reviews_reviewtask", month)
    assert _partition_of(Decision, decision.pk) == partition_name("reviews_decision", month)
    kinds = dict(
        _rows(
            "SELECT relname, relkind FROM pg_class WHERE relname = ANY(%s)",
            [[table for table, _key in PARTITIONED]],
        )
    )
    assert kinds == {table: "p" for table, _key in PARTITIONED}


def test_every_unique_key_still_refuses_a_duplicate(reviewed):
    use_case, reviewer, task, decision = reviewed
    item = task.item
    with _refused_as("one_item_per_external_id"):
        _item(
            use_case=use_case,
            external_id=item.external_id,
            features=item.features,
            received_at=item.received_at,
        )
    again = item_ingest(use_case=use_case, **invoice(0))
    assert not again.created
    assert Item.objects.filter(use_case=use_case, external_id="inv-0").count() == 1
    with _refused_as("one_task_per_item_reason"):
        ReviewTask.objects.create(
            item=item, use_case=use_case, reason=task.reason, created_at=task.created_at
        )
    answer = dict(
        use_case=use_case,
        reviewer=reviewer,
        kind=Decision.Kind.BLIND,
        label="office",
        created_at=decision.created_at,
    )
    with _refused_as("reviews_decision_task_id_key"):
        Decision.objects.create(task=task, item=item, **answer)
    first, second = ReviewTask.objects.filter(use_case=use_case).exclude(pk=task.pk)[:2]
    with transaction.atomic():
        Decision.objects.create(
            task=first, item=first.item, idempotency_key="the-same-key", **answer
        )
    with _refused_as("one_decision_per_idempotency_key"):
        Decision.objects.create(
            task=second, item=second.item, idempotency_key="the-same-key", **answer
        )


def test_a_decision_must_name_its_tasks_item(reviewed):
    use_case, reviewer, task, _decision = reviewed
    other = ReviewTask.objects.filter(use_case=use_case).exclude(item=task.item).first()
    with pytest.raises(IntegrityError), transaction.atomic():
        Decision.objects.create(
            task=other,
            item=task.item,  # not the task's item
            use_case=use_case,
            reviewer=reviewer,
            kind=Decision.Kind.BLIND,
            label="office",
            created_at=other.created_at,
        )
        connection.check_constraints()  # the foreign keys are checked at commit


def test_a_batch_sent_again_stores_only_what_is_new():
    use_case = make_use_case(slug="batch-parts")
    now = datetime.now(UTC)
    rows = [(f"b-{n}", {"amount": 1.0 + n, "kind": "a", "vendor": "V"}) for n in range(5)]
    with transaction.atomic():
        first = items_store_pending(use_case=use_case, rows=rows, now=now)
    with transaction.atomic():
        again = items_store_pending(
            use_case=use_case,
            rows=[*rows, ("b-new", {"amount": 2.0, "kind": "b", "vendor": "V"})],
            now=now,
        )
    assert len(first) == 5 and len(again) == 1
    assert Item.objects.filter(use_case=use_case).count() == 6
    # A duplicate outside such a batch is still refused.
    with _refused_as("one_item_per_external_id"):
        _item(
            use_case=use_case,
            external_id="b-1",
            received_at=now,
        )


def test_the_queue_walks_the_open_tasks_index_in_every_month(reviewed):
    use_case, *_ = reviewed
    partitions_ensure(now=datetime.now(UTC) + timedelta(days=200), ahead=0)
    months = _rows(
        "SELECT inhrelid FROM pg_inherits WHERE inhparent = 'reviews_reviewtask'::regclass"
    )
    # Each month's part of the queue's partial index (the parent keeps the name).
    parts = _rows(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "JOIN pg_index x ON x.indexrelid = c.oid "
        "WHERE i.inhparent = 'task_queue_idx'::regclass AND x.indpred IS NOT NULL"
    )
    assert len(months) >= 3 and len(parts) == len(months)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        plan = (
            ReviewTask.objects.filter(use_case=use_case, state="open")
            .order_by("created_at", "id")[:1]
            .explain()
        )
    assert "Merge Append" in plan or len(months) == 1
    assert all(name in plan for (name,) in parts), plan


def test_the_beat_creates_the_months_ahead_once():
    created = partitions_ensure(now=datetime(2031, 11, 15, tzinfo=UTC), ahead=2)
    assert created == [month_number(2031, 11), month_number(2031, 12), month_number(2032, 1)]
    assert partitions_ensure(now=datetime(2031, 11, 15, tzinfo=UTC), ahead=2) == []
    for table, _key in PARTITIONED:
        assert _rows("SELECT to_regclass(%s)", [partition_name(table, month_number(2032, 1))])[0][0]
    # A row of that month goes to its partition.
    item_id = month_start_id(month_number(2032, 1)) + 7
    use_case = make_use_case(slug="ahead")
    _item(
        id=item_id,
        use_case=use_case,
        external_id="later",
        received_at=datetime(2032, 1, 2, tzinfo=UTC),
    )
    assert _partition_of(Item, item_id) == "reviews_item_p203201"
    # The new month keeps the keys: its items claim theirs, and a duplicate is refused.
    with _refused_as("one_item_per_external_id"):
        _item(
            id=item_id + 1,
            use_case=use_case,
            external_id="later",
            received_at=datetime(2032, 1, 3, tzinfo=UTC),
        )


def test_a_month_is_not_created_while_the_history_is_busy_and_is_on_the_next_run(settings):
    """Creating a month must never queue the history's reads and writes behind a long query:
    it waits at most the lock timeout, and the next run creates it."""
    import psycopg

    settings.HISTORY_PARTITION_LOCK_TIMEOUT_MS = 100
    params = connection.get_connection_params()
    with psycopg.connect(**params, autocommit=False) as other:
        other.execute("LOCK TABLE reviews_item IN SHARE MODE")  # an index being built, say
        assert partitions_ensure(now=datetime(2033, 3, 1, tzinfo=UTC), ahead=0) == []
        other.rollback()
    assert partitions_ensure(now=datetime(2033, 3, 1, tzinfo=UTC), ahead=0) == [
        month_number(2033, 3)
    ]


def test_an_archive_that_empties_a_month_drops_it_and_a_restore_brings_it_back(tmp_path, settings):
    settings.ARCHIVE_ROOT = tmp_path
    settings.STORAGES = {
        **settings.STORAGES,
        "archives": {**settings.STORAGES["archives"], "OPTIONS": {"location": tmp_path}},
    }
    use_case = make_use_case(slug="old-months")
    february, may = month_number(2031, 2), month_number(2031, 5)
    partitions_ensure(now=datetime(2031, 2, 1, tzinfo=UTC), ahead=3)
    received = datetime(2031, 2, 10, tzinfo=UTC)
    # Two items of February, one from before the tables were partitioned (a converted
    # database's, in the partition of the rows from before).
    ids = [7, *(month_start_id(february) + n for n in range(1, 3))]
    partitions_for_items(ids)
    for n, item_id in enumerate(ids):
        _decided_item(item_id=item_id, use_case=use_case, external_id=f"feb-{n}", received=received)
    archive = archive_create(
        use_case=use_case,
        cutoff=datetime(2031, 4, 1, tzinfo=UTC),
        now=datetime(2031, 5, 1, tzinfo=UTC),
    )
    assert archive.items_removed == 3
    for table, _key in PARTITIONED:
        for month in (february, BEFORE):
            assert _rows("SELECT to_regclass(%s)", [partition_name(table, month)])[0][0] is None
        # The archive's own month and later ones stay, empty or not.
        assert _rows("SELECT to_regclass(%s)", [partition_name(table, may)])[0][0]
    archive_restore(archive=archive)
    assert sorted(Item.objects.filter(use_case=use_case).values_list("pk", flat=True)) == ids
    assert [_partition_of(Item, item_id) for item_id in ids] == [
        "reviews_item_before",
        "reviews_item_p203102",
        "reviews_item_p203102",
    ]


def test_a_month_without_partitions_a_week_ahead_is_an_alert_until_the_beat_creates_it():
    from reviewapp.monitoring.system import health_read

    late_in_the_month = datetime(2034, 5, 26, tzinfo=UTC)
    partitions_ensure(now=datetime(2034, 5, 1, tzinfo=UTC), ahead=0)  # May only
    alerts = health_read(now=late_in_the_month, with_broker=False).alerts
    (alert,) = [a for a in alerts if a["kind"] == "history_partitions"]
    assert alert["key"] == "history-partitions:2034-06"
    assert "June 2034" in alert["message"] and "1 June" in alert["message"]
    partitions_ensure(now=late_in_the_month, ahead=1)
    alerts = health_read(now=late_in_the_month, with_broker=False).alerts
    assert not [a for a in alerts if a["kind"] == "history_partitions"]


def test_no_month_is_dropped_while_a_restore_is_writing_into_the_months(settings):
    """A restore makes sure of its months and writes into them in one transaction; an archive
    dropping an empty month waits for it (at most the lock timeout, then leaves the month for
    the next run) instead of dropping the month the restore is about to write into."""
    import psycopg

    from reviewapp.reviews.partitions import LAYOUT_LOCK, partitions_drop_empty

    settings.HISTORY_PARTITION_LOCK_TIMEOUT_MS = 100
    partitions_ensure(now=datetime(2035, 1, 1, tzinfo=UTC), ahead=0)
    later = datetime(2035, 3, 1, tzinfo=UTC)
    params = connection.get_connection_params()
    with psycopg.connect(**params, autocommit=False) as restore:
        restore.execute("SELECT pg_advisory_xact_lock(%s)", [LAYOUT_LOCK])
        assert partitions_drop_empty(now=later) == []
        restore.rollback()
    assert "reviews_item_p203501" in partitions_drop_empty(now=later)


def test_an_item_sent_again_is_answered_from_its_key_until_its_month_is_archived(
    tmp_path, settings
):
    settings.STORAGES = {
        **settings.STORAGES,
        "archives": {**settings.STORAGES["archives"], "OPTIONS": {"location": tmp_path}},
    }
    use_case = make_use_case(slug="keys")
    march = month_number(2031, 3)
    partitions_ensure(now=datetime(2031, 3, 1, tzinfo=UTC), ahead=1)
    partitions_for_items([month_start_id(march) + 1])
    received = datetime(2031, 3, 10, tzinfo=UTC)
    stored = _decided_item(
        item_id=month_start_id(march) + 1, use_case=use_case, external_id="mar-1", received=received
    )
    again = item_ingest(use_case=use_case, external_id="mar-1", features=invoice(2)["features"])
    assert (again.created, again.item.pk) == (False, stored.pk)
    archive_create(
        use_case=use_case,
        cutoff=datetime(2031, 4, 1, tzinfo=UTC),
        now=datetime(2031, 5, 1, tzinfo=UTC),
    )
    # The archive ran "in May 2031" and dropped every empty month before it, this one too.
    partitions_ensure(now=datetime.now(UTC), ahead=1)
    # Its key left with it: the same external id is a new item of this month.
    anew = item_ingest(use_case=use_case, external_id="mar-1", features=invoice(2)["features"])
    assert anew.created
    assert anew.item.pk >> MONTH_SHIFT == _this_month()
    assert _rows(
        "SELECT item_id FROM reviews_item_key WHERE use_case_id = %s AND external_id = 'mar-1'",
        [use_case.pk],
    ) == [(anew.item.pk,)]
