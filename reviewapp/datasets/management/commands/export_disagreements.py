"""Export a use case's disagreements (or every human-labelled item) with a manifest."""

import getpass
import shutil

from django.core.management.base import BaseCommand, CommandError

from reviewapp.core.errors import InvalidInput
from reviewapp.datasets.export_formats import FORMATS
from reviewapp.datasets.filters import FILTER_NAMES, filters_clean
from reviewapp.datasets.management.progress import ProgressBar
from reviewapp.datasets.management.targets import use_case_and_user
from reviewapp.datasets.models import Export
from reviewapp.datasets.services.exports import (
    MANIFEST_SUFFIX,
    export_create,
    export_storage,
    export_write,
)


class Command(BaseCommand):
    help = (
        "Write an export of a use case's disagreements (CSV, JSONL or Parquet) with its "
        "manifest, in this process, showing progress. It is listed with the others."
    )

    def add_arguments(self, parser):
        parser.add_argument("use_case", help="the use case's slug")
        parser.add_argument("--format", choices=list(FORMATS), default="csv")
        parser.add_argument(
            "--scope", choices=Export.Scope.values, default=Export.Scope.DISAGREEMENTS
        )
        parser.add_argument(
            "--pii",
            choices=Export.Pii.values,
            default=Export.Pii.OMIT,
            help="omit PII features (default), hash them, or include them (needs --user with "
            "the PII right)",
        )
        parser.add_argument("--user", help="the export's author (their PII right applies)")
        parser.add_argument(
            "--output", help="also copy the file here, and its manifest beside it (.manifest.json)"
        )
        for name in FILTER_NAMES:
            parser.add_argument(f"--{name.replace('_', '-')}", dest=name)

    def handle(self, *args, **options):
        use_case, actor = use_case_and_user(slug=options["use_case"], username=options["user"])
        try:
            filters = filters_clean(
                use_case=use_case, raw={name: options[name] for name in FILTER_NAMES}
            )
            export = export_create(
                use_case=use_case,
                actor=actor,
                fmt=options["format"],
                scope=options["scope"],
                pii=options["pii"],
                filters=filters,
                actor_name=f"{Export.COMMAND_LINE} ({getpass.getuser()})",
            )
        except InvalidInput as exc:
            raise CommandError(
                "; ".join(f"--{k.replace('_', '-')}: {' '.join(v)}" for k, v in exc.detail.items())
            ) from exc
        bar = ProgressBar(label="Exporting", unit="rows", stream=self.stderr)
        export = export_write(export_id=export.pk, on_progress=bar)
        bar.close()
        if export.state != Export.State.READY:
            raise CommandError(f"The export failed: {export.error}")
        location = getattr(export_storage(), "location", "")
        self.stdout.write(
            f"Export {export.pk}: {export.row_count:,} rows, {export.size_bytes:,} bytes\n"
            f"  file      {location}/{export.file_name}\n"
            f"  manifest  {location}/{export.file_name}.manifest.json\n"
            f"  sha256    {export.sha256}"
        )
        if options["output"]:
            # The file and, beside it, its manifest (what the columns are, their types, the
            # file's SHA-256): a copy without it could not be checked or read with its types.
            manifest = f"{options['output']}{MANIFEST_SUFFIX}"
            for stored, target_path in (
                (export.file_name, options["output"]),
                (export.file_name + MANIFEST_SUFFIX, manifest),
            ):
                with export_storage().open(stored, "rb") as source, open(target_path, "wb") as out:
                    shutil.copyfileobj(source, out, 1024 * 1024)
            self.stdout.write(f"  copied to {options['output']}\n  manifest  {manifest}")
