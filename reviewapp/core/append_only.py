"""Append-only tables: the record of who decided what, when and why is written once, never edited.

Three layers refuse an edit or a removal: the interfaces offer none (no PUT/PATCH/DELETE routes,
admin without change or delete permissions), the ORM refuses (``AppendOnlyModel`` and its
queryset), and on PostgreSQL the database itself refuses (triggers, core migration 0003), which
also covers raw SQL and the ``SET_NULL``/``CASCADE`` writes Django's deletion collector makes
without going through a model's queryset.

``history_rewrite()`` is the one way past all three, for the demo seeder, which replays weeks of
history in minutes and backdates what it wrote to the replayed day.
"""

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection, models, transaction
from django.db.models.signals import pre_delete

# The PostgreSQL triggers read this setting; set_config(..., true) scopes it to the transaction.
REWRITE_SETTING = "reviewapp.history_rewrite"

_rewrite_allowed = contextvars.ContextVar("history_rewrite", default=False)


class AppendOnlyError(Exception):
    """An attempt to change or remove a row of an append-only table."""


def _refuse(model: type[models.Model], operation: str) -> None:
    if not _rewrite_allowed.get():
        raise AppendOnlyError(
            f"{model._meta.label} is append-only: {operation} is refused; record a new row instead"
        )


class AppendOnlyQuerySet(models.QuerySet):
    def update(self, **kwargs):
        _refuse(self.model, "update")
        return super().update(**kwargs)

    def bulk_update(self, objs, fields, batch_size=None):
        _refuse(self.model, "bulk_update")
        return super().bulk_update(objs, fields, batch_size=batch_size)

    def delete(self):
        _refuse(self.model, "delete")
        return super().delete()

    delete.queryset_only = True

    def _raw_delete(self, using):
        # The deletion collector's fast path for cascades.
        _refuse(self.model, "delete")
        return super()._raw_delete(using)


def _refuse_cascade(sender, **kwargs) -> None:
    _refuse(sender, "delete (a cascade from a deleted parent)")


class AppendOnlyModel(models.Model):
    """A row is inserted once; saving it again or deleting it raises AppendOnlyError."""

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        abstract = True

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # Deleting a parent (a use case, a task) deletes its children with plain DELETE
        # statements, past the queryset above; pre_delete is the hook Django calls for each one.
        pre_delete.connect(_refuse_cascade, sender=cls, weak=False)

    def save(self, *args, **kwargs):
        if not self._state.adding:
            _refuse(type(self), "saving an existing row")
        return super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        _refuse(type(self), "delete")
        return super().delete(*args, **kwargs)


def _rewrite_setting_set(value: str) -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config(%s, %s, true)", [REWRITE_SETTING, value])


@contextmanager
def history_rewrite() -> Iterator[None]:
    """Allow changes to append-only rows inside this block, in one transaction.

    Only the demo seeder calls it (to backdate a replayed history). Nothing a user can reach
    does: an audit row that can be rewritten is no audit.
    """
    with transaction.atomic():
        token = _rewrite_allowed.set(True)
        _rewrite_setting_set("on")
        try:
            yield
        finally:
            _rewrite_allowed.reset(token)
            # The setting lasts until the outermost transaction ends; end it with the block.
            _rewrite_setting_set("off")
