"""Seed a demo: users for every role, three use cases on real data, trained models, and a few
weeks of replayed history through the real services (routing, reviews, disagreements)."""

import secrets
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import skops.io as sio
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone
from rest_framework.authtoken.models import Token

from deployments.models import ModelVersion, ModelVersionEvent, UseCase, UseCaseMembership
from deployments.selectors import challengers_list, champion_get
from deployments.services.model_versions import (
    model_version_challenge,
    model_version_promote,
    model_version_register,
)
from deployments.services.policies import policy_change
from deployments.services.use_cases import use_case_create, use_case_update
from reviewapp.control.backtests import backtest_start
from reviewapp.control.guardrail_watch import use_case_watch
from reviewapp.core.append_only import history_rewrite
from reviewapp.core.roles import Role, role_groups_ensure
from reviewapp.demo import datasets
from reviewapp.monitoring.services import rollups_deferred, rollups_fold
from reviewapp.reviews.models import ReviewTask
from reviewapp.reviews.services.ingest import items_store_pending
from reviewapp.reviews.services.review import review_task_claim, review_task_decide
from reviewapp.reviews.services.scoring import challenger_score, items_score

USERS = [
    ("admin", Role.ADMIN),
    ("manager", Role.MANAGER),
    ("mlengineer", Role.ML_ENGINEER),
    ("reviewer1", Role.REVIEWER),
    ("reviewer2", Role.REVIEWER),
    ("reviewer3", Role.REVIEWER),
    ("upstream", Role.INTEGRATION),
]


@dataclass
class Timeline:
    """Per use case: (day, policy changes) steps, and when a challenger arrives / is promoted."""

    steps: list[tuple[int, dict, str]]
    challenger_day: int | None = None
    promote_day: int | None = None


TIMELINES = {
    "digits": Timeline(
        steps=[
            (0, {"level": "shadow"}, "benchmark the model against the clerks before it helps"),
            (5, {"level": "assisted"}, "shadow agreement above 90%: show suggestions"),
            (
                10,
                {
                    "level": "partial",
                    "confidence_threshold": 0.95,
                    "traffic_percent": 25,
                    "audit_rate": 0.05,
                },
                "automate confident items on a quarter of traffic",
            ),
            (14, {"traffic_percent": 50}, "ramp: no guardrail breach for four days"),
            (
                17,
                {"traffic_percent": 100, "double_review_rate": 0.05},
                "ramp to all traffic; double review 5% for a human baseline",
            ),
        ],
        challenger_day=8,
        promote_day=15,
    ),
    "breast-cancer": Timeline(
        steps=[
            (
                0,
                {"level": "assisted", "double_review_rate": 0.1},
                "clinicians see the model's suggestion; 10% double-read",
            ),
        ],
    ),
    "diabetes-progression": Timeline(
        steps=[(0, {"level": "shadow"}, "new model: measure it silently first")],
    ),
}
HUMAN_ERROR = {"classification": 0.04, "regression": 12.0}


def users_seed(*, password: str | None = None) -> dict[str, str]:
    """Create (or reset) the demo users; return their passwords."""
    groups = role_groups_ensure()
    User = get_user_model()
    passwords = {}
    for username, role in USERS:
        user, _ = User.objects.get_or_create(username=username)
        user.is_staff = role is Role.ADMIN
        user.is_superuser = role is Role.ADMIN
        secret = password or secrets.token_urlsafe(9)
        user.set_password(secret)
        user.save()
        user.groups.set([groups[role]])
        passwords[username] = secret
    return passwords


def _answer(*, use_case, truth, rng) -> tuple[str | None, float | None]:
    """What a careful but human reviewer answers: right most of the time."""
    if use_case.is_classification:
        label = str(truth)
        if rng.random() < HUMAN_ERROR["classification"]:
            label = str(rng.choice([x for x in use_case.labels if x != label]))
        return label, None
    noisy = truth + rng.normal(0, HUMAN_ERROR["regression"])
    return None, float(np.clip(noisy, use_case.value_min, use_case.value_max))


def _review(*, use_case, reviewers, rng, truth: dict, now, limit: int | None = None) -> int:
    """Reviewers take turns claiming and deciding until the queue is empty (or ``limit``)."""
    decided = 0
    while limit is None or decided < limit:
        progressed = False
        for reviewer in reviewers:
            task = review_task_claim(use_case=use_case, user=reviewer, now=now)
            if task is None:
                continue
            label, value = _answer(use_case=use_case, truth=truth[task.item.external_id], rng=rng)
            suggestion = task.item.prediction
            comment = ""
            if task.show_suggestion and suggestion and label and suggestion.label != label:
                comment = "the suggestion does not match what I see"
            review_task_decide(
                task=task,
                user=reviewer,
                label=label,
                value=value,
                comment=comment,
                time_spent_ms=int(rng.gamma(4, 1500)),
                now=now + timedelta(seconds=40),
            )
            decided += 1
            progressed = True
            now += timedelta(seconds=45)
        if not progressed:
            break
    return decided


