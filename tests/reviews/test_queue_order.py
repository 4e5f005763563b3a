"""Queue order per use case: oldest first, priority then age, earliest due first, or most
uncertain first; items carry ``priority`` and ``due_at`` (sent, or the use case's turnaround).

Runs on SQLite in ``make test`` and on PostgreSQL in CI's second pass; the concurrent claims at
the end need PostgreSQL's row locks."""

import random
import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.utils import timezone

from deployments.services.use_cases import use_case_update
from reviewapp.core.roles import Role
from reviewapp.reviews.models import Item, ItemSeen, ReviewTask
from reviewapp.reviews.services.ingest import item_ingest, items_batch_accept
from reviewapp.reviews.services.review import review_task_claim, review_task_decide
from tests.factories import invoice, make_use_case, make_user

pytestmark = pytest.mark.django_db

T0 = timezone.now().replace(microsecond=0) - timedelta(days=1)


def _queue(order: str, *, level: str = "human_only", **settings):
    reviewers = [make_user(Role.REVIEWER) for _ in range(3)]
    caller = make_user(Role.INTEGRATION)
    use_case = make_use_case(members=[*reviewers, caller], level=level)
    use_case = use_case_update(use_case=use_case, changes={"queue_order": order, **settings})
    return use_case, reviewers


def _send(use_case, n: int, *, at, **extra):
    return item_ingest(use_case=use_case, now=at, **invoice(n), **extra).item


def _served(use_case, reviewer, count: int) -> list[str]:
    """Claim and decide ``count`` tasks in a row, as one reviewer working the queue."""
    served = []
    for _ in range(count):
        task = review_task_claim(use_case=use_case, user=reviewer)
        if task is None:
            break
        served.append(task.item.external_id)
        review_task_decide(task=task, user=reviewer, label="office")
    return served


def test_fifo_serves_the_oldest_first_whatever_the_priority():
    use_case, (alice, *_) = _queue("fifo")
    for n, priority in enumerate([0, 9, 5]):
        _send(use_case, n, at=T0 + timedelta(minutes=n), priority=priority)
    assert _served(use_case, alice, 3) == ["inv-0", "inv-1", "inv-2"]


def test_priority_serves_the_highest_first_and_the_oldest_among_equals():
    use_case, (alice, *_) = _queue("priority")
    priorities = {0: 1, 1: 5, 2: 5, 3: -3, 4: 1000, 5: 0}
    for n, priority in priorities.items():
        _send(use_case, n, at=T0 + timedelta(minutes=n), priority=priority)
    # 5 and 5 tie: inv-1 arrived first. Items sent without a priority have 0.
    assert _served(use_case, alice, 6) == ["inv-4", "inv-1", "inv-2", "inv-0", "inv-5", "inv-3"]


def test_due_serves_the_earliest_due_first_and_items_without_a_due_time_last():
    use_case, (alice, *_) = _queue("due")
    due = {0: None, 1: T0 + timedelta(hours=5), 2: T0 + timedelta(hours=1), 3: None}
    for n, due_at in due.items():
        _send(
            use_case,
            n,
            at=T0 + timedelta(minutes=n),
            due_at=due_at.isoformat() if due_at else None,
        )
    assert _served(use_case, alice, 4) == ["inv-2", "inv-1", "inv-0", "inv-3"]


def test_a_use_case_turnaround_makes_items_due_and_a_sent_due_time_wins():
    use_case, (alice, *_) = _queue("due", turnaround_minutes=60)
    early = _send(use_case, 0, at=T0)
    later = _send(use_case, 1, at=T0 + timedelta(minutes=10), due_at="2020-01-01T00:00:00+02:00")
    assert early.due_at == T0 + timedelta(minutes=60)
    stored = Item.objects.get(pk=later.pk)
    assert stored.due_at == datetime(2019, 12, 31, 22, tzinfo=UTC)
    task = ReviewTask.objects.get(item=stored)
    assert (task.due_at, task.priority) == (stored.due_at, 0)
    assert _served(use_case, alice, 2) == ["inv-1", "inv-0"]


