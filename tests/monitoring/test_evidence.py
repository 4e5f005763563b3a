"""Every monitored rate with its evidence: the sums the rollups keep for intervals, the metrics
API's ``evidence`` and ``estimates`` blocks, and the model's accuracy weighted for how items
were sampled under routing."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from django.db.models import Sum

from deployments.statistics.evidence import MIN_EVIDENCE
from reviewapp.monitoring.models import HourlyRollup
from reviewapp.monitoring.services import rollups_fold, rollups_rebuild
from reviewapp.reviews.models import Item, Prediction
from reviewapp.reviews.services.ingest import item_ingest
from tests.control.helpers import review_all, truth
from tests.factories import (
    classifier_bytes,
    constant_classifier_bytes,
    make_use_case,
    register_model,
)
from tests.monitoring.test_rollups import decide_next, regression_judged, send

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _metrics(api, user, use_case, **params):
    response = api(user).get(f"/api/v1/use-cases/{use_case.slug}/metrics/", params)
    assert response.status_code == 200
    return response.json()


def _holds_its_value(block: dict) -> None:
    assert block["low"] <= block["value"] <= block["high"], block


def test_the_rollups_keep_the_fourth_power_sum_for_the_mse_interval(people, api):
    alice, manager = people["alice"], people["manager"]
    predicted = [10.0 + n for n in range(40)]
    human = [value + (n % 5) - 2 for n, value in enumerate(predicted)]  # errors 2, 1, 0, -1, -2
    use_case = regression_judged([alice, manager], alice, predicted, human)
    errors = np.array(predicted) - np.array(human)
    row = HourlyRollup.objects.get(use_case=use_case, shadow=False)
    assert row.quad_error_sum == pytest.approx(float(np.sum(errors**4)))
    assert row.sq_error_sum == pytest.approx(float(np.sum(errors**2)))

    body = _metrics(api, manager, use_case)
    mse, mae = body["evidence"]["mse"], body["evidence"]["mae"]
    assert mse["method"] == mae["method"] == "t"
    assert mse["n"] == mae["n"] == 40 and not mse["too_few"]
    assert mse["value"] == pytest.approx(float(np.mean(errors**2)))
    assert mae["value"] == pytest.approx(float(np.mean(np.abs(errors))))
    _holds_its_value(mse)
    _holds_its_value(mae)
    # The t half-width from the sums: s / sqrt(n) times the t quantile (2.023 at 39 df).
    squared = errors**2
    half = 2.0227 * squared.std(ddof=1) / np.sqrt(40)
    assert mse["high"] - mse["value"] == pytest.approx(half, rel=1e-3)


def test_the_api_gives_every_rate_its_interval_and_its_count(people, api):
    alice, manager = people["alice"], people["manager"]
    use_case = make_use_case(members=[alice, manager], level="assisted", audit_rate=0)
    register_model(use_case, constant_classifier_bytes("office", 0.8))
    for n in range(40):
        send(use_case, n, at=T0 + timedelta(minutes=n))
    for n in range(36):
        decide_next(use_case, alice, "office" if n % 4 else "travel", at=T0 + timedelta(hours=1))
    rollups_fold()

    body = _metrics(api, manager, use_case)
    evidence = body["evidence"]
    assert evidence["automation_rate"]["n"] == 40 == Item.objects.filter(use_case=use_case).count()
    assert evidence["override_rate"]["n"] == 36
    assert evidence["override_rate"]["value"] == pytest.approx(9 / 36) == body["override_rate"]
    assert evidence["accuracy"]["n"] == body["labelled"] == 36
    assert evidence["null_output_rate"]["n"] == 40
    for name in ("override_rate", "accuracy", "automation_rate", "null_output_rate"):
        _holds_its_value(evidence[name])
        assert evidence[name]["method"] == "wilson" and not evidence[name]["too_few"]
    # Nothing was audited or double-reviewed: no figure, and it says it rests on nothing.
    assert evidence["audit_error_rate"] == {
        "value": None,
        "low": None,
        "high": None,
        "n": 0,
        "method": "wilson",
        "too_few": True,
    }
    # In assisted every scored item is reviewed: the weighted estimate is the plain agreement.
    weighted = body["estimates"]["model_accuracy"]
    assert weighted["label"] == "model accuracy, weighted estimate"
    assert weighted["value"] == pytest.approx(27 / 36)
    assert weighted["method"] == "stratified"
    _holds_its_value(weighted)


def test_a_small_window_is_flagged_as_too_few(people, api):
    alice, manager = people["alice"], people["manager"]
    use_case = make_use_case(members=[alice, manager], level="assisted", audit_rate=0)
    register_model(use_case, constant_classifier_bytes("office", 0.8))
    for n in range(12):
        send(use_case, n, at=T0)
    for _ in range(12):
        decide_next(use_case, alice, "office", at=T0 + timedelta(minutes=5))
    rollups_fold()
    body = _metrics(api, manager, use_case)
    assert body["evidence"]["override_rate"]["n"] == 12 < MIN_EVIDENCE
    assert body["evidence"]["override_rate"]["too_few"] is True


@pytest.fixture
def routed_at_partial(people):
    """150 invoices at ``partial``: the confident ones decided by the model, 30% of those
    audited blind; the rest reviewed. Every human answers with the rule that made the training
    labels, so the model's true accuracy is known item by item."""
    alice = people["alice"]
    use_case = make_use_case(
        members=[alice, people["manager"]],
        level="partial",
        confidence_threshold=0.8,
        audit_rate=0.3,
    )
    register_model(use_case, classifier_bytes())
    rng = np.random.default_rng(7)
    for n in range(150):
        features = {
            "amount": float(round(rng.gamma(2.0, 50.0), 2)),
            "kind": str(rng.choice(list("abc"))),
            "vendor": "ACME",
        }
        item_ingest(use_case=use_case, external_id=f"x-{n}", features=features, now=T0)
    review_all(use_case, alice, lambda task: truth(task.item.features), now=T0 + timedelta(hours=1))
    rollups_fold()
    predictions = Prediction.objects.filter(item__use_case=use_case, error="")
    right = [label == truth(f) for label, f in predictions.values_list("label", "item__features")]
    return use_case, float(np.mean(right))


