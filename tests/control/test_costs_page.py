"""The policy page prices every threshold from the latest backtest and the use case's costs,
recommends one, and leaves applying it to the manager; the control room warns when the team
cannot keep up at the current threshold."""

import re

import pytest

from deployments.services.policies import policy_change
from deployments.services.use_cases import use_case_update
from reviewapp.control.costs import cost_view
from reviewapp.core.models import Job
from tests.control.test_backtests import labelled, start  # noqa: F401 (fixtures)
from tests.factories import logged_in_client

pytestmark = pytest.mark.django_db


def _priced(labelled, start, **costs):  # noqa: F811
    manager, engineer, use_case = labelled
    assert start(engineer, use_case).status_code == 202
    values = {"error_cost": 40.0, "review_minutes": 2.0, "hourly_cost": 30.0, **costs}
    use_case = use_case_update(use_case=use_case, changes=values)
    return manager, use_case


def _page(manager, use_case, query: str = "") -> str:
    response = logged_in_client(manager).get(f"/control/use-cases/{use_case.slug}/{query}")
    assert response.status_code == 200
    return response.content.decode()


def test_without_costs_the_page_says_what_to_fill_in(labelled, start):  # noqa: F811
    manager, engineer, use_case = labelled
    start(engineer, use_case)
    page = _page(manager, use_case)
    assert "What each threshold costs" in page
    assert "what a wrong automated decision costs" in page and "what a reviewer hour costs" in page
    # Minutes are measured from the recorded times once there are enough of them.
    assert "Recommended:" not in page


def test_with_costs_every_threshold_is_priced_and_one_recommended(labelled, start):  # noqa: F811
    manager, use_case = _priced(labelled, start)
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


def test_the_recommendation_respects_the_team_capacity(labelled, start):  # noqa: F811
    manager, use_case = _priced(
        labelled, start, capacity_reviewers=1, capacity_hours_per_day=0.05
    )  # three minutes a day: a couple of reviews
    page = _page(manager, use_case)
    assert "cannot keep up" in page or "fits the team" in page
    overview = logged_in_client(manager).get("/control/").content.decode()
    assert "reviews a day, more than the team" in overview


def test_costs_are_saved_from_the_page_and_nonsense_is_refused(labelled):  # noqa: F811
    manager, _, use_case = labelled
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
    refused = client.post(url, {"capacity_reviewers": "3"}, follow=True)
    assert "give both, or neither" in refused.content.decode()
    use_case.refresh_from_db()
    assert use_case.error_cost == 25 and use_case.capacity_reviewers == 3


def test_a_reviewer_cannot_change_costs(labelled):  # noqa: F811
    from reviewapp.core.roles import Role
    from tests.factories import make_user

    _, _, use_case = labelled
    reviewer = make_user(Role.REVIEWER)
    use_case.members.add(reviewer)
    answer = logged_in_client(reviewer).post(
        f"/control/use-cases/{use_case.slug}/costs/", {"error_cost": "1"}
    )
    assert answer.status_code in (403, 404)


def test_nothing_is_applied_until_the_manager_saves_a_policy_version(labelled, start):  # noqa: F811
    manager, use_case = _priced(labelled, start)
    before = list(use_case.policies.values_list("version", "confidence_threshold"))
    _page(manager, use_case, "?threshold=0.5")
    assert list(use_case.policies.values_list("version", "confidence_threshold")) == before
    policy_change(
        use_case=use_case, actor=manager, changes={"confidence_threshold": 0.5}, reason="cost curve"
    )
    assert use_case.policies.order_by("-version").first().confidence_threshold == 0.5


def test_the_backtest_page_prices_its_curve(labelled, start):  # noqa: F811
    manager, use_case = _priced(labelled, start)
    job = Job.objects.get(use_case=use_case, kind="backtest")
    page = logged_in_client(manager).get(f"/control/use-cases/{use_case.slug}/backtests/{job.pk}/")
    text = page.content.decode()
    assert page.status_code == 200
    assert 'data-figure="backtest-cost-figure"' in text
    assert re.search(r"[0-9.]+ costs [0-9,.]+ a day \(errors", text)
