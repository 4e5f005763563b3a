"""Predictions made outside the app: routed, reviewed and measured exactly like our own.

The first half runs the same expectations twice, once with the champion scoring here and once
with the caller sending the same answer; the second half covers what only external use cases
have (the caller's contract, malformed predictions, versions registered on first sight).
"""

import io
import math

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from django.utils import timezone
from sklearn.dummy import DummyRegressor

from deployments.models import ModelVersion, ModelVersionEvent, UseCase
from deployments.policy import BUCKETS
from deployments.services.model_versions import model_version_challenge, model_version_promote
from deployments.services.policies import policy_change
from deployments.services.use_cases import use_case_update
from reviewapp.core.errors import Conflict
from reviewapp.core.roles import Role
from reviewapp.monitoring.services import rollups_fold
from reviewapp.reviews.models import Disagreement, Item, Prediction, ReviewTask
from tests.factories import (
    constant_classifier_bytes,
    invoice,
    make_use_case,
    make_user,
    register_model,
)

pytestmark = pytest.mark.django_db

SOURCES = ["registry", "external"]


def constant_regressor_bytes(value: float) -> bytes:
    frame = pd.DataFrame({"x": np.arange(10.0), "y": np.zeros(10)})
    return sio.dumps(DummyRegressor(strategy="constant", constant=value).fit(frame, frame["x"]))


class Harness:
    """One use case whose model answers the same way whether it runs here or at the caller."""

    def __init__(self, api, source: str):
        self.api, self.source = api, source
        self.caller = make_user(Role.INTEGRATION)
        self.reviewer = make_user(Role.REVIEWER)
        self.second_reviewer = make_user(Role.REVIEWER)
        self.analyst = make_user(Role.ML_ENGINEER)
        self.answer: dict = {}

    @property
    def members(self):
        return [self.caller, self.reviewer, self.second_reviewer, self.analyst]

    def use_case(self, *, task_type: str = "classification", **policy) -> UseCase:
        # One slug for both sources, so items fall in the same sampling buckets.
        self.uc = make_use_case(
            slug="invoices", task_type=task_type, members=self.members, **policy
        )
        if self.source == "external":
            self.uc = use_case_update(
                use_case=self.uc, changes={"prediction_source": UseCase.PredictionSource.EXTERNAL}
            )
        return self.uc

    def model(self, label: str = "office", confidence: float | None = 0.8, *, value=None):
        """The champion "v1" answers ``label`` (or ``value``) with ``confidence``."""
        if self.source == "registry":
            data = (
                constant_classifier_bytes(label, confidence)
                if value is None
                else constant_regressor_bytes(value)
            )
            register_model(self.uc, data, version="v1")
            return
        self.answer = {"model_version": "v1"}
        if value is None:
            self.answer.update(label=label, confidence=confidence)
        else:
            self.answer["value"] = value

    def body(self, n: int, **features) -> dict:
        if self.uc.is_classification:
            body = invoice(n, **features)
        else:
            body = {"external_id": f"r{n}", "features": {"x": float(n), "y": 0.0, **features}}
        if self.source == "external":
            body["prediction"] = dict(self.answer)
        return body

    def send(self, n: int, **features) -> dict:
        response = self.api(self.caller).post(
            f"/api/v1/use-cases/{self.uc.slug}/items/", self.body(n, **features), format="json"
        )
        assert response.status_code == 201, response.content
        return response.json()

    def review_all(self, answer: dict, reviewer=None) -> int:
        client = self.api(reviewer or self.reviewer)
        done = 0
        while True:
            response = client.post(f"/api/v1/use-cases/{self.uc.slug}/review/next/")
            if response.status_code == 204:
                return done
            task = response.json()["task"]
            decided = client.post(f"/api/v1/review/tasks/{task}/decision/", answer, format="json")
            assert decided.status_code == 201, decided.content
            done += 1

    def metrics(self) -> dict:
        rollups_fold()  # the tests' transactions never commit, so nothing folded them yet
        return self.api(self.analyst).get(f"/api/v1/use-cases/{self.uc.slug}/metrics/").json()

    def export(self, fmt: str = "csv", **params) -> bytes:
        query = "&".join(f"{k}={v}" for k, v in {"format": fmt, **params}.items())
        response = self.api(self.analyst).get(
            f"/api/v1/use-cases/{self.uc.slug}/disagreements/?{query}"
        )
        assert response.status_code == 200
        return b"".join(response.streaming_content)