def test_uncertain_serves_the_least_confident_model_output_first(api):
    use_case, (alice, *_) = _queue("uncertain", level="assisted")
    use_case = use_case_update(use_case=use_case, changes={"prediction_source": "external"})
    confidences = {0: 0.9, 1: 0.55, 2: None, 3: 0.7, 4: 0.55}
    for n, confidence in confidences.items():
        prediction = {"label": "office", "model_version": "ext-1"}
        if confidence is not None:
            prediction["confidence"] = confidence
        _send(use_case, n, at=T0 + timedelta(minutes=n), prediction=prediction)
    # No confidence at all is the least certain; 0.55 twice: the older first.
    assert _served(use_case, alice, 5) == ["inv-2", "inv-1", "inv-4", "inv-3", "inv-0"]


def test_changing_the_order_reorders_what_is_already_waiting():
    use_case, (alice, *_) = _queue("fifo")
    for n, priority in enumerate([0, 0, 7]):
        _send(use_case, n, at=T0 + timedelta(minutes=n), priority=priority)
    use_case = use_case_update(use_case=use_case, changes={"queue_order": "priority"})
    assert _served(use_case, alice, 1) == ["inv-2"]


def test_batch_items_carry_their_priority_and_due_time(django_capture_on_commit_callbacks):
    use_case, (alice, *_) = _queue("priority", turnaround_minutes=30)
    rows = [
        {**invoice(0), "priority": 2},
        {**invoice(1), "due_at": "2030-01-01T09:00:00Z", "priority": 9},
        invoice(2),
    ]
    with django_capture_on_commit_callbacks(execute=True):
        items_batch_accept(use_case=use_case, rows=rows, now=T0)
    stored = {i.external_id: i for i in Item.objects.filter(use_case=use_case)}
    assert {k: v.priority for k, v in stored.items()} == {"inv-0": 2, "inv-1": 9, "inv-2": 0}
    assert stored["inv-0"].due_at == T0 + timedelta(minutes=30)
    assert stored["inv-1"].due_at.isoformat() == "2030-01-01T09:00:00+00:00"
    assert _served(use_case, alice, 3) == ["inv-1", "inv-0", "inv-2"]


@pytest.mark.parametrize(
    ("field", "value", "said"),
    [
        ("priority", "high", "integer"),
        ("priority", True, "integer"),
        ("priority", 1001, "integer"),
        ("due_at", "tomorrow", "ISO 8601"),
        ("due_at", "2030-01-01T09:00:00", "ISO 8601"),  # no time zone: ambiguous
        ("due_at", 1767225600, "ISO 8601"),
    ],
)
def test_a_bad_priority_or_due_time_is_refused_naming_the_field(api, field, value, said):
    caller = make_user(Role.INTEGRATION)
    use_case = make_use_case(members=[caller], level="human_only")
    client = api(caller)
    one = client.post(
        f"/api/v1/use-cases/{use_case.slug}/items/",
        {**invoice(0), field: value},
        format="json",
    )
    assert one.status_code == 400, one.content
    assert said in str(one.json()[field])
    batch = client.post(
        f"/api/v1/use-cases/{use_case.slug}/items/batch/",
        {"items": [invoice(1), {**invoice(2), field: value}]},
        format="json",
    )
    assert batch.status_code == 400
    assert said in str(batch.json()["items"]["1"][field])
    assert not Item.objects.filter(use_case=use_case).exists()


def test_the_api_answers_an_item_with_its_priority_and_due_time(api):
    caller = make_user(Role.INTEGRATION)
    use_case = make_use_case(members=[caller], level="human_only")
    client = api(caller)
    sent = client.post(
        f"/api/v1/use-cases/{use_case.slug}/items/",
        {**invoice(0), "priority": 3, "due_at": "2030-01-01T10:00:00+01:00"},
        format="json",
    )
    assert sent.status_code == 201, sent.content
    assert (sent.json()["priority"], sent.json()["due_at"]) == (3, "2030-01-01T09:00:00Z")
    again = client.get(f"/api/v1/use-cases/{use_case.slug}/items/inv-0/")
    assert (again.json()["priority"], again.json()["due_at"]) == (3, "2030-01-01T09:00:00Z")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("order", ["priority", "due", "uncertain"])