def use_case_seed(
    dataset: datasets.DemoDataset,
    *,
    actor,
    members,
    days: int,
    per_day: int,
    seed: int,
    start,
    log=print,
) -> UseCase:
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(dataset.frame))
    train, live = order[: int(0.6 * len(order))], order[int(0.6 * len(order)) :]
    with transaction.atomic():
        use_case = use_case_create(
            actor=actor,
            slug=dataset.slug,
            name=dataset.name,
            description=dataset.description,
            task_type=dataset.task_type,
            features=dataset.features,
            labels=dataset.labels or None,
            tolerance=dataset.tolerance,
            value_min=dataset.value_min,
            value_max=dataset.value_max,
            item_view=dataset.item_view,
            now=start,
        )
        for user, role in members:
            UseCaseMembership.objects.get_or_create(
                use_case=use_case,
                user=user,
                defaults={"can_view_pii": role in (Role.MANAGER, Role.ADMIN)},
            )
        reference = dataset.frame.iloc[train]
        v1 = dataset_model_bytes(dataset, train[: len(train) // 2], strength=0.05, seed=seed)
        model_version_register(
            use_case=use_case,
            version="v1",
            data=v1,
            actor=actor,
            reference=reference,
            notes="first model: half the training data, strong regularisation",
        )
        _model_history_backdate(use_case=use_case, at=start)
    timeline = TIMELINES[dataset.slug]
    truth = {}
    reviewers = [user for user, role in members if role is Role.REVIEWER]
    now = timezone.now()
    for day in range(days):
        day_start = start + timedelta(days=day)
        for step_day, changes, reason in timeline.steps:
            if step_day == day:
                policy_change(
                    use_case=use_case,
                    actor=actor,
                    changes=changes,
                    reason=reason,
                    now=min(day_start + timedelta(hours=7), now),
                )
        if timeline.challenger_day == day:
            v2 = dataset_model_bytes(dataset, train, strength=1.0, seed=seed + 1)
            model_version_register(
                use_case=use_case,
                version="v2",
                data=v2,
                actor=actor,
                reference=reference,
                notes="all training data",
            )
            model_version_challenge(
                use_case=use_case,
                version="v2",
                actor=actor,
                reason="retrained on the full training set",
            )
            _model_history_backdate(use_case=use_case, at=min(day_start + timedelta(hours=7), now))
        if timeline.promote_day == day:
            model_version_promote(
                use_case=use_case,
                version="v2",
                actor=actor,
                reason="v2 beats v1 on a week of shadow scoring",
            )
            _model_history_backdate(use_case=use_case, at=min(day_start + timedelta(hours=7), now))
        count = int(per_day * rng.uniform(0.7, 1.3))
        picks = rng.choice(live, size=count)
        rows = []
        for n, index in enumerate(picks):
            external_id = f"{dataset.slug[:3]}-{day:02d}-{n:05d}"
            features = {k: _plain(v) for k, v in dataset.frame.iloc[index].items()}
            rows.append((external_id, features, None))
            truth[external_id] = dataset.target.iloc[index]
        step = max(1, len(rows) // 8)
        for hour_block in range(0, len(rows), step):
            block = rows[hour_block : hour_block + step]
            if day == days - 1:  # today: spread over the hours gone by, the last block just now
                at = now - (now - day_start) * (1 - (hour_block + step) / (len(rows) + step))
            else:
                at = day_start + timedelta(
                    hours=8 + hour_block * 9 // max(len(rows), 1),
                    minutes=int(rng.integers(0, 59)),
                )
            with transaction.atomic():
                ids = items_store_pending(use_case=use_case, rows=block, now=at)
            items_score(item_ids=ids, now=at + timedelta(milliseconds=30))
            _challenger_catch_up(use_case=use_case, item_ids=ids, now=at)
            last_day = day == days - 1
            _review(
                use_case=use_case,
                reviewers=reviewers,
                rng=rng,
                truth=truth,
                now=min(at + timedelta(minutes=5), timezone.now()),
                limit=len(block) // 3 if last_day else None,
            )
        if (day + 1) % 7 == 0 or day == days - 1:  # a line a week: progress, not a log
            log(f"  {dataset.slug}: day {day + 1}/{days}")
    return use_case


def _model_history_backdate(*, use_case, at) -> None:
    """Registrations and role changes are stamped with the wall clock; in a replayed history
    they belong to the replayed day (guardrails judge a champion from when it took over)."""
    ModelVersion.objects.filter(use_case=use_case, created_at__gt=at).update(created_at=at)
    with history_rewrite():
        ModelVersionEvent.objects.filter(use_case=use_case, created_at__gt=at).update(created_at=at)


def _challenger_catch_up(*, use_case, item_ids, now) -> None:
    for challenger in challengers_list(use_case=use_case):
        challenger_score(model_version_id=challenger.pk, item_ids=item_ids, now=now)


def dataset_model_bytes(dataset, rows, *, strength: float, seed: int) -> bytes:
    return sio.dumps(datasets.fit(dataset, rows, strength=strength, seed=seed))


def demo_seed(
    *, days: int = 21, per_day: int = 160, password: str | None = None, log=print
) -> dict[str, str]:
    """Seed everything; return the users' passwords. Refuses to seed twice."""
    passwords = users_seed(password=password)
    User = get_user_model()
    users = {username: User.objects.get(username=username) for username, _ in USERS}
    members = [(users[name], role) for name, role in USERS if role is not Role.ADMIN]
    Token.objects.get_or_create(user=users["upstream"])
    if UseCase.objects.filter(slug__in=[d().slug for d in datasets.ALL]).exists():
        log("Demo use cases already exist: users reset, data kept.")
        return passwords
    # The last replayed day is today, up to now: "today" figures and the queues have data.
    start = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(
        days=days - 1
    )
    sizes = {"digits": per_day, "breast-cancer": per_day // 2, "diabetes-progression": per_day // 2}
    # The history is replayed fast; its monitoring rollups are folded once at the end.
    with rollups_deferred():
        for seed, make in enumerate(datasets.ALL):
            dataset = make()
            log(f"Seeding {dataset.name} ...")
            use_case_seed(
                dataset,
                actor=users["manager"],
                members=members,
                days=days,
                per_day=sizes[dataset.slug],
                seed=seed,
                start=start,
                log=log,
            )
        control_room_seed(actor=users["manager"], log=log)
    log(f"Folded {rollups_fold():,} facts into the monitoring rollups.")
    waiting = ReviewTask.objects.filter(state=ReviewTask.State.OPEN).count()
    log(f"{waiting} review tasks are waiting in the queues.")
    return passwords


DEMO_GUARDRAILS = {
    "fallback_level": "assisted",
    "override_rate": {"max": 0.25, "window": 200},
    "null_output_rate": {"max": 0.05, "window": 500},
    "drift_psi": {"max": 0.25, "window": 1000},
    "audit_error_rate": {"max": 0.15, "window": 100},
}


# What a mistake and an hour of review cost in each demo use case (euros), and its team.
DEMO_COSTS = {
    "breast-cancer": {
        "error_cost": 400.0,
        "error_costs": [{"true": "malignant", "predicted": "benign", "cost": 5000.0}],
        "review_minutes": 4.0,
        "hourly_cost": 90.0,
        "capacity_reviewers": 1,
        "capacity_hours_per_day": 2.0,
    },
    "digits": {
        "error_cost": 2.0,
        "review_minutes": 0.2,
        "hourly_cost": 30.0,
        "capacity_reviewers": 2,
        "capacity_hours_per_day": 1.0,
    },
    "diabetes-progression": {"error_cost": 0.5, "review_minutes": 3.0, "hourly_cost": 60.0},
}


def control_room_seed(*, actor, log=print) -> None:
    """Guardrails on every demo use case, and a backtest of each champion over the seeded
    history, so the policy editor's what-if and the trade-off curve have data at once."""
    for use_case in UseCase.objects.filter(slug__in=TIMELINES).order_by("slug"):
        policy_change(
            use_case=use_case,
            actor=actor,
            changes={"guardrails": DEMO_GUARDRAILS},
            reason="protect the automation: step down to assisted if the model goes bad",
        )
        # Costs, so the policy page prices each threshold and recommends one at once.
        use_case_update(use_case=use_case, changes=DEMO_COSTS.get(use_case.slug, {}))
        champion = champion_get(use_case=use_case)
        if champion is not None:
            backtest_start(use_case=use_case, actor=actor, model_version=champion.version)
        use_case_watch(use_case_id=use_case.pk)
        log(f"  {use_case.slug}: guardrails set, champion {champion.version} backtested")


def _plain(value):
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value
