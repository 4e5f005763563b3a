"""Driving traffic through the real services: items in, reviewers deciding them."""

from collections.abc import Callable, Iterable

from reviewapp.reviews.services.ingest import item_ingest
from reviewapp.reviews.services.review import review_task_claim, review_task_decide
from tests.factories import invoice


def send(use_case, numbers: Iterable[int], **features) -> None:
    for n in numbers:
        item_ingest(use_case=use_case, **invoice(n, **features))


def review_all(use_case, reviewer, answer: Callable, now=None) -> int:
    """``reviewer`` decides every task they can claim with ``answer(task)``; returns how many."""
    decided = 0
    while (task := review_task_claim(use_case=use_case, user=reviewer, now=now)) is not None:
        review_task_decide(task=task, user=reviewer, label=answer(task), now=now)
        decided += 1
    return decided


def overriding(every: int) -> Callable:
    """An answer that overrides a constant "office" model on every ``every``-th task."""
    seen = []

    def answer(task) -> str:
        seen.append(task.pk)
        return "travel" if len(seen) % every == 0 else "office"

    return answer


def truth(features: dict) -> str:
    """The rule behind tests.factories.training_frame: the right label of an invoice."""
    if features["amount"] > 150:
        return "travel"
    return "office" if features["kind"] == "a" else "other"
