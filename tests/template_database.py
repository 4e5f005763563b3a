"""One migrated template database per test run, copied into each xdist worker's database.

Migrations still run on every run, once per database engine: the first worker that needs a
database migrates the template while the others wait on a lock, then each worker copies it
(``CREATE DATABASE ... TEMPLATE`` on PostgreSQL, SQLite's backup API into the worker's in-memory
database). The copy takes a fraction of a second where a migrate takes several.
"""

import fcntl
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings


@contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    with open(lock_path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _is_sqlite(connection) -> bool:
    return connection.vendor == "sqlite"


def _use_database(connection, name: str) -> None:
    connection.close()
    connection.settings_dict["NAME"] = name
    settings.DATABASES[connection.alias]["NAME"] = name


def template_build_once(connection, *, run_dir: Path, template_name: str) -> str:
    """Migrate the template database for ``connection`` unless this run already has; return
    its name. ``run_dir`` is shared by the run's workers and by nobody else."""
    marker = run_dir / f"template-{connection.alias}.name"
    with _exclusive(run_dir / f"template-{connection.alias}.lock"):
        if marker.exists():
            return marker.read_text()
        if _is_sqlite(connection):
            template_name = str(run_dir / f"template-{connection.alias}.sqlite3")
        original_name = connection.settings_dict["NAME"]
        original_test_name = connection.settings_dict["TEST"].get("NAME")
        connection.settings_dict["TEST"]["NAME"] = template_name
        try:
            connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
        finally:
            connection.settings_dict["TEST"]["NAME"] = original_test_name
            # No session may stay open on a template that PostgreSQL is about to copy.
            _use_database(connection, original_name)
        marker.write_text(template_name)
        return template_name


def database_copy_from_template(connection, *, template_name: str) -> str:
    """Create this worker's test database as a copy of the template, point ``connection`` at
    it and return the name the original settings had (for ``destroy_test_db``)."""
    original_name = connection.settings_dict["NAME"]
    test_name = connection.creation._get_test_db_name()
    if _is_sqlite(connection):
        _use_database(connection, test_name)
        connection.ensure_connection()
        template = sqlite3.connect(template_name)
        try:
            template.backup(connection.connection)
        finally:
            template.close()
        return original_name
    quote = connection.ops.quote_name
    with connection.creation._nodb_cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {quote(test_name)}")
        cursor.execute(f"CREATE DATABASE {quote(test_name)} TEMPLATE {quote(template_name)}")
    _use_database(connection, test_name)
    return original_name


def database_destroy(connection, *, original_name: str) -> None:
    """Drop this worker's test database and point ``connection`` back at ``original_name``.

    On PostgreSQL the drop is forced: a Celery worker or gunicorn process a test started (and
    killed, as fault tests do) can still hold a session for a moment, and a plain ``DROP
    DATABASE`` would then fail the run's last test with "being accessed by other users".
    """
    if _is_sqlite(connection):
        connection.creation.destroy_test_db(original_name, verbosity=0)
        return
    test_name = connection.settings_dict["NAME"]
    connection.close()
    quote = connection.ops.quote_name
    with connection.creation._nodb_cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {quote(test_name)} WITH (FORCE)")
    _use_database(connection, original_name)
