"""The environment a model was saved with, beside the one serving it, and refusals at upload."""

import io
import json
import threading
import zipfile

import numpy as np
import pandas as pd
import pytest
import sklearn
import skops
import skops.io as sio
from django.core.files.uploadedfile import SimpleUploadedFile
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from deployments.ml import environment
from deployments.models import ModelVersion
from reviewapp.core.roles import Role
from tests.factories import classifier_bytes, make_use_case, make_user, training_frame

pytestmark = pytest.mark.django_db


@pytest.fixture
def setup():
    engineer = make_user(Role.ML_ENGINEER)
    return engineer, make_use_case(members=[engineer])


def upload(api, user, use_case, data: bytes, version="v1", **extra):
    return api(user).post(
        f"/api/v1/use-cases/{use_case.slug}/models/",
        {"version": version, "file": SimpleUploadedFile("model.skops", data), **extra},
        format="multipart",
    )


def rewrite_schema(data: bytes, edit) -> bytes:
    """The same skops file with its schema.json passed through ``edit``."""
    source = zipfile.ZipFile(io.BytesIO(data))
    schema = json.loads(source.read("schema.json"))
    edit(schema)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in source.namelist():
            archive.writestr(
                name, json.dumps(schema) if name == "schema.json" else source.read(name)
            )
    return buffer.getvalue()


def nodes(schema, key):
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if key in node:
                yield node
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def saved_with_sklearn(data: bytes, version: str) -> bytes:
    """As if fitted and saved under another scikit-learn: every ``_sklearn_version`` edited."""

    def edit(schema):
        for holder in nodes(schema, "_sklearn_version"):
            holder["_sklearn_version"]["content"] = json.dumps(version)

    return rewrite_schema(data, edit)


def test_an_upload_records_what_it_was_saved_with_beside_the_serving_versions(api, setup):
    engineer, use_case = setup
    response = upload(api, engineer, use_case, classifier_bytes())
    assert response.status_code == 201, response.content
    env = response.json()["environment"]
    assert env["recorded"] and not env["served_outside"]
    assert env["saved_with"]["scikit-learn"] == sklearn.__version__
    assert env["saved_with"]["skops"] == skops.__version__
    assert env["skops_protocol"] >= 1
    assert env["serving"]["numpy"] == np.__version__
    rows = {row["library"]: row for row in env["libraries"]}
    assert (
        rows["scikit-learn"]["matches"] is True and rows["scikit-learn"]["saved_source"] == "file"
    )
    assert rows["numpy"]["saved"] is None and rows["numpy"]["matches"] is None  # not in the file
    assert rows["numpy"]["used_by_file"] and rows["scikit-learn"]["used_by_file"]
    assert not rows["scipy"]["used_by_file"]  # no sparse matrices in this pipeline
    assert env["warnings"] == []


def test_a_model_saved_with_another_scikit_learn_shows_the_warning(api, setup):
    engineer, use_case = setup
    response = upload(api, engineer, use_case, saved_with_sklearn(classifier_bytes(), "1.2.0"))
    assert response.status_code == 201, response.content  # it loads and scores: a warning only
    env = response.json()["environment"]
    assert env["saved_with"]["scikit-learn"] == "1.2.0"
    (warning,) = env["warnings"]
    assert f"Saved with scikit-learn 1.2.0 but served with scikit-learn {sklearn.__version__}" in (
        warning
    )
    assert "LogisticRegression" in warning and "invalid results" in warning
    rows = {row["library"]: row for row in env["libraries"]}
    assert rows["scikit-learn"]["matches"] is False
    listed = api(engineer).get(f"/api/v1/use-cases/{use_case.slug}/models/").json()
    assert listed[0]["environment"]["warnings"] == [warning]


def test_declared_versions_fill_in_what_the_file_does_not_hold(api, setup):
    engineer, use_case = setup
    declared = {"NumPy": "1.26.4", "python": "3.10.12", "sklearn": "1.4.0", "lightgbm": "4.3.0"}
    response = upload(api, engineer, use_case, classifier_bytes(), environment=json.dumps(declared))
    assert response.status_code == 201, response.content
    env = response.json()["environment"]
    assert env["saved_with"]["numpy"] == "1.26.4"
    assert env["saved_with"]["python"] == "3.10.12"
    assert env["saved_with"]["lightgbm"] == "4.3.0"
    # the file knows better than the form which scikit-learn fitted it
    assert env["saved_with"]["scikit-learn"] == sklearn.__version__
    rows = {row["library"]: row for row in env["libraries"]}
    assert rows["numpy"]["saved_source"] == "declared"
    assert rows["numpy"]["matches"] is (np.__version__ == "1.26.4")
    assert any("declares scikit-learn 1.4.0" in w for w in env["warnings"])


