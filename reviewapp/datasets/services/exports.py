"""Writing dataset exports: a file streamed to the exports storage, and its manifest.

An export is requested (a row and a job), then written by a worker (or by the command line,
in process). The file is built in a scratch file while its SHA-256 is computed, then moved into
place, so a reader never sees half a file; the manifest says what is in it.
"""

import hashlib
import json
import logging
import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import storages
from django.db import transaction
from django.utils import timezone

from deployments.models import ModelVersion, UseCase
from deployments.selectors import can_view_pii
from reviewapp.core.errors import Conflict, InvalidInput
from reviewapp.core.events import event_record
from reviewapp.core.jobs import job_claim, job_create, job_fail, job_finish, job_progress
from reviewapp.core.logs import event_log
from reviewapp.core.models import Job
from reviewapp.datasets.export_formats import FORMATS
from reviewapp.datasets.export_tables import (
    ExportSummary,
    ExportTable,
    RowFilters,
    disagreement_export_table,
    disagreements_filtered,
    export_chunks,
    labelled_export_table,
    labelled_items_filtered,
)
from reviewapp.datasets.filters import filters_as_json, filters_from_json
from reviewapp.datasets.models import Export
from reviewapp.datasets.pii import ALGORITHM, key_fingerprint, use_case_key

logger = logging.getLogger(__name__)

MANIFEST_SUFFIX = ".manifest.json"
Progress = Callable[[int, int], None]  # (rows written, rows expected)


def export_storage():
    return storages["exports"]


def _rows(*, use_case: UseCase, scope: str, filters: RowFilters):
    if scope == Export.Scope.LABELLED:
        return labelled_items_filtered(use_case=use_case, filters=filters)
    return disagreements_filtered(use_case=use_case, filters=filters)


def export_table_for(*, export: Export) -> ExportTable:
    use_case = export.use_case
    rows = _rows(use_case=use_case, scope=export.scope, filters=filters_from_json(export.filters))
    if export.scope == Export.Scope.LABELLED:
        builder = labelled_export_table
    else:
        builder = disagreement_export_table
    hashing = export.pii == Export.Pii.HASH
    return builder(
        use_case=use_case,
        rows=rows,
        include_pii=export.pii == Export.Pii.INCLUDE,
        fmt=export.format,
        pii_key=use_case_key(slug=use_case.slug) if hashing else None,
    )


def export_create(
    *,
    use_case: UseCase,
    actor,
    fmt: str,
    scope: str = Export.Scope.DISAGREEMENTS,
    pii: str = Export.Pii.OMIT,
    filters: RowFilters | None = None,
    actor_name: str = "",
    now=None,
) -> Export:
    """Record an export to be written, with a job to follow it. Raw PII only for readers who
    may see it: ``actor`` None (the command line without ``--user``) may not. ``actor_name``
    names who made it when no user did (e.g. "command line (deploy)")."""
    errors = {}
    if fmt not in FORMATS:
        errors["format"] = [f"must be one of {', '.join(FORMATS)}"]
    if scope not in Export.Scope.values:
        errors["scope"] = [f"must be one of {', '.join(Export.Scope.values)}"]
    if pii not in Export.Pii.values:
        errors["pii"] = [f"must be one of {', '.join(Export.Pii.values)}"]
    elif pii == Export.Pii.INCLUDE and (
        actor is None or not can_view_pii(user=actor, use_case=use_case)
    ):
        errors["pii"] = ["you may not see this use case's PII: choose omit or hash"]
    if errors:
        raise InvalidInput(errors)
    filters = filters or RowFilters()
    expected = _rows(use_case=use_case, scope=scope, filters=filters).count()
    with transaction.atomic():
        # One unit more than the rows: the manifest. The job is done when it is written.
        job = job_create(
            kind=Job.Kind.EXPORT,
            total=expected + 1,
            use_case=use_case,
            created_by=actor,
            params={"format": fmt, "scope": scope, "pii": pii},
        )
        export = Export.objects.create(
            use_case=use_case,
            job=job,
            scope=scope,
            format=fmt,
            pii=pii,
            filters=filters_as_json(filters),
            created_by=actor if actor is not None and actor.is_authenticated else None,
            created_by_name=(
                actor.get_username()
                if actor is not None and actor.is_authenticated
                else actor_name or Export.COMMAND_LINE
            )[:150],
            created_at=now or timezone.now(),
        )
        job.params["export"] = str(export.pk)
        job.save(update_fields=["params"])
    return export


