"""PostgreSQL: items, predictions, review tasks and decisions partitioned by month.

See ``reviewapp/reviews/partitions.py`` for the layout. The conversion keeps every row where it
is: each old table is renamed ``<table>_before`` and attached, unchanged, as the partition of
the ids given before (all below the first month's range); nothing is copied. A new database
has nothing to keep: its empty old tables are dropped. What it costs on a large
database: one new index on each old table (the composite primary key, the lookup indexes that
lost their uniqueness), the key tables filled from the rows, and every foreign key into or out
of the four tables checked again. Run it in a maintenance window.

Django's model state is unchanged: for the ORM the tables are what they were. SQLite keeps
plain tables (nothing happens there).
"""

from django.db import migrations
from django.utils import timezone

from reviewapp.reviews.partitions import (
    BEFORE,
    BEFORE_SUFFIX,
    PARTITIONED,
    month_number,
    month_start_id,
    partition_bounds,
    partition_name,
)

KEY = dict(PARTITIONED)
AHEAD = 1  # months created beyond this one; the beat keeps HISTORY_PARTITIONS_AHEAD

# The unique keys that do not contain the partition key, kept in key tables that triggers fill.
KEY_TABLES = """
CREATE TABLE reviews_item_key (
    use_case_id bigint NOT NULL,
    external_id varchar(200) NOT NULL,
    item_id bigint NOT NULL,
    CONSTRAINT one_item_per_external_id PRIMARY KEY (use_case_id, external_id)
);
CREATE INDEX reviews_item_key_item_idx ON reviews_item_key (item_id);
CREATE TABLE reviews_decision_key (
    reviewer_id {reviewer_type} NOT NULL,
    idempotency_key varchar(200) NOT NULL,
    decision_id bigint NOT NULL,
    CONSTRAINT one_decision_per_idempotency_key PRIMARY KEY (reviewer_id, idempotency_key)
);
CREATE INDEX reviews_decision_key_decision_idx ON reviews_decision_key (decision_id);
INSERT INTO reviews_item_key SELECT use_case_id, external_id, id FROM reviews_item;
INSERT INTO reviews_decision_key
    SELECT reviewer_id, idempotency_key, id FROM reviews_decision
    WHERE idempotency_key IS NOT NULL;
"""

# A new item claims its key before it is stored. A duplicate raises the unique violation the
# old constraint raised, under its name; an insert that skips duplicates (``rows_insert`` with
# ``ignore_conflicts``, which sets reviewapp.duplicates_skipped for its statement) skips the row.
TRIGGERS = """
CREATE FUNCTION reviews_item_key_claim() RETURNS trigger AS $$
BEGIN
    INSERT INTO reviews_item_key (use_case_id, external_id, item_id)
        VALUES (NEW.use_case_id, NEW.external_id, NEW.id)
        ON CONFLICT DO NOTHING;
    IF FOUND THEN
        RETURN NEW;
    END IF;
    IF EXISTS (SELECT 1 FROM reviews_item_key WHERE use_case_id = NEW.use_case_id
               AND external_id = NEW.external_id AND item_id = NEW.id) THEN
        RETURN NEW;
    END IF;
    IF current_setting('reviewapp.duplicates_skipped', true) = 'on' THEN
        RETURN NULL;
    END IF;
    RAISE unique_violation USING
        MESSAGE = 'duplicate key value violates unique constraint "one_item_per_external_id"',
        DETAIL = format('Key (use_case_id, external_id)=(%s, %s) already exists.',
                        NEW.use_case_id, NEW.external_id),
        CONSTRAINT = 'one_item_per_external_id', TABLE = 'reviews_item';
END;
$$ LANGUAGE plpgsql;

CREATE FUNCTION reviews_item_key_keep() RETURNS trigger AS $$
BEGIN
    IF NEW.use_case_id <> OLD.use_case_id OR NEW.external_id <> OLD.external_id THEN
        RAISE EXCEPTION 'an item''s use case and external id never change'
            USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE FUNCTION reviews_item_key_release() RETURNS trigger AS $$
BEGIN
    DELETE FROM reviews_item_key k USING gone g
        WHERE k.use_case_id = g.use_case_id AND k.external_id = g.external_id
        AND k.item_id = g.id;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE FUNCTION reviews_decision_key_claim() RETURNS trigger AS $$
BEGIN
    IF NEW.idempotency_key IS NULL THEN
        RETURN NEW;
    END IF;
    INSERT INTO reviews_decision_key (reviewer_id, idempotency_key, decision_id)
        VALUES (NEW.reviewer_id, NEW.idempotency_key, NEW.id)
        ON CONFLICT DO NOTHING;
    IF FOUND THEN
        RETURN NEW;
    END IF;
    RAISE unique_violation USING
        MESSAGE = 'duplicate key value violates unique constraint '
                  '"one_decision_per_idempotency_key"',
        DETAIL = format('Key (reviewer_id, idempotency_key)=(%s, %s) already exists.',
                        NEW.reviewer_id, NEW.idempotency_key),
        CONSTRAINT = 'one_decision_per_idempotency_key', TABLE = 'reviews_decision';
END;
$$ LANGUAGE plpgsql;

CREATE FUNCTION reviews_decision_key_release() RETURNS trigger AS $$
BEGIN
    DELETE FROM reviews_decision_key k USING gone g
        WHERE k.reviewer_id = g.reviewer_id AND k.idempotency_key = g.idempotency_key
        AND k.decision_id = g.id;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE FUNCTION reviews_keys_truncate() RETURNS trigger AS $$
BEGIN
    EXECUTE format('TRUNCATE %I', TG_ARGV[0]);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER reviews_item_key_claim BEFORE INSERT ON reviews_item
    FOR EACH ROW EXECUTE FUNCTION reviews_item_key_claim();
CREATE TRIGGER reviews_item_key_keep BEFORE UPDATE OF use_case_id, external_id ON reviews_item
    FOR EACH ROW EXECUTE FUNCTION reviews_item_key_keep();
CREATE TRIGGER reviews_item_key_release AFTER DELETE ON reviews_item
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION reviews_item_key_release();
CREATE TRIGGER reviews_item_key_truncate AFTER TRUNCATE ON reviews_item
    FOR EACH STATEMENT EXECUTE FUNCTION reviews_keys_truncate('reviews_item_key');
CREATE TRIGGER reviews_decision_key_claim BEFORE INSERT ON reviews_decision
    FOR EACH ROW EXECUTE FUNCTION reviews_decision_key_claim();
CREATE TRIGGER reviews_decision_key_release AFTER DELETE ON reviews_decision
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT
    EXECUTE FUNCTION reviews_decision_key_release();
CREATE TRIGGER reviews_decision_key_truncate AFTER TRUNCATE ON reviews_decision
    FOR EACH STATEMENT EXECUTE FUNCTION reviews_keys_truncate('reviews_decision_key');
CREATE TRIGGER reviews_decision_append_only BEFORE UPDATE OR DELETE ON reviews_decision
    FOR EACH ROW EXECUTE FUNCTION reviewapp_append_only();
"""

