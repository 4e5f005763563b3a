"""Eight reviewers at once on PostgreSQL, claiming, skipping and deciding items that each have
an assisted review and a blind double review: nobody ever answers a blind task of an item they
had skipped or answered before, whatever the interleaving."""

import random
import threading

import pytest
from django.db import connection
from django.utils import timezone

from reviewapp.core.roles import Role
from reviewapp.reviews.models import Decision, ReviewTask, TaskSkip
from reviewapp.reviews.services.ingest import items_store_pending
from reviewapp.reviews.services.review import (
    review_task_claim,
    review_task_decide,
    review_task_skip,
)
from reviewapp.reviews.services.scoring import items_score
from tests.factories import constant_classifier_bytes, make_use_case, make_user, register_model

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

REVIEWERS = 8
ITEMS = 120


def test_no_blind_answer_from_someone_who_saw_the_item_under_concurrency():
    reviewers = [make_user(Role.REVIEWER, f"ind{n}") for n in range(REVIEWERS)]
    use_case = make_use_case(members=reviewers, level="assisted", double_review_rate=1.0)
    register_model(use_case, constant_classifier_bytes("office", 0.7))
    rows = [(f"ind-{n}", {"amount": float(n)}, None) for n in range(ITEMS)]
    items_score(item_ids=items_store_pending(use_case=use_case, rows=rows, now=timezone.now()))
    assert ReviewTask.objects.filter(use_case=use_case, show_suggestion=False).count() == ITEMS

    errors: list[str] = []

    def work(user, seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(4 * ITEMS):
                task = review_task_claim(use_case=use_case, user=user)
                if task is None:
                    return
                if rng.random() < 0.3:
                    review_task_skip(task=task, user=user)
                else:
                    review_task_decide(task=task, user=user, label=rng.choice(["office", "travel"]))
        except Exception as error:
            errors.append(f"{user.username}: {error!r}")
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(u, n)) for n, u in enumerate(reviewers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert errors == []

    blind_answers = Decision.objects.filter(task__use_case=use_case, task__show_suggestion=False)
    assert blind_answers.count() > ITEMS // 2  # the run did real work
    saw = set(TaskSkip.objects.filter(task__use_case=use_case).values_list("user", "task__item"))
    answered = list(
        Decision.objects.filter(task__use_case=use_case).values_list("reviewer", "item", "task")
    )
    for decision in blind_answers.values("reviewer", "item", "task"):
        who, item = decision["reviewer"], decision["item"]
        assert (who, item) not in saw, "a blind answer from someone who had skipped the item"
        others = [d for d in answered if d[:2] == (who, item) and d[2] != decision["task"]]
        assert others == [], "one person answered two tasks of the same item"
