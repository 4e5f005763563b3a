"""Backtests through the API: the trade-off curve against human labels, and the replay."""

from datetime import timedelta

import numpy as np
import pytest
from django.db import transaction
from django.utils import timezone

from deployments.services.policies import policy_change
from reviewapp.core.roles import Role
from reviewapp.reviews.models import Item, Prediction
from reviewapp.reviews.services.ingest import item_ingest, items_store_pending
from reviewapp.reviews.services.scoring import items_score
from tests.control.helpers import review_all, truth
from tests.factories import (
    classifier_bytes,
    make_use_case,
    make_user,
    register_model,
    regressor_bytes,
    training_frame,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def labelled(settings):
    """A use case whose 60 items were all decided by a reviewer (40 recent, 20 old)."""
    settings.BACKTEST_CHUNK_SIZE = 7  # several chunks, so progress is reported along the way
    manager, reviewer, engineer = (
        make_user(r) for r in (Role.MANAGER, Role.REVIEWER, Role.ML_ENGINEER)
    )
    use_case = make_use_case(actor=manager, members=[reviewer, engineer], level="assisted")
    register_model(use_case, classifier_bytes())
    frame, _ = training_frame(n=60, seed=3)
    rows = [(f"h{n}", row, None) for n, row in enumerate(frame.to_dict(orient="records"))]
    for batch, age in ((rows[:20], 40), (rows[20:], 1)):
        received = timezone.now() - timedelta(days=age)
        with transaction.atomic():
            ids = items_store_pending(use_case=use_case, rows=batch, now=received)
        items_score(item_ids=ids, now=received)
    rng = np.random.default_rng(0)

    def answer(task):  # a careful reviewer, wrong now and then
        right = truth(task.item.features)
        return right if rng.random() > 0.1 else ("other" if right != "other" else "office")

    assert review_all(use_case, reviewer, answer) == 60
    return manager, engineer, use_case


@pytest.fixture
def modelled():
    """A use case with its model and no items: the requests refused below are refused for
    what they say, whatever the use case holds (a valid one is accepted on an empty window)."""
    engineer = make_user(Role.ML_ENGINEER)
    use_case = make_use_case(members=[engineer], level="assisted")
    register_model(use_case, classifier_bytes())
    return engineer, use_case


@pytest.fixture
def start(api, django_capture_on_commit_callbacks):
    """POST a backtest; the job queued on commit runs (eagerly) before this returns."""

    def post(user, use_case, **body):
        with django_capture_on_commit_callbacks(execute=True):
            return api(user).post(
                f"/api/v1/use-cases/{use_case.slug}/backtests/",
                {"model_version": "v1", **body},
                format="json",
            )

    return post


def expected_curve(use_case, since=None):
    """The curve computed the slow way from the champion's stored predictions."""
    items = Item.objects.filter(use_case=use_case, decision_source="human")
    if since:
        items = items.filter(received_at__gte=since)
    rows = list(
        Prediction.objects.filter(item__in=items, model_version__version="v1").values_list(
            "confidence", "label", "item__decision_label"
        )
    )
    automated, errors = [], []
    for threshold in np.round(np.linspace(0.01, 1.0, 100), 2):
        chosen = [(label, human) for conf, label, human in rows if conf >= threshold]
        automated.append(len(chosen))
        errors.append(sum(label != human for label, human in chosen))
    return len(rows), automated, errors


def test_a_backtest_job_holds_the_curve_for_100_thresholds(api, start, labelled):
    manager, engineer, use_case = labelled
    response = start(engineer, use_case)
    assert response.status_code == 202
    job = api(engineer).get(f"/api/v1/jobs/{response.json()['job']}/").json()
    assert (job["state"], job["kind"], job["done"], job["total"]) == ("done", "backtest", 60, 60)
    result = job["result"]
    total, automated, errors = expected_curve(use_case)
    curve = result["curve"]
    assert result["items"] == total == 60 and result["null_outputs"] == 0
    assert len(curve["thresholds"]) == 100
    assert curve["thresholds"][0] == 0.01 and curve["thresholds"][-1] == 1.0
    assert curve["automated"] == automated and curve["errors"] == errors
    assert curve["automation_rate"] == [a / 60 for a in automated]
    assert curve["error_rate"] == [
        (e / a if a else None) for a, e in zip(automated, errors, strict=True)
    ]
    assert result["accuracy"] == pytest.approx(1 - errors[0] / 60)
    # What the cost curve reads: each kind of mistake counted per threshold, the slow way.
    rows = list(
        Prediction.objects.filter(item__use_case=use_case).values_list(
            "confidence", "label", "item__decision_label"
        )
    )
    pairs = {(human, label) for _, label, human in rows if label != human}
    assert pairs and {(p["true"], p["predicted"]) for p in curve["wrong_pairs"]} == pairs
    for entry in curve["wrong_pairs"]:
        assert entry["errors"] == [
            sum(
                1
                for conf, label, human in rows
                if conf >= t and (human, label) == (entry["true"], entry["predicted"])
            )
            for t in curve["thresholds"]
        ]
    assert [sum(p["errors"][k] for p in curve["wrong_pairs"]) for k in range(100)] == errors
    # Error sums are a regression's: a classification's job does not carry 200 zeros.
    assert "abs_error" not in curve and "abs_error_sq" not in curve


def test_the_replay_routes_the_window_through_the_current_policy(api, start, labelled):
    manager, engineer, use_case = labelled
    policy_change(
        use_case=use_case,
        actor=manager,
        changes={"level": "partial", "confidence_threshold": 0.7, "audit_rate": 0.0},
        reason="what would partial do?",
    )
    job_id = start(engineer, use_case).json()["job"]
    result = api(manager).get(f"/api/v1/use-cases/{use_case.slug}/backtests/{job_id}/").json()
    replay = result["result"]["replay"]
    confident = Prediction.objects.filter(use_case=use_case, confidence__gte=0.7).count()
    assert replay["routes_then"] == {"assisted": 60}
    assert replay["routes_now"] == {
        "auto": confident,
        "assisted": 60 - confident,
        "blind": 0,
        "human": 0,
    }
    assert {"from": "assisted", "to": "auto", "items": confident} in replay["moves"]
    curve = result["result"]["curve"]
    assert replay["automated_wrong"] == curve["errors"][curve["thresholds"].index(0.7)]
    assert result["result"]["policy"]["level"] == "partial"
    assert (result["model_version"], result["state"]) == ("v1", "done")


def test_the_window_limits_the_items(api, start, labelled):
    _, engineer, use_case = labelled
    since = timezone.now() - timedelta(days=7)
    job_id = start(engineer, use_case, since=since.isoformat()).json()["job"]
    result = api(engineer).get(f"/api/v1/jobs/{job_id}/").json()["result"]
    total, automated, _ = expected_curve(use_case, since=since)
    assert result["items"] == total == 40
    assert result["curve"]["automated"] == automated
    day = (timezone.now() - timedelta(days=60)).date().isoformat()
    old = start(engineer, use_case, since=day, until=since.date().isoformat()).json()["job"]
    assert api(engineer).get(f"/api/v1/jobs/{old}/").json()["result"]["items"] == 20


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"model_version": "v9"}, "model_version"),
        ({"model_version": ""}, "model_version"),
        ({"since": "yesterday"}, "since"),
        ({"since": "2026-02-01", "until": "2026-01-01"}, "until"),
        ({"threshold": 0.5}, "threshold"),
    ],
)
def test_bad_requests_name_the_field(api, start, modelled, body, field):
    engineer, use_case = modelled
    response = start(engineer, use_case, **body)
    assert response.status_code == 400 and field in response.json(), response.json()


