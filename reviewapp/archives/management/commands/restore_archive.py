from django.core.management.base import BaseCommand, CommandError

from reviewapp.archives.services import archive_get, archive_restore
from reviewapp.core.errors import DomainError


class Command(BaseCommand):
    help = (
        "Bring an archive's items, predictions, tasks and decisions back into the database. "
        "Every file is checked against the manifest's SHA-256 first; rows still in the "
        "database are left as they are. archive_history --list names the archives."
    )

    def add_arguments(self, parser):
        parser.add_argument("archive", help="The archive's id.")

    def handle(self, *args, archive, **options):
        try:
            found = archive_get(archive_id=archive)
            inserted = archive_restore(archive=found, actor_name="command line")
        except DomainError as exc:
            detail = exc.detail
            if isinstance(detail, dict):
                detail = "; ".join(str(v[0]) for v in detail.values())
            raise CommandError(str(detail)) from exc
        rows = ", ".join(f"{n} {name.replace('_', ' ')}" for name, n in inserted.items())
        self.stdout.write(f"Restored archive {found.pk} of {found.use_case.slug}: {rows}.")
