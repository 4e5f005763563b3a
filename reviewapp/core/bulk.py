"""Writing many rows in one statement, fast enough for batch ingestion.

Django's ``bulk_update`` builds a CASE expression per field and row, and model instances cost
tens of microseconds each; for tens of thousands of rows that dominates. These helpers take
columns (one list of values per field) instead of model instances. On PostgreSQL each chunk is
one statement whose parameters are one array per column (``unnest``); on SQLite, the embedded
default, they fall back to Django's bulk_create and an ``UPDATE ... FROM (VALUES ...)``.
``rows_append`` writes to outbox tables, which have no natural key and whose writers read
nothing back.

``writes_joined`` makes the appends and the statements given to ``statement_part`` inside it
one statement on PostgreSQL: a decision, or a realtime item, and the events other apps append
for it go to the database in one round trip.
"""

import contextlib
import functools
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from django.db import connection, models
from django.db.models import Q
from django.db.models.sql import InsertQuery, UpdateQuery

from reviewapp.core.compiled import statements_prepared

Columns = dict[str, list[Any]]
# Read by the triggers that keep unique keys of partitioned tables; local to the transaction.
SKIP_DUPLICATES_SQL = "SELECT set_config('reviewapp.duplicates_skipped', %s, true)"


def _fields(model: type[models.Model], names) -> list[models.Field]:
    return [model._meta.get_field(name) for name in names]


def _prepared(field: models.Field, values: list) -> list:
    """Values the driver can bind. psycopg adapts everything natively but JSON (an adapter
    object); SQLite stores dates and JSON as text the way Django writes them."""
    if connection.vendor != "postgresql" or isinstance(field, models.JSONField):
        return [field.get_db_prep_save(value, connection) for value in values]
    if isinstance(field, models.FloatField):
        # An array holds one type: a whole number among floats (a value sent as 3) is a float.
        return [None if value is None else float(value) for value in values]
    return values


def _casts(fields) -> str:
    # %b: binary parameters (text-format arrays are escaped value by value, many times slower)
    return ", ".join(f"%b::{field.db_type(connection)}[]" for field in fields)


def _execute(sql: str, params: list) -> tuple[list[tuple], int]:
    """Run one bulk statement; return the rows it returned and the row count.

    On PostgreSQL the arrays go as binary parameters bound on the server: Django's default
    client-side binding would render every value into the SQL text; each statement is also
    prepared once per connection (``statements_prepared``). The raw cursor's errors
    are wrapped as Django's (a terminated connection is an ``OperationalError``, answered 503,
    and marks the connection for replacement), like every other query's, and the statement
    is seen like every other: by ``connection.execute_wrapper`` hooks, and in
    ``connection.queries`` when queries are logged (DEBUG, ``CaptureQueriesContext``, query
    budgets).
    """
    if connection.vendor == "postgresql":
        import psycopg

        connection.ensure_connection()
        with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
            prepare = statements_prepared(connection)

            def run(sql, params, many, context):
                cursor.execute(sql, params, binary=True, prepare=prepare)

            execute = run
            for wrapper in reversed(connection.execute_wrappers):
                execute = functools.partial(wrapper, execute)
            started = time.monotonic()
            try:
                execute(sql, params, False, {"connection": connection, "cursor": cursor})
            finally:
                if connection.queries_logged:
                    duration = time.monotonic() - started
                    connection.queries_log.append({"sql": sql, "time": f"{duration:.3f}"})
            rows = cursor.fetchall() if cursor.description else []
            return rows, cursor.rowcount
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall() if cursor.description else []
        return rows, cursor.rowcount


def statement_rows(sql: str, params: Sequence) -> list[tuple]:
    """Run one statement and return its rows: on PostgreSQL bound on the server and prepared
    once per connection (``_execute``), for a plain SQL read a hot path repeats."""
    return _execute(sql, list(params))[0]


_joined = threading.local()


class JoinedWrites:
    """What ``writes_joined`` read when its block ended: the first row of ``then``."""

    row: tuple | None = None


