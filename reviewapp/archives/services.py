"""Moving a use case's old history into Parquet archives, and bringing it back.

An item is archived with everything that hangs off it (``TABLES``) once its whole history lies
before the cutoff and nothing about it is open: decided, no task waiting or escalated, no gold
check being answered, no fact still waiting to be folded into the rollups. The rollups keep
their aggregates, so the dashboards read the same figures after the rows are gone.

Nothing is removed before it is safely stored. ``archive_create`` works in two steps:

1. **Write.** The eligible items' rows are written, table by table, to Parquet files in a
   scratch folder while their SHA-256 is computed; the files and a manifest naming each file's
   SHA-256 and row count are stored, and the stored files are read back and checked.
2. **Remove.** Item by item chunk, in one transaction each: the items are locked, checked
   again (still closed, nothing newer than what was written) and removed. An item that changed
   meanwhile stays in the database; the archive counts it as kept, and a restore skips it.

A run that stops half-way resumes where it stopped (``archives_resume``): an archive still
writing is dropped (nothing was removed), one removing carries on.

``archive_restore`` checks every file against the manifest, then inserts the rows that are not
in the database, in one transaction. It creates no rollup events: the rollups never lost them.
"""

import hashlib
import json
import logging
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.files import File
from django.core.files.storage import storages
from django.db import IntegrityError, connection, models, transaction
from django.db.migrations.recorder import MigrationRecorder
from django.db.models import Exists, Max, OuterRef, Q, QuerySet
from django.utils import timezone

from deployments.models import AutomationPolicy, ModelVersion, UseCase
from reviewapp.archives.models import Archive, ArchivedReference
from reviewapp.core.append_only import history_rewrite
from reviewapp.core.errors import Conflict, InvalidInput
from reviewapp.core.logs import event_log
from reviewapp.core.snapshots import repeatable_read
from reviewapp.monitoring.models import RollupEvent
from reviewapp.reviews.models import (
    Decision,
    Disagreement,
    Escalation,
    GoldCheck,
    Item,
    ItemSeen,
    Prediction,
    ReviewTask,
    TaskSkip,
)
from reviewapp.reviews.partitions import partitions_drop_empty, partitions_for_items

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"


def _chunk() -> int:
    """Items per read and per removal transaction (``ARCHIVE_CHUNK_ITEMS``)."""
    return settings.ARCHIVE_CHUNK_ITEMS


@dataclass(frozen=True)
class Table:
    """One table of an archive: its model and the path from its rows to their item's id."""

    name: str
    model: type[models.Model]
    item_path: str


# Parents before children: the order rows are restored in (constraints are checked at commit,
# but a reader of the files meets items first). Removal runs in the reverse order.
TABLES = (
    Table("items", Item, "id"),
    Table("predictions", Prediction, "item_id"),
    Table("review_tasks", ReviewTask, "item_id"),
    Table("task_skips", TaskSkip, "task__item_id"),
    Table("items_seen", ItemSeen, "item_id"),
    Table("gold_checks", GoldCheck, "item_id"),
    Table("decisions", Decision, "item_id"),
    Table("disagreements", Disagreement, "item_id"),
    Table("escalations", Escalation, "item_id"),
)


_REFERENCED = {
    "user": get_user_model(),
    "policy": AutomationPolicy,
    "model_version": ModelVersion,
}


def archive_storage():
    return storages["archives"]


# --- which items may go -------------------------------------------------------------------


