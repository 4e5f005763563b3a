"""A use case with every kind of disagreement, made through the real services."""

from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.utils import timezone

from deployments.services.model_versions import model_version_challenge
from deployments.services.policies import policy_change
from reviewapp.core.roles import Role
from reviewapp.reviews.models import Disagreement, Item
from reviewapp.reviews.services.ingest import item_ingest
from reviewapp.reviews.services.review import review_task_claim, review_task_decide
from tests.factories import (
    LABELS,
    classifier_bytes,
    constant_classifier_bytes,
    invoice,
    make_use_case,
    make_user,
    register_model,
)

PII_MARK = "Zanzibar Trading"


@dataclass
class World:
    use_case: object
    analyst: object  # an ML engineer without the PII right
    pii_analyst: object  # an ML engineer with it
    reviewer: object
    manager: object
    start: object


def _decide_all(use_case, reviewer, at, answer) -> object:
    while True:
        task = review_task_claim(use_case=use_case, user=reviewer, now=at)
        if task is None:
            return at
        n = int(task.item.external_id.split("-")[1])
        review_task_decide(
            task=task,
            user=reviewer,
            label=answer(n),
            comment=f"looked twice at #{n}" if n % 4 == 0 else "",
            now=at + timedelta(seconds=30),
        )
        at += timedelta(minutes=1)


def build_world(*, items_per_phase: int = 6) -> World:
    """Shadow, then assisted, then partial with every automated item audited; the champion
    always says "office" (0.8), a challenger v2 scores everything too. Humans answer
    LABELS[n % 3], so a third agree with the champion."""
    analyst = make_user(Role.ML_ENGINEER, "mia")
    pii_analyst = make_user(Role.ML_ENGINEER, "pia")
    reviewer = make_user(Role.REVIEWER, "rita")
    manager = make_user(Role.MANAGER, "max")
    use_case = make_use_case(
        members=[analyst, reviewer], pii_members=[pii_analyst], actor=manager, level="shadow"
    )
    register_model(use_case, constant_classifier_bytes("office", 0.8))
    register_model(use_case, classifier_bytes(), version="v2")
    model_version_challenge(use_case=use_case, version="v2", actor=analyst)
    start = timezone.now() - timedelta(days=10)
    at = start
    n = 0
    phases = [
        {"level": "shadow"},
        {"level": "assisted"},
        {"level": "partial", "confidence_threshold": 0.5, "audit_rate": 1.0},
    ]
    for changes in phases:
        policy_change(use_case=use_case, actor=manager, changes=changes, reason="phase")
        for _ in range(items_per_phase):
            features = invoice(n, vendor=f"{PII_MARK} {n:04d}", amount=40.0 + 37 * n)["features"]
            item_ingest(use_case=use_case, external_id=f"inv-{n}", features=features, now=at)
            # challengers score after commit in production; here, at once and in order
            from reviewapp.reviews.services.scoring import challenger_score

            challenger_score(
                model_version_id=use_case.model_versions.get(version="v2").pk,
                item_ids=[Item.objects.get(use_case=use_case, external_id=f"inv-{n}").pk],
                now=at,
            )
            n += 1
            at += timedelta(minutes=3)
        at = _decide_all(use_case, reviewer, at, lambda k: LABELS[k % 3])
        at += timedelta(days=1)
    return World(use_case, analyst, pii_analyst, reviewer, manager, start)


@pytest.fixture
def world(db) -> World:
    built = build_world()
    kinds = set(Disagreement.objects.filter(use_case=built.use_case).values_list("kind", flat=True))
    assert kinds == {"shadow", "override", "audit", "challenger"}, kinds
    return built
