"""The rollups against figures worked out by hand on small seeded data, and a rebuild from the
raw rows against what the incremental folds produced."""

import io
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from django.core.management import call_command

from deployments.ml.reference import numeric_bin_fractions, psi
from deployments.services.model_versions import model_version_challenge
from deployments.services.policies import policy_change
from reviewapp.monitoring import stats
from reviewapp.monitoring.aggregation import FEATURE_COUNTERS, HOURLY_COUNTERS, HOURLY_MAPS
from reviewapp.monitoring.models import FeatureRollup, HourlyRollup, RollupEvent
from reviewapp.monitoring.selectors import metrics_summary
from reviewapp.monitoring.services import rollups_fold, rollups_rebuild
from reviewapp.reviews.models import Decision, Prediction
from reviewapp.reviews.services.ingest import item_ingest
from reviewapp.reviews.services.review import review_task_claim, review_task_decide
from reviewapp.reviews.services.scoring import challenger_score
from reviewapp.reviews.signals import decision_recorded
from tests.factories import (
    classifier_bytes,
    constant_classifier_bytes,
    invoice,
    make_use_case,
    register_model,
    training_frame,
)

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def send(use_case, n, *, at, **features):
    body = invoice(n, **features)
    return item_ingest(
        use_case=use_case, external_id=body["external_id"], features=body["features"], now=at
    ).item


def decide_next(use_case, user, label=None, *, at, value=None):
    task = review_task_claim(use_case=use_case, user=user, now=at)
    assert task is not None
    review_task_decide(task=task, user=user, label=label, value=value, now=at)
    return task


def regression_judged(members, reviewer, predicted, human):
    """A regression use case fed external predictions, each judged by ``reviewer`` with the
    matching ``human`` value, and folded into the rollups."""
    use_case = make_use_case(
        members=members, level="assisted", task_type="regression", audit_rate=0
    )
    use_case.prediction_source = "external"
    use_case.save(update_fields=["prediction_source"])
    for n, value in enumerate(predicted):
        item_ingest(
            use_case=use_case,
            external_id=f"r-{n}",
            features={"x": float(n), "y": 1.0},
            prediction={"value": value, "model_version": "edge-1"},
            now=T0,
        )
    for value in human:
        decide_next(use_case, reviewer, value=value, at=T0 + timedelta(minutes=5))
    rollups_fold()
    return use_case


def test_automation_override_and_accuracy_match_the_hand_count(people):
    alice = people["alice"]
    use_case = make_use_case(members=[alice], level="assisted", audit_rate=0)
    register_model(use_case, constant_classifier_bytes("office", 0.8))
    # Ten items in assisted: the reviewer accepts 7 suggestions and overrides 3.
    for n in range(10):
        send(use_case, n, at=T0 + timedelta(minutes=n))
    for n in range(10):
        decide_next(use_case, alice, "office" if n < 7 else "travel", at=T0 + timedelta(hours=1))
    # Then full automation: ten more items decided by the model alone.
    policy_change(
        use_case=use_case, actor=people["manager"], changes={"level": "full"}, reason="go", now=T0
    )
    for n in range(10, 20):
        send(use_case, n, at=T0 + timedelta(hours=2))
    assert rollups_fold() > 0
    figures = metrics_summary(use_case=use_case)
    assert figures["items"] == 20
    assert figures["routes"] == {"auto": 10, "assisted": 10, "blind": 0, "human": 0}
    assert figures["automation_rate"] == 0.5
    assert figures["decisions"] == 10
    assert figures["override_rate"] == pytest.approx(3 / 10)
    assert figures["accuracy"] == pytest.approx(7 / 10)
    assert figures["labelled"] == 10
    assert figures["in_review"] == 0
    assert figures["null_outputs"] == 0
    # A window holding only the first hour sees only the assisted items.
    first_hour = metrics_summary(use_case=use_case, since=T0, until=T0 + timedelta(hours=1))
    assert first_hour["items"] == 10
    assert first_hour["automation_rate"] == 0.0


def test_latency_percentiles_come_back_within_a_bucket(people):
    use_case = make_use_case(members=[people["alice"]], level="shadow")
    register_model(use_case, constant_classifier_bytes("office", 0.8))
    items = [send(use_case, n, at=T0) for n in range(100)]
    # 50 predictions took 2 ms, 45 took 20 ms and 5 took 200 ms: p50 = 2, p95 = 20, p99 = 200,
    # read back within one bucket (a factor 2 ** 0.25).
    latencies = [2.0] * 50 + [20.0] * 45 + [200.0] * 5
    for item, latency in zip(items, latencies, strict=True):
        Prediction.objects.filter(pk=item.prediction_id).update(latency_ms=latency)
    rollups_fold()
    figures = metrics_summary(use_case=use_case)["latency_ms"]
    growth = 2 ** (1 / stats.DURATION_STEPS_PER_DOUBLING)
    for key, truth in (("p50", 2.0), ("p95", 20.0), ("p99", 200.0)):
        assert truth / growth <= figures[key] <= truth * growth, key
    assert figures["mean"] == pytest.approx(np.mean(latencies))


