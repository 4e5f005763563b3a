"""CI runs the suite twice: everything on SQLite, then the database tests again on PostgreSQL
(``DB_TESTS_ONLY=1``, see ``pytest_collection_modifyitems`` in ``conftest.py``)."""

import os

SECOND_PASS = os.environ.get("DB_TESTS_ONLY") == "1"


def examples(count: int) -> int:
    """How many generated examples a property test runs in this pass.

    The first pass runs them all. The second runs a fifth (at least five): the examples are
    derandomized, so what is new there is only the engine under them (its constraints, types and
    transactions), which the first examples already exercise as the rest do.
    """
    return max(5, count // 5) if SECOND_PASS else count
