"""Final outcomes back to the caller: the ``outcome.decided`` payload and the feed that reads it.

An item's final answer is recorded as an ``outcome.decided`` event in the transaction that
gives it (the model's decision when routing automates the item, the human decision that
settles it), so the feed is the outbox read in position order for one use case
(``reviewapp.core.events`` argues why no position is skipped or repeated).
"""

import json
import time
from dataclasses import dataclass
from datetime import datetime

from django.db import connection
from django.db.models import Q, TextField
from django.db.models.functions import Cast

from deployments.models import UseCase
from reviewapp.core.events import Position, change_counter, events_readable

OUTCOME_DECIDED = "outcome.decided"
# An audit that overturns an automated outcome already sent (webhooks; the feed keeps one
# outcome per item).
OUTCOME_CORRECTED = "outcome.corrected"
ITEM_ESCALATED = "item.escalated"
FEED_LIMIT_MAX = 1000
WAIT_MAX_SECONDS = 30
# While waiting, how often the change counter (a cache key, not the database) is looked at,
# and the longest the feed goes without re-reading when the counter cannot be trusted (a
# commit older transactions still hide, or a cache that is down).
WAIT_TICK_SECONDS = 0.1
WAIT_REREAD_SECONDS = 2.0


def outcome_payload(
    *,
    use_case: UseCase,
    external_id: str,
    label: str,
    value: float | None,
    source: str,
    by: str | None,
    model_version: str | None,
    route: str,
    decided_at: datetime,
) -> dict:
    answer = {"label": label} if use_case.is_classification else {"value": value}
    return {
        "external_id": external_id,
        "decision": {**answer, "source": source, "by": by, "model_version": model_version},
        "route": route,
        "decided_at": decided_at.isoformat(),
    }


def escalation_payload(*, external_id: str, task_id: int, raised_by: str, comment: str) -> dict:
    return {
        "external_id": external_id,
        "task": task_id,
        "raised_by": raised_by,
        "comment": comment,
    }


@dataclass(frozen=True)
class OutcomePage:
    outcomes: list[dict]
    next: Position


def outcomes_json(*, use_case: UseCase, after: Position, limit: int) -> tuple[str, int]:
    """The feed's page as the API's JSON text, and how many outcomes it holds.

    The stored payloads are spliced in as the database returns their text, each with its
    cursor, instead of being decoded and encoded again: the feed is read in bulk, and that
    round trip was most of its cost.
    """
    rows = list(
        events_readable(after=after, filters=_feed_filter(use_case))
        .annotate(text=Cast("data", TextField()))
        .values_list("txid", "id", "text")[:limit]
    )
    parts = []
    for txid, event_id, text in rows:
        cursor = json.dumps(Position(txid, event_id).token())
        body = text.rstrip()[:-1].rstrip()
        parts.append(f'{body}{"," if body != "{" else ""}"cursor":{cursor}}}')
    last = Position(rows[-1][0], rows[-1][1]) if rows else after
    return f'{{"outcomes":[{",".join(parts)}],"next":{json.dumps(last.token())}}}', len(rows)


def outcomes_after(*, use_case: UseCase, after: Position, limit: int) -> OutcomePage:
    """The next ``limit`` final outcomes of the use case after ``after``, each with its cursor."""
    rows = list(
        events_readable(after=after, filters=_feed_filter(use_case)).values_list(
            "txid", "id", "data"
        )[:limit]
    )
    outcomes = [
        {**data, "cursor": Position(txid, event_id).token()} for txid, event_id, data in rows
    ]
    last = Position(rows[-1][0], rows[-1][1]) if rows else after
    return OutcomePage(outcomes=outcomes, next=last)


def outcomes_wait(
    *,
    use_case: UseCase,
    after: Position,
    limit: int,
    wait: float,
    sleep=time.sleep,
    clock=time.monotonic,
    as_json: bool = False,
):
    """Like ``outcomes_after`` (``outcomes_json`` with ``as_json``), but wait up to ``wait``
    seconds for an outcome to arrive.

    While waiting the database connection is given back (closed, or returned to the pool) and
    only the use case's change counter in the cache is watched; the feed is read again when
    it moves, and every ``WAIT_REREAD_SECONDS`` in any case: a commit can bump the counter
    while an older transaction still hides it, and the cache may be down.
    """

    def read():
        if as_json:
            return outcomes_json(use_case=use_case, after=after, limit=limit)
        page = outcomes_after(use_case=use_case, after=after, limit=limit)
        return page, len(page.outcomes)

    page, found = read()
    if found or wait <= 0:
        return page
    deadline = clock() + wait
    seen = change_counter(use_case.pk)
    last_read = clock()
    while clock() < deadline:
        if not connection.in_atomic_block:
            connection.close()
        sleep(min(WAIT_TICK_SECONDS, max(0.0, deadline - clock())))
        counter = change_counter(use_case.pk)
        now = clock()
        if counter != seen or now - last_read >= WAIT_REREAD_SECONDS:
            seen, last_read = counter, now
            page, found = read()
            if found:
                return page
    return page


def _feed_filter(use_case: UseCase) -> Q:
    return Q(use_case_id=use_case.pk, type=OUTCOME_DECIDED)
