"""One snapshot for every read of a transaction."""

from django.db import connection


def repeatable_read() -> None:
    """Make the outermost transaction, just begun, REPEATABLE READ on PostgreSQL: every read in
    it sees the database as it was at its first. SQLite's transactions already do."""
    if connection.vendor == "postgresql" and len(connection.atomic_blocks) == 1:
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
