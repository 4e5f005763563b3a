"""Sixteen reviewers at once over 500 pending items, through the HTTP API on PostgreSQL:
every task decided exactly once, none lost, none handed to two reviewers."""

import threading
from collections import Counter

import pytest
import requests
from django.db import connection
from django.db.models import Count
from django.utils import timezone
from rest_framework.authtoken.models import Token

from reviewapp.core.roles import Role
from reviewapp.reviews.models import Decision, Item, ReviewTask
from reviewapp.reviews.services.ingest import items_store_pending
from reviewapp.reviews.services.scoring import items_score
from tests.factories import make_use_case, make_user

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

REVIEWERS = 16
ITEMS = 500


def test_concurrent_reviewers_decide_every_task_exactly_once(live_server):
    reviewers = [make_user(Role.REVIEWER, f"r{n}") for n in range(REVIEWERS)]
    use_case = make_use_case(members=reviewers, level="human_only", double_review_rate=0.05)
    rows = [(f"c-{n}", {"amount": float(n)}, None) for n in range(ITEMS)]
    ids = items_store_pending(use_case=use_case, rows=rows, now=timezone.now())
    for start in range(0, len(ids), 500):
        items_score(item_ids=ids[start : start + 500])
    total_tasks = ReviewTask.objects.filter(use_case=use_case).count()
    assert total_tasks > ITEMS  # some double reviews

    claimed: list[str] = []
    acknowledged: list[str] = []
    errors: list[str] = []
    lock = threading.Lock()

    def reviewer_loop(user):
        try:
            review_until_empty(user)
        finally:
            connection.close()

    def review_until_empty(user):
        token = Token.objects.create(user=user).key
        session = requests.Session()
        session.headers["Authorization"] = f"Token {token}"
        base = live_server.url + "/api/v1"
        while True:
            response = session.post(f"{base}/use-cases/{use_case.slug}/review/next/")
            if response.status_code == 204:
                return
            if response.status_code != 200:
                errors.append(f"next {response.status_code} {response.text[:200]}")
                return
            task = response.json()
            decision = session.post(
                f"{base}/review/tasks/{task['task']}/decision/",
                json={"label": "office", "lease_token": task["lease_token"]},
            )
            with lock:
                claimed.append(task["task"])
                if decision.status_code == 201:
                    acknowledged.append(task["task"])
                else:
                    errors.append(f"decide {decision.status_code} {decision.text[:200]}")

    threads = [threading.Thread(target=reviewer_loop, args=(u,)) for u in reviewers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    assert errors == []
    # never handed to two reviewers: each task was claimed exactly once
    assert [t for t, n in Counter(claimed).items() if n > 1] == []
    assert len(claimed) == total_tasks
    # every acknowledged decision is stored, exactly one per task, and the queue is drained
    decided = set(Decision.objects.filter(use_case=use_case).values_list("task_id", flat=True))
    assert {int(t) for t in acknowledged} == decided
    assert len(decided) == total_tasks
    assert not ReviewTask.objects.filter(use_case=use_case, state="open").exists()
    assert Item.objects.filter(use_case=use_case).exclude(status="decided").count() == 0
    # double reviews were done by two different people
    same_person = (
        Decision.objects.filter(use_case=use_case)
        .values("item", "reviewer")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
    )
    assert not same_person.exists()