def items_archivable(*, use_case: UseCase, cutoff: datetime) -> QuerySet:
    """Items of ``use_case`` whose whole history lies before ``cutoff`` and that nothing still
    waits on. Every condition is an EXISTS on an indexed foreign key, so the query costs the
    same however much history is newer than the cutoff."""
    item = OuterRef("pk")
    open_task = Q(state__in=[ReviewTask.State.OPEN, ReviewTask.State.ESCALATED])
    # A gold check being answered (its lease not over before the cutoff) is open work too.
    open_gold = Q(answered_at__isnull=True, skipped=False, lease_expires_at__gte=cutoff)
    late = {
        ReviewTask: open_task | Q(created_at__gte=cutoff) | Q(done_at__gte=cutoff),
        Prediction: Q(created_at__gte=cutoff),
        Decision: Q(created_at__gte=cutoff),
        Disagreement: Q(decided_at__gte=cutoff),
        Escalation: Q(resolved_at__isnull=True)
        | Q(created_at__gte=cutoff)
        | Q(resolved_at__gte=cutoff),
        GoldCheck: open_gold | Q(served_at__gte=cutoff) | Q(answered_at__gte=cutoff),
        ItemSeen: Q(first_seen_at__gte=cutoff),
    }
    rows = Item.objects.filter(
        use_case=use_case,
        status=Item.Status.DECIDED,
        received_at__lt=cutoff,
        decided_at__lt=cutoff,
    ).exclude(routed_at__gte=cutoff)
    for model, condition in late.items():
        rows = rows.exclude(Exists(model.objects.filter(condition, item=item)))
    rows = rows.exclude(Exists(TaskSkip.objects.filter(task__item=item, created_at__gte=cutoff)))
    # Facts not yet folded into the rollups: the fold reads their rows.
    pending = RollupEvent.objects.filter(use_case_id=use_case.pk)
    rows = rows.exclude(Exists(pending.filter(kind=RollupEvent.Kind.ITEM, object_id=item)))
    for kind, model in (
        (RollupEvent.Kind.DECISION, Decision),
        (RollupEvent.Kind.PREDICTION, Prediction),
    ):
        facts = model.objects.filter(item=OuterRef(OuterRef("pk"))).values("pk")
        rows = rows.exclude(Exists(pending.filter(kind=kind, object_id__in=facts)))
    return rows


