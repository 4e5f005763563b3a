"""How many SQL queries each hot path of the review loop costs, pinned at two data sizes.

Every request runs once at 10 and once at 200 items waiting in the queue and must cost exactly
the same number of queries: a count that grows with the data (a query per row) or grows at all
fails here before it reaches a dashboard. A batch's chunk is scored at 50 and at 500 items and
must cost the same on PostgreSQL (one statement per write, whatever the rows); on SQLite only
the statements Django splits under the engine's parameter limit grow, at most one per
``SQLITE_ROWS_PER_STATEMENT`` rows. The bulk writes that bypass Django's cursor (binary
parameters on PostgreSQL) are logged like any other query, so they are counted too. A failure
that lowers a count is good news: lower the pinned number. Each request is made once before it
is measured, so the per-process caches that a running server keeps warm (the API token's user,
the content types, the loaded model, the use case's policy and models, the guardrail watch
just queued) are warm; the set-up and that first request end with their commit played
(``django_capture_on_commit_callbacks``), as they would on a server. Tasks that the measured
request enqueues run after commit, which never comes inside a test's transaction, so their
queries are not counted here.
"""

import re

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from reviewapp.core.models import Job
from reviewapp.core.roles import Role
from reviewapp.reviews.models import Item, ReviewTask
from reviewapp.reviews.services.ingest import items_batch_accept, items_store_pending
from reviewapp.reviews.services.scoring import chunk_score, items_score
from tests.factories import (
    constant_classifier_bytes,
    invoice,
    logged_in_client,
    make_use_case,
    make_user,
    register_model,
)

pytestmark = pytest.mark.django_db
waiting = pytest.mark.parametrize("size", [10, 200])
HTMX = {"HTTP_HX_REQUEST": "true"}
# The fewest rows a statement holds where Django splits a bulk write under SQLite's 999
# parameters (the review task insert, the widest, holds 62).
SQLITE_ROWS_PER_STATEMENT = 50


def queries(request) -> list[str]:
    """The SQL that ``request()`` runs; a response other than 2xx or 3xx fails the test."""
    with CaptureQueriesContext(connection) as captured:
        response = request()
    assert response.status_code < 400, response.content[:500]
    return [query["sql"] for query in captured.captured_queries]


def assert_budget(sql: list[str], budget: int | dict[str, int]) -> None:
    """``budget`` is a count, or a count per database vendor where the engines differ."""
    if isinstance(budget, dict):
        budget = budget[connection.vendor]
    assert len(sql) == budget, "\n".join(f"{n}. {q}" for n, q in enumerate(sql, 1))


@pytest.fixture(autouse=True)
def _watch_throttled(settings):
    """After each ingest and decision a guardrail watch is queued unless one was queued within
    the check interval; a process that queued one asks no more until the interval has passed.
    An hour-long interval keeps the measured request within it however slowly the machine ran
    the set-up (the common case under traffic)."""
    settings.GUARDRAIL_CHECK_INTERVAL_SECONDS = 3600


@pytest.fixture
def committed(django_capture_on_commit_callbacks):
    """``with committed():`` ends the block as a commit would: what it left for after commit
    runs (tasks, and what the process keeps of a finished write)."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


@pytest.fixture
def queue(size, committed):
    """A use case at ``partial`` with a registered model whose 70% confidence is under the 90%
    threshold, so every item goes to a reviewer: ``size`` tasks are waiting."""
    caller = make_user(Role.INTEGRATION)
    rosa = make_user(Role.REVIEWER, "rosa")
    with committed():
        use_case = make_use_case(members=[caller, rosa], level="partial", audit_rate=0.0)
        register_model(use_case, constant_classifier_bytes("office", 0.7))
    # The batch path (one scoring call for every row): the same items, routes and tasks.
    rows = [(body["external_id"], body["features"], None) for body in map(invoice, range(size))]
    with transaction.atomic():
        ids = items_store_pending(use_case=use_case, rows=rows, now=timezone.now())
    items_score(item_ids=ids)
    assert ReviewTask.objects.filter(use_case=use_case, state="open").count() == size
    return use_case, caller, rosa


@waiting
def test_ingesting_one_item(api, queue, size, committed):
    use_case, caller, _ = queue
    client = api(caller)
    url = f"/api/v1/use-cases/{use_case.slug}/items/"
    with committed():
        client.post(url, invoice(size), format="json")
    sql = queries(lambda: client.post(url, invoice(size + 1), format="json"))
    # token with its user and roles, use case (its config stamp: the policy, champion and
    # challengers this process keeps are current), duplicate external id? (on PostgreSQL with
    # the ids the item and its prediction will take) | savepoint, the item stored routed, its
    # prediction, its review task and a rollup event (one statement on PostgreSQL; elsewhere
    # the item stored, then the four writes with its route as an update), release. The
    # guardrail watch queued by the first request holds for the interval: nothing to ask.
    assert_budget(sql, {"postgresql": 6, "sqlite": 10})


@waiting
def test_claiming_the_next_task(api, queue):
    use_case, _, rosa = queue
    client = api(rosa)
    url = f"/api/v1/use-cases/{use_case.slug}/review/next/"
    client.post(url)  # warms the token; the reviewer now holds the oldest task
    held = ReviewTask.objects.get(claimed_by=rosa, state="open")
    held.claimed_by = None
    held.lease_token = None
    held.lease_expires_at = None
    held.save(update_fields=["claimed_by", "lease_token", "lease_expires_at"])
    sql = queries(lambda: client.post(url))
    # token with its user and roles, use case with the reviewer's PII right | the claim: on
    # PostgreSQL one statement answers with a task the reviewer already holds or picks the
    # oldest claimable task (SKIP LOCKED), claims it, records that the reviewer has seen the
    # item and reads the task with its item and prediction for the answer; elsewhere a live
    # lease already held?, savepoint, the oldest claimable, the conditional claim update, the
    # item seen, release, then the task with its item and prediction.
    assert_budget(sql, {"postgresql": 3, "sqlite": 9})


@waiting
def test_deciding_a_task(api, queue, committed):
    use_case, _, rosa = queue
    client = api(rosa)
    claim = f"/api/v1/use-cases/{use_case.slug}/review/next/"
    first = client.post(claim).json()
    with committed():
        client.post(
            f"/api/v1/review/tasks/{first['task']}/decision/",
            {"label": "office", "lease_token": first["lease_token"]},
            format="json",
        )
    second = client.post(claim).json()
    sql = queries(
        lambda: client.post(
            f"/api/v1/review/tasks/{second['task']}/decision/",
            {"label": "travel", "lease_token": second["lease_token"]},
            format="json",
        )
    )
    # token with its user and roles, the task | savepoint, the task with its item locked (on
    # PostgreSQL with the decision's id and the item's predictions; elsewhere the predictions
    # are a query of their own), the decision stored with its task closed, its item decided,
    # the disagreement, a rollup event and the outcome event for the caller (one statement on
    # PostgreSQL, six elsewhere), release (the answer's "disagreement" is known from what was
    # written; the guardrail watch queued by the first decision holds for the interval).
    assert_budget(sql, {"postgresql": 6, "sqlite": 12})


def _decision_in_the_queue(client, use_case, label):
    """The POST the queue page's form makes on the task the reviewer holds, ready to send."""
    task = ReviewTask.objects.get(use_case=use_case, claimed_by__isnull=False, state="open")
    body = {"label": label, "lease_token": str(task.lease_token), "time_spent_ms": "1200"}
    return lambda: client.post(f"/queue/{use_case.slug}/tasks/{task.pk}/decide/", body, **HTMX)


