"""Model versions through the API: upload (and refusal), roles, promote, challenge, rollback."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from deployments.models import ModelVersion, ModelVersionEvent
from reviewapp.core.roles import Role
from tests.factories import classifier_bytes, constant_classifier_bytes, make_use_case, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def setup():
    engineer = make_user(Role.ML_ENGINEER)
    use_case = make_use_case(members=[engineer])
    return engineer, use_case


def upload(api, user, use_case, data: bytes, version="v1", name="model.skops", **extra):
    return api(user).post(
        f"/api/v1/use-cases/{use_case.slug}/models/",
        {"version": version, "file": SimpleUploadedFile(name, data), **extra},
        format="multipart",
    )


def test_first_upload_becomes_champion_later_ones_candidates(api, setup):
    engineer, use_case = setup
    first = upload(api, engineer, use_case, classifier_bytes())
    assert first.status_code == 201, first.content
    assert first.json()["role"] == "champion"
    second = upload(api, engineer, use_case, classifier_bytes(seed=1), version="v2")
    assert second.json()["role"] == "candidate"
    listed = api(engineer).get(f"/api/v1/use-cases/{use_case.slug}/models/").json()
    assert [(m["version"], m["role"]) for m in listed] == [("v2", "candidate"), ("v1", "champion")]


def test_upload_with_a_reference_file_records_its_statistics(api, setup):
    engineer, use_case = setup
    csv = b"amount,kind,vendor\n1.0,a,x\n2.0,b,y\n3.0,c,z\n"
    response = upload(
        api, engineer, use_case, classifier_bytes(), reference=SimpleUploadedFile("ref.csv", csv)
    )
    assert response.status_code == 201
    stats = ModelVersion.objects.get().reference_stats
    assert stats["rows"] == 3 and stats["features"]["amount"]["mean"] == 2.0


def test_promote_challenge_rollback(api, setup):
    engineer, use_case = setup
    base = f"/api/v1/use-cases/{use_case.slug}/models/"
    upload(api, engineer, use_case, classifier_bytes())
    upload(api, engineer, use_case, classifier_bytes(seed=1), version="v2")
    assert api(engineer).post(f"{base}v2/challenge/").json()["role"] == "challenger"
    assert api(engineer).post(f"{base}v1/challenge/").status_code == 409  # the champion
    promoted = api(engineer).post(f"{base}v2/promote/", {"reason": "better"}, format="json")
    assert promoted.json()["role"] == "champion"
    roles = dict(ModelVersion.objects.values_list("version", "role"))
    assert roles == {"v1": "retired", "v2": "champion"}
    back = api(engineer).post(f"{base}rollback/", {"reason": "v2 errs"}, format="json")
    assert back.status_code == 200 and back.json()["version"] == "v1"
    assert dict(ModelVersion.objects.values_list("version", "role")) == {
        "v1": "champion",
        "v2": "retired",
    }
    actions = list(ModelVersionEvent.objects.order_by("id").values_list("action", flat=True))
    assert actions == ["register", "promote", "register", "challenge", "promote", "rollback"]


def test_rollback_without_a_previous_champion_is_409(api, setup):
    engineer, use_case = setup
    upload(api, engineer, use_case, classifier_bytes())
    response = api(engineer).post(
        f"/api/v1/use-cases/{use_case.slug}/models/rollback/", {"reason": "x"}, format="json"
    )
    assert response.status_code == 409


def test_promoting_an_unknown_version_is_404_naming_it(api, setup):
    engineer, use_case = setup
    response = api(engineer).post(
        f"/api/v1/use-cases/{use_case.slug}/models/v9/promote/", {"reason": "x"}, format="json"
    )
    assert response.status_code == 404 and "v9" in str(response.json())


def test_a_model_that_cannot_score_its_reference_rows_is_refused(api, setup):
    engineer, use_case = setup
    import pandas as pd
    import skops.io as sio
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    frame = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0], "y": [1.0, 0.0, 1.0, 0.0]})
    wrong_columns = Pipeline(
        [
            ("select", ColumnTransformer([("num", "passthrough", ["x", "y"])])),
            ("model", LogisticRegression()),
        ]
    ).fit(frame, ["office", "travel", "office", "travel"])
    response = upload(api, engineer, use_case, sio.dumps(wrong_columns))
    assert response.status_code == 400
    assert "reference rows" in response.json()["file"][0]


def test_a_classifier_with_labels_outside_the_set_is_refused(api, setup):
    engineer, use_case = setup
    import numpy as np
    import pandas as pd
    import skops.io as sio
    from sklearn.dummy import DummyClassifier

    frame = pd.DataFrame({"amount": np.ones(10)})
    model = DummyClassifier().fit(frame, ["party"] * 10)
    response = upload(api, engineer, use_case, sio.dumps(model))
    assert response.status_code == 400 and "not one of" in response.json()["file"][0]


def test_duplicate_version_is_refused(api, setup):
    engineer, use_case = setup
    upload(api, engineer, use_case, constant_classifier_bytes())
    response = upload(api, engineer, use_case, constant_classifier_bytes())
    assert response.status_code == 400 and "version" in response.json()


@pytest.mark.parametrize("body", [None, {}, {"reason": ""}, {"reason": "   "}])
def test_changing_the_champion_without_a_reason_is_400_naming_reason(api, setup, body):
    engineer, use_case = setup
    base = f"/api/v1/use-cases/{use_case.slug}/models/"
    upload(api, engineer, use_case, classifier_bytes())
    upload(api, engineer, use_case, classifier_bytes(seed=1), version="v2")
    promote = api(engineer).post(f"{base}v2/promote/", body, format="json")
    assert promote.status_code == 400 and "reason" in promote.json()
    api(engineer).post(f"{base}v2/promote/", {"reason": "better"}, format="json")
    rollback = api(engineer).post(f"{base}rollback/", body, format="json")
    assert rollback.status_code == 400 and "reason" in rollback.json()
    assert ModelVersion.objects.get(role="champion").version == "v2"


def test_the_reason_for_a_champion_change_is_kept_in_the_history(api, setup):
    engineer, use_case = setup
    base = f"/api/v1/use-cases/{use_case.slug}/models/"
    upload(api, engineer, use_case, classifier_bytes())
    upload(api, engineer, use_case, classifier_bytes(seed=1), version="v2")
    assert api(engineer).post(f"{base}v2/challenge/").status_code == 200  # reason optional
    api(engineer).post(f"{base}v2/promote/", {"reason": "beats v1 in shadow"}, format="json")
    api(engineer).post(f"{base}rollback/", {"reason": "overrides doubled"}, format="json")
    reasons = list(
        ModelVersionEvent.objects.filter(action__in=["promote", "rollback"])
        .order_by("id")
        .values_list("action", "reason")
    )
    assert reasons[1:] == [("promote", "beats v1 in shadow"), ("rollback", "overrides doubled")]
