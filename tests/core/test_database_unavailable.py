"""A lost database is a 503 the caller can retry, with the API's error body and Retry-After;
never a 500, and never a success for a write that was not saved."""

import contextlib

import pytest
from django.db import OperationalError, close_old_connections, connection
from django.utils import timezone

from reviewapp.reviews.models import Item
from reviewapp.reviews.services.ingest import items_store_pending
from tests.factories import (
    classifier_bytes,
    invoice,
    logged_in_client,
    make_use_case,
    register_model,
)

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@contextlib.contextmanager
def database_down():
    """Point the app's connection at a port where no database listens (a stopped server)."""
    saved = dict(connection.settings_dict)
    connection.close()
    connection.settings_dict.update(HOST="127.0.0.1", PORT="9")
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict.update(saved)


def _assert_retryable_503(response) -> None:
    assert response.status_code == 503
    assert response["Retry-After"].isdigit()
    body = response.json()
    assert body["code"] == "database_unavailable"
    assert "Retry" in body["detail"]


def test_a_write_while_the_database_is_down_is_a_503_and_the_retry_is_saved(api, manager):
    use_case = make_use_case(members=[manager], level="partial", actor=manager)
    register_model(use_case, classifier_bytes())
    client = api(manager)
    url = f"/api/v1/use-cases/{use_case.slug}/items/"

    with database_down():
        _assert_retryable_503(client.post(url, invoice(1), format="json"))

    assert not Item.objects.filter(external_id="inv-1").exists()
    assert client.post(url, invoice(1), format="json").status_code == 201


def test_a_page_while_the_database_is_down_is_a_503(manager):
    client = logged_in_client(manager)
    # The session is read by middleware before any view runs: this is the handler500 path.
    client.raise_request_exception = False
    with database_down():
        _assert_retryable_503(client.get("/"))
    assert client.get("/").status_code == 200


def _terminate_own_connection() -> None:
    with connection.cursor() as cursor:
        pid = cursor.connection.info.backend_pid
    with contextlib.closing(connection.copy()) as admin, admin.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])


def test_a_bulk_write_on_a_terminated_connection_raises_the_error_answered_with_503(manager):
    use_case = make_use_case(members=[manager], actor=manager)
    _terminate_own_connection()
    with pytest.raises(OperationalError):
        items_store_pending(
            use_case=use_case, rows=[("inv-1", {"amount": 1.0}, None)], now=timezone.now()
        )
    # The error marked the connection unusable: the next request's check replaces it.
    close_old_connections()
    assert connection.connection is None


def test_a_terminated_connection_is_a_503_and_the_retry_is_saved(api, manager):
    use_case = make_use_case(members=[manager], level="partial", actor=manager)
    register_model(use_case, classifier_bytes())
    client = api(manager)
    url = f"/api/v1/use-cases/{use_case.slug}/items/"
    assert client.post(url, invoice(1), format="json").status_code == 201
    _terminate_own_connection()

    _assert_retryable_503(client.post(url, invoice(2), format="json"))
    # A server checks its connection as each request starts and replaces a dead one (the test
    # client leaves that signal out, so it is called here as the next request would).
    close_old_connections()
    assert client.post(url, invoice(2), format="json").status_code == 201
    assert Item.objects.filter(use_case=use_case).count() == 2
