"""The Software tab's queue-depth chart walks today's exact depth back in time: at the end of
each hour it must show the tasks that were open then, not a flat line."""

from datetime import timedelta

import pytest
from django.utils import timezone

from reviewapp.core.roles import Role
from reviewapp.monitoring.dashboards import filters_clean, panel_build
from reviewapp.monitoring.services import rollups_fold
from reviewapp.reviews.services.ingest import item_ingest
from reviewapp.reviews.services.review import review_task_claim, review_task_decide
from tests.factories import classifier_bytes, invoice, make_use_case, make_user, register_model

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("chosen", ["24h", "7d"])
def test_queue_depth_over_time_is_the_tasks_open_at_each_period_end(chosen):
    manager, reviewer = make_user(Role.MANAGER), make_user(Role.REVIEWER)
    use_case = make_use_case(members=[manager, reviewer], level="assisted", actor=manager)
    register_model(use_case, classifier_bytes())
    # Half past the hour before last: every moment below is in the past, whenever this runs.
    now = timezone.now().replace(minute=30, second=0, microsecond=0) - timedelta(hours=1)
    hour = now.replace(minute=0) - timedelta(hours=5)
    # Five hours ago 6 items arrive, four hours ago 2 are decided, three hours ago 4 more
    # arrive, an hour ago 5 are decided: open at each hour's end 6, 4, 8, 8, 3, then 3 now.
    arrivals = {0: 6, 2: 4}
    decisions = {1: 2, 4: 5}
    sent = 0
    for h in range(6):
        at = hour + timedelta(hours=h, minutes=10)
        for _ in range(arrivals.get(h, 0)):
            item_ingest(use_case=use_case, now=at, **invoice(sent))
            sent += 1
        for _ in range(decisions.get(h, 0)):
            task = review_task_claim(use_case=use_case, user=reviewer, now=at)
            review_task_decide(task=task, user=reviewer, label="office", now=at)
    rollups_fold()
    filters = filters_clean(use_case=use_case, params={"range": chosen}, now=now)
    panel = panel_build(use_case=use_case, tab="software", filters=filters, now=now)
    (chart,) = [c for c in panel["charts"] if c.key == "queue"]
    depth = dict(zip(chart.figure["data"][0]["x"], chart.figure["data"][0]["y"], strict=True))
    assert panel["queue"]["depth"] == 3
    if chosen == "24h":
        ends = [(hour + timedelta(hours=h + 1)).isoformat() for h in range(6)]
        assert [depth[end] for end in ends] == [6, 4, 8, 8, 3, 3]
        assert depth[(hour - timedelta(hours=1)).isoformat()] == 0
    else:  # days: yesterday's end (before the arrivals, unless they began yesterday) and today
        today_end = (now.replace(hour=0, minute=0) + timedelta(days=1)).isoformat()
        assert depth[today_end] == 3
        assert max(depth.values()) <= 8 and any(v > 0 for v in depth.values())