@waiting
def test_deciding_and_getting_the_next_task_in_the_htmx_queue(queue, committed):
    use_case, _, rosa = queue
    client = logged_in_client(rosa)
    client.get(f"/queue/{use_case.slug}/")  # claims the first task
    with committed():
        _decision_in_the_queue(client, use_case, "office")()  # and the second
    sql = queries(_decision_in_the_queue(client, use_case, "travel"))
    # session, user with roles, use case with the reviewer's PII right | savepoint, the task (not
    # found unless in this use case) with its item locked (on PostgreSQL with the decision's
    # id and the item's predictions; elsewhere the predictions are a query of their own), the
    # decision stored with its task closed, its item decided, the disagreement, a rollup event
    # and the outcome event (one statement on PostgreSQL, six elsewhere), release | claim the
    # next: one statement on PostgreSQL that also answers with
    # a task still held and reads the task with its item for the page, and whether it came
    # back from an escalation (only then are the manager's notes read); elsewhere a live lease
    # held?, savepoint, the oldest claimable, the conditional update, the item seen, release,
    # then the task for the page.
    assert_budget(sql, {"postgresql": 8, "sqlite": 20})


def _split_writes_merged(sql: list[str]) -> tuple[list[str], int]:
    """The statements with each bulk write counted once, and the most parts one was split into.

    Django splits a bulk insert or update under SQLite's 999 parameters into consecutive
    statements that differ only after ``VALUES``; PostgreSQL writes each in one statement."""
    merged: list[str] = []
    parts = most = 0
    for query in sql:
        head = re.split(r"\bVALUES\b", query, maxsplit=1)[0]
        if merged and query.startswith(("INSERT", "UPDATE")) and merged[-1] == head:
            parts += 1
        else:
            merged.append(head if query.startswith(("INSERT", "UPDATE")) else query)
            parts = 1
        most = max(most, parts)
    return merged, most


@pytest.mark.parametrize("chunk", [50, 500])
def test_scoring_a_batch_chunk(chunk, committed):
    """One chunk of a batch as its task scores it (``chunk_score``), the model already loaded
    by an earlier chunk; every item goes to a reviewer, so the prediction, task and route
    writes are all in the count."""
    caller = make_user(Role.INTEGRATION)
    with committed():
        use_case = make_use_case(members=[caller], level="partial", audit_rate=0.0)
        register_model(use_case, constant_classifier_bytes("office", 0.7))
    with committed():
        warm = items_batch_accept(use_case=use_case, rows=[invoice(n) for n in range(5)])
        chunk_score(item_ids=list(Item.objects.filter(job=warm).values_list("pk", flat=True)))
    job = items_batch_accept(use_case=use_case, rows=[invoice(n) for n in range(5, 5 + chunk)])
    ids = list(Item.objects.filter(job=job).order_by("pk").values_list("pk", flat=True))
    with CaptureQueriesContext(connection) as captured:
        assert chunk_score(item_ids=ids) == chunk
    sql = [query["sql"] for query in captured.captured_queries]
    assert ReviewTask.objects.filter(item_id__in=ids, state="open").count() == chunk
    assert Job.objects.get(pk=job.pk).state == "done"
    merged, most_parts = _split_writes_merged(sql)
    # the chunk's jobs, the job running | savepoint, the pending items locked, the use case
    # (its config stamp: the policy, champion and challengers kept by the process are
    # current) | insert predictions, insert tasks, route the items (one update), the rollup
    # events | the job started, its progress, done | release. The guardrail watch queued
    # after the earlier chunk holds for the interval.
    assert_budget(merged, 13)
    if connection.vendor == "postgresql":
        assert len(sql) == len(merged)
    else:
        assert most_parts <= -(-chunk // SQLITE_ROWS_PER_STATEMENT), "\n".join(sql)
