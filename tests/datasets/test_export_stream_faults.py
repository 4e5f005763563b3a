"""The database goes away while disagreements stream out: before the first byte it is a 503
the caller can retry; part-way, the body ends saying so and the transfer is cut, never a file
that looks whole."""

import json

import pytest
from django.db import connection

from reviewapp.datasets.export_tables import StreamInterrupted
from tests.datasets.conftest import build_world

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def _url(world, fmt: str) -> str:
    return f"/api/v1/use-cases/{world.use_case.slug}/disagreements/?format={fmt}"


def _terminate_other_sessions() -> None:
    """What a database restart does to every connection but the test's own."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_stream_cut_part_way_ends_with_the_error_and_an_incomplete_transfer(api, fmt):
    world = build_world()
    response = api(world.analyst).get(_url(world, fmt))
    assert response.status_code == 200
    body = iter(response.streaming_content)
    received = [next(body)]  # the header (CSV), or the summary read: the stream is under way
    _terminate_other_sessions()
    with pytest.raises(StreamInterrupted):
        received.extend(body)
    text = b"".join(received).decode()
    last = text.strip().splitlines()[-1]
    if fmt == "jsonl":
        assert json.loads(last)["error"]["code"] == "database_unavailable"
    else:
        assert last.startswith("# ERROR database_unavailable:") and "incomplete" in last


def test_a_database_gone_before_the_first_byte_raises_in_the_view_as_a_503():
    """The first chunk is read when the response is made, so a database already gone is the
    API's retryable 503 rather than a 200 with an empty body."""
    import psycopg

    from reviewapp.core.errors import database_unavailable
    from reviewapp.datasets.export_tables import stream_ended_clearly

    def chunks():
        raise psycopg.OperationalError("connection refused")
        yield b""

    with pytest.raises(psycopg.OperationalError) as raised:
        stream_ended_clearly(chunks(), fmt="csv")
    assert database_unavailable(raised.value)  # what the API's handler answers 503 to
