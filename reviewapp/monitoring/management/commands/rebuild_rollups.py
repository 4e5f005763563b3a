from django.core.management.base import BaseCommand, CommandError

from deployments.models import UseCase
from reviewapp.core.errors import Conflict
from reviewapp.monitoring.services import rollups_rebuild


class Command(BaseCommand):
    help = "Recompute the monitoring rollups from the raw items, predictions and decisions."

    def add_arguments(self, parser):
        parser.add_argument("slugs", nargs="*", help="Use cases to rebuild (default: all).")

    def handle(self, *args, slugs, **options):
        use_cases = UseCase.objects.order_by("slug")
        if slugs:
            use_cases = use_cases.filter(slug__in=slugs)
            unknown = set(slugs) - set(use_cases.values_list("slug", flat=True))
            if unknown:
                raise CommandError(f"No use case {', '.join(sorted(unknown))}.")
        for use_case in use_cases:
            try:
                counts = rollups_rebuild(use_case=use_case)
            except Conflict as exc:
                raise CommandError(exc.detail) from exc
            self.stdout.write(
                f"{use_case.slug}: {counts['items']} items, {counts['decisions']} decisions, "
                f"{counts['challenger_predictions']} challenger predictions"
            )