def export_start(**kwargs) -> Export:
    """``export_create``, then write it on a worker once the request commits."""
    # The tasks module imports this service to run it, so the task is imported here.
    from reviewapp.datasets.tasks import write_export

    with transaction.atomic():
        export = export_create(**kwargs)
        write_export.delay_on_commit(export_id=str(export.pk))
    return export


class _Progress:
    """Reports rows written to the job (never its last unit, the manifest: the job is done
    when the file is in place) at most twice a second, and to ``on_progress`` each time."""

    INTERVAL = 0.5

    def __init__(self, *, export: Export, on_progress: Progress | None):
        self.job_id = export.job_id
        self.expected = export.job.total - 1 if export.job_id else 0
        self.on_progress = on_progress
        self.reported = 0
        self.reported_at = 0.0

    def __call__(self, rows: int) -> None:
        now = time.monotonic()
        if self.job_id and now - self.reported_at >= self.INTERVAL:
            step = min(rows, self.expected) - self.reported
            if step > 0:
                job_progress(job_id=self.job_id, done=step)
                self.reported += step
                self.reported_at = now
        if self.on_progress:
            self.on_progress(rows, max(self.expected, rows))


class _ScratchFile(File):
    """A finished scratch file; FileSystemStorage moves it into place instead of copying."""

    def temporary_file_path(self) -> str:
        return self.file.name


def _scratch_dir(storage) -> str | None:
    location = getattr(storage, "location", None)
    if not location:
        return None
    path = Path(location) / ".partial"
    path.mkdir(parents=True, exist_ok=True, mode=0o750)
    return str(path)


def _store(*, name: str, chunks: Iterable[bytes]) -> tuple[str, str, int]:
    """Stream ``chunks`` into the storage as ``name``; (stored name, SHA-256, size)."""
    storage = export_storage()
    digest = hashlib.sha256()
    size = 0
    scratch = tempfile.NamedTemporaryFile(  # noqa: SIM115 (kept open past the with below)
        dir=_scratch_dir(storage), prefix="export-", suffix=".partial", delete=False
    )
    try:
        with scratch:
            for chunk in chunks:
                if chunk:
                    scratch.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
            scratch.flush()
            os.fsync(scratch.fileno())
        with open(scratch.name, "rb") as finished:
            stored = storage.save(name, _ScratchFile(finished, name=name))
    finally:
        if os.path.exists(scratch.name):
            os.unlink(scratch.name)
    return stored, digest.hexdigest(), size


def _schema(columns) -> list[dict[str, Any]]:
    schema = []
    for column in columns:
        kind = "boolean" if column.kind == "flag" else column.kind
        entry: dict[str, Any] = {"name": column.name, "type": kind}
        if column.feature:
            entry["feature"] = column.feature
        if column.pii:
            entry["pii"] = column.pii
        schema.append(entry)
    return schema


def _model_versions(use_case: UseCase, counts: Counter) -> list[dict[str, Any]]:
    known = {
        mv.version: mv
        for mv in ModelVersion.objects.filter(
            use_case=use_case, version__in=[v for v in counts if v]
        ).defer("artifact")
    }
    out = []
    for version, rows in sorted(counts.items(), key=lambda pair: str(pair[0])):
        if not version:
            continue
        mv = known.get(version)
        out.append(
            {
                "version": version,
                "rows": rows,
                "role": mv.role if mv else None,
                "source": mv.source if mv else None,
                "artifact_sha256": (mv.artifact_sha256 or None) if mv else None,
            }
        )
    return out


def _manifest(
    *,
    export: Export,
    columns,
    summary: ExportSummary,
    stored: str,
    sha256: str,
    size: int,
    finished_at,
) -> dict[str, Any]:
    use_case = export.use_case
    pii: dict[str, Any] = {
        "mode": export.pii,
        "features": sorted(use_case.pii_features),
    }
    if export.pii == Export.Pii.HASH:
        pii.update(
            algorithm=ALGORITHM,
            key_id=key_fingerprint(use_case_key(slug=use_case.slug)),
        )
    return {
        "export": str(export.pk),
        "use_case": {
            "slug": use_case.slug,
            "name": use_case.name,
            "task_type": use_case.task_type,
            "labels": use_case.labels,
        },
        "scope": export.scope,
        "format": export.format,
        "filters": export.filters,
        "order": ["decided_at", "id"]
        if export.scope == Export.Scope.DISAGREEMENTS
        else ["item id"],
        "pii": pii,
        "row_count": summary.rows,
        "rows_without_model": summary.versions.get(None, 0),
        "decided_at": {"first": _iso(summary.first), "last": _iso(summary.last)},
        "schema": _schema(columns),
        "model_versions": _model_versions(use_case, summary.versions),
        "created_by": export.author,
        "created_at": export.created_at.isoformat(),
        "finished_at": finished_at.isoformat(),
        "file": {"name": stored, "size": size, "sha256": sha256},
    }