@pytest.fixture(params=SOURCES)
def world(request, api) -> Harness:
    return Harness(api, request.param)


# --- routing: the same expectations for both sources ---------------------------------------


def test_human_only_never_consults_the_model(world):
    world.use_case()
    world.model("office", 0.97)
    body = world.send(1)
    assert (body["route"], body["status"], body["prediction"]) == ("human", "in_review", None)
    assert not Prediction.objects.exists()
    assert not ReviewTask.objects.get().show_suggestion


def test_shadow_predicts_silently_and_sends_to_a_blind_review(world):
    world.use_case(level="shadow")
    world.model("office", 0.97)
    body = world.send(1)
    assert body["route"] == "blind" and body["status"] == "in_review"
    assert body["decision"] is None
    assert body["prediction"] == {"label": "office", "confidence": 0.97, "model_version": "v1"}
    assert not ReviewTask.objects.get().show_suggestion


def test_assisted_shows_the_suggestion_to_the_reviewer(world):
    world.use_case(level="assisted")
    world.model("office", 0.7)
    assert world.send(1)["route"] == "assisted"
    task = world.api(world.reviewer).post(f"/api/v1/use-cases/{world.uc.slug}/review/next/")
    suggestion = task.json()["suggestion"]
    assert (suggestion["label"], suggestion["confidence"]) == ("office", 0.7)


@pytest.mark.parametrize(
    ("confidence", "route", "decision"),
    [(0.95, "auto", {"label": "office", "source": "model"}), (0.6, "assisted", None)],
)
def test_partial_decides_alone_only_above_the_threshold(world, confidence, route, decision):
    world.use_case(level="partial", confidence_threshold=0.9, audit_rate=0.0)
    world.model("office", confidence)
    body = world.send(1)
    assert (body["route"], body["decision"]) == (route, decision)
    assert ReviewTask.objects.filter(show_suggestion=True).count() == (route == "assisted")


def test_full_decides_alone_whatever_the_confidence(world):
    world.use_case(level="full", audit_rate=0.0)
    world.model("other", 0.4)
    body = world.send(1)
    assert body["status"] == "decided"
    assert body["decision"] == {"label": "other", "source": "model"}
    assert not ReviewTask.objects.exists()


def test_the_ramp_automates_the_same_sticky_share_of_items(world):
    world.use_case(level="partial", confidence_threshold=0.5, traffic_percent=50, audit_rate=0)
    world.model("office", 0.9)
    routes = {n: world.send(n)["route"] for n in range(40)}
    in_ramp = {
        item.external_id for item in Item.objects.all() if item.ramp_bucket < BUCKETS * 50 // 100
    }
    automated = {f"inv-{n}" for n, route in routes.items() if route == "auto"}
    assert automated == in_ramp and 0 < len(automated) < 40
    # out of the ramp the valid prediction is still shown to a human
    assert {routes[n] for n in routes if f"inv-{n}" not in in_ramp} == {"assisted"}


def test_audits_sample_automated_items_and_find_the_model_wrong(world):
    world.use_case(level="full", audit_rate=1.0)
    world.model("office", 0.99)
    assert world.send(1)["route"] == "auto"
    task = ReviewTask.objects.get()
    assert (task.reason, task.show_suggestion) == ("audit", False)
    world.review_all({"label": "travel"})
    disagreement = Disagreement.objects.get()
    assert disagreement.kind == "audit" and disagreement.model_version.version == "v1"
    # the model's decision stands for the caller until a human answers: then the human's does
    body = world.api(world.caller).get(f"/api/v1/use-cases/{world.uc.slug}/items/inv-1/").json()
    assert body["decision"] == {"label": "travel", "source": "human"}


