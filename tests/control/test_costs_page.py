"""The policy page prices every threshold from the latest backtest and the use case's costs,
recommends one, and leaves applying it to the manager; the control room warns when the team
cannot keep up at the current threshold."""

import re
from datetime import timedelta

import numpy as np
import pytest
from django.db import transaction
from django.utils import timezone

from deployments.services.policies import policy_change
from deployments.services.use_cases import use_case_update
from reviewapp.control.backtests import THRESHOLDS, _Tally
from reviewapp.control.costs import cost_view, measured_by_use_case
from reviewapp.core.jobs import job_create, job_finish
from reviewapp.core.models import Job
from reviewapp.core.roles import Role
from reviewapp.reviews.services.ingest import items_store_pending
from reviewapp.reviews.services.review import review_task_claim, review_task_decide
from tests.control.test_backtests import labelled, start  # noqa: F401 (fixtures)
from tests.factories import invoice, logged_in_client, make_use_case, make_user, send_items

pytestmark = pytest.mark.django_db


def _finished_backtest(use_case, actor, *, items: int = 1000) -> Job:
    """A finished backtest of v1 whose curve is the tally of ``items`` scored items: the less
    confident, the more often wrong (the backtest job itself is tested in test_backtests)."""
    rng = np.random.default_rng(4)
    confidence = rng.beta(5, 1.5, size=items)
    wrong = rng.random(items) > confidence
    tally = _Tally()
    reached = np.searchsorted(THRESHOLDS, confidence, side="right")
    size = len(THRESHOLDS) + 1
    tally.scored = items
    tally.automated_at += np.bincount(reached, minlength=size)
    tally.wrong_at += np.bincount(reached, weights=wrong, minlength=size).astype(np.int64)
    tally.wrong_pairs_at[("travel", "office")] = np.bincount(reached[wrong], minlength=size)
    until = timezone.now()
    job = job_create(
        kind=Job.Kind.BACKTEST,
        total=items,
        use_case=use_case,
        created_by=actor,
        params={"model_version": "v1", "since": None, "until": until.isoformat()},
    )
    result = {"model_version": "v1", "since": None, "until": until.isoformat(), "items": items}
    job_finish(job_id=job.pk, result={**result, "curve": tally.curve()})
    return job


@pytest.fixture
def backtested():
    """A use case at partial (threshold 0.9) with a finished backtest and 100 items a day."""
    manager = make_user(Role.MANAGER)
    use_case = make_use_case(
        actor=manager, members=[manager], level="partial", confidence_threshold=0.9
    )
    _finished_backtest(use_case, manager)
    rows = [(f"a-{n}", invoice(n)["features"], None) for n in range(700)]
    with transaction.atomic():
        items_store_pending(use_case=use_case, rows=rows, now=timezone.now() - timedelta(days=1))
    return manager, use_case


def _priced(backtested, **costs):
    manager, use_case = backtested
    values = {"error_cost": 40.0, "review_minutes": 2.0, "hourly_cost": 30.0, **costs}
    return manager, use_case_update(use_case=use_case, changes=values)


def _page(manager, use_case, query: str = "") -> str:
    response = logged_in_client(manager).get(f"/control/use-cases/{use_case.slug}/{query}")
    assert response.status_code == 200
    return response.content.decode()


def test_without_costs_the_page_says_what_to_fill_in(backtested):
    manager, use_case = backtested
    page = _page(manager, use_case)
    assert "What each threshold costs" in page
    assert "what a wrong automated decision costs" in page and "what a reviewer hour costs" in page
    # Minutes are measured from the recorded times once there are enough of them.
    assert "Recommended:" not in page