# An item's id: its month (UTC) in the high bits, the items' sequence below (partitions.py).
ITEM_ID_NEXT = """
CREATE FUNCTION reviews_item_id_next() RETURNS bigint AS $$
    SELECT ((EXTRACT(YEAR FROM now() AT TIME ZONE 'UTC')::bigint * 12
             + EXTRACT(MONTH FROM now() AT TIME ZONE 'UTC')::bigint - 1) << {shift})
           + nextval('reviews_item_id_seq') % {span}
$$ LANGUAGE sql VOLATILE;
"""


def _rows(cursor, sql, params=None):
    cursor.execute(sql, params)
    return cursor.fetchall()


def _foreign_keys(cursor) -> list[tuple[str, str, str]]:
    """Every foreign key into or out of the four tables: (table, name, definition)."""
    return _rows(
        cursor,
        "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE contype = 'f' "
        "AND (conrelid = ANY(%s::regclass[]) OR confrelid = ANY(%s::regclass[]))",
        [list(KEY), list(KEY)],
    )


def _foreign_key_again(cursor, table: str, name: str, definition: str) -> None:
    """Add a foreign key back on the parent tables. One that points at a table now keyed by
    (id, item_id) names the referring row's item too; one that cannot (a skip has no item) is
    left to the ORM."""
    head, _, tail = definition.partition(" REFERENCES ")
    target, _, rest = tail.partition("(")
    if target in KEY and KEY[target] != "id":
        if table == "reviews_item":
            item_column = "id"
        else:
            columns = {c for (c,) in _rows(cursor, _COLUMNS, [table])}
            if "item_id" not in columns:
                return
            item_column = "item_id"
        column = head.removeprefix("FOREIGN KEY (").removesuffix(")")
        options = rest.partition(")")[2]
        definition = (
            f"FOREIGN KEY ({column}, {item_column}) REFERENCES {target}(id, item_id){options}"
        )
    cursor.execute(f"ALTER TABLE {table} ADD CONSTRAINT {name} {definition}")


_COLUMNS = "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0"


