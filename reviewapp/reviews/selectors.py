"""Reading items, queues and disagreements."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import Count, F, Min, OuterRef, Q, Subquery
from django.utils import timezone

from deployments.models import AutomationPolicy, UseCase
from deployments.selectors import use_cases_visible_to
from deployments.statistics.evidence import wilson
from reviewapp.core.errors import NotFound
from reviewapp.reviews.models import (
    Decision,
    Disagreement,
    Escalation,
    GoldCheck,
    Item,
    Prediction,
    ReviewTask,
)
from reviewapp.reviews.services.disagreements import answers_differ


def item_get(*, use_case: UseCase, external_id: str) -> Item:
    item = (
        Item.objects.filter(use_case=use_case, external_id=external_id)
        .select_related("prediction__model_version")
        .first()
    )
    if item is None:
        raise NotFound({"external_id": [f"No item {external_id!r} in {use_case.slug}."]})
    return item


def prediction_public(prediction: Prediction | None, *, use_case: UseCase) -> dict | None:
    """The prediction as callers and reviewers see it; None for a null output."""
    if prediction is None or prediction.error:
        return None
    body: dict[str, Any] = {
        "confidence": prediction.confidence,
        "model_version": prediction.model_version.version,
    }
    if use_case.is_classification:
        body["label"] = prediction.label
    else:
        body["value"] = prediction.value
    return body


def utc_text(moment) -> str | None:
    """A moment as the API writes them: ISO 8601 in UTC with a Z."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def item_public(item: Item, *, use_case: UseCase) -> dict[str, Any]:
    decision = None
    if item.decision_source:
        decision = {"source": item.decision_source}
        if use_case.is_classification:
            decision["label"] = item.decision_label
        else:
            decision["value"] = item.decision_value
    return {
        "external_id": item.external_id,
        "status": item.status,
        "route": item.route or None,
        "decision": decision,
        "prediction": prediction_public(item.prediction, use_case=use_case),
        "priority": item.priority,
        "due_at": utc_text(item.due_at),
    }


def queue_stats(*, use_case: UseCase, now=None) -> dict[str, Any]:
    now = now or timezone.now()
    row = ReviewTask.objects.filter(use_case=use_case, state=ReviewTask.State.OPEN).aggregate(
        waiting=Count("id"),
        claimed=Count("id", filter=Q(lease_expires_at__gt=now)),
        oldest=Min("created_at"),
    )
    oldest = row["oldest"]
    return {
        "waiting": row["waiting"],
        "in_progress": row["claimed"],
        "oldest_waiting_seconds": (now - oldest).total_seconds() if oldest else None,
    }


def review_queues_overview(*, user, now=None) -> list[dict[str, Any]]:
    """The use cases ``user`` works on with their current level and queue: waiting, in
    progress, escalated, the oldest waiting age, and what the user decided today. Four
    queries whatever the number of use cases."""
    now = now or timezone.now()
    latest_level = (
        AutomationPolicy.objects.filter(use_case=OuterRef("pk"))
        .order_by("-version")
        .values("level")[:1]
    )
    use_cases = list(
        use_cases_visible_to(user).annotate(level=Subquery(latest_level)).order_by("name")
    )
    ids = [uc.pk for uc in use_cases]
    open_state, escalated = ReviewTask.State.OPEN, ReviewTask.State.ESCALATED
    queues = {
        row["use_case"]: row
        for row in ReviewTask.objects.filter(use_case__in=ids, state__in=[open_state, escalated])
        .values("use_case")
        .annotate(
            waiting=Count("id", filter=Q(state=open_state)),
            in_progress=Count("id", filter=Q(state=open_state, lease_expires_at__gt=now)),
            escalated=Count("id", filter=Q(state=escalated)),
            oldest=Min("created_at", filter=Q(state=open_state)),
        )
    }
    day_start = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
    mine_today = dict(
        Decision.objects.filter(reviewer=user, created_at__gte=day_start, use_case__in=ids)
        .values("use_case")
        .annotate(n=Count("id"))
        .values_list("use_case", "n")
    )
    rows = []
    for use_case in use_cases:
        queue = queues.get(use_case.pk, {})
        oldest = queue.get("oldest")
        rows.append(
            {
                "use_case": use_case,
                "level": use_case.level,
                "waiting": queue.get("waiting", 0),
                "in_progress": queue.get("in_progress", 0),
                "escalated": queue.get("escalated", 0),
                "oldest_waiting_seconds": (now - oldest).total_seconds() if oldest else None,
                "mine_today": mine_today.get(use_case.pk, 0),
            }
        )
    return rows


