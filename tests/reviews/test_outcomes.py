"""The outcome feed: every final answer once, in order, to a reader that follows `next`."""

import time

import pytest
from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction
from django.test.utils import CaptureQueriesContext

from deployments.services.policies import policy_change
from reviewapp.core.events import event_record, position_parse
from reviewapp.core.models import Event
from reviewapp.core.roles import Role
from reviewapp.reviews.models import ReviewTask
from reviewapp.reviews.outcomes import (
    OUTCOME_CORRECTED,
    OUTCOME_DECIDED,
    WAIT_REREAD_SECONDS,
    outcomes_wait,
)
from reviewapp.reviews.services.review import review_task_claim, review_task_decide
from tests.factories import (
    constant_classifier_bytes,
    make_use_case,
    make_user,
    register_model,
    send_items,
)

# Committed for real: on PostgreSQL a transaction never reads its own events from the feed (its
# own id is not below the horizon), as a caller never would.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def world():
    caller = make_user(Role.INTEGRATION)
    reviewer = make_user(Role.REVIEWER, "rita")
    manager = make_user(Role.MANAGER)
    use_case = make_use_case(
        members=[caller, reviewer],
        actor=manager,
        level="partial",
        confidence_threshold=0.7,
        audit_rate=0,
    )
    register_model(use_case, constant_classifier_bytes("office", 0.8))
    return use_case, caller, reviewer, manager


def read_all(client, slug, *, after="", limit=1000, expect=0):
    """Follow `next` until ``expect`` outcomes came and then nothing more (long-polling while
    fewer came: on PostgreSQL other transactions may hold the horizon back a moment)."""
    seen = []
    while True:
        wait = 5 if len(seen) < expect else 0
        response = client.get(
            f"/api/v1/use-cases/{slug}/outcomes/", {"after": after, "limit": limit, "wait": wait}
        )
        assert response.status_code == 200, response.content
        body = response.json()
        seen.extend(body["outcomes"])
        if not body["outcomes"] and len(seen) >= expect:
            assert body["next"] == after or after == ""
            return seen, body["next"]
        after = body["next"]


def test_model_and_human_decisions_arrive_once_each_in_order(api, world):
    use_case, caller, reviewer, manager = world
    send_items(use_case, range(3))  # decided by the model
    policy_change(
        use_case=use_case, actor=manager, changes={"confidence_threshold": 0.9}, reason="stricter"
    )
    send_items(use_case, range(3, 5))  # the model is unsure: people decide
    client = api(caller)
    first, cursor = read_all(client, use_case.slug, limit=2, expect=3)
    assert [o["external_id"] for o in first] == ["inv-0", "inv-1", "inv-2"]
    assert first[0]["decision"] == {
        "label": "office",
        "source": "model",
        "by": None,
        "model_version": "v1",
    }
    assert first[0]["route"] == "auto"

    for _ in range(2):
        task = review_task_claim(use_case=use_case, user=reviewer)
        review_task_decide(task=task, user=reviewer, label="travel")
    assert not ReviewTask.objects.filter(use_case=use_case, state="open").exists()

    later, cursor = read_all(client, use_case.slug, after=cursor, expect=2)
    assert sorted(o["external_id"] for o in later) == ["inv-3", "inv-4"]
    assert all(
        o["decision"] == {"label": "travel", "source": "human", "by": "rita", "model_version": None}
        for o in later
    )
    again, _ = read_all(client, use_case.slug, after=cursor)
    assert again == []
    everything, _ = read_all(client, use_case.slug, limit=1, expect=5)
    assert [o["external_id"] for o in everything] == [o["external_id"] for o in first + later]
    assert len({o["cursor"] for o in everything}) == 5


def test_an_audit_sends_no_second_outcome_and_a_correction_only_when_it_disagrees(api, world):
    use_case, caller, reviewer, manager = world
    policy_change(use_case=use_case, actor=manager, changes={"audit_rate": 1.0}, reason="audit")
    send_items(use_case, range(2))  # decided by the model, both sampled for a blind audit
    client = api(caller)
    first, cursor = read_all(client, use_case.slug, expect=2)
    assert [o["decision"]["source"] for o in first] == ["model", "model"]

    answers = {}
    for answer in ("office", "travel"):  # the first audit agrees with the model, the second not
        task = review_task_claim(use_case=use_case, user=reviewer)
        assert task.reason == "audit"
        review_task_decide(task=task, user=reviewer, label=answer)
        answers[task.item.external_id] = answer
    assert read_all(client, use_case.slug, after=cursor)[0] == []  # still one outcome an item

    corrections = list(
        Event.objects.filter(use_case_id=use_case.pk, type=OUTCOME_CORRECTED).values_list(
            "data", flat=True
        )
    )
    overturned = next(k for k, v in answers.items() if v == "travel")
    assert len(corrections) == 1
    assert corrections[0]["external_id"] == overturned
    assert corrections[0]["decision"] == {
        "label": "travel",
        "source": "human",
        "by": "rita",
        "model_version": None,
    }
    assert corrections[0]["replaces"] == {
        "label": "office",
        "source": "model",
        "model_version": "v1",
    }