@contextlib.contextmanager
def writes_joined(*, then: tuple[str, Sequence] | None = None) -> Iterator[JoinedWrites]:
    """Make the writes inside one statement, on PostgreSQL.

    Inside the block ``rows_append`` and ``statement_part`` do not run when called. Each becomes
    a part of one statement that runs when the block ends (``WITH w0 AS (...), w1 AS (...)
    SELECT ...``): one round trip instead of one per write. The parts see one snapshot, so
    nothing inside may read what an earlier part writes, and one part's error (a key already
    taken) is raised when the block ends, for the whole statement. Call inside a transaction.
    A block inside another joins the outer one. Elsewhere (SQLite) each write runs when made.

    ``then`` is a query (SQL and parameters) the statement ends with, instead of ``SELECT 1``:
    its first row is the block's ``row`` afterwards. It reads the database as the statement
    found it, before the parts' writes (elsewhere it runs on its own after them). A block that
    joins an outer one takes no ``then``.
    """
    result = JoinedWrites()
    final_sql, final_params = then if then is not None else ("SELECT 1", ())
    if connection.vendor != "postgresql":
        yield result
        if then is not None:
            rows = _execute(final_sql, list(final_params))[0]
            result.row = rows[0] if rows else None
        return
    if getattr(_joined, "parts", None) is not None:
        if then is not None:
            raise ValueError("a block that joins an outer one takes no then")
        yield result
        return
    _joined.parts = parts = []
    try:
        yield result
    finally:
        _joined.parts = None
    if parts or then is not None:
        sql = "".join(
            f"{'WITH' if n == 0 else ','} w{n} AS ({part}) " for n, (part, _) in enumerate(parts)
        )
        params = [param for _, params in parts for param in params]
        rows = _execute(sql + final_sql, [*params, *final_params])[0]
        result.row = rows[0] if rows else None


def statement_part(sql: str, params: Sequence) -> None:
    """Run one write (SQL without ``RETURNING``), or add it to the statement ``writes_joined``
    is making."""
    parts = getattr(_joined, "parts", None)
    if parts is None:
        _execute(sql, list(params))
    else:
        parts.append((sql, list(params)))


def instance_insert(obj: models.Model) -> None:
    """Store a new model instance that already holds its id (``next_id_sql``), as a part of
    the statement ``writes_joined`` makes: Django's own SQL for the insert, so columns, types,
    ``pre_save`` and the database's constraints and triggers are what a ``save()`` meets."""
    statement_part(*_insert_sql(obj))
    obj._state.adding = False
    obj._state.db = connection.alias


def instance_update(obj: models.Model, fields: Sequence[str]) -> None:
    """Write ``fields`` of a stored instance, as ``save(update_fields=...)`` would, as a part
    of the statement ``writes_joined`` makes."""
    statement_part(*_update_sql(obj, fields))


# Django builds and compiles an insert or an update anew for every instance (60-115 us a
# statement); a decision makes three. Its SQL depends only on the model, the fields and which
# values are NULL, so it is kept per process once Django has compiled it, and each call binds
# its own values, prepared for the database as Django prepares them. A value Django would
# compile into the SQL (an expression, a model instance, a field with its own placeholder)
# takes Django's own path every time.
_kept_sql: dict[tuple, str] = {}


def _plain(value: Any) -> bool:
    return not any(
        hasattr(value, name) for name in ("resolve_expression", "prepare_database_save", "as_sql")
    )


def _insert_sql(obj: models.Model) -> tuple[str, tuple]:
    model = type(obj)
    fields = model._meta.concrete_fields
    key = ("insert", model)
    sql = _kept_sql.get(key)
    if sql is not None:
        values = [field.pre_save(obj, True) for field in fields]
        if all(map(_plain, values)):
            params = tuple(
                field.get_db_prep_save(value, connection)
                for field, value in zip(fields, values, strict=True)
            )
            if all(map(_plain, params)):
                return sql, params
    insert = InsertQuery(model)
    insert.insert_values(fields, [obj])
    [(sql, params)] = insert.get_compiler(connection=connection).as_sql()
    plain = not any(hasattr(field, "get_placeholder") for field in fields)
    if plain and len(params) == len(fields) and all(map(_plain, params)):
        _kept_sql[key] = sql
    return sql, params


def _update_sql(obj: models.Model, names: Sequence[str]) -> tuple[str, tuple]:
    model = type(obj)
    fields = [model._meta.get_field(name) for name in names]
    values = [getattr(obj, name) for name in names]
    key = None
    if all(map(_plain, values)):
        prepped = [
            field.get_db_prep_save(value, connection)
            for field, value in zip(fields, values, strict=True)
        ]
        if all(map(_plain, prepped)):
            key = ("update", model, tuple(names), tuple(value is None for value in prepped))
            sql = _kept_sql.get(key)
            if sql is not None:
                pk = model._meta.pk
                where = pk.get_db_prep_value(pk.get_prep_value(obj.pk), connection, prepared=True)
                return sql, (*[value for value in prepped if value is not None], where)
    update = UpdateQuery(model)
    update.add_update_values(dict(zip(names, values, strict=True)))
    update.add_q(Q(pk=obj.pk))
    sql, params = update.get_compiler(connection=connection).as_sql()
    kept = (
        key is not None
        and not update.related_updates
        and not any(hasattr(field, "get_placeholder") for field in fields)
        and len(params) == key[3].count(False) + 1
    )
    if kept:
        _kept_sql[key] = sql
    return sql, params


