"""Whether an assisted task opens with the model's answer picked: off for a new use case, set
by a manager through the API or the policy page."""

import pytest

from reviewapp.core.roles import Role
from tests.factories import make_use_case, make_user

pytestmark = pytest.mark.django_db


def test_off_for_a_new_use_case_and_set_through_the_api(api):
    manager = make_user(Role.MANAGER)
    use_case = make_use_case(actor=manager, members=[manager])
    url = f"/api/v1/use-cases/{use_case.slug}/"
    assert api(manager).get(url).json()["suggestion_preselected"] is False
    patched = api(manager).patch(url, {"suggestion_preselected": True}, format="json")
    assert patched.status_code == 200 and patched.json()["suggestion_preselected"] is True
    bad = api(manager).patch(url, {"suggestion_preselected": "perhaps"}, format="json")
    assert bad.status_code == 400 and "suggestion_preselected" in bad.json()
    reviewer = make_user(Role.REVIEWER)
    use_case.members.add(reviewer)
    refused = api(reviewer).patch(url, {"suggestion_preselected": False}, format="json")
    assert refused.status_code == 403
    use_case.refresh_from_db()
    assert use_case.suggestion_preselected is True


def test_set_on_the_policy_page(client):
    manager = make_user(Role.MANAGER)
    use_case = make_use_case(actor=manager, members=[manager])
    client.force_login(manager)
    url = f"/control/use-cases/{use_case.slug}/suggestion-preselected/"
    answer = client.post(url, {"suggestion_preselected": "on"}, follow=True)
    assert "Enter accepts it" in answer.content.decode()
    use_case.refresh_from_db()
    assert use_case.suggestion_preselected is True
    client.post(url, {})
    use_case.refresh_from_db()
    assert use_case.suggestion_preselected is False


def test_the_gold_rate_is_set_on_the_policy_page_within_its_bounds(client):
    manager = make_user(Role.MANAGER)
    use_case = make_use_case(actor=manager, members=[manager])
    client.force_login(manager)
    url = f"/control/use-cases/{use_case.slug}/gold-rate/"
    assert "Gold items: 20%" in client.post(url, {"gold_rate": "0.2"}, follow=True).content.decode()
    use_case.refresh_from_db()
    assert use_case.gold_rate == 0.2
    for bad in ("0.9", "nan", "lots"):
        answer = client.post(url, {"gold_rate": bad}, follow=True).content.decode()
        assert "a number from 0 to 0.5" in answer
    use_case.refresh_from_db()
    assert use_case.gold_rate == 0.2
