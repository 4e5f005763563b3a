from django.core.management.base import BaseCommand, CommandError

from deployments.models import UseCase
from reviewapp.archives.models import Archive
from reviewapp.archives.services import (
    archive_create,
    archive_summary,
    archives_resume,
    cutoff_for,
    hour_floor,
    items_archivable,
)
from reviewapp.core.api import datetime_param
from reviewapp.core.errors import DomainError, InvalidInput


class Command(BaseCommand):
    help = (
        "Move history out of the database into Parquet archives: each use case's items whose "
        "whole history lies before its retention (or --before), with their predictions, tasks "
        "and decisions. Nothing open is archived; the dashboards keep their figures. "
        "--list shows the archives; restore_archive brings one back."
    )

    def add_arguments(self, parser):
        parser.add_argument("--use-case", dest="slug", help="One use case (default: all).")
        parser.add_argument(
            "--before",
            help="ISO 8601 date or date-time (rounded down to the hour): archive history before "
            "it instead of before the use case's retention (needed for a use case without one).",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Count what would be archived; change nothing."
        )
        parser.add_argument(
            "--list", dest="listing", action="store_true", help="List the archives."
        )

    def handle(self, *args, slug=None, before=None, dry_run=False, listing=False, **options):
        use_cases = UseCase.objects.order_by("slug")
        if slug:
            use_cases = use_cases.filter(slug=slug)
            if not use_cases.exists():
                raise CommandError(f"No use case {slug!r}.")
        if listing:
            archives = Archive.objects.filter(use_case__in=use_cases).select_related("use_case")
            for row in archive_summary(archives.order_by("use_case__slug", "cutoff")):
                self.stdout.write(
                    f"{row['id']}  {row['use_case']}  before {row['cutoff']}  {row['state']}  "
                    f"{row['items']} items ({row['removed']} removed, {row['kept']} kept)  "
                    f"{row['location']}"
                )
            return
        try:
            cutoff = datetime_param({"before": before}, "before")
        except InvalidInput as exc:
            raise CommandError(f"--before: {exc.detail['before'][0]}") from exc
        if cutoff is None:
            use_cases = use_cases.filter(retention_months__isnull=False)
        if not dry_run:
            for archive in archives_resume():
                self.stdout.write(f"Finished an interrupted archive: {archive.pk}")
        for use_case in use_cases:
            until = hour_floor(cutoff) if cutoff else cutoff_for(use_case=use_case)
            if dry_run:
                count = items_archivable(use_case=use_case, cutoff=until).count()
                self.stdout.write(f"{use_case.slug}: {count} items before {until.isoformat()}")
                continue
            try:
                archive = archive_create(use_case=use_case, cutoff=until, actor_name="command line")
            except DomainError as exc:
                raise CommandError(f"{use_case.slug}: {exc.detail}") from exc
            if archive is None:
                self.stdout.write(f"{use_case.slug}: nothing to archive before {until.isoformat()}")
                continue
            self.stdout.write(
                f"{use_case.slug}: archive {archive.pk}: {archive.items} items written, "
                f"{archive.items_removed} removed, {archive.items_kept} kept (changed meanwhile); "
                f"files in {archive.location} (manifest SHA-256 {archive.manifest_sha256})"
            )