def next_id_sql(model: type[models.Model]) -> tuple[str, list]:
    """SQL (PostgreSQL) for the id the model's next row would take, and its parameters: a
    writer that takes the id before the insert can name the row in what it writes with it.
    The column's own default where it has one (a partitioned table's ids, which may carry the
    month: ``reviews.partitions``), else its identity sequence."""
    default = _id_default(model._meta.db_table, model._meta.pk.column)
    if default:
        return default.replace("%", "%%"), []
    return "nextval(pg_get_serial_sequence(%s, %s))", [model._meta.db_table, model._meta.pk.column]


@functools.cache
def _id_default(table: str, column: str) -> str | None:
    # The same in every database of a deployment (the migrations set it): read once.
    rows = statement_rows(
        "SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef d JOIN pg_attribute a "
        "ON a.attrelid = d.adrelid AND a.attnum = d.adnum "
        "WHERE d.adrelid = %s::regclass AND a.attname = %s",
        [table, column],
    )
    return rows[0][0] if rows else None


def _rows(columns: Columns) -> int:
    lengths = {len(values) for values in columns.values()}
    if len(lengths) != 1:
        raise ValueError("every column needs the same number of values")
    return lengths.pop()


def natural_key(model: type[models.Model]) -> list[models.Field]:
    """The fields of the model's first unconditional unique constraint."""
    for constraint in model._meta.constraints:
        if isinstance(constraint, models.UniqueConstraint) and constraint.condition is None:
            return _fields(model, constraint.fields)
    raise ValueError(f"{model.__name__} has no unconditional unique constraint")


def _with_defaults(
    model: type[models.Model], columns: Columns, count: int, *, leave_out=()
) -> Columns:
    full = dict(columns)
    for field in model._meta.concrete_fields:
        if field.primary_key or field.attname in full or field.attname in leave_out:
            continue
        full[field.attname] = [field.get_default()] * count
    return full


def rows_insert(
    model: type[models.Model],
    columns: Columns,
    *,
    ignore_conflicts: bool = False,
    batch_size: int = 5000,
) -> list[int | None]:
    """Insert rows given as columns (attnames, e.g. ``item_id``); return each row's primary
    key, or None for a row skipped because its natural key was already stored
    (``ignore_conflicts``). Fields left out take their defaults. Call inside a transaction."""
    count = _rows(columns)
    if count == 0:
        return []
    columns = _with_defaults(model, columns, count)
    key_fields = natural_key(model)
    key_names = [f.attname for f in key_fields]
    keys = list(zip(*(columns[name] for name in key_names), strict=True))
    if connection.vendor != "postgresql":
        return _insert_with_orm(model, columns, keys, key_fields, count, ignore_conflicts)
    quote = connection.ops.quote_name
    meta = model._meta
    fields = [f for f in meta.concrete_fields if f.attname in columns]
    sql = (
        f"INSERT INTO {quote(meta.db_table)} ({', '.join(quote(f.column) for f in fields)}) "
        f"SELECT * FROM unnest({_casts(fields)})"
        f"{' ON CONFLICT DO NOTHING' if ignore_conflicts else ''} "
        f"RETURNING {', '.join(quote(f.column) for f in [meta.pk, *key_fields])}"
    )
    stored: dict[tuple, int] = {}
    if ignore_conflicts:
        # A key kept by a trigger rather than by a unique index (a partitioned table's:
        # ``reviews.partitions``) is skipped too, as ON CONFLICT skips one of its own.
        _execute(SKIP_DUPLICATES_SQL, ["on"])
    for start in range(0, count, batch_size):
        params = [_prepared(f, columns[f.attname][start : start + batch_size]) for f in fields]
        stored.update((tuple(row[1:]), row[0]) for row in _execute(sql, params)[0])
    if ignore_conflicts:
        _execute(SKIP_DUPLICATES_SQL, ["off"])
    return [stored.get(key) for key in keys]


