"""An ML engineer downloads the exact .skops file a version was uploaded as, with its
SHA-256, and reproduces the app's scores with it."""

import base64
import hashlib

import pytest
import skops.io as sio

from reviewapp.core.roles import Role
from tests.factories import (
    classifier_bytes,
    make_use_case,
    make_user,
    register_model,
    training_frame,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def world():
    engineer, reviewer = make_user(Role.ML_ENGINEER), make_user(Role.REVIEWER)
    use_case = make_use_case(members=[engineer, reviewer], level="assisted", slug="art")
    data = classifier_bytes(seed=3)
    register_model(use_case, data, version="v1.2-β")
    return use_case, engineer, reviewer, data


@pytest.mark.parametrize("accept", [None, "application/octet-stream", "*/*", "application/json"])
def test_the_artifact_comes_back_byte_for_byte_with_its_digest(api, world, accept):
    use_case, engineer, _, data = world
    headers = {"HTTP_ACCEPT": accept} if accept else {}
    response = api(engineer).get("/api/v1/use-cases/art/models/v1.2-%CE%B2/artifact/", **headers)
    assert response.status_code == 200, response.content
    assert response.content == data
    assert response["Content-Type"] == "application/octet-stream"
    assert response["Content-Length"] == str(len(data))
    assert response["X-Content-SHA256"] == hashlib.sha256(data).hexdigest()
    b64 = base64.b64encode(hashlib.sha256(data).digest()).decode()
    assert response["Repr-Digest"] == f"sha-256=:{b64}:"
    assert "attachment" in response["Content-Disposition"]
    assert "art-v" in response["Content-Disposition"]


def test_the_downloaded_model_reproduces_the_apps_probabilities(api, world):
    use_case, engineer, _, _ = world
    content = api(engineer).get("/api/v1/use-cases/art/models/v1.2-%CE%B2/artifact/").content
    trusted = sio.get_untrusted_types(data=content)
    model = sio.loads(content, trusted=trusted)
    frame, _ = training_frame(n=20, seed=5)
    reference = sio.loads(classifier_bytes(seed=3), trusted=trusted)
    assert (model.predict_proba(frame) == reference.predict_proba(frame)).all()


def test_who_may_download(api, world):
    use_case, engineer, reviewer, _ = world
    url = "/api/v1/use-cases/art/models/v1.2-%CE%B2/artifact/"
    assert api(reviewer).get(url).status_code == 403
    assert api(make_user(Role.ML_ENGINEER)).get(url).status_code == 404  # not a member
    assert api().get(url).status_code == 401
    missing = api(engineer).get("/api/v1/use-cases/art/models/v9/artifact/")
    assert missing.status_code == 404 and "version" in missing.json()


def test_the_models_page_links_the_download_and_shows_the_digest(client, world):
    use_case, engineer, _, data = world
    client.force_login(engineer)
    page = client.get("/control/use-cases/art/models/").content.decode()
    assert 'href="/api/v1/use-cases/art/models/v1.2-%CE%B2/artifact/" download' in page
    assert hashlib.sha256(data).hexdigest()[:12] in page
    assert "get_untrusted_types" in page
