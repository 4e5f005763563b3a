"""Graduation readiness and slices on constructed histories, through the API."""

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from deployments.policy import TaskReason
from reviewapp.core.roles import Role
from reviewapp.reviews.models import Decision, Item, Prediction, ReviewTask
from tests.factories import (
    constant_classifier_bytes,
    logged_in_client,
    make_use_case,
    make_user,
    register_model,
    regressor_bytes,
)

pytestmark = pytest.mark.django_db

START = datetime(2026, 3, 2, 9, tzinfo=UTC)
_ids = itertools.count(1)


def every(k: int, i: int) -> bool:
    """True for one index in every ``k`` (k=0: never): a deterministic error rate of 1/k."""
    return bool(k) and i % k == k - 1


def labelled(n, *, model_wrong_every=0, double=0, humans_differ_every=0, kind=lambda i: "a"):
    """Classification rows: the human says "office"; the model is wrong one time in
    ``model_wrong_every``; the first ``double`` items get a second opinion that differs one
    time in ``humans_differ_every``."""
    return [
        (
            {"amount": 10.0, "kind": kind(i)},
            "other" if every(model_wrong_every, i) else "office",
            "office",
            ("other" if every(humans_differ_every, i) else "office") if i < double else None,
        )
        for i in range(n)
    ]


def history(use_case, version, rows, reviewers):
    """Bulk-build decided items. ``rows``: (features, model answer, human answer, second
    answer or None); a second answer is a double review of the same item."""
    classification = use_case.is_classification

    def answer(value) -> dict:
        return {"label": value, "value": None} if classification else {"label": "", "value": value}

    items = []
    for i, (features, _, human, _) in enumerate(rows):
        at = START + timedelta(minutes=i)
        human_answer = answer(human)
        items.append(
            Item(
                use_case=use_case,
                external_id=f"h-{next(_ids)}",
                features=features,
                ramp_bucket=0,
                audit_bucket=0,
                double_review_bucket=0,
                status=Item.Status.DECIDED,
                route="blind",
                decision_label=human_answer["label"],
                decision_value=human_answer["value"],
                decision_source=Item.Source.HUMAN,
                decided_at=at,
                received_at=at,
                routed_at=at,
            )
        )
    Item.objects.bulk_create(items)
    Prediction.objects.bulk_create(
        Prediction(
            item=item,
            use_case=use_case,
            model_version=version,
            confidence=0.9 if classification else None,
            created_at=item.received_at,
            **answer(row[1]),
        )
        for item, row in zip(items, rows, strict=True)
    )
    opinions = []  # (task, answer, reviewer)
    for item, (_, _, human, second) in zip(items, rows, strict=True):
        for reason, value, reviewer in (
            (TaskReason.REVIEW, human, reviewers[0]),
            (TaskReason.DOUBLE_REVIEW, second, reviewers[1]),
        ):
            if value is not None:
                task = ReviewTask(
                    item=item,
                    use_case=use_case,
                    reason=reason,
                    state=ReviewTask.State.DONE,
                    created_at=item.received_at,
                )
                opinions.append((task, value, reviewer))
    ReviewTask.objects.bulk_create(task for task, _, _ in opinions)
    Decision.objects.bulk_create(
        Decision(
            task=task,
            item=task.item,
            use_case=use_case,
            reviewer=reviewer,
            kind=Decision.Kind.BLIND,
            created_at=task.created_at + timedelta(seconds=30),
            **answer(value),
        )
        for task, value, reviewer in opinions
    )


@pytest.fixture
def people():
    return {
        "analyst": make_user(Role.ML_ENGINEER),
        "reviewers": [make_user(Role.REVIEWER), make_user(Role.REVIEWER)],
    }


@pytest.fixture
def shadow_case(people):
    use_case = make_use_case(level="shadow", members=[people["analyst"]])
    version = register_model(use_case, constant_classifier_bytes())
    return use_case, version


def readiness(api, user, use_case, **params):
    return api(user).get(f"/api/v1/use-cases/{use_case.slug}/readiness/", params)


