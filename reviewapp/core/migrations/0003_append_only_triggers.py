"""On PostgreSQL the database itself refuses UPDATE and DELETE on the append-only tables.

The ORM already refuses (reviewapp.core.append_only); the triggers also stop raw SQL and the
UPDATE ... SET NULL or cascading DELETE that Django's deletion collector issues directly. The
one way past them is ``history_rewrite()``, which sets ``reviewapp.history_rewrite`` to ``on``
for its transaction. SQLite (the embedded default) relies on the ORM layer alone.
"""

from django.db import migrations

TABLES = [
    "deployments_automationpolicy",
    "deployments_modelversionevent",
    "deployments_rampplanevent",
    "reviews_decision",
]

FUNCTION = """
CREATE OR REPLACE FUNCTION reviewapp_append_only() RETURNS trigger AS $$
BEGIN
    IF current_setting('reviewapp.history_rewrite', true) = 'on' THEN
        IF TG_OP = 'DELETE' THEN
            RETURN OLD;
        END IF;
        RETURN NEW;
    END IF;
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'restrict_violation';
END;
$$ LANGUAGE plpgsql;
"""


def _triggers_create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(FUNCTION, params=None)  # the body holds literal % signs
    for table in TABLES:
        schema_editor.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION reviewapp_append_only()"
        )


def _triggers_drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for table in TABLES:
        schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
    schema_editor.execute("DROP FUNCTION IF EXISTS reviewapp_append_only()")


class Migration(migrations.Migration):
    dependencies = [
        ("core", "0002_role_groups"),
        ("deployments", "0004_guardrail_status_and_ramp_plans"),
        ("reviews", "0002_escalation"),
    ]
    operations = [migrations.RunPython(_triggers_create, _triggers_drop)]
