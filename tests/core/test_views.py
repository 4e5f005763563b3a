"""Pages every app shares: sign-in and the error pages."""

import json

import pytest

from reviewapp.core.roles import Role
from tests.factories import make_user
from tests.html import local_assets


def test_the_sign_in_page_has_the_apps_look_and_labelled_fields(client):
    page = client.get("/accounts/login/").content.decode()
    assert '<label for="id_username">Username</label>' in page
    assert '<label for="id_password">Password</label>' in page
    assert any(url.endswith("css/app.css") for url in local_assets(page))


@pytest.mark.django_db
def test_unknown_api_paths_answer_in_the_api_error_shape(api):
    response = api(make_user(Role.MANAGER)).get("/api/v1/use-cases/not%20a%20slug/")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "Not found."}


@pytest.mark.django_db
def test_unknown_pages_still_get_the_page(client):
    response = client.get("/no-such-page/")
    assert response.status_code == 404
    assert "text/html" in response["Content-Type"]


@pytest.mark.parametrize(
    ("query", "accept", "media_type"),
    [
        ("?format=json", None, "application/vnd.oai.openapi+json"),
        ("?format=yaml", None, "application/vnd.oai.openapi"),
        ("", "application/json", "application/json"),
        ("", None, "application/vnd.oai.openapi"),
    ],
)
def test_the_schema_comes_as_json_or_yaml_as_asked(client, query, accept, media_type):
    headers = {"HTTP_ACCEPT": accept} if accept else {}
    response = client.get(f"/api/schema/{query}", **headers)
    assert response.status_code == 200
    assert response["Content-Type"].split(";")[0] == media_type
    body = response.content.decode()
    if "json" in media_type:
        assert json.loads(body)["openapi"].startswith("3.")
    else:
        assert body.startswith("openapi: 3.")