def hour_floor(moment: datetime) -> datetime:
    """A cutoff is a whole hour (UTC), the rollups' grain: every archived fact then lies in an
    hour before it, and the figures from it on can be recounted exactly."""
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def cutoff_for(*, use_case: UseCase, now: datetime | None = None) -> datetime | None:
    """The start of the month ``retention_months`` whole months before this one (UTC); None
    when the use case keeps its history."""
    if not use_case.retention_months:
        return None
    now = (now or timezone.now()).astimezone(UTC)
    months = now.year * 12 + (now.month - 1) - use_case.retention_months
    return datetime(months // 12, months % 12 + 1, 1, tzinfo=UTC)


# --- Parquet ------------------------------------------------------------------------------


def _arrow():
    """pyarrow, imported when an archive is written or read: web processes and workers start
    without it (tests/test_process_memory.py)."""
    import pyarrow
    import pyarrow.parquet

    return pyarrow, pyarrow.parquet


def _arrow_type(field: models.Field):
    pa, _ = _arrow()
    kind = _stored(field).get_internal_type()
    if kind in {"FloatField", "DecimalField"}:
        return pa.float64()
    if kind == "BooleanField":
        return pa.bool_()
    if kind == "DateTimeField":
        return pa.timestamp("us", tz="UTC")
    if kind.endswith("IntegerField") or kind.endswith("AutoField"):
        return pa.int64()
    return pa.string()  # text, UUIDs, and JSON as its text


def _columns(model: type[models.Model]) -> list[models.Field]:
    return list(model._meta.concrete_fields)


def _schema(model: type[models.Model]):
    pa, _ = _arrow()
    return pa.schema([pa.field(f.attname, _arrow_type(f), nullable=True) for f in _columns(model)])


def _stored(field: models.Field) -> models.Field:
    """The field whose type a column holds: a foreign key's target (a job's UUID, say)."""
    return field.target_field if field.is_relation else field


def _to_cell(field: models.Field, value: Any) -> Any:
    field = _stored(field)
    if value is None:
        return None
    if isinstance(field, models.JSONField):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    if isinstance(field, models.UUIDField):
        return str(value)
    return value


def _from_cell(field: models.Field, value: Any) -> Any:
    field = _stored(field)
    if value is None:
        return None
    if isinstance(field, models.JSONField):
        return json.loads(value)
    if isinstance(field, models.UUIDField):
        return uuid.UUID(value)
    return value


def _sha256(handle) -> tuple[str, int]:
    """SHA-256 and size of what ``handle`` reads, a megabyte at a time."""
    digest, size = hashlib.sha256(), 0
    while block := handle.read(1 << 20):
        digest.update(block)
        size += len(block)
    return digest.hexdigest(), size


def _file_sha256(path: Path) -> tuple[str, int]:
    with path.open("rb") as handle:
        return _sha256(handle)


def _stored_sha256(name: str) -> str:
    with archive_storage().open(name, "rb") as handle:
        return _sha256(handle)[0]


def _chunks(ids: QuerySet, size: int) -> Iterator[list[int]]:
    """Ids of ``ids`` in ascending chunks (keyset: each chunk one index range scan)."""
    last = 0
    while True:
        chunk = list(ids.filter(pk__gt=last).order_by("pk").values_list("pk", flat=True)[:size])
        if not chunk:
            return
        yield chunk
        last = chunk[-1]


# --- writing ------------------------------------------------------------------------------


def _referenced_kind(field: models.Field) -> str | None:
    """Which ArchivedReference column keeps what ``field`` points at (None: nothing to keep)."""
    if not field.is_relation:
        return None
    for kind, model in _REFERENCED.items():
        if field.related_model is model:
            return kind
    return None


class _Writers:
    """One Parquet writer per table in a scratch folder; the largest id written per table."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        _, pq = _arrow()
        self.writers = {
            t.name: pq.ParquetWriter(folder / f"{t.name}.parquet", _schema(t.model)) for t in TABLES
        }
        self.rows = dict.fromkeys(self.writers, 0)
        self.max_id: dict[str, int | None] = dict.fromkeys(self.writers)
        # Accounts, policy versions and model versions the rows refer to (ArchivedReference).
        self.references: dict[str, set[int]] = {kind: set() for kind in _REFERENCED}

    def append(self, table: Table, rows: list[dict]) -> None:
        if not rows:
            return
        fields = _columns(table.model)
        columns = {f.attname: [_to_cell(f, r[f.attname]) for r in rows] for f in fields}
        pa, _ = _arrow()
        batch = pa.Table.from_pydict(columns, schema=_schema(table.model))
        self.writers[table.name].write_table(batch)
        self.rows[table.name] += len(rows)
        top = max(r["id"] for r in rows)
        self.max_id[table.name] = max(self.max_id[table.name] or 0, top)
        for field in fields:
            kind = _referenced_kind(field)
            if kind is not None:
                self.references[kind].update(r[field.attname] for r in rows)
                self.references[kind].discard(None)

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()


def _write(
    archive: Archive, use_case: UseCase, scratch: Path
) -> tuple[dict[str, Any], dict[str, set[int]]]:
    """Write the eligible items' rows to ``scratch``: the manifest's table entries, and what
    the rows refer to."""
    writers = _Writers(scratch)
    try:
        eligible = items_archivable(use_case=use_case, cutoff=archive.cutoff)
        for ids in _chunks(eligible, _chunk()):
            with transaction.atomic():
                repeatable_read()  # one chunk's tables from one snapshot
                for table in TABLES:
                    attnames = [f.attname for f in _columns(table.model)]
                    rows = list(
                        table.model._base_manager.filter(**{f"{table.item_path}__in": ids})
                        .order_by("pk")
                        .values(*attnames)
                    )
                    writers.append(table, rows)
    finally:
        writers.close()
    entries = {}
    for table in TABLES:
        sha256, size = _file_sha256(scratch / f"{table.name}.parquet")
        entries[table.name] = {
            "file": f"{table.name}.parquet",
            "model": table.model._meta.label,
            "rows": writers.rows[table.name],
            "max_id": writers.max_id[table.name],
            "sha256": sha256,
            "size": size,
            "columns": [
                {"name": f.attname, "type": str(_arrow_type(f))} for f in _columns(table.model)
            ],
        }
    return entries, writers.references


def _migrations() -> dict[str, str]:
    """The newest migration applied per app whose tables are in an archive."""
    apps = {t.model._meta.app_label for t in TABLES}
    latest: dict[str, str] = {}
    for app, name in (
        MigrationRecorder(connection).migration_qs.filter(app__in=apps).order_by("app", "name")
    ).values_list("app", "name"):
        latest[app] = name
    return latest


def _store(archive: Archive, scratch: Path, manifest: dict[str, Any]) -> str:
    """Store the files and the manifest under the archive's folder; read each back and check
    it. Returns the manifest's SHA-256."""
    storage = archive_storage()
    (scratch / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    names = [entry["file"] for entry in manifest["tables"].values()] + [MANIFEST_NAME]
    for name in names:
        target = f"{archive.location}/{name}"
        with (scratch / name).open("rb") as handle:
            stored = storage.save(target, File(handle, name=name))
        if stored != target:
            raise RuntimeError(f"the archive storage already held {target}")
    for entry in manifest["tables"].values():
        if _stored_sha256(f"{archive.location}/{entry['file']}") != entry["sha256"]:
            raise RuntimeError(f"{entry['file']} reads back different from what was written")
    manifest_sha256, _ = _file_sha256(scratch / MANIFEST_NAME)
    if _stored_sha256(f"{archive.location}/{MANIFEST_NAME}") != manifest_sha256:
        raise RuntimeError("the manifest reads back different from what was written")
    return manifest_sha256


def archive_create(
    *,
    use_case: UseCase,
    cutoff: datetime,
    actor_name: str = "",
    now: datetime | None = None,
) -> Archive | None:
    """Archive ``use_case``'s items whose whole history lies before ``cutoff``. None when no
    item qualifies. Raises Conflict while another archive of the use case is running."""
    now = now or timezone.now()
    cutoff = hour_floor(cutoff)
    if cutoff > now:
        raise InvalidInput({"cutoff": ["must not be in the future"]})
    if not items_archivable(use_case=use_case, cutoff=cutoff).exists():
        return None
    archive_id = uuid.uuid4()
    try:
        with transaction.atomic():  # a savepoint: the refusal leaves the caller's work intact
            archive = Archive.objects.create(
                id=archive_id,
                use_case=use_case,
                cutoff=cutoff,
                created_at=now,
                created_by_name=actor_name,
                location=f"{use_case.slug}/{cutoff:%Y-%m-%d}-{archive_id.hex[:12]}",
            )
    except IntegrityError as exc:
        raise Conflict(f"an archive of {use_case.slug} is being written; try again later") from exc
    scratch = Path(tempfile.mkdtemp(prefix="archive-"))
    try:
        tables, references = _write(archive, use_case, scratch)
        manifest = {
            "archive": str(archive.pk),
            "format_version": FORMAT_VERSION,
            "use_case": {"id": use_case.pk, "slug": use_case.slug, "name": use_case.name},
            "cutoff": cutoff.isoformat(),
            "items": tables["items"]["rows"],
            "tables": tables,
            "migrations": _migrations(),
            "created_by": actor_name,
            "created_at": now.isoformat(),
        }
        manifest_sha256 = _store(archive, scratch, manifest)
    except BaseException as exc:
        _files_drop(archive)
        Archive.objects.filter(pk=archive.pk).update(
            state=Archive.State.FAILED, error=f"{type(exc).__name__}: {exc}"[:2000]
        )
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    archive.manifest = manifest
    archive.manifest_sha256 = manifest_sha256
    archive.items = manifest["items"]
    archive.state = Archive.State.REMOVING
    with transaction.atomic():
        archive.save(update_fields=["manifest", "manifest_sha256", "items", "state"])
        ArchivedReference.objects.bulk_create(
            ArchivedReference(archive=archive, **{f"{kind}_id": pk})
            for kind, ids in references.items()
            for pk in sorted(ids)
        )
    event_log(
        "archive_written",
        use_case=use_case.slug,
        archive=str(archive.pk),
        cutoff=cutoff.isoformat(),
        items=archive.items,
    )
    archive = _remove(archive)
    _partitions_drop_empty(now=now)
    return archive


def _files_drop(archive: Archive) -> None:
    storage = archive_storage()
    for name in [*(f"{t.name}.parquet" for t in TABLES), MANIFEST_NAME]:
        try:
            storage.delete(f"{archive.location}/{name}")
        except OSError:
            logger.warning("could not delete %s/%s", archive.location, name)


# --- removing -----------------------------------------------------------------------------


def _archived_ids(archive: Archive) -> Iterator[list[int]]:
    with archive_storage().open(f"{archive.location}/items.parquet", "rb") as handle:
        files = _arrow()[1].ParquetFile(handle)
        for batch in files.iter_batches(batch_size=_chunk(), columns=["id"]):
            yield batch.column(0).to_pylist()


def _removable(archive: Archive, ids: list[int]) -> list[int]:
    """Of ``ids``, the items still eligible with nothing added since they were written (each
    table's rows are all at or below the largest id the archive holds of it). Locked."""
    rows = items_archivable(use_case=archive.use_case, cutoff=archive.cutoff).filter(pk__in=ids)
    item = OuterRef("pk")
    for table in TABLES[1:]:
        top = archive.manifest["tables"][table.name]["max_id"] or 0
        newer = table.model._base_manager.filter(**{table.item_path: item}, pk__gt=top)
        rows = rows.exclude(Exists(newer))
    top = archive.manifest["tables"]["items"]["max_id"] or 0
    return list(rows.filter(pk__lte=top).select_for_update().values_list("pk", flat=True))


def _remove(archive: Archive) -> Archive:
    use_case = archive.use_case
    removed = kept = 0
    for ids in _archived_ids(archive):
        with history_rewrite():  # one transaction: decisions are append-only otherwise
            _boundary_raise(use_case=use_case, cutoff=archive.cutoff)
            gone = _removable(archive, ids)
            # One DELETE per table, children first. Not QuerySet.delete(): its collector loads
            # every decision to send signals and nulls each item's prediction one UPDATE at a
            # time, four times slower; everything that points at these rows goes with them here
            # (foreign keys are checked at commit).
            for table in reversed(TABLES):
                rows = table.model._base_manager.filter(**{f"{table.item_path}__in": gone})
                rows._raw_delete(rows.db)
            removed += len(gone)
            kept += len(ids) - len(gone)
            Archive.objects.filter(pk=archive.pk).update(items_removed=removed, items_kept=kept)
    archive.items_removed, archive.items_kept = removed, kept
    archive.state = Archive.State.ARCHIVED
    archive.archived_at = timezone.now()
    archive.save(update_fields=["items_removed", "items_kept", "state", "archived_at"])
    event_log(
        "archive_done",
        use_case=use_case.slug,
        archive=str(archive.pk),
        removed=removed,
        kept=kept,
    )
    return archive


def _partitions_drop_empty(*, now: datetime | None) -> None:
    """A past month whose every item is archived goes whole (PostgreSQL's monthly
    partitions)."""
    for partition in partitions_drop_empty(now=now):
        event_log("history_partition_dropped", partition=partition)


def _boundary_raise(*, use_case: UseCase, cutoff: datetime) -> None:
    """From now on, facts before ``cutoff`` may be missing from the raw rows (the figures
    recomputed from them start there)."""
    UseCase.objects.filter(pk=use_case.pk).filter(
        Q(history_archived_before__isnull=True) | Q(history_archived_before__lt=cutoff)
    ).update(history_archived_before=cutoff)


def _boundary_recompute(*, use_case: UseCase) -> None:
    newest = Archive.objects.filter(
        use_case=use_case, state__in=[Archive.State.REMOVING, Archive.State.ARCHIVED]
    ).aggregate(cutoff=Max("cutoff"))["cutoff"]
    UseCase.objects.filter(pk=use_case.pk).update(history_archived_before=newest)


def archives_resume() -> list[Archive]:
    """Finish what a stopped run left: an archive still writing removed nothing and is
    dropped (marked failed); one removing carries on. Returns the archives it finished."""
    finished = []
    for archive in Archive.objects.filter(state=Archive.State.WRITING).select_related("use_case"):
        _files_drop(archive)
        Archive.objects.filter(pk=archive.pk, state=Archive.State.WRITING).update(
            state=Archive.State.FAILED, error="stopped while writing; nothing was removed"
        )
    for archive in Archive.objects.filter(state=Archive.State.REMOVING).select_related("use_case"):
        finished.append(_remove(archive))
    return finished


def archives_due(*, now: datetime | None = None) -> list[Archive]:
    """Archive every use case's history older than its retention (the beat, daily)."""
    now = now or timezone.now()
    made = archives_resume()
    for use_case in UseCase.objects.filter(retention_months__isnull=False).order_by("slug"):
        cutoff = cutoff_for(use_case=use_case, now=now)
        try:
            archive = archive_create(
                use_case=use_case, cutoff=cutoff, actor_name="retention", now=now
            )
        except Conflict:
            continue
        if archive is not None:
            made.append(archive)
    # Again, for a month left behind while its tables were busy.
    _partitions_drop_empty(now=now)
    return made


# --- restoring ----------------------------------------------------------------------------


def _verify(archive: Archive) -> dict[str, Any]:
    """The manifest, once it and every file it names match their SHA-256."""
    location = archive.location
    if _stored_sha256(f"{location}/{MANIFEST_NAME}") != archive.manifest_sha256:
        raise InvalidInput({"archive": [f"{location}/{MANIFEST_NAME} does not match its SHA-256"]})
    with archive_storage().open(f"{location}/{MANIFEST_NAME}", "rb") as handle:
        manifest = json.loads(handle.read())
    if manifest.get("format_version") != FORMAT_VERSION:
        raise InvalidInput({"archive": ["written in a format this version cannot read"]})
    for name, entry in manifest["tables"].items():
        if _stored_sha256(f"{location}/{entry['file']}") != entry["sha256"]:
            raise InvalidInput(
                {"archive": [f"{entry['file']} ({name}) does not match its SHA-256"]}
            )
    return manifest


def _read(archive: Archive, table: Table, entry: dict) -> Iterator[list[models.Model]]:
    fields = {f.attname: f for f in _columns(table.model)}
    with archive_storage().open(f"{archive.location}/{entry['file']}", "rb") as handle:
        parquet = _arrow()[1].ParquetFile(handle)
        unknown = set(parquet.schema_arrow.names) - set(fields)
        if unknown:
            raise InvalidInput(
                {
                    "archive": [
                        f"{table.name} has columns this version does not know: {sorted(unknown)}"
                    ]
                }
            )
        for batch in parquet.iter_batches(batch_size=_chunk()):
            objects = []
            for row in batch.to_pylist():
                values = {name: _from_cell(fields[name], value) for name, value in row.items()}
                objects.append(table.model(**values))
            yield objects


def _references_refuse(table: Table, objects: list[models.Model], archive: Archive) -> None:
    """Refuse rows whose accounts, policies or model versions are gone, or whose item's
    external id a new item has taken since (the transaction then rolls back whole)."""
    if table.model is Item:
        external = {o.external_id: o.pk for o in objects}
        clash = Item.objects.filter(
            use_case_id=archive.use_case_id, external_id__in=list(external)
        ).values_list("external_id", "pk")
        taken = sorted(e for e, pk in clash if external[e] != pk)
        if taken:
            raise Conflict(
                f"archived external ids were sent again after the archive was made and name "
                f"other items now: {', '.join(taken[:10])}"
            )
    for field in _columns(table.model):
        if _referenced_kind(field) is None:
            continue
        ids = {getattr(o, field.attname) for o in objects} - {None}
        found = field.related_model._base_manager.filter(pk__in=ids).values_list("pk", flat=True)
        missing = ids - set(found)
        if missing:
            raise Conflict(
                f"the archive refers to {field.related_model._meta.verbose_name_plural} that no "
                f"longer exist (ids {', '.join(map(str, sorted(missing)[:10]))})"
            )


def archive_restore(*, archive: Archive, actor_name: str = "") -> dict[str, int]:
    """Put an archive's rows back (those not in the database), in one transaction. Returns
    the rows inserted per table."""
    if archive.state != Archive.State.ARCHIVED:
        raise Conflict(f"this archive is {archive.state}; only an archived one can be restored")
    manifest = _verify(archive)
    inserted: dict[str, int] = {}
    with transaction.atomic():
        locked = Archive.objects.select_for_update().get(pk=archive.pk)
        if locked.state != Archive.State.ARCHIVED:
            raise Conflict(f"this archive is {locked.state}; only an archived one can be restored")
        for table in TABLES:
            inserted[table.name] = 0
            for objects in _read(archive, table, manifest["tables"][table.name]):
                if table.model is Item:  # a month dropped since gets its partitions back
                    partitions_for_items(o.pk for o in objects)
                present = set(
                    table.model._base_manager.filter(pk__in=[o.pk for o in objects]).values_list(
                        "pk", flat=True
                    )
                )
                fresh = [o for o in objects if o.pk not in present]
                _references_refuse(table, fresh, archive)
                table.model._base_manager.bulk_create(fresh, batch_size=1000)
                inserted[table.name] += len(fresh)
        locked.references.all().delete()  # the restored rows keep them now
        locked.state = Archive.State.RESTORED
        locked.restored_at = timezone.now()
        locked.restored_by_name = actor_name
        locked.save(update_fields=["state", "restored_at", "restored_by_name"])
        _boundary_recompute(use_case=archive.use_case)
    archive.refresh_from_db()
    event_log(
        "archive_restored",
        use_case=archive.use_case.slug,
        archive=str(archive.pk),
        **{f"rows_{name}": n for name, n in inserted.items()},
    )
    return inserted


def archive_get(*, archive_id: Any) -> Archive:
    try:
        return Archive.objects.select_related("use_case").get(pk=uuid.UUID(str(archive_id)))
    except (ValueError, Archive.DoesNotExist) as exc:
        raise InvalidInput({"archive": [f"no archive {archive_id}"]}) from exc


def archive_summary(archives: Iterable[Archive]) -> list[dict[str, Any]]:
    return [
        {
            "id": str(a.pk),
            "use_case": a.use_case.slug,
            "cutoff": a.cutoff.date().isoformat(),
            "state": a.state,
            "items": a.items,
            "removed": a.items_removed,
            "kept": a.items_kept,
            "location": a.location,
        }
        for a in archives
    ]
