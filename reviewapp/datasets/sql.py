"""SQL expressions the exports need, written per database (PostgreSQL and SQLite).

They exist so that the database, not Python, does the per-value work of an export: reading
typed values out of the item JSON, formatting timestamps, and hashing PII.
"""

import hashlib
import hmac
import json

from django.db import NotSupportedError
from django.db.models import BigIntegerField, BooleanField, CharField, F, FloatField, Func
from django.db.models.fields.json import compile_json_path

# Value kinds of export columns. "flag" is a boolean written as the text true/false (for CSV,
# where pandas reads those back as booleans; PostgreSQL's COPY would write t/f).
KINDS = ("string", "number", "integer", "boolean", "flag", "timestamp")


class _PerDatabase(Func):
    def as_sql(self, compiler, connection, **extra):
        raise NotSupportedError("exports run on PostgreSQL and SQLite only")


class IsoTimestamp(_PerDatabase):
    """A UTC timestamp as ISO 8601 text, formatted by the database."""

    output_field = CharField()

    def as_postgresql(self, compiler, connection, **extra):
        template = (
            "to_char(%(expressions)s AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"')"
        )
        return Func.as_sql(self, compiler, connection, template=template, **extra)

    def as_sqlite(self, compiler, connection, **extra):
        # Django stores SQLite date-times as UTC text "YYYY-MM-DD HH:MM:SS[.ffffff]", without
        # the fraction when it is zero: pad it, so every value has the same width (microseconds,
        # as PostgreSQL's) and readers that infer a format from the first row parse them all.
        template = (
            "(replace(CASE WHEN length(%(expressions)s) = 19 THEN %(expressions)s || '.000000' "
            "ELSE %(expressions)s END, ' ', 'T') || '+00:00')"
        )
        return Func.as_sql(self, compiler, connection, template=template, **extra)


class JsonValue(_PerDatabase):
    """One key of a JSON object column as a typed SQL value, JSON null as SQL NULL.

    Django's key transforms do not fit: PostgreSQL will not cast a JSON null to a number, and
    on SQLite the text transform turns JSON null into the text "null".
    """

    _POSTGRES_CASTS = {"number": "double precision", "integer": "bigint", "boolean": "boolean"}
    _SQLITE_CASTS = {"number": "REAL", "integer": "INTEGER"}
    _FIELDS = {
        "number": FloatField,
        "integer": BigIntegerField,
        "boolean": BooleanField,
        "flag": CharField,
        "string": CharField,
    }

    def __init__(self, column: str, *, key: str, kind: str):
        super().__init__(F(column), output_field=self._FIELDS[kind]())
        self.key, self.kind = key, kind

    @property
    def convert_value(self):
        # The database already returns the right Python type: no per-value converter.
        return self._convert_value_noop

    def as_postgresql(self, compiler, connection, **extra):
        sql, params = compiler.compile(self.get_source_expressions()[0])
        value = f"({sql} ->> %s)"  # JSON text: true/false for booleans ("flag")
        if self.kind in self._POSTGRES_CASTS:
            value = f"{value}::{self._POSTGRES_CASTS[self.kind]}"
        return value, (*params, self.key)

    def as_sqlite(self, compiler, connection, **extra):
        sql, params = compiler.compile(self.get_source_expressions()[0])
        path = compile_json_path([self.key])
        if self.kind == "flag":
            return (
                f"CASE json_type({sql}, %s) WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' END",
                (*params, path),
            )
        value = f"json_extract({sql}, %s)"  # true/false come out as 1/0, read as booleans
        if self.kind in self._SQLITE_CASTS:
            value = f"CAST({value} AS {self._SQLITE_CASTS[self.kind]})"
        return value, (*params, path)


def hmac_hex(key: bytes, value) -> str | None:
    """HMAC-SHA256 of a JSON scalar's text: text as itself, true/false, numbers as written."""
    if value is None:
        return None
    text = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def _sqlite_hmac(key_hex: str, value) -> str | None:
    return hmac_hex(bytes.fromhex(key_hex), value)


class JsonHmac(_PerDatabase):
    """HMAC-SHA256 (hex) of one key of a JSON object column, under ``key`` (at most 64 bytes).

    PostgreSQL has no HMAC without pgcrypto; it is built from its sha256() as the standard
    defines it: H((K xor opad) || H((K xor ipad) || message)). SQLite calls Python's hmac.
    """

    output_field = CharField()
    BLOCK = 64

    def __init__(self, column: str, *, key: str, secret: bytes):
        if len(secret) > self.BLOCK:
            raise ValueError("an HMAC key longer than the block would need hashing first")
        super().__init__(F(column))
        self.key, self.secret = key, secret

    def _pads(self) -> tuple[bytes, bytes]:
        padded = self.secret.ljust(self.BLOCK, b"\0")
        return bytes(b ^ 0x36 for b in padded), bytes(b ^ 0x5C for b in padded)

    def as_postgresql(self, compiler, connection, **extra):
        sql, params = compiler.compile(self.get_source_expressions()[0])
        inner, outer = self._pads()
        return (
            "encode(sha256(%s::bytea || sha256(%s::bytea || "
            f"convert_to(({sql} ->> %s), 'UTF8'))), 'hex')",
            (outer, inner, *params, self.key),
        )

    def as_sqlite(self, compiler, connection, **extra):
        connection.ensure_connection()
        connection.connection.create_function("reviewapp_hmac", 2, _sqlite_hmac, deterministic=True)
        sql, params = compiler.compile(self.get_source_expressions()[0])
        path = compile_json_path([self.key])
        value = (
            f"CASE json_type({sql}, %s) WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' "
            f"ELSE json_extract({sql}, %s) END"
        )
        return f"reviewapp_hmac(%s, {value})", (self.secret.hex(), *params, path, *params, path)


class JsonLine(_PerDatabase):
    """A JSON object of named values as one line of text, built by PostgreSQL (to_json of each
    value: numbers, booleans and escaped strings, null for NULL), keys in column order."""

    output_field = CharField()

    def __init__(self, named: list[tuple[str, object]]):
        super().__init__(*[value for _, value in named])
        self.names = [name for name, _ in named]

    def as_postgresql(self, compiler, connection, **extra):
        parts, params = [], []
        for index, (name, value) in enumerate(
            zip(self.names, self.get_source_expressions(), strict=True)
        ):
            sql, value_params = compiler.compile(value)
            parts.append(f"%s || coalesce(to_json({sql})::text, 'null')")
            params.extend([("{" if index == 0 else ",") + json.dumps(name) + ":", *value_params])
        return "(" + " || ".join(parts) + " || '}')", tuple(params)
