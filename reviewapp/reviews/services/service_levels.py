"""Service levels: noting the review tasks still open past their item's due time.

A periodic check (the beat, or the web process in embedded mode) calls
``queue_breaches_note``. Each open task is noted at most once (``past_due_noted_at``), and each
use case with newly noted tasks gets one ``queue.sla_breached`` event, written in the same
transaction as the marks: a rolled-back check leaves neither.
"""

from datetime import datetime

from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from deployments.models import UseCase
from reviewapp.core.events import event_record
from reviewapp.reviews.models import ReviewTask
from reviewapp.reviews.selectors import utc_text

QUEUE_SLA_BREACHED = "queue.sla_breached"
# External ids listed in one event; the rest are counted in ``more``.
EXTERNAL_IDS_SHOWN = 100


def queue_breaches_note(*, now: datetime | None = None) -> dict[str, int]:
    """Note the open tasks past due at ``now`` not noted before; one event per use case that
    had any. Returns {use case slug: items newly past due}. Safe to run concurrently: each
    use case's tasks are taken under ``FOR UPDATE SKIP LOCKED`` and marked only while still
    unmarked, so two checks never note a task twice (on SQLite writers are serialised)."""
    now = now or timezone.now()
    noted = {}
    for use_case_id, slug in UseCase.objects.order_by("pk").values_list("pk", "slug"):
        count = _use_case_breaches_note(use_case_id=use_case_id, slug=slug, now=now)
        if count:
            noted[slug] = count
    return noted


def _use_case_breaches_note(*, use_case_id: int, slug: str, now: datetime) -> int:
    # One range of the (use_case, due_at) partial index of open tasks.
    past_due = ReviewTask.objects.filter(
        use_case_id=use_case_id, state=ReviewTask.State.OPEN, due_at__lt=now
    )
    with transaction.atomic():
        taken = list(
            past_due.filter(past_due_noted_at__isnull=True)
            .select_for_update(skip_locked=True, of=("self",))
            .order_by("due_at", "id")
            .values_list("pk", "item_id", "item__external_id", "due_at")
        )
        if not taken:
            return 0
        marked = ReviewTask.objects.filter(
            pk__in=[pk for pk, *_ in taken], past_due_noted_at__isnull=True
        ).update(past_due_noted_at=now)
        if not marked:
            return 0
        # One entry per item: an item may have more than one open task (a double review).
        items: dict[int, tuple[str, datetime]] = {}
        for _, item_id, external_id, due_at in taken:
            items.setdefault(item_id, (external_id, due_at))
        external_ids = [external_id for external_id, _ in items.values()]
        total = past_due.aggregate(n=Count("item_id", distinct=True))
        event_record(
            type=QUEUE_SLA_BREACHED,
            use_case_id=use_case_id,
            data={
                "use_case": slug,
                "checked_at": utc_text(now),
                "items": len(external_ids),
                "external_ids": external_ids[:EXTERNAL_IDS_SHOWN],
                "more": max(len(external_ids) - EXTERNAL_IDS_SHOWN, 0),
                "oldest_due_at": utc_text(min(due for _, due in items.values())),
                "past_due_total": total["n"],
            },
        )
        return len(external_ids)