def test_a_model_as_good_as_humans_on_plenty_of_items_is_at_human_level(api, people, shadow_case):
    use_case, version = shadow_case
    # Model 97% right on 2000 items; humans agree 96% on 500 double reviews.
    rows = labelled(2000, model_wrong_every=33, double=500, humans_differ_every=25)
    history(use_case, version, rows, people["reviewers"])
    body = readiness(api, people["analyst"], use_case).json()
    overall = body["overall"]
    assert body["model_version"] == version.version and body["applies"]
    assert overall["verdict"] == "at_human_level"
    assert overall["model"]["n"] == 2000 and overall["human"]["n"] == 500
    assert overall["model"]["low"] < overall["model"]["value"] < overall["model"]["high"]
    assert overall["more_needed"] is None


def test_a_model_clearly_worse_than_humans_is_below_human_level(api, people, shadow_case):
    use_case, version = shadow_case
    rows = labelled(1000, model_wrong_every=5, double=200, humans_differ_every=50)
    history(use_case, version, rows, people["reviewers"])
    overall = readiness(api, people["analyst"], use_case).json()["overall"]
    assert overall["verdict"] == "below_human_level"
    assert overall["model"]["value"] == pytest.approx(0.8)
    assert overall["human"]["value"] == pytest.approx(0.98)
    assert overall["difference"]["high"] < 0


def test_too_few_items_say_how_many_more_would_settle_it(api, people, shadow_case):
    use_case, version = shadow_case
    rows = labelled(40, model_wrong_every=20, double=20, humans_differ_every=10)
    history(use_case, version, rows, people["reviewers"])
    overall = readiness(api, people["analyst"], use_case).json()["overall"]
    assert overall["verdict"] == "not_yet_known"
    # 95% vs 90% on 40 and 20 items: hundreds more settle it, not a handful nor millions.
    assert 100 < overall["more_needed"] < 5000


def test_without_double_review_the_baseline_is_missing(api, people, shadow_case):
    use_case, version = shadow_case
    history(use_case, version, labelled(50), people["reviewers"])
    overall = readiness(api, people["analyst"], use_case).json()["overall"]
    assert overall["verdict"] == "no_baseline"
    assert overall["human"]["n"] == 0 and overall["model"]["n"] == 50


def test_regression_compares_mean_errors_with_t_intervals(api, people):
    use_case = make_use_case(task_type="regression", level="assisted", members=[people["analyst"]])
    version = register_model(use_case, regressor_bytes())
    # The model is off by 1 or 3 (MAE 2); double reviewers differ by 6 or 10 (mean gap 8).
    rows = [
        (
            {"x": 0.0, "y": 0.0},
            100.0 + (1 if i % 2 else 3),
            100.0,
            (106.0 if i % 2 else 110.0) if i < 100 else None,
        )
        for i in range(400)
    ]
    history(use_case, version, rows, people["reviewers"])
    body = readiness(api, people["analyst"], use_case).json()
    overall = body["overall"]
    assert body["metric"] == "mae"
    assert overall["model"]["value"] == pytest.approx(2.0)
    assert overall["human"]["value"] == pytest.approx(8.0)
    assert overall["model_mse"]["value"] == pytest.approx(5.0)
    assert overall["human_mse"]["value"] == pytest.approx(68.0)
    assert overall["verdict"] == "at_human_level" and overall["better"]


def test_slices_flag_the_value_where_the_model_is_worse(api, people, shadow_case):
    use_case, version = shadow_case
    kinds = "abc"
    rows = labelled(900, double=300, humans_differ_every=30, kind=lambda i: kinds[i % 3])
    # The model is wrong on 30% of kind "c" and 2% elsewhere.
    rows = [
        (f, "other" if (f["kind"] == "c" and i % 10 < 3) or i % 50 == 0 else m, h, s)
        for i, (f, m, h, s) in enumerate(rows)
    ]
    history(use_case, version, rows, people["reviewers"])
    response = api(people["analyst"]).get(
        f"/api/v1/use-cases/{use_case.slug}/slices/", {"feature": "kind"}
    )
    assert response.status_code == 200
    body = response.json()
    by_value = {s["value"]: s for s in body["slices"]}
    assert set(by_value) == {"a", "b", "c"}
    assert by_value["c"]["flagged"] and not by_value["a"]["flagged"]
    assert by_value["c"]["quality"]["model"]["n"] == 300
    assert by_value["c"]["quality"]["human"]["n"] == 100