def test_mse_and_mae_against_human_values(people, api):
    alice = people["alice"]
    predicted, human = [10.0, 20.0, 30.0, 40.0], [12.0, 17.0, 30.0, 44.0]
    use_case = regression_judged([alice, people["caller"]], alice, predicted, human)
    figures = metrics_summary(use_case=use_case)
    errors = np.array(predicted) - np.array(human)  # -2, 3, 0, -4
    assert figures["mse"] == pytest.approx((4 + 9 + 0 + 16) / 4)
    assert figures["mae"] == pytest.approx((2 + 3 + 0 + 4) / 4)
    assert figures["mse"] == pytest.approx(np.mean(errors**2))
    assert figures["labelled"] == 4


def test_missing_rate_and_psi_for_a_known_shift(people):
    use_case = make_use_case(members=[people["alice"]], level="shadow")
    register_model(use_case, classifier_bytes())
    reference = training_frame()[0]["amount"].to_numpy()
    # Live amounts are the training amounts tripled; every fourth item has no kind.
    live = reference[:200] * 3
    for n, amount in enumerate(live):
        overrides = {"amount": float(amount)}
        if n % 4 == 0:
            overrides["kind"] = None
        send(use_case, n, at=T0, **overrides)
    rollups_fold()
    features = {f["feature"]: f for f in metrics_summary(use_case=use_case)["features"]}
    assert features["kind"]["missing_rate"] == pytest.approx(50 / 200)
    assert features["amount"]["missing_rate"] == 0
    # The expected PSI, computed straight from the two samples on the reference deciles.
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, 11)[1:-1]))
    expected = psi(numeric_bin_fractions(reference, edges), numeric_bin_fractions(live, edges))
    assert features["amount"]["psi"] == pytest.approx(expected, rel=1e-9)
    assert features["amount"]["psi"] > 0.25
    assert features["amount"]["out_of_range"] == int((live > reference.max()).sum())
    assert features["amount"]["mean"] == pytest.approx(live.mean())
    assert features["amount"]["std"] == pytest.approx(live.std(ddof=1))
    # Worst drift first. The vendor names are all new (the training data had only "ACME"), but
    # the vendor is personal data: left out of drift, as the drift guardrail leaves it out.
    summary = metrics_summary(use_case=use_case)["features"]
    assert [f["feature"] for f in summary] == ["amount", "kind", "vendor"]
    vendor = next(f for f in summary if f["feature"] == "vendor")
    assert vendor["psi"] is None and vendor["drift_excluded"] == "personal data"


def test_unseen_categories_are_counted_against_the_training_categories(people):
    use_case = make_use_case(members=[people["alice"]], level="shadow")
    register_model(use_case, classifier_bytes())
    # The training data has kinds a, b and c; the schema allows them all, and all are seen.
    for n in range(9):
        send(use_case, n, at=T0)
    rollups_fold()
    kind = next(f for f in metrics_summary(use_case=use_case)["features"] if f["feature"] == "kind")
    assert kind["unseen"] == 0
    assert kind["psi"] is not None


def _snapshot(use_case):
    hourly = {
        (r.model_version_id, r.shadow, r.hour): {
            **{f: getattr(r, f) for f in HOURLY_COUNTERS},
            **{f: getattr(r, f) for f in HOURLY_MAPS},
        }
        for r in HourlyRollup.objects.filter(use_case=use_case)
    }
    features = {
        (r.model_version_id, r.hour, r.feature): {
            **{f: getattr(r, f) for f in FEATURE_COUNTERS},
            "min": r.min,
            "max": r.max,
            "hist": r.hist,
        }
        for r in FeatureRollup.objects.filter(use_case=use_case)
    }
    return hourly, features


def _approx(rows):
    return {
        key: {
            # Sums of floats may differ in the last bit with the order they were added in.
            f: (pytest.approx(v) if isinstance(v, float | dict) else v)
            for f, v in row.items()
        }
        for key, row in rows.items()
    }


