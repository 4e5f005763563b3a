"""Append-only tables: the record of who decided what, when and why is written once, never edited.

Three layers refuse an edit or a removal: the interfaces offer none (no PUT/PATCH/DELETE routes,
admin without change or delete permissions), the ORM refuses (``AppendOnlyModel`` and its
queryset), and on PostgreSQL the database itself refuses (triggers, core migration 0003), which
also covers raw SQL and the ``SET_NULL``/``CASCADE`` writes Django's deletion collector makes
without going through a model's queryset.

``history_rewrite()`` is the one way past all three, for two callers: the demo seeder, which
replays weeks of history in minutes and backdates what it wrote to the replayed day, and the
history archives, which remove rows only once they are stored, whole and checked, in an archive
that brings them back unchanged (``reviewapp/archives``).
"""

import contextvars
import functools
from collections.abc import Iterator
from contextlib import contextmanager

from django.apps import apps
from django.db import connection, models, transaction
from django.db.models import ProtectedError
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


def _refuse_cascade(sender, origin=None, **kwargs) -> None:
    # Deleting an account, use case or model version says why in its own words first.
    if isinstance(origin, models.Model) and type(origin) in _history_keepers:
        _refuse_losing_history(type(origin), origin)
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


class HistoryKept(ProtectedError):
    """Deleting an account, a use case or a model version that history refers to."""


def history_kept_by(instance: models.Model) -> list[str]:
    """What history refers to ``instance`` (plural names; empty when it can be deleted): rows
    of append-only tables, and of models that say ``keeps_history = True`` (items, predictions).
    One EXISTS per relation, so it is cheap however long the history is."""
    found = {
        str(model._meta.verbose_name_plural)
        for model, field in _history_fields(type(instance))
        if model._base_manager.filter(**{field: instance.pk}).exists()
    }
    return sorted(found)


@functools.cache
def _history_fields(target: type[models.Model]) -> tuple[tuple[type[models.Model], str], ...]:
    """The (model, foreign key) pairs of history rows that can point at ``target``; hidden
    relations (``related_name="+"``) included, which ``_meta.related_objects`` leaves out."""
    return tuple(
        (model, field.name)
        for model in apps.get_models()
        if issubclass(model, AppendOnlyModel) or getattr(model, "keeps_history", False)
        for field in model._meta.get_fields()
        if isinstance(field, models.ForeignKey) and field.related_model is target
    )


def _refuse_losing_history(sender, instance, **kwargs) -> None:
    kept = history_kept_by(instance)
    if kept and not _rewrite_allowed.get():
        raise HistoryKept(
            f"{sender._meta.verbose_name} {instance} has history ({', '.join(kept)}) and is "
            "kept with it: deactivate or retire it instead of deleting it",
            [instance],
        )


def history_keeper(model: type[models.Model]) -> None:
    """Refuse to delete a ``model`` row that history refers to (a ``HistoryKept`` error, before
    anything is removed), wherever the delete comes from: the admin, a shell, a cascade."""
    _history_keepers.add(model)
    pre_delete.connect(_refuse_losing_history, sender=model, weak=False)


_history_keepers: set[type[models.Model]] = set()


def _rewrite_setting_set(value: str) -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT set_config(%s, %s, true)", [REWRITE_SETTING, value])


@contextmanager
def history_rewrite() -> Iterator[None]:
    """Allow changes to append-only rows inside this block, in one transaction.

    Only the demo seeder (to backdate a replayed history) and the archives (to move rows into
    a checked archive file) call it. Nothing a user can reach does: an audit row that can be
    rewritten is no audit.
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
