"""PostgreSQL plans a claim once per connection, not on every claim. The claim statement is
prepared with its constants written into it (``constants_inlined``), so the plan PostgreSQL
keeps for it (its generic plan) still walks the queue's partial index: with the open state and
the bound on item ids as parameters it sorted every open task instead, and so was never kept,
and every claim paid for its planning (about 1 ms, more with each month of partitions)."""

import pytest
from django.db import connection

from reviewapp.core.roles import Role
from reviewapp.reviews.partitions import month_start_id as month_start
from reviewapp.reviews.services.review import review_task_claim
from tests.factories import make_use_case, make_user, send_items

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


def _claim_statements() -> list[tuple[int, int]]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements "
            "WHERE statement LIKE %s",
            ["%WITH held AS%"],
        )
        return cursor.fetchall()


def test_claims_run_on_a_plan_postgresql_keeps():
    reviewers = [make_user(Role.REVIEWER) for _ in range(12)]
    use_case = make_use_case(members=reviewers, level="human_only")
    send_items(use_case, range(40))
    claimed = [review_task_claim(use_case=use_case, user=reviewer) for reviewer in reviewers]
    assert len({task.pk for task in claimed}) == len(reviewers)  # each got a task of their own
    # Each claim ran the same statement (the reviewer's held task first), prepared once.
    assert [task.pk for task in claimed] == sorted(task.pk for task in claimed)
    statements = _claim_statements()
    assert statements, "the claim statement is not prepared"
    assert sum(generic for generic, _ in statements) >= 1, statements


def test_with_prepared_statements_off_claims_are_planned_each_time(settings):
    settings.DATABASE_PREPARED_STATEMENTS = False
    reviewer = make_user(Role.REVIEWER)
    use_case = make_use_case(members=[reviewer], level="human_only")
    send_items(use_case, range(3))
    before = _claim_statements()
    assert review_task_claim(use_case=use_case, user=reviewer) is not None
    assert _claim_statements() == before


class _DroppedMeanwhile(dict):
    """The kept statements as one thread lists them while another thread, crossing into the
    new month too, has already dropped one of last month's: listed, but no longer there."""

    def __init__(self, kept, gone):
        super().__init__(kept)
        self.gone = gone

    def __iter__(self):
        return iter([*super().__iter__(), self.gone])


def test_a_new_month_replaces_last_months_claim_statements_even_when_threads_cross_together(
    monkeypatch,
):
    from reviewapp.reviews.services import review

    reviewer = make_user(Role.REVIEWER)
    use_case = make_use_case(members=[reviewer], level="human_only")
    send_items(use_case, range(3))
    assert review_task_claim(use_case=use_case, user=reviewer) is not None
    month = review.month_of_now()
    last_months = next(k for k in review._claim_statements if k[3] == month_start(month + 2))
    gone = (*last_months[:3], month_start(month + 1))
    monkeypatch.setattr(
        review, "_claim_statements", _DroppedMeanwhile(review._claim_statements, gone)
    )
    monkeypatch.setattr(review, "month_of_now", lambda: month + 1)
    assert review_task_claim(use_case=use_case, user=reviewer) is not None  # no KeyError
    assert {key[3] for key in dict.keys(review._claim_statements)} == {month_start(month + 3)}
