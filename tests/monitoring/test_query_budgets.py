"""How many SQL queries the managers' dashboards cost, pinned at two data sizes.

Each page is drawn once over 10 and once over 200 decided items and must cost exactly the same
number of queries both times: a dashboard whose count grows with the data (a query per item, per
day or per reviewer) fails here. A failure that lowers a count is good news: lower the pinned
number. Pages are requested once before they are measured, so the per-process caches a running
server keeps warm are warm. The control-room overview is here too: it draws the same figures.
One test per size draws every page, so the data is built twice, not once per page.
"""

from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from reviewapp.monitoring.services import rollups_fold
from reviewapp.reviews.services.ingest import items_store_pending
from reviewapp.reviews.services.review import review_task_claim, review_task_decide
from reviewapp.reviews.services.scoring import items_score
from tests.factories import (
    constant_classifier_bytes,
    invoice,
    logged_in_client,
    make_use_case,
    register_model,
)

pytestmark = [pytest.mark.django_db, pytest.mark.parametrize("size", [10, 200])]


@pytest.fixture
def dashboards(people, size):
    """A use case on ``assisted`` with ``size`` items, each decided by a reviewer (one in four
    overriding the model), folded into the rollups; and the manager's logged-in client."""
    manager, alice = people["manager"], people["alice"]
    use_case = make_use_case(members=[manager, alice], level="assisted", actor=manager)
    register_model(use_case, constant_classifier_bytes("office", 0.8))
    now = timezone.now() - timedelta(hours=3)
    # The batch path (one scoring call for every row): the same items, routes and tasks.
    rows = [(body["external_id"], body["features"], None) for body in map(invoice, range(size))]
    with transaction.atomic():
        ids = items_store_pending(use_case=use_case, rows=rows, now=now)
    items_score(item_ids=ids, now=now)
    for n in range(size):
        task = review_task_claim(use_case=use_case, user=alice, now=now)
        review_task_decide(task=task, user=alice, label="other" if n % 4 else "office", now=now)
    rollups_fold()
    return use_case, logged_in_client(manager)


def queries(client, url: str) -> list[str]:
    client.get(url)
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200
    return [query["sql"] for query in captured.captured_queries]


# The pinned counts, with what the queries are. Every page starts with the session and its user
# with the user's roles (2 queries); every page a manager opens ends with the paused webhook
# endpoints and the open system alerts, for their banners (2 queries), and every page a
# reviewer or a manager opens with the use cases past due, for theirs (1 query).
BUDGETS = {
    # the use cases, their policies | the hourly rollups in the range, then one sum per JSON
    # column across them (outputs, review times, reviewers, confusion, calibration) | items
    # waiting, guardrail breaches.
    "/monitoring/": 15,
    # the use case, its model versions, its policy | the hourly rollups in the range, one sum per
    # JSON column (outputs, review times, reviewers, confusion, calibration) | items waiting,
    # guardrail breaches.
    "/monitoring/{slug}/quality/": 16,
    # the use cases, their policies, their model versions, their ramp plans | routes per use
    # case (one grouped count), decisions per use case (one grouped count), open breaches |
    # the queue health: open tasks per use case, decisions in the last 24 hours per use case |
    # the finished backtests per use case, for the capacity warning (no backtest here: no more).
    "/control/": 15,
}


def test_each_dashboard_costs_the_same_queries_at_any_size(dashboards):
    use_case, client = dashboards
    spent = {page: queries(client, page.format(slug=use_case.slug)) for page in BUDGETS}
    counts = {page: len(sql) for page, sql in spent.items()}
    listing = "\n\n".join(
        f"{page}:\n" + "\n".join(f"{n}. {q}" for n, q in enumerate(sql, 1))
        for page, sql in spent.items()
        if len(sql) != BUDGETS[page]
    )
    assert counts == BUDGETS, listing