def test_a_rolled_back_decision_leaves_no_outcome(api, world):
    use_case, caller, *_ = world

    class Abandon(Exception):
        pass

    with pytest.raises(Abandon), transaction.atomic():
        send_items(use_case, [1])
        raise Abandon
    assert read_all(api(caller), use_case.slug)[0] == []


def test_wait_returns_as_soon_as_an_outcome_commits(world, settings):
    use_case, *_ = world
    sleeps = []

    def sleep(seconds):
        # Another request decides an item while this one waits.
        sleeps.append(seconds)
        if len(sleeps) == 3:
            with transaction.atomic():
                event_record(
                    type=OUTCOME_DECIDED, use_case_id=use_case.pk, data={"external_id": "x"}
                )

    page = outcomes_wait(
        use_case=use_case, after=position_parse(""), limit=10, wait=30, sleep=sleep
    )
    assert [o["external_id"] for o in page.outcomes] == ["x"]
    if not settings.IS_POSTGRES:  # there, other transactions may hold the horizon a moment
        assert len(sleeps) == 3


def _backends_alive(pids: list[int]) -> int:
    """How many of these server processes (the wait's sessions) are still there, seen from a
    connection of its own. Other clients of the test database (another thread's session) are
    not the wait's and do not count. A server process ends a moment after its client closes:
    it is given up to 10 s to go, which a session the wait kept open never does."""
    if not pids:
        return 0
    observer = connections.create_connection(DEFAULT_DB_ALIAS)
    deadline = time.monotonic() + 10
    try:
        with observer.cursor() as cursor:
            while True:
                cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", [pids])
                alive = cursor.fetchone()[0]
                if not alive or time.monotonic() > deadline:
                    return alive
                time.sleep(0.05)
    finally:
        observer.close()


def test_wait_holds_no_database_connection_while_it_waits(world, settings, monkeypatch):
    use_case, *_ = world
    now = [0.0]
    during = []
    closes = []
    close = connection.close

    sessions = []  # the server process of each session the wait opened

    def close_observed():
        closes.append(now[0])
        if settings.IS_POSTGRES and connection.connection is not None:
            sessions.append(connection.connection.info.backend_pid)
        close()

    monkeypatch.setattr(connection, "close", close_observed)
    # Django never closes an in-memory SQLite database (that would destroy it): there the wait
    # can only be seen asking to close it, holding no transaction open.
    kept_open = connection.vendor == "sqlite" and connection.is_in_memory_db()

    def sleep(seconds):
        # Observed at every tick of the wait, with the feed's clock standing still meanwhile.
        raw = connection.connection
        held = raw is not None and not (kept_open and not raw.in_transaction)
        backends = _backends_alive(sessions) if settings.IS_POSTGRES else 0
        during.append((now[0], held, backends))
        now[0] += seconds

    with CaptureQueriesContext(connection) as queries:
        page = outcomes_wait(
            use_case=use_case,
            after=position_parse(""),
            limit=10,
            wait=5,
            sleep=sleep,
            clock=lambda: now[0],
        )
    assert page.outcomes == []
    assert len(during) >= 10
    assert [d for d in during if d[1] or d[2]] == []
    assert closes == [at for at, _, _ in during]  # given back before every tick
    # Read at the start and then every WAIT_REREAD_SECONDS (nothing moved the counter), not
    # at every tick.
    feed_reads = [q for q in queries.captured_queries if "core_event" in q["sql"]]
    assert len(feed_reads) == 1 + int(5 / WAIT_REREAD_SECONDS)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "1001"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"wait": "31"}, "wait"),
        ({"after": "garbage"}, "after"),
        ({"after": "p1.1"}, "after"),
        ({"after": "p1.-1.2"}, "after"),
    ],
)
def test_bad_parameters_are_400_naming_the_field(api, world, params, field):
    use_case, caller, *_ = world
    response = api(caller).get(f"/api/v1/use-cases/{use_case.slug}/outcomes/", params)
    assert response.status_code == 400
    assert field in response.json()


def test_a_non_member_cannot_read_the_feed(api, world):
    use_case, *_ = world
    outsider = make_user(Role.INTEGRATION)
    response = api(outsider).get(f"/api/v1/use-cases/{use_case.slug}/outcomes/")
    assert response.status_code == 404