@pytest.mark.parametrize(
    "declared",
    ["not json", "[1, 2]", '{"numpy": 1.26}', '{"numpy": "1.26 ; rm -rf"}', '{"": "1.0"}'],
)
def test_a_bad_declared_environment_is_refused_naming_the_field(api, setup, declared):
    engineer, use_case = setup
    response = upload(api, engineer, use_case, classifier_bytes(), environment=declared)
    assert response.status_code == 400 and "environment" in response.json()
    assert not ModelVersion.objects.exists()


def test_a_model_this_environment_cannot_load_is_refused(api, setup):
    engineer, use_case = setup

    def moved(schema):
        for holder in nodes(schema, "__class__"):
            if holder["__class__"] == "LogisticRegression":
                holder["__module__"] = "sklearn.linear_model._removed_in_this_version"

    response = upload(api, engineer, use_case, rewrite_schema(classifier_bytes(), moved))
    assert response.status_code == 400
    message = response.json()["file"][0]
    assert "could not be loaded in this environment" in message
    assert "_removed_in_this_version" in message
    assert not ModelVersion.objects.exists()


def test_a_model_that_raises_on_its_own_reference_rows_is_refused(api, setup):
    """Fitted without category "c" and told to fail on unknown categories, while the reference
    rows uploaded with it hold "c": it would fail on live traffic, so it is refused now."""
    engineer, use_case = setup
    frame, target = training_frame()
    strict = Pipeline(
        [
            (
                "features",
                ColumnTransformer(
                    [
                        ("amount", "passthrough", ["amount"]),
                        ("kind", OneHotEncoder(handle_unknown="error"), ["kind"]),
                    ]
                ),
            ),
            ("model", LogisticRegression(max_iter=500)),
        ]
    )
    seen = frame["kind"] != "c"
    strict.fit(frame[seen], target[seen])
    reference = frame.head(30).to_csv(index=False).encode()
    assert "c" in set(frame.head(20)["kind"])
    response = upload(
        api,
        engineer,
        use_case,
        sio.dumps(strict),
        reference=SimpleUploadedFile("reference.csv", reference),
    )
    assert response.status_code == 400
    message = response.json()["file"][0]
    assert "fails on" in message and "reference rows" in message
    assert "unknown categor" in message.lower()
    assert not ModelVersion.objects.exists()


def test_a_model_that_never_answers_is_refused_and_is_not_timed_once_it_answers(
    api, setup, settings, monkeypatch
):
    """The upload gives up on a model that does not answer in time; when its call ends at
    last, the abandoned check stops there: nobody waits for the latency probe's hundreds of
    single-row calls, and they would only take the web process's CPU."""
    from deployments.ml import scoring

    engineer, use_case = setup
    settings.MODEL_CHECK_TIMEOUT_SECONDS = 0.2
    release = threading.Event()
    real, calls = scoring._classify, []

    def hangs_first(estimator, frame):
        calls.append(len(frame))
        if len(calls) == 1:
            release.wait(30)
        return real(estimator, frame)

    monkeypatch.setattr(scoring, "_classify", hangs_first)
    try:
        response = upload(api, engineer, use_case, classifier_bytes())
    finally:
        checks = [t for t in threading.enumerate() if t.name == "model-check"]
        release.set()
        for thread in checks:
            thread.join(30)
    assert response.status_code == 400
    assert "gave no answer on its reference rows within 0.2 s" in response.json()["file"][0]
    assert not ModelVersion.objects.exists()
    assert not any(thread.is_alive() for thread in checks)
    assert len(calls) == 1  # the reference rows' call, and no probe after it


def test_a_server_upgraded_since_the_upload_shows_the_new_mismatch(api, setup, monkeypatch):
    engineer, use_case = setup
    upload(api, engineer, use_case, classifier_bytes())
    upgraded = {**environment.serving_versions(), "scikit-learn": "99.0"}
    monkeypatch.setattr("deployments.model_version_presenters.serving_versions", lambda: upgraded)
    env = api(engineer).get(f"/api/v1/use-cases/{use_case.slug}/models/").json()[0]["environment"]
    assert env["serving"]["scikit-learn"] == "99.0"
    assert env["checked_with"]["scikit-learn"] == sklearn.__version__
    (warning,) = env["warnings"]
    assert "now runs scikit-learn 99.0" in warning


def test_saved_versions_read_from_a_schema():
    schema = json.loads(zipfile.ZipFile(io.BytesIO(classifier_bytes())).read("schema.json"))
    found = environment.saved_versions_read(schema)
    assert found["scikit-learn"] == sklearn.__version__
    assert found["skops"] == schema["_skops_version"]
    assert found["skops_protocol"] == schema["protocol"]
    assert found["uses"] == ["numpy", "scikit-learn"]
    assert environment.saved_versions_read({"content": {}}) == {"uses": []}


def test_reference_frame_columns_must_cover_the_features(api, setup):
    engineer, use_case = setup
    reference = pd.DataFrame({"amount": [1.0, 2.0]}).to_csv(index=False).encode()
    response = upload(
        api,
        engineer,
        use_case,
        classifier_bytes(),
        reference=SimpleUploadedFile("reference.csv", reference),
    )
    assert response.status_code == 400 and "reference" in response.json()