def test_double_review_adds_a_blind_second_task(world):
    world.use_case(level="assisted", double_review_rate=1.0)
    world.model("office", 0.8)
    world.send(1)
    tasks = sorted(ReviewTask.objects.values_list("reason", "show_suggestion"))
    assert tasks == [("double_review", False), ("review", True)]


def test_batch_items_route_like_realtime_ones(world, django_capture_on_commit_callbacks):
    world.use_case(level="partial", confidence_threshold=0.75, audit_rate=0.0)
    world.model("office", 0.8)
    with django_capture_on_commit_callbacks(execute=True):
        response = world.api(world.caller).post(
            f"/api/v1/use-cases/{world.uc.slug}/items/batch/",
            {"items": [world.body(n) for n in range(12)]},
            format="json",
        )
    assert response.status_code == 202
    job = world.api(world.caller).get(f"/api/v1/jobs/{response.json()['job']}/").json()
    assert (job["state"], job["done"]) == ("done", 12)
    assert (
        Item.objects.filter(status="decided", route="auto", decision_label="office").count() == 12
    )
    assert set(Prediction.objects.values_list("model_version__version", flat=True)) == {"v1"}


def test_regression_routes_on_the_value(world):
    world.use_case(task_type="regression", level="full", audit_rate=0.0)
    world.model(value=5.0)
    body = world.send(1)
    assert body["decision"] == {"value": 5.0, "source": "model"}
    assert body["prediction"] == {"value": 5.0, "confidence": None, "model_version": "v1"}


def test_regression_without_confidence_never_decides_alone_under_partial(world):
    world.use_case(task_type="regression", level="partial", confidence_threshold=0.1)
    world.model(value=5.0)
    assert world.send(1)["route"] == "assisted"


def test_a_guardrail_step_down_takes_effect_on_the_next_item(world):
    world.use_case(level="full", audit_rate=0.0)
    world.model("office", 0.95)
    assert world.send(1)["route"] == "auto"
    # what a breached guardrail does: the system writes a lower level
    policy_change(
        use_case=world.uc,
        actor=None,
        changes={"level": "assisted"},
        reason="guardrail breached: override rate 0.4 > 0.2",
    )
    body = world.send(2)
    assert (body["route"], body["decision"]) == ("assisted", None)
    assert world.uc.policies.order_by("-version").first().changed_by_system


# --- disagreements, metrics and exports: the same for both sources -------------------------


def test_shadow_disagreements_are_recorded_and_exported(world):
    world.use_case(level="shadow")
    world.model("office", 0.8)
    for n in range(3):
        world.send(n)
    assert world.review_all({"label": "travel"}) == 3
    rows = pd.read_csv(io.BytesIO(world.export("csv")))
    assert list(rows["kind"]) == ["shadow"] * 3
    assert set(rows["model_version"]) == {"v1"}
    assert set(rows["model_label"]) == {"office"} and set(rows["human_label"]) == {"travel"}
    assert "vendor" not in rows.columns  # PII stays out, whoever made the prediction


def test_overrides_and_acceptances_feed_the_same_metrics(world):
    world.use_case(level="assisted")
    world.model("office", 0.7)
    for n in range(4):
        world.send(n)
    client = world.api(world.reviewer)
    for answer in ("office", "office", "office", "travel"):
        task = client.post(f"/api/v1/use-cases/{world.uc.slug}/review/next/").json()["task"]
        client.post(f"/api/v1/review/tasks/{task}/decision/", {"label": answer}, format="json")
    assert list(Disagreement.objects.values_list("kind", flat=True)) == ["override"]
    metrics = world.metrics()
    assert metrics["override_rate"] == 0.25
    assert metrics["accuracy"] == 0.75 and metrics["labelled"] == 4
    assert metrics["routes"]["assisted"] == 4 and metrics["automation_rate"] == 0.0
    assert metrics["null_outputs"] == 0


