import pytest

from deployments.services.policies import policy_change, policy_restore
from reviewapp.core.roles import Role
from tests.factories import make_use_case, make_user

pytestmark = pytest.mark.django_db


def test_every_change_is_a_new_version_and_history_is_newest_first(api):
    manager = make_user(Role.MANAGER, "mia")
    use_case = make_use_case(actor=manager)
    url = f"/api/v1/use-cases/{use_case.slug}/policy/"
    response = api(manager).put(
        url,
        {
            "level": "partial",
            "confidence_threshold": 0.8,
            "traffic_percent": 5,
            "audit_rate": 0.1,
            "double_review_rate": 0.02,
            "reason": "start the ramp",
        },
        format="json",
    )
    assert response.status_code == 200
    body = response.json()
    assert (
        body["version"] == 2 and body["changed_by"] == "mia" and body["reason"] == "start the ramp"
    )
    api(manager).patch(url, {"traffic_percent": 25, "reason": "ramp"}, format="json")
    current = api(manager).get(url).json()
    assert (current["level"], current["traffic_percent"], current["confidence_threshold"]) == (
        "partial",
        25,
        0.8,
    )
    history = api(manager).get(f"{url}history/").json()
    assert [h["version"] for h in history] == [3, 2, 1]
    assert history[-1]["reason"] == "use case created"


def test_put_requires_every_field(api):
    manager = make_user(Role.MANAGER)
    use_case = make_use_case(actor=manager)
    response = api(manager).put(
        f"/api/v1/use-cases/{use_case.slug}/policy/",
        {"level": "full", "reason": "x"},
        format="json",
    )
    assert response.status_code == 400
    assert {"confidence_threshold", "traffic_percent"} <= set(response.json())


def test_system_changes_and_restores_are_recorded(api):
    manager = make_user(Role.MANAGER)
    use_case = make_use_case(actor=manager, level="full")
    policy_change(
        use_case=use_case,
        actor=None,
        changes={"level": "assisted"},
        reason="guardrail: override rate 31% > 20% over the last 200 items",
    )
    restored = policy_restore(use_case=use_case, version=2, actor=manager, reason="false alarm")
    assert restored.level == "full" and restored.restored_from.version == 2
    history = api(manager).get(f"/api/v1/use-cases/{use_case.slug}/policy/history/").json()
    assert history[1]["changed_by"] == "system"
    assert history[0]["restored_from"] == 2


def test_history_query_count_does_not_grow_with_versions(api, django_assert_max_num_queries):
    manager = make_user(Role.MANAGER)
    use_case = make_use_case(actor=manager)
    for n in range(20):
        policy_change(
            use_case=use_case, actor=manager, changes={"audit_rate": n / 100}, reason=f"step {n}"
        )
    client = api(manager)
    with django_assert_max_num_queries(6):
        assert len(client.get(f"/api/v1/use-cases/{use_case.slug}/policy/history/").json()) == 21


def test_use_case_list_query_count_is_flat(api, django_assert_max_num_queries):
    manager = make_user(Role.MANAGER)
    for _ in range(8):
        make_use_case(actor=manager)
    client = api(manager)
    with django_assert_max_num_queries(6):
        assert len(client.get("/api/v1/use-cases/").json()) == 8


def test_use_case_contract_is_frozen_once_items_arrive(api):
    manager = make_user(Role.MANAGER)
    use_case = make_use_case(actor=manager)
    url = f"/api/v1/use-cases/{use_case.slug}/"
    assert api(manager).patch(url, {"labels": ["a", "b"]}, format="json").status_code == 200
    from reviewapp.reviews.services.ingest import item_ingest

    item_ingest(use_case=use_case, external_id="x", features={"amount": 1.0})
    response = api(manager).patch(url, {"labels": ["a", "b", "c"]}, format="json")
    assert response.status_code == 400 and "labels" in response.json()
    assert api(manager).patch(url, {"name": "Renamed"}, format="json").json()["name"] == "Renamed"


def test_restoring_a_version_through_the_api_needs_a_reason(api):
    manager = make_user(Role.MANAGER, "mia")
    use_case = make_use_case(actor=manager)
    policy_change(use_case=use_case, actor=manager, changes={"level": "full"}, reason="go")
    restore = f"/api/v1/use-cases/{use_case.slug}/policy/history/1/restore/"
    for body in (None, {}, {"reason": " "}):
        refused = api(manager).post(restore, body, format="json")
        assert refused.status_code == 400 and "reason" in refused.json()
    response = api(manager).post(restore, {"reason": "full was too early"}, format="json")
    assert response.status_code == 201
    body = response.json()
    assert (body["version"], body["level"], body["restored_from"]) == (3, "human_only", 1)
    history = api(manager).get(f"/api/v1/use-cases/{use_case.slug}/policy/history/").json()
    assert history[0]["reason"] == "full was too early"
    missing = api(manager).post(
        f"/api/v1/use-cases/{use_case.slug}/policy/history/99/restore/",
        {"reason": "x"},
        format="json",
    )
    assert missing.status_code == 404 and "version" in missing.json()


@pytest.mark.parametrize("body", [{"traffic_percent": 25}, {"traffic_percent": 25, "reason": " "}])
def test_a_patch_without_a_reason_is_refused_naming_it(api, body):
    manager = make_user(Role.MANAGER)
    use_case = make_use_case(actor=manager)
    url = f"/api/v1/use-cases/{use_case.slug}/policy/"

    response = api(manager).patch(url, body, format="json")

    assert response.status_code == 400
    assert set(response.json()) == {"reason", "code"}
    assert api(manager).get(url).json()["version"] == 1


@pytest.mark.parametrize("url", [{}, [], 0, False])
def test_a_guardrail_webhook_url_of_another_type_is_refused(api, url):
    manager = make_user(Role.MANAGER)
    use_case = make_use_case(actor=manager)

    response = api(manager).patch(
        f"/api/v1/use-cases/{use_case.slug}/policy/",
        {"guardrails": {"webhook_url": url}, "reason": "tell us"},
        format="json",
    )

    assert response.status_code == 400
    assert "webhook_url" in response.json()["guardrails"]


def test_guardrails_stored_with_whole_floats_read_back_as_declared(api):
    """The policy form, and versions stored before the API checked types, may keep
    ``"window": 200.0``; the schema declares a whole number, and a typed client reads one."""
    manager = make_user(Role.MANAGER)
    use_case = make_use_case(actor=manager)
    policy_change(
        use_case=use_case,
        actor=manager,
        changes={
            "guardrails": {"override_rate": {"max": 0.2, "window": 200.0, "min_sample": 50.0}}
        },
        reason="watch the overrides",
    )

    body = api(manager).get(f"/api/v1/use-cases/{use_case.slug}/policy/").json()

    limit = body["guardrails"]["override_rate"]
    assert (limit["window"], limit["min_sample"], limit["max"]) == (200, 50, 0.2)
    assert isinstance(limit["window"], int) and isinstance(limit["min_sample"], int)