def test_eight_reviewers_at_once_take_the_head_of_the_queue_and_never_the_same_task(order):
    """Claims racing under SKIP LOCKED: 40 of 60 tasks are held by 8 reviewers at once, and
    they are exactly the first 40 in the queue's order (random ties included)."""
    reviewers = [make_user(Role.REVIEWER) for _ in range(8)]
    use_case = make_use_case(members=reviewers, level="assisted")
    use_case = use_case_update(
        use_case=use_case, changes={"queue_order": order, "prediction_source": "external"}
    )
    rng = random.Random(7)
    for n in range(60):
        due = T0 + timedelta(minutes=rng.randrange(10))
        item_ingest(
            use_case=use_case,
            now=T0 + timedelta(seconds=n),
            priority=rng.randrange(4),
            due_at=due.isoformat(),
            prediction={
                "label": "office",
                "model_version": "ext-1",
                "confidence": rng.choice([0.5, 0.6, 0.7]),
            },
            **invoice(n),
        )
    expected_order = {
        "priority": ("-priority", "created_at", "id"),
        "due": ("due_at", "created_at", "id"),
        "uncertain": ("-uncertainty", "created_at", "id"),
    }[order]
    head = list(
        ReviewTask.objects.filter(use_case=use_case)
        .order_by(*expected_order)
        .values_list("pk", flat=True)[:40]
    )
    held: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(len(reviewers))

    def work(user):
        try:
            barrier.wait()
            for _ in range(5):
                # A reviewer's claim hands back the task they hold; forgetting the claimant
                # (the lease stays live, so nobody else can take it) lets them take the next.
                task = review_task_claim(use_case=use_case, user=user, lease_seconds=3600)
                with lock:
                    held.append(task.pk)
                ReviewTask.objects.filter(pk=task.pk).update(claimed_by=None)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(user,)) for user in reviewers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(held) == len(set(held)) == 40
    assert set(held) == set(head)


def test_claims_across_use_cases_orders_and_reviewers_each_get_their_own_values():
    """A process keeps one claim statement per queue order and puts each claim's use case,
    reviewer, time and lease in it: claims interleaved between two use cases of the same
    order, and one of another order, each take their own use case's head, for their own
    reviewer, with their own lease."""
    first, (alice, bob, _) = _queue("priority")
    second, (carol, *_) = _queue("priority")
    third, (dave, *_) = _queue("fifo")
    for use_case in (first, second, third):
        for n, priority in enumerate([1, 7, 3]):
            _send(use_case, n, at=T0 + timedelta(minutes=n), priority=priority)
    at = T0 + timedelta(hours=1)
    claims = [
        (first, alice, "inv-1"),
        (second, carol, "inv-1"),
        (third, dave, "inv-0"),
        (first, bob, "inv-2"),
    ]
    tokens = set()
    for use_case, reviewer, expected in claims:
        task = review_task_claim(use_case=use_case, user=reviewer, now=at, lease_seconds=300)
        task.refresh_from_db()
        assert (task.use_case_id, task.item.external_id) == (use_case.pk, expected)
        assert (task.claimed_by_id, task.claimed_at) == (reviewer.pk, at)
        assert task.lease_expires_at == at + timedelta(seconds=300)
        tokens.add(task.lease_token)
        # The reviewer has seen the item they hold, and only they.
        seen = ItemSeen.objects.filter(item_id=task.item_id).values_list("user_id", flat=True)
        assert set(seen) == {reviewer.pk}
    assert len(tokens) == len(claims)
    # A reviewer who holds a task gets it back, in each use case.
    again = review_task_claim(use_case=first, user=alice, now=at + timedelta(minutes=1))
    assert again.item.external_id == "inv-1"