def escalation_note_for(*, task: ReviewTask) -> dict[str, Any] | None:
    """The latest manager's note on a task that came back to the queue from an escalation."""
    if getattr(task, "was_returned", True) is False:
        return None  # the claim read that no escalation of it was returned
    row = (
        Escalation.objects.filter(task=task, outcome=Escalation.Outcome.RETURNED)
        .order_by("-resolved_at")
        .values("resolution_note", "resolved_by__username", "comment")
        .first()
    )
    if row is None:
        return None
    return {
        "text": row["resolution_note"],
        "by": row["resolved_by__username"],
        "question": row["comment"],
    }


def escalations_list(*, use_cases, resolved: bool, limit: int = 200) -> list[Escalation]:
    rows = Escalation.objects.filter(
        use_case__in=use_cases, resolved_at__isnull=not resolved
    ).select_related("task__item__prediction", "use_case", "raised_by", "resolved_by")
    order = ("-resolved_at", "-id") if resolved else ("created_at", "id")
    return list(rows.order_by(*order)[:limit])


def escalation_get_for(*, escalation_id: Any, use_cases) -> Escalation:
    """The escalation if it belongs to one of ``use_cases`` (else NotFound)."""
    try:
        escalation_id = int(escalation_id)
    except (TypeError, ValueError):
        raise NotFound({"detail": "No such escalation."}) from None
    escalation = (
        Escalation.objects.filter(pk=escalation_id, use_case__in=use_cases)
        .select_related("task", "item", "use_case")
        .first()
    )
    if escalation is None:
        raise NotFound({"detail": "No such escalation."})
    return escalation


def escalations_raised_by(*, user, limit: int = 10) -> list[Escalation]:
    return list(
        Escalation.objects.filter(raised_by=user)
        .select_related("item", "use_case", "resolved_by")
        .order_by("-created_at", "-id")[:limit]
    )


def _rate_of(agreed: int, n: int) -> dict[str, Any]:
    return {"n": n, "agreed": agreed, "rate": agreed / n if n else None}


AGREEMENT_DAYS = 30


def _model_agreement(decisions, disagreements, by: str) -> tuple[dict, dict, dict]:
    """Per ``by`` (a use case, a reviewer) among ``decisions``: the assisted decisions and how
    many kept the suggestion ({"n", "agreed"}), the blind decisions on items the model scored,
    and how many of those differed from the model's routing prediction (from
    ``disagreements``, the same window's)."""
    Kind = Decision.Kind
    assisted = {
        row[by]: row
        for row in decisions.filter(kind__in=[Kind.ACCEPTED, Kind.OVERRIDDEN])
        .values(by)
        .annotate(n=Count("id"), agreed=Count("id", filter=Q(kind=Kind.ACCEPTED)))
    }
    blind_n = dict(
        decisions.filter(
            kind=Kind.BLIND, item__prediction__isnull=False, item__prediction__error=""
        )
        .values(by)
        .annotate(n=Count("id"))
        .values_list(by, "n")
    )
    blind_differ = dict(
        disagreements.filter(decision__kind=Kind.BLIND, prediction_id=F("item__prediction_id"))
        .values(by)
        .annotate(n=Count("decision_id", distinct=True))
        .values_list(by, "n")
    )
    return assisted, blind_n, blind_differ