def test_regression_disagreements_respect_the_tolerance(world):
    world.use_case(task_type="regression", level="assisted")
    world.model(value=5.0)
    world.send(1)
    world.send(2)
    client = world.api(world.reviewer)
    for value in (6.5, 9.0):  # tolerance 2.0: the first agrees, the second does not
        task = client.post(f"/api/v1/use-cases/{world.uc.slug}/review/next/").json()["task"]
        client.post(f"/api/v1/review/tasks/{task}/decision/", {"value": value}, format="json")
    disagreement = Disagreement.objects.get()
    assert (disagreement.model_value, disagreement.human_value) == (5.0, 9.0)
    assert world.metrics()["mae"] == pytest.approx((1.5 + 4.0) / 2)


def test_a_failed_prediction_is_a_null_output_sent_to_a_human(world, monkeypatch):
    world.use_case(level="full")
    world.model("office", 0.9)
    if world.source == "registry":

        def explode(*args, **kwargs):
            raise RuntimeError("model crashed")

        monkeypatch.setattr("deployments.ml.scoring._classify", explode)
    else:
        world.answer["label"] = "party"  # the edge model said something outside the label set
    body = world.send(1)
    assert (body["route"], body["status"], body["prediction"]) == ("human", "in_review", None)
    assert Prediction.objects.get().error
    metrics = world.metrics()
    assert (metrics["null_outputs"], metrics["null_output_rate"]) == (1, 1.0)


# --- what only external use cases have ---------------------------------------------------------


@pytest.fixture
def edge(api) -> Harness:
    harness = Harness(api, "external")
    harness.use_case(level="partial", confidence_threshold=0.9, audit_rate=0.0)
    return harness


def post(edge: Harness, body: dict):
    return edge.api(edge.caller).post(
        f"/api/v1/use-cases/{edge.uc.slug}/items/", body, format="json"
    )


def with_prediction(n: int, **prediction) -> dict:
    return {**invoice(n), "prediction": prediction}


def test_an_item_without_its_prediction_is_refused_naming_the_field(edge):
    response = post(edge, invoice(1))
    assert response.status_code == 400
    assert "prediction" in response.json()
    assert not Item.objects.exists()


def test_the_prediction_is_required_even_while_humans_decide_everything(api):
    harness = Harness(api, "external")
    harness.use_case()  # human_only: the prediction is not consulted, but the contract holds
    assert post(harness, invoice(1)).status_code == 400
    body = post(harness, with_prediction(2, label="office", model_version="e1")).json()
    assert (body["route"], body["prediction"]) == ("human", None)
    assert not ModelVersion.objects.exists()


@pytest.mark.parametrize(
    ("prediction", "path"),
    [
        ("office", ["prediction"]),
        ({"label": "office"}, ["prediction", "model_version"]),
        ({"label": "office", "model_version": ""}, ["prediction", "model_version"]),
        ({"label": "office", "model_version": "x" * 65}, ["prediction", "model_version"]),
        ({"label": "office", "model_version": 3}, ["prediction", "model_version"]),
        (
            {"label": "office", "confidance": 0.9, "model_version": "e1"},
            ["prediction", "confidance"],
        ),
    ],
    ids=["not an object", "no version", "empty version", "long version", "numeric version", "typo"],
)
def test_what_the_caller_must_fix_is_a_400_naming_it(edge, prediction, path):
    response = post(edge, {**invoice(1), "prediction": prediction})
    assert response.status_code == 400
    detail = response.json()
    for key in path:
        detail = detail[key]
    assert detail
    assert not Item.objects.exists()


def test_a_prediction_sent_to_a_use_case_scored_here_is_refused(api):
    harness = Harness(api, "registry")
    harness.use_case(level="full")
    response = post(harness, with_prediction(1, label="office", model_version="e1"))
    assert response.status_code == 400 and "prediction" in response.json()