def test_backtests_are_listed_newest_first(api, start, labelled):
    manager, engineer, use_case = labelled
    first = start(engineer, use_case).json()["job"]
    second = start(engineer, use_case).json()["job"]
    listed = api(manager).get(f"/api/v1/use-cases/{use_case.slug}/backtests/").json()
    assert [b["job"] for b in listed] == [second, first]
    assert listed[0]["created_by"] == engineer.username
    other = make_use_case(actor=manager)
    assert api(manager).get(f"/api/v1/use-cases/{other.slug}/backtests/{first}/").status_code == 404


def test_an_empty_window_finishes_with_an_empty_curve(api, start, labelled):
    _, engineer, use_case = labelled
    job_id = start(engineer, use_case, until="2000-01-01").json()["job"]
    job = api(engineer).get(f"/api/v1/jobs/{job_id}/").json()
    assert job["state"] == "done" and job["result"]["items"] == 0
    assert job["result"]["curve"]["error_rate"] == [None] * 100


def test_a_regression_backtest_reports_error_within_tolerance_and_mse(api, start):
    manager, reviewer = make_user(Role.MANAGER), make_user(Role.REVIEWER)
    use_case = make_use_case(
        actor=manager, members=[reviewer], task_type="regression", level="assisted"
    )
    register_model(use_case, regressor_bytes())
    rng = np.random.default_rng(1)
    for n in range(30):
        x, y = rng.normal(size=2)
        item_ingest(use_case=use_case, external_id=f"r{n}", features={"x": float(x), "y": float(y)})
    from reviewapp.reviews.services.review import review_task_claim, review_task_decide

    while (task := review_task_claim(use_case=use_case, user=reviewer)) is not None:
        features = task.item.features
        review_task_decide(task=task, user=reviewer, value=3 * features["x"] - features["y"] + 1.0)
    job_id = start(manager, use_case).json()["job"]
    result = api(manager).get(f"/api/v1/jobs/{job_id}/").json()["result"]
    assert result["items"] == 30 and result["with_confidence"] == 30
    assert 0.5 < result["mse"] < 3 and 0 < result["within_tolerance"] <= 1
    assert result["curve"]["automated"][0] == 30  # every forest vote agrees at least 1%
    # The cost curve's sums: |error| and error² of the automated items, the slow way.
    rows = [
        (p.confidence, abs(p.value - p.item.decision_value))
        for p in Prediction.objects.filter(item__use_case=use_case).select_related("item")
    ]
    for k, t in enumerate(result["curve"]["thresholds"]):
        chosen = [d for conf, d in rows if conf >= t]
        assert result["curve"]["abs_error"][k] == pytest.approx(sum(chosen))
        assert result["curve"]["abs_error_sq"][k] == pytest.approx(sum(d * d for d in chosen))
    assert "wrong_pairs" not in result["curve"]  # label pairs are a classification's
