"""Claiming in each queue order: review-next server time with 8 concurrent reviewers, at two
queue sizes. Each order walks its own partial index, so its p99 should not grow with the queue
(target: p99 at the larger size / p99 at the smaller <= 1.2 for every order)."""

from django.db import connection

from benchmarks.bench_ingest import (
    _claim_round,
    _database_settled,
    _fill_queue,
    _use_case,
    _user,
)
from benchmarks.harness import FLOOR_ENV, fmt, gunicorn, pct, table
from deployments.models import UseCase
from reviewapp.core.roles import Role
from reviewapp.reviews.models import ReviewTask

ORDERS = [value for value, _ in UseCase.QueueOrder.choices]


def _spread(use_case) -> None:
    """Give the waiting tasks (and their items) random priorities, due times and
    uncertainties, with ties, as a real queue has."""
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE reviews_reviewtask SET priority = floor(random() * 5), "
            "due_at = created_at + floor(random() * 48) * interval '30 minutes', "
            "uncertainty = round((random())::numeric, 2) WHERE use_case_id = %s",
            [use_case.pk],
        )
        cursor.execute(
            "UPDATE reviews_item i SET priority = t.priority, due_at = t.due_at "
            "FROM reviews_reviewtask t WHERE t.item_id = i.id AND i.use_case_id = %s",
            [use_case.pk],
        )
        cursor.execute("ANALYZE reviews_reviewtask")


def main(small: bool) -> None:
    reviewers = [_user(Role.REVIEWER, f"rev{i}") for i in range(8)]
    # Each order takes 8 × (5 warm-up + per_reviewer) tasks: the small queue holds all four.
    sizes = (600, 2_400) if small else (10_000, 100_000)
    p99s: dict[tuple[str, int], float] = {}
    rows = []
    queues = {}
    for pending in sizes:
        use_case, _, _ = _use_case(level="human_only", members=[u for u, _ in reviewers])
        _fill_queue(use_case, pending)
        _spread(use_case)
        queues[pending] = use_case
    _database_settled()  # the fills and spreads vacuumed and checkpointed before any round
    # One server for both sizes; it also serves the floor the reviewers ask between claims.
    with gunicorn(workers=2, threads=4, env=FLOOR_ENV) as url:
        for pending, use_case in queues.items():
            for order in ORDERS:
                UseCase.objects.filter(pk=use_case.pk).update(queue_order=order)
                waiting = ReviewTask.objects.filter(use_case=use_case, state="open").count()
                timings, floor = _claim_round(
                    url=url,
                    slug=use_case.slug,
                    tokens=[t for _, t in reviewers],
                    per_reviewer=8 if small else 100,
                )
                p99s[order, pending] = pct(timings, 99)
                rows.append(
                    [
                        order,
                        f"{waiting:,}",
                        len(timings),
                        fmt(pct(timings, 50)),
                        fmt(p99s[order, pending]),
                        fmt(pct(floor, 99)),
                        f"{p99s[order, pending] / pct(floor, 99):.1f}x",
                    ]
                )
    table(
        "Claiming by queue order: review-next server time, 8 concurrent reviewers",
        ["order", "pending tasks", "claims", "p50 ms", "p99 ms", "floor p99 ms", "p99 / floor"],
        rows,
    )
    ratios = {o: p99s[o, sizes[-1]] / max(p99s[o, sizes[0]], 1e-9) for o in ORDERS}
    worst = max(ratios.values())
    print(
        f"p99 at {sizes[-1]:,} / p99 at {sizes[0]:,}: "
        + ", ".join(f"{o} {r:.2f}" for o, r in ratios.items())
        + f" (target <= 1.2: {'met' if worst <= 1.2 else 'NOT met'})"
    )
