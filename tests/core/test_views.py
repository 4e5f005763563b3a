"""Pages every app shares: sign-in and the error pages."""

import json

import pytest
from django.urls import path

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
    assert response.json() == {"detail": "Not found.", "code": "not_found"}


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


@pytest.mark.django_db
@pytest.mark.parametrize("debug", [True, False])
def test_a_missing_page_is_the_apps_page_in_every_mode(client, settings, debug):
    settings.DEBUG = debug
    client.force_login(make_user(Role.REVIEWER))
    response = client.get("/no-such-page/")
    assert response.status_code == 404
    page = response.content.decode()
    assert "Nothing here" in page and "Back to your queues" in page
    assert "URLconf" not in page and "api/v1/" not in page  # no list of every route
    api = client.get("/api/v1/no-such-endpoint/")
    assert api.status_code == 404
    assert api.json() == {"detail": "Not found.", "code": "not_found"}


@pytest.mark.django_db
def test_a_missing_object_keeps_its_api_message_with_debug_on(api, settings):
    settings.DEBUG = True
    response = api(make_user(Role.MANAGER)).get("/api/v1/use-cases/nope/")
    assert response.status_code == 404 and response.json()["detail"] != ""


def _broken(request):
    raise RuntimeError("the secret internals")


urlpatterns = [path("broken/", _broken)]  # this module is the URLconf of the next test


@pytest.mark.django_db
@pytest.mark.urls("tests.core.test_views")
def test_an_error_is_the_apps_page_with_debug_on(client, settings):
    settings.DEBUG = True
    client.raise_request_exception = False
    response = client.get("/broken/")
    assert response.status_code == 500
    page = response.content.decode()
    assert "Something went wrong on our side" in page
    assert "the secret internals" not in page and "Traceback" not in page