MALFORMED = [
    ({"label": "party", "confidence": 0.99}, "not one of the use case's labels"),
    ({"label": "office", "confidence": 1.5}, "outside [0, 1]"),
    ({"label": "office", "confidence": -0.1}, "outside [0, 1]"),
    ({"label": "office", "confidence": "high"}, "confidence 'high' is not a number"),
    ({"label": "office", "confidence": True}, "confidence True is not a number"),
    ({"label": "office", "confidence": math.nan}, "not a finite number"),
    ({"confidence": 0.99}, "no label"),
    ({"label": None, "confidence": 0.99}, "no label"),
    ({"label": ["office"], "confidence": 0.99}, "is not a string"),
    ({"label": 2.5, "confidence": 0.99}, "is not a string"),
    ({"value": 3.0, "confidence": 0.99}, "no label"),
]


@pytest.mark.parametrize(("prediction", "reason"), MALFORMED, ids=[r for _, r in MALFORMED])
def test_a_malformed_prediction_is_a_counted_null_output(edge, prediction, reason):
    body = post(edge, with_prediction(1, model_version="edge-1", **prediction)).json()
    assert (body["status"], body["route"], body["prediction"]) == ("in_review", "human", None)
    stored = Prediction.objects.get()
    assert reason in stored.error
    assert stored.model_version.version == "edge-1" and stored.confidence is None
    task = ReviewTask.objects.get()
    assert not task.show_suggestion  # a null output never shows a suggestion
    metrics = edge.metrics()
    assert (metrics["null_outputs"], metrics["null_output_rate"]) == (1, 1.0)


def test_malformed_predictions_in_a_batch_are_null_outputs_too(
    edge, django_capture_on_commit_callbacks
):
    rows = [
        with_prediction(n, label="office", confidence=0.95, model_version="e1") for n in range(4)
    ]
    rows[1]["prediction"]["confidence"] = 7
    rows[2]["prediction"]["label"] = "party"
    with django_capture_on_commit_callbacks(execute=True):
        response = edge.api(edge.caller).post(
            f"/api/v1/use-cases/{edge.uc.slug}/items/batch/", {"items": rows}, format="json"
        )
    assert response.status_code == 202
    routes = dict(Item.objects.values_list("external_id", "route"))
    assert routes == {"inv-0": "auto", "inv-1": "human", "inv-2": "human", "inv-3": "auto"}
    assert edge.metrics()["null_outputs"] == 2


def test_a_batch_row_without_its_prediction_refuses_the_batch_naming_the_row(edge):
    rows = [with_prediction(n, label="office", model_version="e1") for n in range(4)]
    del rows[3]["prediction"]
    response = edge.api(edge.caller).post(
        f"/api/v1/use-cases/{edge.uc.slug}/items/batch/", {"items": rows}, format="json"
    )
    assert response.status_code == 400
    assert "prediction" in response.json()["items"]["3"]
    assert not Item.objects.exists()


def test_digit_labels_may_arrive_as_numbers(api):
    harness = Harness(api, "external")
    uc = make_use_case(members=[harness.caller], level="full", audit_rate=0.0)
    use_case_update(
        use_case=uc,
        changes={"labels": ["0", "1", "2"], "prediction_source": UseCase.PredictionSource.EXTERNAL},
    )
    harness.uc = uc
    body = post(harness, with_prediction(1, label=2, confidence=0.9, model_version="e1")).json()
    assert body["decision"] == {"label": "2", "source": "model"}


def test_versions_are_registered_on_first_sight_with_their_history(edge):
    post(edge, with_prediction(1, label="office", confidence=0.95, model_version="edge-2.1"))
    post(edge, with_prediction(2, label="office", confidence=0.95, model_version="edge-2.2"))
    post(edge, with_prediction(3, label="office", confidence=0.95, model_version="edge-2.1"))
    listed = edge.api(edge.analyst).get(f"/api/v1/use-cases/{edge.uc.slug}/models/").json()
    assert [(m["version"], m["role"], m["source"]) for m in listed] == [
        ("edge-2.2", "challenger", "external"),
        ("edge-2.1", "champion", "external"),
    ]
    assert listed[0]["environment"]["served_outside"] is True
    assert listed[0]["environment"]["recorded"] is False
    events = list(
        ModelVersionEvent.objects.order_by("id").values_list("model_version__version", "action")
    )
    assert events == [
        ("edge-2.1", "register"),
        ("edge-2.1", "promote"),
        ("edge-2.2", "register"),
        ("edge-2.2", "challenge"),
    ]