def _convert(cursor, table: str, *, keep_rows: bool) -> None:
    key = KEY[table]
    old = f"{table}{BEFORE_SUFFIX}"
    indexes = _rows(
        cursor,
        "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid), c.contype, "
        "ARRAY(SELECT a.attname FROM unnest(i.indkey) WITH ORDINALITY k(attnum, n) "
        "      JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
        "      ORDER BY k.n) "
        "FROM pg_index i LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid "
        "AND c.contype IN ('p', 'u') WHERE i.indrelid = %s::regclass",
        [table],
    )
    (last,) = _rows(cursor, f"SELECT max(id) FROM {table}")[0]
    cursor.execute(f"ALTER TABLE {table} RENAME TO {old}")
    for name, _definition, _kind, _columns in indexes:
        cursor.execute(f"ALTER INDEX {name} RENAME TO {name[:56]}_before")
    cursor.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {old}")
    cursor.execute(f"ALTER TABLE {old} ALTER COLUMN id DROP IDENTITY IF EXISTS")
    cursor.execute(
        f"CREATE TABLE {table} (LIKE {old} INCLUDING DEFAULTS INCLUDING CONSTRAINTS "
        f"INCLUDING STORAGE) PARTITION BY RANGE ({key})"
    )
    cursor.execute(f"CREATE SEQUENCE {table}_id_seq AS bigint OWNED BY {table}.id")
    if last is not None:
        cursor.execute(f"SELECT setval('{table}_id_seq', {last})")
    if table == "reviews_item":
        cursor.execute(ITEM_ID_NEXT.format(shift=36, span=1 << 36))
        cursor.execute(f"ALTER TABLE {table} ALTER COLUMN id SET DEFAULT reviews_item_id_next()")
    else:
        cursor.execute(f"ALTER TABLE {table} ALTER COLUMN id SET DEFAULT nextval('{table}_id_seq')")
    for name, definition, kind, columns in indexes:
        if kind == "p":
            keyed = "id" if key == "id" else f"id, {key}"
            cursor.execute(f"ALTER TABLE {table} ADD CONSTRAINT {name} PRIMARY KEY ({keyed})")
        elif key in columns:
            if kind == "u":
                cols = ", ".join(columns)
                cursor.execute(f"ALTER TABLE {table} ADD CONSTRAINT {name} UNIQUE ({cols})")
            else:
                cursor.execute(definition)
        elif name == "reviews_decision_task_id_key":
            # A task belongs to one item, and a decision names its task's item (the foreign
            # key on both columns): unique with the item is unique.
            cursor.execute(f"ALTER TABLE {table} ADD CONSTRAINT {name} UNIQUE (task_id, {key})")
        elif name in ("one_item_per_external_id", "one_decision_per_idempotency_key"):
            # Unique through its key table; an index here finds the row by the same key.
            lookup = {
                "one_item_per_external_id": "item_external_id_idx",
                "one_decision_per_idempotency_key": "decision_idempotency_key_idx",
            }[name]
            cursor.execute(
                definition.replace("CREATE UNIQUE INDEX", "CREATE INDEX").replace(
                    f"INDEX {name} ON", f"INDEX {lookup} ON"
                )
            )
        elif kind is None and not definition.startswith("CREATE UNIQUE"):
            cursor.execute(definition)
        else:
            raise RuntimeError(f"{name} on {table}: a unique key without {key}")
    if not keep_rows:  # a new database: nothing to keep, and no empty partition to plan
        cursor.execute(f"DROP TABLE {old}")
        return
    if key != "id":
        # Its primary key becomes (id, item_id), built when it is attached.
        (primary,) = (name for name, _definition, kind, _columns in indexes if kind == "p")
        cursor.execute(f"ALTER TABLE {old} DROP CONSTRAINT {primary[:56]}_before")
    cursor.execute(
        f"ALTER TABLE {table} ATTACH PARTITION {old} FOR VALUES {partition_bounds(BEFORE)}"
    )


def _forward(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    now = timezone.now()
    first = month_number(now.year, now.month)
    with connection.cursor() as cursor:
        (reviewer_type,) = _rows(
            cursor,
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = 'reviews_decision'::regclass AND attname = 'reviewer_id'",
        )[0]
        (largest,) = _rows(cursor, "SELECT max(id) FROM reviews_item")[0]
        if largest is not None and largest >= month_start_id(BEFORE + 1):
            raise RuntimeError(f"item ids reach {largest}: more than the rows from before hold")
        foreign_keys = _foreign_keys(cursor)
        for table, name, _definition in foreign_keys:
            cursor.execute(f"ALTER TABLE {table} DROP CONSTRAINT {name}")
        for table in KEY:
            _convert(cursor, table, keep_rows=largest is not None)
        for number in range(first, first + AHEAD + 1):
            for table in KEY:
                cursor.execute(
                    f"CREATE TABLE {partition_name(table, number)} PARTITION OF {table} "
                    f"FOR VALUES {partition_bounds(number)}"
                )
        for table, name, definition in foreign_keys:
            _foreign_key_again(cursor, table, name, definition)
        cursor.execute(KEY_TABLES.format(reviewer_type=reviewer_type))
        cursor.execute(TRIGGERS)


class Migration(migrations.Migration):
    atomic = True

    dependencies = [
        ("reviews", "0007_fewer_indexes"),
        ("core", "0003_append_only_triggers"),
    ]

    # Irreversible: going back would mean copying every month into plain tables again.
    operations = [migrations.RunPython(_forward, elidable=False)]
