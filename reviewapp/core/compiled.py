"""Reads compiled once per process, run with each call's own values.

Building a queryset and compiling it to SQL costs the ORM 0.3 to 1 ms of Python, more than
many of the queries cost the database. A read a hot path repeats with other values only (this
task, this use case) is built once per process and shape, with stand-in values no real call
can hold, and compiled; each call puts its own values in the stand-ins' places and runs that
SQL through the ORM's usual machinery, so the objects are built (``select_related`` and
annotations included) exactly as for the queryset itself.

    _shown = CompiledRead(lambda task_id: Task.objects.select_related("item").filter(pk=task_id),
                          task_id=-7_770_000_101)
    task = _shown.first(task_id=12)

Arguments that are not stand-ins pick the shape (a variant compiled of its own). The stand-ins
are found among the compiled parameters by value and type: the build must pass each one to the
ORM as it is (a value the ORM would turn into something else is refused when compiling).
"""

import copy
import functools
import re
from collections.abc import Callable, Hashable
from typing import Any

from django.conf import settings
from django.db import connections
from django.db.models import Model, QuerySet


def stand_ins_marked(params, stand_ins: dict[str, Any]) -> list[tuple[Any, str | None]]:
    """Each compiled parameter with the name of the stand-in it is (None for the others).
    Raises RuntimeError when a stand-in is missing: the ORM compiled it some other way."""
    marked = []
    for param in params:
        name = next(
            (
                name
                for name, stand_in in stand_ins.items()
                if type(param) is type(stand_in) and param == stand_in
            ),
            None,
        )
        marked.append((param, name))
    missing = set(stand_ins) - {name for _, name in marked}
    if missing:
        raise RuntimeError(f"stand-ins lost in compiling: {sorted(missing)} in {params!r}")
    return marked


def params_filled(marked: list[tuple[Any, str | None]], values: dict[str, Any]) -> list[Any]:
    """The compiled parameters with each stand-in replaced by the call's value for it."""
    return [values[name] if name else param for param, name in marked]


_PLACEHOLDER = re.compile(r"%%|%s")


def constants_inlined(
    sql: str, marked: list[tuple[Any, str | None]], connection
) -> tuple[str, list[tuple[Any, str | None]]]:
    """The statement with every parameter that is not a stand-in written into it as a literal
    (quoted by the driver), and the stand-ins left as parameters.

    For a statement prepared once and run with each call's values: the plan PostgreSQL keeps
    for it (its generic plan) knows the constants, so it can use a partial index whose
    predicate names one (``state = 'open'``) and estimate a range it bounds, as a plan made for
    each run's values would. With them left as parameters it can do neither."""
    literals = [
        None if name else connection.ops.compose_sql("%s", [param]).replace("%", "%%")
        for param, name in marked
    ]
    placed = 0

    def place(match: re.Match) -> str:
        nonlocal placed
        if match.group() == "%%":
            return "%%"
        if placed == len(literals):
            raise RuntimeError("more placeholders than parameters in the statement")
        literal = literals[placed]
        placed += 1
        return "%s" if literal is None else literal

    inlined = _PLACEHOLDER.sub(place, sql)
    if placed != len(literals):
        raise RuntimeError("fewer placeholders than parameters in the statement")
    return inlined, [(param, name) for param, name in marked if name]


class CompiledRead:
    """A read built by ``build(**shape, **stand_ins)`` and compiled once per shape (the app
    has one database); ``rows`` and ``first`` run it with the call's values. The result is a list
    or an object, never a queryset: a queryset chained further would still run this SQL."""

    def __init__(
        self, build: Callable[..., QuerySet], *, prepared: bool = True, **stand_ins: Any
    ) -> None:
        self._build = build
        self._prepared = prepared
        self._stand_ins = stand_ins
        self._kept: dict[Hashable, tuple[QuerySet, Any, str, list]] = {}

    def _compiled(self, shape: dict[str, Any]) -> tuple[QuerySet, Any, str, list]:
        key = tuple(sorted(shape.items()))
        kept = self._kept.get(key)
        if kept is None:
            queryset = self._build(**shape, **self._stand_ins)
            compiler = queryset.query.get_compiler(using=queryset.db)
            sql, params = compiler.as_sql()
            # The columns' converters (JSON decoded, times made aware...) are the same for
            # every run: found once too.
            columns = [selected[0] for selected in compiler.select[: compiler.col_count]]
            converters = compiler.get_converters(columns)
            compiler.get_converters = lambda expressions: converters
            kept = self._kept[key] = (
                queryset,
                compiler,
                sql,
                stand_ins_marked(params, self._stand_ins),
            )
        return kept

    def rows(self, **values: Any) -> list[Model]:
        shape = {name: value for name, value in values.items() if name not in self._stand_ins}
        queryset, compiler, sql, marked = self._compiled(shape)
        params = tuple(params_filled(marked, values))

        def get_compiler(using=None, connection=None, elide_empty=True):
            # A copy per run (the select, the related objects' map, the column count and the
            # converters are shared, read-only) on this thread's connection, answering the
            # kept SQL.
            run = copy.copy(compiler)
            run.connection = connection or connections[using]
            if self._prepared and statements_prepared(run.connection):
                run.connection = _Preparing(run.connection)
            run.as_sql = lambda *args, **kwargs: (sql, params)
            return run

        chained = queryset._chain()
        chained.query.get_compiler = get_compiler
        return list(chained)

    def first(self, **values: Any) -> Model | None:
        found = self.rows(**values)
        return found[0] if found else None


def statements_prepared(connection) -> bool:
    """Whether reads compiled once are also prepared once per connection by the server
    (PostgreSQL, unless ``DATABASE_PREPARED_STATEMENTS`` is off: behind a pooler that hands a
    connection to another client between transactions, a prepared statement may be missing)."""
    return connection.vendor == "postgresql" and settings.DATABASE_PREPARED_STATEMENTS


class _Preparing:
    """A connection whose cursors bind the parameters on the server and have it prepare the
    statement the first time it runs on the connection: later runs skip parsing and planning
    (a generic plan, once PostgreSQL finds it as good as the ones made for each run's values).
    Only for reads whose best plan does not depend on the values, or whose constants are
    written into them (``constants_inlined``): the claim's."""

    def __init__(self, connection) -> None:
        self._connection = connection

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)

    def cursor(self):
        wrapper = self._connection.cursor()
        wrapper.cursor.close()
        wrapper.cursor = _preparing_cursor_class()(self._connection.connection)
        return wrapper


@functools.cache
def _preparing_cursor_class() -> type:
    """Django's cursor that binds on the server (psycopg 3), preparing every statement."""
    from django.db.backends.postgresql.base import ServerBindingCursor

    class PreparingCursor(ServerBindingCursor):
        def execute(self, query, params=None, *, prepare=None, binary=None):
            return super().execute(query, params, prepare=True, binary=binary)

    return PreparingCursor
