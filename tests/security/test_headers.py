"""Every page and API response carries an enforcing Content-Security-Policy."""

import pytest

from reviewapp.core.roles import Role
from tests.factories import logged_in_client, make_user


def csp_directives(response) -> dict[str, list[str]]:
    header = response.headers["Content-Security-Policy"]
    return {
        name: sources
        for name, *sources in (part.split() for part in header.split(";") if part.strip())
    }


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/", "/accounts/login/", "/api/v1/use-cases/", "/api/docs/"])
def test_responses_forbid_inline_and_foreign_scripts(client, path):
    if path != "/accounts/login/":
        client.force_login(make_user(Role.ADMIN))
    response = client.get(path)
    assert response.status_code == 200
    directives = csp_directives(response)
    assert directives["script-src"] == ["'self'"]
    assert directives["object-src"] == ["'none'"]
    assert directives["frame-ancestors"] == ["'none'"]
    assert "Content-Security-Policy-Report-Only" not in response.headers


@pytest.mark.django_db
def test_the_api_docs_load_their_script_from_this_origin():
    """Swagger UI's set-up script is served from a URL, not inlined, so the policy allows it."""
    client = logged_in_client(make_user(Role.ADMIN))
    page = client.get("/api/docs/").content.decode()
    assert "<script>" not in page.replace(" ", "")
    script = client.get("/api/docs/?script=")
    assert script.status_code == 200
    assert "SwaggerUIBundle" in script.content.decode()