def rows_append(
    model: type[models.Model],
    columns: Columns,
    *,
    computed: dict[str, models.Expression] | None = None,
    ignore_conflicts: bool = False,
    batch_size: int = 5000,
) -> int:
    """Insert rows given as columns, reading nothing back, and return how many were given:
    for a table that is only appended to (an outbox), which needs no natural key, or rows whose
    ids the writer already holds. ``computed`` names fields whose value the database gives each
    row (an expression, such as the writing transaction's id). ``ignore_conflicts`` skips a row
    whose unique key is taken. Fields left out take their defaults (give ``auto_now_add``
    fields a value). Inside ``writes_joined`` it is a part of the block's statement. Call
    inside a transaction."""
    count = _rows(columns)
    if count == 0:
        return 0
    computed = computed or {}
    columns = _with_defaults(model, columns, count, leave_out=computed)
    if connection.vendor != "postgresql":
        rows = [
            dict(zip(columns, values, strict=True))
            for values in zip(*columns.values(), strict=True)
        ]
        model.objects.bulk_create(
            [model(**row, **computed) for row in rows],
            batch_size=1000,
            ignore_conflicts=ignore_conflicts,
        )
        return count
    quote = connection.ops.quote_name
    meta = model._meta
    fields = [f for f in meta.concrete_fields if f.attname in columns]
    compiler = InsertQuery(model).get_compiler(connection=connection)
    expressions = [compiler.compile(expression) for expression in computed.values()]
    names = [quote(f.column) for f in fields]
    names += [quote(meta.get_field(name).column) for name in computed]
    selected = ", ".join(["v.*", *(expression_sql for expression_sql, _ in expressions)])
    sql = (
        f"INSERT INTO {quote(meta.db_table)} ({', '.join(names)}) "
        f"SELECT {selected} FROM unnest({_casts(fields)}) AS v"
        f"{' ON CONFLICT DO NOTHING' if ignore_conflicts else ''}"
    )
    computed_params = [param for _, params in expressions for param in params]
    for start in range(0, count, batch_size):
        params = [_prepared(f, columns[f.attname][start : start + batch_size]) for f in fields]
        statement_part(sql, [*computed_params, *params])
    return count


def _insert_with_orm(model, columns, keys, key_fields, count, ignore_conflicts):
    existing: set[tuple] = set()
    if ignore_conflicts:
        # SQLite serialises writers (IMMEDIATE transactions): what is not stored now cannot
        # appear before this insert commits.
        first, *rest = key_fields
        lookup = model.objects.filter(**{f"{first.attname}__in": {k[0] for k in keys}})
        for field in rest:
            lookup = lookup.filter(**{f"{field.attname}__in": {k[1] for k in keys}})
        existing = set(lookup.values_list(*(f.attname for f in key_fields)))
    objs, positions, seen = [], [], set()
    for index in range(count):
        key = keys[index]
        if key in existing or key in seen:
            continue
        seen.add(key)
        objs.append(model(**{name: values[index] for name, values in columns.items()}))
        positions.append(index)
    model.objects.bulk_create(objs, batch_size=1000)
    pks: list[int | None] = [None] * count
    for index, obj in zip(positions, objs, strict=True):
        pks[index] = obj.pk
    return pks


def rows_update(
    model: type[models.Model],
    pks: Sequence[int],
    columns: Columns,
    *,
    only_where: dict[str, Any] | None = None,
    batch_size: int = 5000,
) -> int:
    """Write each row's values (columns of attnames) to the row with that primary key; with
    ``only_where`` (attname: value), only to rows that still hold those values. Returns how
    many rows were written."""
    if not pks:
        return 0
    meta = model._meta
    quote = connection.ops.quote_name
    pk = meta.pk
    fields = _fields(model, columns)
    table = quote(meta.db_table)
    conditions = list((only_where or {}).items())
    condition_sql = "".join(
        f" AND {table}.{quote(model._meta.get_field(name).column)} = %s" for name, _ in conditions
    )
    condition_params = [
        model._meta.get_field(name).get_db_prep_save(value, connection)
        for name, value in conditions
    ]
    if connection.vendor != "postgresql" and connection.features.max_query_params:
        # Every value is a parameter there: stay under the engine's limit.
        width = len(fields) + 1
        batch_size = min(batch_size, (connection.features.max_query_params - 8) // width)
    updated = 0
    for start in range(0, len(pks), batch_size):
        chunk = slice(start, start + batch_size)
        values = [list(pks[chunk])] + [_prepared(f, columns[f.attname][chunk]) for f in fields]
        if connection.vendor == "postgresql":
            names = ", ".join(quote(f.column) for f in [pk, *fields])
            sets = ", ".join(f"{quote(f.column)} = v.{quote(f.column)}" for f in fields)
            sql = (
                f"UPDATE {table} SET {sets} FROM unnest({_casts([pk, *fields])}) AS v({names}) "
                f"WHERE {table}.{quote(pk.column)} = v.{quote(pk.column)}{condition_sql}"
            )
            params: list = values + condition_params
        else:
            sets = ", ".join(f"{quote(f.column)} = v.column{i + 2}" for i, f in enumerate(fields))
            width = len(fields) + 1
            rows = ", ".join(["(" + ", ".join(["%s"] * width) + ")"] * len(values[0]))
            sql = (
                f"UPDATE {table} SET {sets} FROM (VALUES {rows}) AS v "
                f"WHERE {table}.{quote(pk.column)} = v.column1{condition_sql}"
            )
            params = [value for row in zip(*values, strict=True) for value in row]
            params += condition_params
        updated += _execute(sql, params)[1]
    return updated
