"""A use case's costs, capacity, queue order and turnaround: set by a manager through the API
(or the policy page), refused with the field named when they make no sense."""

import pytest

from reviewapp.core.roles import Role
from tests.factories import make_use_case, make_user

pytestmark = pytest.mark.django_db

SETTINGS = {
    "error_cost": 25.0,
    "error_costs": [{"true": "travel", "predicted": "office", "cost": 400.0}],
    "review_minutes": 1.5,
    "hourly_cost": 40.0,
    "capacity_reviewers": 3,
    "capacity_hours_per_day": 6.0,
    "queue_order": "due",
    "turnaround_minutes": 240,
}


def _manager_and_url(task_type: str = "classification"):
    manager = make_user(Role.MANAGER)
    use_case = make_use_case(actor=manager, members=[manager], task_type=task_type)
    return manager, f"/api/v1/use-cases/{use_case.slug}/"


def test_a_new_use_case_has_no_costs_and_serves_oldest_first(api):
    manager, url = _manager_and_url()
    body = api(manager).get(url).json()
    assert {k: body[k] for k in SETTINGS} == {
        "error_cost": None,
        "error_costs": [],
        "review_minutes": None,
        "hourly_cost": None,
        "capacity_reviewers": None,
        "capacity_hours_per_day": None,
        "queue_order": "fifo",
        "turnaround_minutes": None,
    }


def test_a_manager_sets_them_all_and_reads_them_back(api):
    manager, url = _manager_and_url()
    patched = api(manager).patch(url, SETTINGS, format="json")
    assert patched.status_code == 200, patched.content
    assert {k: patched.json()[k] for k in SETTINGS} == SETTINGS
    assert {k: api(manager).get(url).json()[k] for k in SETTINGS} == SETTINGS
    cleared = api(manager).patch(
        url,
        {"review_minutes": None, "capacity_reviewers": None, "capacity_hours_per_day": None},
        format="json",
    )
    assert cleared.status_code == 200
    assert cleared.json()["review_minutes"] is None  # measured from recorded times again


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"error_cost": -1}, "error_cost"),
        ({"hourly_cost": "lots"}, "hourly_cost"),
        ({"review_minutes": 0}, "review_minutes"),
        ({"capacity_reviewers": 0}, "capacity_reviewers"),
        ({"capacity_hours_per_day": 25}, "capacity_hours_per_day"),
        ({"capacity_reviewers": 3}, "capacity_hours_per_day"),  # reviewers × hours: both
        ({"queue_order": "random"}, "queue_order"),
        ({"turnaround_minutes": 0}, "turnaround_minutes"),
        ({"error_costs": [{"true": "travel", "predicted": "nope", "cost": 1}]}, "error_costs"),
        ({"error_costs": [{"true": "travel", "predicted": "travel", "cost": 1}]}, "error_costs"),
        ({"error_costs": [{"true": "travel", "predicted": "office"}]}, "error_costs"),
    ],
)
def test_nonsense_is_refused_naming_the_field(api, change, field):
    manager, url = _manager_and_url()
    answer = api(manager).patch(url, change, format="json")
    assert answer.status_code == 400, answer.content
    assert any(key.startswith(field) for key in answer.json()), answer.json()
    body = api(manager).get(url).json()
    assert body["queue_order"] == "fifo" and body["error_costs"] == []


def test_label_pair_costs_are_for_classification_only(api):
    manager, url = _manager_and_url(task_type="regression")
    answer = api(manager).patch(
        url, {"error_costs": [{"true": "a", "predicted": "b", "cost": 1}]}, format="json"
    )
    assert answer.status_code == 400 and "classification" in str(answer.json())
    assert api(manager).patch(url, {"error_cost": 2.5}, format="json").status_code == 200


def test_a_reviewer_cannot_change_them(api):
    manager, url = _manager_and_url()
    reviewer = make_user(Role.REVIEWER)
    slug = url.rstrip("/").rsplit("/", 1)[-1]
    from deployments.models import UseCase

    UseCase.objects.get(slug=slug).members.add(reviewer)
    assert api(reviewer).patch(url, {"queue_order": "due"}, format="json").status_code == 403


def test_queue_order_and_turnaround_are_set_on_the_policy_page(client):
    manager = make_user(Role.MANAGER)
    use_case = make_use_case(actor=manager, members=[manager])
    client.force_login(manager)
    page = client.get(f"/control/use-cases/{use_case.slug}/").content.decode()
    assert "Most uncertain first" in page and "most useful labels for retraining" in page
    url = f"/control/use-cases/{use_case.slug}/queue-order/"
    answer = client.post(url, {"queue_order": "priority", "turnaround_minutes": "90"}, follow=True)
    assert "items are due 90 minutes after they arrive" in answer.content.decode()
    use_case.refresh_from_db()
    assert (use_case.queue_order, use_case.turnaround_minutes) == ("priority", 90)
    refused = client.post(
        url, {"queue_order": "priority", "turnaround_minutes": "soon"}, follow=True
    )
    assert "whole minutes" in refused.content.decode()
    client.post(url, {"queue_order": "fifo", "turnaround_minutes": ""})
    use_case.refresh_from_db()
    assert (use_case.queue_order, use_case.turnaround_minutes) == ("fifo", None)