def test_with_costs_every_threshold_is_priced_and_one_recommended(backtested):
    manager, use_case = _priced(backtested)
    page = _page(manager, use_case)
    view = cost_view(
        use_case=use_case,
        policy=use_case.policies.order_by("-version").first(),
        job=Job.objects.get(use_case=use_case, kind="backtest"),
    )
    assert len(view.costs.thresholds) == 100 and view.recommendation.threshold is not None
    advice = re.search(r"Recommended: ([0-9.]+)\.</strong> ([^<]+)</p>", page)
    assert advice, page[page.find("costs-title") : page.find("costs-title") + 3000]
    threshold, reason = advice.groups()
    assert reason.startswith(f"{threshold} costs ") and " a day (errors " in reason
    assert 'data-figure="cost-figure"' in page and 'id="cost-figure"' in page
    # Applying it is the manager's act: the link only fills the form.
    assert f"?threshold={threshold}#editor-title" in page
    filled = _page(manager, use_case, f"?threshold={threshold}")
    assert (
        f'name="confidence_threshold" min="0" max="1" step="0.01" value="{float(threshold):g}"'
        in filled
    )
    assert "the least expected cost a day" in filled
    assert threshold == f"{view.recommendation.threshold:.2f}"


def test_the_recommendation_respects_the_team_capacity(backtested):
    # Three minutes a day at two minutes a review: one review and a half.
    manager, use_case = _priced(backtested, capacity_reviewers=1, capacity_hours_per_day=0.05)
    page = _page(manager, use_case)
    assert "cannot keep up" in page or "fits the team" in page
    overview = logged_in_client(manager).get("/control/").content.decode()
    assert "reviews a day, more than the team" in overview


def test_costs_are_saved_from_the_page_and_nonsense_is_refused(backtested):
    manager, use_case = backtested
    client = logged_in_client(manager)
    url = f"/control/use-cases/{use_case.slug}/costs/"
    saved = client.post(
        url,
        {
            "error_cost": "25",
            "review_minutes": "",
            "hourly_cost": "40",
            "capacity_reviewers": "3",
            "capacity_hours_per_day": "6",
            "pair_true": ["travel", ""],
            "pair_predicted": ["office", ""],
            "pair_cost": ["400", ""],
        },
        follow=True,
    )
    assert "Costs and capacity saved" in saved.content.decode()
    use_case.refresh_from_db()
    assert (use_case.error_cost, use_case.review_minutes, use_case.hourly_cost) == (25, None, 40)
    assert (use_case.capacity_reviewers, use_case.capacity_hours_per_day) == (3, 6)
    assert use_case.error_costs == [{"true": "travel", "predicted": "office", "cost": 400.0}]
    refused = client.post(url, {"error_cost": "-5", "hourly_cost": "40"}, follow=True)
    assert "a number of at least 0" in refused.content.decode()
    refused = client.post(
        url,
        {"pair_true": ["travel"], "pair_predicted": ["office"], "pair_cost": ["lots"]},
        follow=True,
    )
    assert "a number of at least 0" in refused.content.decode()
    refused = client.post(url, {"capacity_reviewers": "3"}, follow=True)
    assert "give both, or neither" in refused.content.decode()
    use_case.refresh_from_db()
    assert use_case.error_cost == 25 and use_case.capacity_reviewers == 3


def test_a_reviewer_cannot_change_costs(backtested):
    _, use_case = backtested
    reviewer = make_user(Role.REVIEWER)
    use_case.members.add(reviewer)
    answer = logged_in_client(reviewer).post(
        f"/control/use-cases/{use_case.slug}/costs/", {"error_cost": "1"}
    )
    assert answer.status_code in (403, 404)


def test_nothing_is_applied_until_the_manager_saves_a_policy_version(backtested):
    manager, use_case = _priced(backtested)
    before = list(use_case.policies.values_list("version", "confidence_threshold"))
    _page(manager, use_case, "?threshold=0.5")
    assert list(use_case.policies.values_list("version", "confidence_threshold")) == before
    policy_change(
        use_case=use_case, actor=manager, changes={"confidence_threshold": 0.5}, reason="cost curve"
    )
    assert use_case.policies.order_by("-version").first().confidence_threshold == 0.5