def reviewer_work_summary(*, user, now=None) -> dict[str, Any]:
    """A reviewer's own figures: decisions today and this week (per use case and per day),
    median time per item this week, and over the last 30 days their agreement with the model
    (accepted suggestions; blind answers that matched the silent model) and, where the same
    item was double-reviewed, with the other reviewers."""
    now = now or timezone.now()
    day_start = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
    week_start = day_start - timedelta(days=day_start.weekday())
    days_start = day_start - timedelta(days=6)
    since = now - timedelta(days=AGREEMENT_DAYS)
    decisions = Decision.objects.filter(reviewer=user)

    recent = list(
        decisions.filter(created_at__gte=min(week_start, days_start)).values_list(
            "use_case_id", "created_at", "time_spent_ms"
        )
    )
    window = decisions.filter(created_at__gte=since)
    assisted, blind_n, blind_differ = _model_agreement(
        window, Disagreement.objects.filter(reviewer=user, decided_at__gte=since), "use_case_id"
    )
    others = list(
        Decision.objects.filter(item_id__in=window.values("item_id"))
        .exclude(reviewer=user)
        .values_list("item_id", "label", "value")
    )
    mine = {
        item_id: (use_case_id, label, value)
        for item_id, use_case_id, label, value in window.filter(
            item_id__in={item_id for item_id, _, _ in others}
        ).values_list("item_id", "use_case_id", "label", "value")
    }

    gold = {uc: tally for (uc, _), tally in gold_scores(since=since, reviewer=user).items()}
    use_case_ids = (
        {row[0] for row in recent}
        | set(assisted)
        | set(blind_n)
        | {v[0] for v in mine.values()}
        | set(gold)
    )
    use_cases = UseCase.objects.in_bulk(use_case_ids)
    peers: dict[int, list[int]] = {}
    for item_id, label, value in others:
        if item_id not in mine:
            continue
        use_case_id, my_label, my_value = mine[item_id]
        differs = answers_differ(
            use_case=use_cases[use_case_id],
            model_label=label,
            model_value=value,
            human_label=my_label,
            human_value=my_value,
        )
        tally = peers.setdefault(use_case_id, [0, 0])
        tally[0] += 0 if differs else 1
        tally[1] += 1

    def figures(ids) -> dict[str, Any]:
        rows = [r for r in recent if r[0] in ids]
        week_times = sorted(t for uc, at, t in rows if at >= week_start and t is not None)
        a_agreed = sum(assisted[i]["agreed"] for i in ids if i in assisted)
        a_n = sum(assisted[i]["n"] for i in ids if i in assisted)
        b_n = sum(blind_n.get(i, 0) for i in ids)
        b_agreed = b_n - sum(blind_differ.get(i, 0) for i in ids)
        p_agreed = sum(peers[i][0] for i in ids if i in peers)
        p_n = sum(peers[i][1] for i in ids if i in peers)
        g_agreed = sum(gold[i]["agreed"] for i in ids if i in gold)
        g_n = sum(gold[i]["n"] for i in ids if i in gold)
        return {
            "gold": _rate_of(g_agreed, g_n),
            "rubber_stamp": accepts_more_than_blind(
                assisted=_rate_of(a_agreed, a_n), blind=_rate_of(b_agreed, b_n)
            ),
            "today": sum(1 for _, at, _ in rows if at >= day_start),
            "week": sum(1 for _, at, _ in rows if at >= week_start),
            "median_seconds": week_times[len(week_times) // 2] / 1000 if week_times else None,
            "model": _rate_of(a_agreed + b_agreed, a_n + b_n),
            "assisted": _rate_of(a_agreed, a_n),
            "blind": _rate_of(b_agreed, b_n),
            "peers": _rate_of(p_agreed, p_n),
        }

    per_day = []
    for offset in range(6, -1, -1):
        start = day_start - timedelta(days=offset)
        end = start + timedelta(days=1)
        per_day.append({"date": start, "count": sum(1 for r in recent if start <= r[1] < end)})
    busiest = max([d["count"] for d in per_day] + [1])
    for day in per_day:
        day["share"] = day["count"] / busiest
    by_use_case = [
        {"use_case": uc, **figures({uc.pk})}
        for uc in sorted(use_cases.values(), key=lambda uc: uc.name)
    ]
    return {
        "totals": figures(use_case_ids),
        "by_use_case": by_use_case,
        "accepts_more": [row["use_case"] for row in by_use_case if row["rubber_stamp"]],
        "days": per_day,
        "day_start": day_start,
        "week_start": week_start,
        "agreement_days": AGREEMENT_DAYS,
    }


# A reviewer is flagged when, on at least this many decisions each, the share of suggestions
# they accept is above what their blind answers' agreement with the model explains: the Wilson
# intervals do not overlap. At `partial` the blind answers are audits of the model's confident
# items, where agreement runs higher than on the uncertain items people review with the
# suggestion, so the comparison leans against a flag rather than towards one.
RUBBER_STAMP_MIN = 20


def accepts_more_than_blind(*, assisted: dict[str, Any], blind: dict[str, Any]) -> bool:
    """Possible rubber-stamping: enough decisions of each kind, and the suggestions accepted
    beyond what the blind answers' agreement with the model explains (intervals apart)."""
    return (
        assisted["n"] >= RUBBER_STAMP_MIN
        and blind["n"] >= RUBBER_STAMP_MIN
        and wilson(assisted["agreed"], assisted["n"]).low > wilson(blind["agreed"], blind["n"]).high
    )


def reviewers_quality(*, use_case: UseCase, now=None) -> dict[str, Any]:
    """Each reviewer's figures in ``use_case`` over the last ``AGREEMENT_DAYS`` days: decisions,
    median time per item, suggestions accepted when shown, blind answers that matched the
    silent model, agreement with other reviewers on double-reviewed items, and whether the
    first is higher than the second explains (possible rubber-stamping)."""
    now = now or timezone.now()
    since = now - timedelta(days=AGREEMENT_DAYS)
    window = Decision.objects.filter(use_case=use_case, created_at__gte=since)
    times: dict[int, list[int]] = {}
    for reviewer_id, spent in window.values_list("reviewer_id", "time_spent_ms"):
        times.setdefault(reviewer_id, []).append(spent)
    assisted, blind_n, blind_differ = _model_agreement(
        window,
        Disagreement.objects.filter(use_case=use_case, decided_at__gte=since),
        "reviewer_id",
    )
    shared = (window.values("item_id").annotate(people=Count("reviewer_id", distinct=True))).filter(
        people__gt=1
    )
    answers: dict[int, list[tuple]] = {}
    for item_id, reviewer_id, label, value in window.filter(
        item_id__in=shared.values("item_id")
    ).values_list("item_id", "reviewer_id", "label", "value"):
        answers.setdefault(item_id, []).append((reviewer_id, label, value))
    peers: dict[int, list[int]] = {}
    for given in answers.values():
        for reviewer_id, label, value in given:
            for other_id, other_label, other_value in given:
                if other_id == reviewer_id:
                    continue
                tally = peers.setdefault(reviewer_id, [0, 0])
                tally[0] += not answers_differ(
                    use_case=use_case,
                    model_label=other_label,
                    model_value=other_value,
                    human_label=label,
                    human_value=value,
                )
                tally[1] += 1
    gold = {who: tally for (_, who), tally in gold_scores(since=since, use_case=use_case).items()}
    people = {
        user.pk: user
        for user in get_user_model()
        .objects.filter(pk__in=set(times) | set(gold))
        .order_by("username")
    }
    rows = []
    for reviewer_id, user in people.items():
        spent = sorted(t for t in times.get(reviewer_id, []) if t is not None)
        a = assisted.get(reviewer_id, {"n": 0, "agreed": 0})
        b_n = blind_n.get(reviewer_id, 0)
        b_agreed = b_n - blind_differ.get(reviewer_id, 0)
        p_agreed, p_n = peers.get(reviewer_id, [0, 0])
        flagged = accepts_more_than_blind(
            assisted=_rate_of(a["agreed"], a["n"]), blind=_rate_of(b_agreed, b_n)
        )
        rows.append(
            {
                "reviewer": user,
                "decisions": len(times.get(reviewer_id, [])),
                "median_seconds": spent[len(spent) // 2] / 1000 if spent else None,
                "assisted": _rate_of(a["agreed"], a["n"]),
                "blind": _rate_of(b_agreed, b_n),
                "peers": _rate_of(p_agreed, p_n),
                "gold": _rate_of(**gold.get(reviewer_id, {"agreed": 0, "n": 0})),
                "rubber_stamp": flagged,
            }
        )
    return {
        "rows": rows,
        "since": since,
        "days": AGREEMENT_DAYS,
        "min_n": RUBBER_STAMP_MIN,
        "flagged": [row["reviewer"] for row in rows if row["rubber_stamp"]],
    }


def gold_scores(*, since, use_case: UseCase | None = None, reviewer=None) -> dict:
    """Gold items answered since ``since`` and how many were right, per (use case, reviewer)."""
    checks = GoldCheck.objects.filter(answered_at__gte=since)
    if use_case is not None:
        checks = checks.filter(use_case=use_case)
    if reviewer is not None:
        checks = checks.filter(reviewer=reviewer)
    rows = (
        checks.values("use_case_id", "reviewer_id")
        .annotate(n=Count("id"), agreed=Count("id", filter=Q(correct=True)))
        .values_list("use_case_id", "reviewer_id", "n", "agreed")
    )
    return {(uc, who): {"n": n, "agreed": agreed} for uc, who, n, agreed in rows}


# --- service levels: the queue against its due times ------------------------------------------

# Throughput is measured over this window: a day holds every shift of a working day, so the
# forecast does not swing with the hour it is read at.
THROUGHPUT_WINDOW = timedelta(hours=24)
THROUGHPUT_WINDOW_TEXT = "decisions per hour over the last 24 hours"


@dataclass(frozen=True, slots=True)
class QueueHealth:
    """One use case's queue measured against its due times at ``now``."""

    waiting: int  # open tasks
    oldest_waiting_seconds: float | None
    past_due_items: int  # items with an open task whose due_at has passed
    oldest_due_at: datetime | None  # the earliest due time among the open tasks
    decisions_per_hour: float  # over THROUGHPUT_WINDOW
    clear_seconds: float | None  # None: tasks wait and no throughput was measured

    @property
    def no_throughput(self) -> bool:
        return self.waiting > 0 and self.clear_seconds is None


def queue_health_for(*, use_case_ids: Sequence[int], now: datetime) -> dict[int, QueueHealth]:
    """Queue health of each use case: two queries whatever their number. Open tasks are read
    through the queue's partial indexes (their size is the waiting work, not the history)."""
    ids = list(use_case_ids)
    open_rows = {
        row["use_case_id"]: row
        for row in ReviewTask.objects.filter(use_case_id__in=ids, state=ReviewTask.State.OPEN)
        .values("use_case_id")
        .annotate(
            waiting=Count("id"),
            oldest=Min("created_at"),
            past_due=Count("item_id", distinct=True, filter=Q(due_at__lt=now)),
            oldest_due=Min("due_at"),
        )
        .order_by()
    }
    decided = dict(
        Decision.objects.filter(use_case_id__in=ids, created_at__gte=now - THROUGHPUT_WINDOW)
        .values("use_case_id")
        .annotate(n=Count("id"))
        .order_by()
        .values_list("use_case_id", "n")
    )
    window_hours = THROUGHPUT_WINDOW.total_seconds() / 3600
    health = {}
    for pk in ids:
        row = open_rows.get(pk, {})
        waiting = row.get("waiting", 0)
        per_hour = decided.get(pk, 0) / window_hours
        if waiting == 0:
            clear = 0.0
        elif per_hour > 0:
            clear = waiting / per_hour * 3600
        else:
            clear = None
        oldest = row.get("oldest")
        health[pk] = QueueHealth(
            waiting=waiting,
            oldest_waiting_seconds=(now - oldest).total_seconds() if oldest else None,
            past_due_items=row.get("past_due", 0),
            oldest_due_at=row.get("oldest_due"),
            decisions_per_hour=per_hour,
            clear_seconds=clear,
        )
    return health


def queue_health(*, use_case: UseCase, now: datetime | None = None) -> QueueHealth:
    return queue_health_for(use_case_ids=[use_case.pk], now=now or timezone.now())[use_case.pk]


def past_due_by_use_case(*, user, now: datetime) -> list[dict[str, Any]]:
    """The use cases ``user`` may see that have items past due now (slug, name, items), in
    name order: one query, answered from the due index of each use case's open tasks."""
    return list(
        ReviewTask.objects.filter(
            use_case__in=use_cases_visible_to(user),
            state=ReviewTask.State.OPEN,
            due_at__lt=now,
        )
        .values("use_case__slug", "use_case__name")
        .annotate(items=Count("item_id", distinct=True))
        .order_by("use_case__name")
    )