def test_rebuild_equals_the_incremental_result(people, django_capture_on_commit_callbacks):
    alice, bob = people["alice"], people["bob"]
    use_case = make_use_case(
        members=[alice, bob],
        level="partial",
        confidence_threshold=0.75,
        traffic_percent=50,
        audit_rate=0.5,
        double_review_rate=0.3,
    )
    register_model(use_case, classifier_bytes())
    challenger = register_model(use_case, classifier_bytes(seed=3), version="v2")
    model_version_challenge(use_case=use_case, version="v2", actor=people["manager"])
    at = T0
    with django_capture_on_commit_callbacks(execute=True):
        for n in range(40):
            send(
                use_case,
                n,
                at=at + timedelta(minutes=7 * n),
                kind=None if n % 5 == 0 else "abc"[n % 3],
            )
        # Some decisions, then the challenger scores late for some items already decided.
        for step in range(25):
            reviewer = alice if step % 2 == 0 else bob
            task = review_task_claim(use_case=use_case, user=reviewer, now=at + timedelta(hours=5))
            if task is None:
                continue
            review_task_decide(
                task=task,
                user=reviewer,
                label=["travel", "office", "other"][step % 3],
                now=at + timedelta(hours=5, minutes=step),
            )
    Prediction.objects.filter(model_version=challenger).delete()
    RollupEvent.objects.filter(kind="prediction").delete()
    with django_capture_on_commit_callbacks(execute=True):
        from reviewapp.reviews.models import Item

        challenger_score(
            model_version_id=challenger.pk,
            item_ids=list(Item.objects.filter(use_case=use_case).values_list("id", flat=True)),
            now=at + timedelta(hours=6),
        )
    # Recompute what the deletion above took out, then compare a fresh rebuild with it.
    rollups_rebuild(use_case=use_case)
    with django_capture_on_commit_callbacks(execute=True):
        for n in range(40, 60):
            send(use_case, n, at=at + timedelta(hours=7, minutes=n))
        for _ in range(10):
            task = review_task_claim(use_case=use_case, user=alice, now=at + timedelta(hours=8))
            if task is None:
                break
            review_task_decide(task=task, user=alice, label="office", now=at + timedelta(hours=8))
    assert RollupEvent.objects.count() == 0
    incremental = _snapshot(use_case)
    assert incremental[0] and incremental[1]
    totals = metrics_summary(use_case=use_case)
    assert totals["items"] == 60 and totals["decisions"] > 20 and totals["audits"] > 0
    call_command("rebuild_rollups", use_case.slug, stdout=io.StringIO())
    rebuilt = _snapshot(use_case)
    assert rebuilt[0].keys() == incremental[0].keys()
    assert rebuilt[0] == _approx(incremental[0])
    assert rebuilt[1] == _approx(incremental[1])


def test_windows_over_partial_days_count_each_item_once(people):
    use_case = make_use_case(members=[people["alice"]], level="shadow")
    register_model(use_case, classifier_bytes())
    # One item every 5 hours over three days; every third has no kind.
    times = [T0 + timedelta(hours=5 * n) for n in range(15)]
    for n, at in enumerate(times):
        send(use_case, n, at=at, kind=None if n % 3 == 0 else "a")
    rollups_fold()
    since, until = T0 + timedelta(hours=13), T0 + timedelta(hours=61)
    for window in ((None, None), (since, until), (since, None), (None, until)):
        inside = [
            n
            for n, at in enumerate(times)
            if (window[0] is None or at >= window[0]) and (window[1] is None or at < window[1])
        ]
        figures = metrics_summary(use_case=use_case, since=window[0], until=window[1])
        kind = next(f for f in figures["features"] if f["feature"] == "kind")
        assert figures["items"] == len(inside), window
        assert kind["rows"] == len(inside), window
        assert kind["missing_rate"] == pytest.approx(
            sum(1 for n in inside if n % 3 == 0) / len(inside)
        )
        assert kind["checked"] == len(inside) - sum(1 for n in inside if n % 3 == 0)


def test_a_decision_that_rolls_back_records_no_rollup_and_a_committed_one_does(people):
    """The facts' signals run in the writer's transaction: what fails after the rollup receiver
    takes the rollup event down with the decision."""
    alice = people["alice"]
    use_case = make_use_case(members=[alice], level="assisted", audit_rate=0)
    register_model(use_case, constant_classifier_bytes("office", 0.8))
    send(use_case, 1, at=T0)
    task = review_task_claim(use_case=use_case, user=alice, now=T0)

    def fail_after_the_rollup(sender, **kwargs):
        raise RuntimeError("the decision's transaction fails after the rollup receiver ran")

    decisions = RollupEvent.objects.filter(kind=RollupEvent.Kind.DECISION)
    decision_recorded.connect(fail_after_the_rollup, dispatch_uid="test.fail")
    try:
        with pytest.raises(RuntimeError):
            review_task_decide(task=task, user=alice, label="office", now=T0)
    finally:
        decision_recorded.disconnect(dispatch_uid="test.fail")
    assert not Decision.objects.filter(task=task).exists()
    assert not decisions.exists()

    review_task_decide(task=task, user=alice, label="office", now=T0)
    decision = Decision.objects.get(task=task)
    assert list(decisions.values_list("object_id", flat=True)) == [decision.pk]