def test_the_backtest_page_prices_its_curve(labelled, start):  # noqa: F811
    manager, engineer, use_case = labelled
    assert start(engineer, use_case).status_code == 202
    use_case = use_case_update(
        use_case=use_case, changes={"error_cost": 40.0, "review_minutes": 2.0, "hourly_cost": 30.0}
    )
    job = Job.objects.get(use_case=use_case, kind="backtest")
    page = logged_in_client(manager).get(f"/control/use-cases/{use_case.slug}/backtests/{job.pk}/")
    text = page.content.decode()
    assert page.status_code == 200
    assert 'data-figure="backtest-cost-figure"' in text
    assert re.search(r"[0-9.]+ costs [0-9,.]+ a day \(errors", text)


def test_a_use_case_not_yet_automating_is_warned_that_people_review_everything(backtested):
    # 100 items a day; the team does 3 hours × 1 reviewer at 2 minutes a review: 90 a day.
    manager, use_case = _priced(backtested, capacity_reviewers=1, capacity_hours_per_day=3.0)
    policy_change(use_case=use_case, actor=manager, changes={"level": "shadow"}, reason="test")
    page = _page(manager, use_case)
    assert "people decide every item, the model none" in page
    assert "At shadow people review every item: 100 reviews a day, more than the team" in page
    overview = logged_in_client(manager).get("/control/").content.decode()
    assert "At shadow people review every item: 100 reviews a day" in overview
    assert "partial at " in overview and "Nothing changes by itself." in overview


def test_the_team_pace_is_measured_on_whole_days(backtested):
    manager, _ = backtested
    reviewer = make_user(Role.REVIEWER)
    use_case = make_use_case(actor=manager, members=[manager, reviewer])
    send_items(use_case, range(12))
    now = timezone.now()
    for count, when in ((5, now - timedelta(days=2)), (4, now - timedelta(days=1)), (3, now)):
        for _ in range(count):
            task = review_task_claim(use_case=use_case, user=reviewer, now=when)
            review_task_decide(
                task=task, user=reviewer, label="office", time_spent_ms=90_000, now=when
            )
    measured = measured_by_use_case(use_case_ids=[use_case.pk], now=now)[use_case.pk]
    # Today is not over: its 3 decisions are no measure of a day's work yet.
    assert (measured.throughput_per_day, measured.active_days) == (4.5, 2)
    # 12 recorded times are too few to stand for the minutes a review takes.
    assert measured.review_minutes is None and measured.timed_decisions == 12
    assert measured.arrivals_per_day == pytest.approx(12 / 7)


def test_an_older_backtest_without_label_pairs_prices_every_error_alike(backtested):
    manager, use_case = _priced(
        backtested, error_costs=[{"true": "travel", "predicted": "office", "cost": 900.0}]
    )
    job = Job.objects.get(use_case=use_case, kind="backtest")
    curve = {k: v for k, v in job.result["curve"].items() if k not in ("wrong_pairs", "abs_error")}
    Job.objects.filter(pk=job.pk).update(result={**job.result, "curve": curve})
    page = _page(manager, use_case)
    assert "Recommended:" in page
    assert "this backtest has no label pairs: every error costs error_cost; run a new one" in page


def test_a_regression_backtest_without_error_sums_cannot_be_priced():
    manager = make_user(Role.MANAGER)
    use_case = make_use_case(
        actor=manager, members=[manager], task_type="regression", level="partial"
    )
    use_case_update(
        use_case=use_case, changes={"error_cost": 2.0, "review_minutes": 2.0, "hourly_cost": 30.0}
    )
    job = job_create(kind=Job.Kind.BACKTEST, total=10, use_case=use_case, created_by=manager)
    curve = {  # as backtests stored it before they summed the errors
        "thresholds": THRESHOLDS.tolist(),
        "automated": [5] * 100,
        "errors": [1] * 100,
        "automation_rate": [0.5] * 100,
        "error_rate": [0.2] * 100,
    }
    job_finish(job_id=job.pk, result={"model_version": "v1", "items": 10, "curve": curve})
    page = _page(manager, use_case)
    assert "This backtest cannot price the model's errors (it has no error sums" in page
    assert "Recommended:" not in page