def test_a_non_champion_version_still_routes_its_item_against_its_own_version(edge):
    post(edge, with_prediction(1, label="office", confidence=0.95, model_version="edge-2.1"))
    body = post(
        edge, with_prediction(2, label="travel", confidence=0.95, model_version="edge-2.2")
    ).json()
    # edge-2.2 is a challenger, but it is the model that answered: it decides like any other
    assert body["decision"] == {"label": "travel", "source": "model"}
    assert body["prediction"]["model_version"] == "edge-2.2"
    unsure = post(
        edge, with_prediction(3, label="travel", confidence=0.5, model_version="edge-2.2")
    ).json()
    assert unsure["route"] == "assisted"
    edge.review_all({"label": "other"})
    disagreement = Disagreement.objects.get()
    # the prediction that routed the item was the reviewer's suggestion: an override, not a
    # shadow "challenger" disagreement
    assert (disagreement.kind, disagreement.model_version.version) == ("override", "edge-2.2")
    exported = pd.read_csv(io.BytesIO(edge.export("csv", model_version="edge-2.2")))
    assert list(exported["external_id"]) == ["inv-3"]
    assert edge.export("csv", model_version="edge-2.1").count(b"\n") == 1  # header only
    assert edge.metrics()["automation_rate"] == pytest.approx(2 / 3)


def test_promotion_and_rollback_of_external_versions_keep_their_history(edge):
    post(edge, with_prediction(1, label="office", confidence=0.95, model_version="edge-2.1"))
    post(edge, with_prediction(2, label="office", confidence=0.95, model_version="edge-2.2"))
    base = f"/api/v1/use-cases/{edge.uc.slug}/models/"
    client = edge.api(edge.analyst)
    promoted = client.post(f"{base}edge-2.2/promote/", {"reason": "newer"}, format="json")
    assert promoted.json()["role"] == "champion"
    # a retired version's predictions still route: the caller's model answered
    body = post(
        edge, with_prediction(3, label="office", confidence=0.95, model_version="edge-2.1")
    ).json()
    assert body["route"] == "auto" and body["prediction"]["model_version"] == "edge-2.1"
    rolled_back = client.post(f"{base}rollback/", {"reason": "edge-2.2 errs"}, format="json")
    assert rolled_back.json()["version"] == "edge-2.1"
    roles = dict(ModelVersion.objects.values_list("version", "role"))
    assert roles == {"edge-2.1": "champion", "edge-2.2": "retired"}


def test_resending_an_item_keeps_its_first_prediction(edge):
    first = post(edge, with_prediction(1, label="office", confidence=0.95, model_version="e1"))
    again = post(edge, with_prediction(1, label="travel", confidence=0.95, model_version="e2"))
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    assert not ModelVersion.objects.filter(version="e2").exists()
    assert Prediction.objects.count() == 1


def test_uploads_are_refused_for_an_external_use_case(edge):
    from django.core.files.uploadedfile import SimpleUploadedFile

    response = edge.api(edge.analyst).post(
        f"/api/v1/use-cases/{edge.uc.slug}/models/",
        {"version": "v1", "file": SimpleUploadedFile("m.skops", constant_classifier_bytes())},
        format="multipart",
    )
    assert response.status_code == 400 and "callers" in response.json()["file"][0]


# --- switching the source --------------------------------------------------------------------