def _iso(value) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return value.isoformat()


def _file_name(export: Export) -> str:
    return f"{export.use_case.slug}/{export.created_at:%Y/%m}/{export.pk}.{export.format}"


def export_write(*, export_id, on_progress: Progress | None = None) -> Export:
    """Write the export's file and manifest; a no-op once it is ready. A failure marks the
    export (and its job) failed with the reason, and is not raised: the job reports it.

    Run again after a lost worker, it starts over: nothing half-written is ever visible.
    """
    export = Export.objects.select_related("use_case", "created_by", "job").get(pk=export_id)
    if export.state == Export.State.READY:
        return export
    started = timezone.now()
    if export.job_id and not job_claim(job_id=export.job_id, now=started):
        return export  # another run is writing it, or it ended
    Export.objects.filter(pk=export.pk).update(
        state=Export.State.RUNNING, started_at=started, error=""
    )
    try:
        _write(export, on_progress)
    except Exception as exc:
        logger.exception("export %s failed", export.pk)
        message = f"{type(exc).__name__}: {exc}"
        Export.objects.filter(pk=export.pk).update(
            state=Export.State.FAILED, error=message[:10_000], finished_at=timezone.now()
        )
        if export.job_id:
            job_fail(job_id=export.job_id, error=message)
    export.refresh_from_db()
    return export


def _write(export: Export, on_progress: Progress | None) -> None:
    table = export_table_for(export=export)
    summary = ExportSummary()
    chunks = export_chunks(
        table=table,
        fmt=export.format,
        summary=summary,
        on_rows=_Progress(export=export, on_progress=on_progress),
    )
    stored, sha256, size = _store(name=_file_name(export), chunks=chunks)
    finished = timezone.now()
    manifest = _manifest(
        export=export,
        columns=table.columns,
        summary=summary,
        stored=stored,
        sha256=sha256,
        size=size,
        finished_at=finished,
    )
    export_storage().save(
        stored + MANIFEST_SUFFIX, ContentFile(json.dumps(manifest, indent=2).encode())
    )
    with transaction.atomic():
        Export.objects.filter(pk=export.pk).update(
            state=Export.State.READY,
            file_name=stored,
            sha256=sha256,
            size_bytes=size,
            row_count=summary.rows,
            manifest=manifest,
            finished_at=finished,
        )
        event_record(
            type="export.ready", use_case_id=export.use_case_id, data=_ready(export, manifest)
        )
    if export.job_id:
        job_finish(
            job_id=export.job_id,
            result={"export": str(export.pk), "rows": summary.rows, "sha256": sha256, "size": size},
        )


def _ready(export: Export, manifest: dict) -> dict:
    """The ``export.ready`` event's payload: the manifest names the file, rows and hash."""
    return {"export": str(export.pk), "manifest": manifest}


def export_delete(*, export: Export, actor=None, reason: str = "") -> None:
    """Delete an export's file, manifest and record. Refused while a training run names it:
    the data a model was trained on stays. Who deleted it, and why, goes to the event log (the
    record itself is gone)."""
    if export.training_runs.exists():
        raise Conflict(
            {"detail": "A training run was trained on this export; it is kept with the model."}
        )
    if export.state in (Export.State.QUEUED, Export.State.RUNNING):
        raise Conflict({"detail": "This export is still being written."})
    storage = export_storage()
    if export.file_name:
        for name in (export.file_name, export.file_name + MANIFEST_SUFFIX):
            if storage.exists(name):
                storage.delete(name)
    event_log(
        "export_deleted",
        use_case=export.use_case.slug,
        export=str(export.pk),
        rows=export.row_count,
        size_bytes=export.size_bytes,
        by=actor.get_username() if actor else None,
        reason=reason,
    )
    export.delete()