@pytest.mark.parametrize(
    ("feature", "says"),
    [
        (None, "required"),
        ("colour", "no input feature 'colour'"),
        ("amount", "number feature"),
        ("vendor", "personal data"),
    ],
)
def test_slices_refuse_a_feature_they_cannot_slice_by(api, people, shadow_case, feature, says):
    use_case, _ = shadow_case
    params = {"feature": feature} if feature else {}
    response = api(people["analyst"]).get(f"/api/v1/use-cases/{use_case.slug}/slices/", params)
    assert response.status_code == 400
    assert says in " ".join(response.json()["feature"])


def test_slices_refuse_a_feature_with_too_many_values(api, people, shadow_case):
    use_case, version = shadow_case
    rows = labelled(60, kind=lambda i: f"k{i}")
    history(use_case, version, rows, people["reviewers"])
    response = api(people["analyst"]).get(
        f"/api/v1/use-cases/{use_case.slug}/slices/", {"feature": "kind"}
    )
    assert response.status_code == 400
    assert "more than 50 distinct values" in response.json()["feature"][0]


def test_bad_window_and_unknown_version_are_named(api, people, shadow_case):
    use_case, _ = shadow_case
    client = api(people["analyst"])
    path = f"/api/v1/use-cases/{use_case.slug}/readiness/"
    assert "since" in client.get(path, {"since": "yesterday"}).json()
    response = client.get(path, {"model_version": "nope"})
    assert response.status_code == 404 and "model_version" in response.json()


def test_other_use_cases_are_hidden_and_reviewers_refused(api, people, shadow_case):
    use_case, _ = shadow_case
    outsider = make_user(Role.ML_ENGINEER)
    for path in ("readiness/", "slices/?feature=kind"):
        url = f"/api/v1/use-cases/{use_case.slug}/{path}"
        assert api(outsider).get(url).status_code == 404
        assert api(people["reviewers"][0]).get(url).status_code == 403
        assert api().get(url).status_code == 401


def test_the_page_shows_the_verdict_and_slices_by_a_chosen_feature(people, shadow_case):
    use_case, version = shadow_case
    rows = labelled(40, model_wrong_every=20, double=20, humans_differ_every=10)
    history(use_case, version, rows, people["reviewers"])
    client = logged_in_client(people["analyst"])
    url = f"/control/use-cases/{use_case.slug}/readiness/"
    page = client.get(url).content.decode()
    assert "Not yet known" in page and "more reviewed items needed" in page
    assert '<option value="kind"' in page and '<option value="vendor"' not in page
    sliced = client.get(url, {"feature": "kind"}).content.decode()
    assert '<th scope="row">a</th>' in sliced and "Readiness" in sliced
    partial = client.get(url, {"feature": "kind"}, HTTP_HX_REQUEST="true").content.decode()
    assert partial.lstrip().startswith('<section class="card" id="slices"')
    assert '<th scope="row">a</th>' in partial


def test_the_page_names_a_bad_feature(people, shadow_case):
    use_case, _ = shadow_case
    client = logged_in_client(people["analyst"])
    url = f"/control/use-cases/{use_case.slug}/readiness/"
    response = client.get(url, {"feature": "amount"})
    assert response.status_code == 400
    assert "slices need a categorical one" in response.content.decode()
    # With htmx the section is swapped in with the message, so the picker stays usable.
    response = client.get(url, {"feature": "amount"}, HTTP_HX_REQUEST="true")
    assert (
        response.status_code == 200 and "slices need a categorical one" in response.content.decode()
    )


def test_reviewers_cannot_open_the_page(people, shadow_case):
    use_case, _ = shadow_case
    response = logged_in_client(people["reviewers"][0]).get(
        f"/control/use-cases/{use_case.slug}/readiness/"
    )
    assert response.status_code == 403