def test_switching_to_external_before_any_item_retires_the_uploaded_champion(api):
    manager = make_user(Role.MANAGER)
    caller = make_user(Role.INTEGRATION)
    uc = make_use_case(members=[manager, caller], level="full", audit_rate=0.0)
    register_model(uc, constant_classifier_bytes("office", 0.9))
    response = api(manager).patch(
        f"/api/v1/use-cases/{uc.slug}/", {"prediction_source": "external"}, format="json"
    )
    assert response.status_code == 200 and response.json()["prediction_source"] == "external"
    assert ModelVersion.objects.get(version="v1").role == "retired"
    body = (
        api(caller)
        .post(
            f"/api/v1/use-cases/{uc.slug}/items/",
            with_prediction(1, label="travel", confidence=0.9, model_version="edge-1"),
            format="json",
        )
        .json()
    )
    # the first version the callers serve is the champion, not a challenger of a model that
    # no longer answers
    assert ModelVersion.objects.get(version="edge-1").role == "champion"
    assert body["decision"] == {"label": "travel", "source": "model"}
    # once items arrived, the source is part of the callers' contract
    again = api(manager).patch(
        f"/api/v1/use-cases/{uc.slug}/", {"prediction_source": "registry"}, format="json"
    )
    assert again.status_code == 400 and "prediction_source" in again.json()
    unchanged = api(manager).patch(
        f"/api/v1/use-cases/{uc.slug}/", {"prediction_source": "external"}, format="json"
    )
    assert unchanged.status_code == 200  # restating the contract is not changing it


def test_a_use_case_scored_here_cannot_take_an_external_version_as_champion(api):
    manager = make_user(Role.MANAGER)
    uc = make_use_case(members=[manager])
    use_case_update(use_case=uc, changes={"prediction_source": "external"})
    from deployments.services.model_versions import model_version_external_get_or_register

    model_version_external_get_or_register(use_case=uc, version="edge-1")
    use_case_update(use_case=uc, changes={"prediction_source": "registry"})
    assert ModelVersion.objects.get().role == "retired"
    for action in ("promote", "challenge"):
        response = api(manager).post(
            f"/api/v1/use-cases/{uc.slug}/models/edge-1/{action}/", {"reason": "try"}, format="json"
        )
        assert response.status_code == 409
        assert "served outside the app" in response.json()["version"][0]
    with pytest.raises(Conflict, match="served outside"):
        model_version_promote(use_case=uc, version="edge-1", actor=manager, reason="try")


def test_a_pending_item_that_lost_its_prediction_goes_to_a_human(edge):
    from reviewapp.reviews.services.ingest import items_store_pending
    from reviewapp.reviews.services.scoring import items_score

    ids = items_store_pending(
        use_case=edge.uc,
        rows=[("a", {"amount": 1.0}, None), ("b", {"amount": 1.0}, {"label": 1, "x": 2})],
        now=timezone.now(),
    )
    assert items_score(item_ids=ids) == 2
    assert set(Item.objects.values_list("status", "route")) == {("in_review", "human")}


def test_a_regression_decision_meets_a_whole_and_a_fractional_answer(
    world, django_capture_on_commit_callbacks
):
    """The champion answers 5.0, a whole number, and a challenger 2.5: the reviewer's 9.0
    differs from both, and both disagreements keep the models' values as numbers."""
    if world.source != "registry":
        pytest.skip("a challenger runs here, on a use case scored here")
    world.use_case(task_type="regression", level="assisted")
    world.model(value=5.0)
    register_model(world.uc, constant_regressor_bytes(2.5), version="v2")
    model_version_challenge(use_case=world.uc, version="v2", actor=None)
    with django_capture_on_commit_callbacks(execute=True):
        world.send(1)  # the challenger scores it after the commit
    challenged = Prediction.objects.get(model_version__version="v2")
    assert world.review_all({"value": 9.0}) == 1
    recorded = {
        d.model_version.version: (d.kind, d.model_value, d.human_value)
        for d in Disagreement.objects.select_related("model_version")
    }
    assert recorded == {"v1": ("override", 5.0, 9.0), "v2": ("challenger", 2.5, 9.0)}
    assert all(isinstance(d.model_value, float) for d in Disagreement.objects.all())
    assert challenged.value == 2.5