def test_weighted_accuracy_corrects_for_reviewers_seeing_the_hard_items(
    routed_at_partial, people, api
):
    use_case, true_accuracy = routed_at_partial
    body = _metrics(api, people["manager"], use_case)
    assert body["routes"]["auto"] > body["routes"]["assisted"] > 0
    estimates = body["estimates"]
    weighted = estimates["model_accuracy"]
    reviewed = estimates["reviewed_agreement"]
    naive = body["evidence"]["accuracy"]
    # Review sees the low-confidence items, where the model is wrong more often: agreement
    # among labelled items understates the model's accuracy over everything it scored.
    assert reviewed["value"] < naive["value"] < weighted["value"]
    assert weighted["value"] == pytest.approx(true_accuracy, abs=0.02)
    assert weighted["low"] <= true_accuracy <= weighted["high"]
    assert weighted["n"] == body["labelled"]
    assert reviewed["n"] == body["routes"]["assisted"]
    assert reviewed["label"] == "agreement among reviewed items"
    # Audits are the only labels on automated items; the error count scales their rate.
    error = estimates["automated_error_rate"]
    wrong = estimates["wrong_automated_decisions"]
    audited = HourlyRollup.objects.filter(use_case=use_case).aggregate(n=Sum("audited"))["n"]
    assert error["n"] == audited > 0
    assert wrong["value"] == pytest.approx(error["value"] * body["routes"]["auto"])
    assert wrong["high"] == pytest.approx(error["high"] * body["routes"]["auto"])
    assert wrong["high"] > 0  # no error seen in the audits is not proof of none


def test_a_rebuild_refills_the_audit_stratum(routed_at_partial):
    use_case, _ = routed_at_partial
    fields = ("hour", "audited", "audited_agree", "labelled", "agree", "route_auto")
    rows = HourlyRollup.objects.filter(use_case=use_case).order_by("hour").values_list(*fields)
    before = list(rows)
    assert sum(row[1] for row in before) > 0
    rollups_rebuild(use_case=use_case)
    assert list(rows) == before
