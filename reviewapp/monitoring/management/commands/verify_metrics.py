import sys

from django.core.management.base import BaseCommand, CommandError

from deployments.models import UseCase
from reviewapp.core.api import datetime_param
from reviewapp.core.errors import InvalidInput
from reviewapp.monitoring.reconcile import metrics_reconcile


class Command(BaseCommand):
    help = (
        "Recompute every dashboard figure from the raw items, predictions and decisions of a "
        "period and compare it with the hourly rollups. Exits 1 when any figure differs."
    )

    def add_arguments(self, parser):
        parser.add_argument("--use-case", dest="slug", help="One use case (default: all).")
        parser.add_argument("--since", help="ISO 8601 date or date-time; rounded down to the hour")
        parser.add_argument("--until", help="ISO 8601 date or date-time; rounded up to the hour")

    def handle(self, *args, slug=None, since=None, until=None, **options):
        try:
            since_at = datetime_param({"since": since}, "since")
            until_at = datetime_param({"until": until}, "until")
        except InvalidInput as exc:
            raise CommandError("; ".join(f"--{k}: {v[0]}" for k, v in exc.detail.items())) from exc
        if since_at and until_at and since_at >= until_at:
            raise CommandError("--until must be after --since")
        use_cases = UseCase.objects.order_by("slug")
        if slug:
            use_cases = use_cases.filter(slug=slug)
            if not use_cases.exists():
                raise CommandError(f"No use case {slug!r}.")
        result = metrics_reconcile(use_cases=use_cases, since=since_at, until=until_at)
        window = result.window
        self.stdout.write(
            f"Window: {window.since.isoformat() if window.since else 'start'} -> "
            f"{window.until.isoformat() if window.until else 'now'}; "
            f"{result.use_cases} use case(s), {result.figures_checked} figures checked."
        )
        for slug, boundary in result.archived:
            self.stdout.write(
                f"Note: {slug}'s history before {boundary.isoformat()} is archived; its figures "
                "are checked from then on (the rollups keep the archived facts)."
            )
        if result.pending_events:
            self.stdout.write(
                f"Note: {result.pending_events} recorded facts are not folded into the rollups "
                "yet; differences may only be that lag (run again after the next fold)."
            )
        if result.ok:
            self.stdout.write(self.style.SUCCESS("All figures match the raw rows."))
            return
        header = ("use case", "model version", "shadow", "figure", "dashboard", "recomputed")
        rows = [
            (m.use_case, m.model_version, "yes" if m.shadow else "no", m.figure,
             f"{m.dashboard:g}", f"{m.recomputed:g}")
            for m in result.mismatches
        ]  # fmt: skip
        widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
        for row in [header, *rows]:
            self.stdout.write("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))
        self.stderr.write(f"{len(result.mismatches)} figure(s) differ from the raw rows.")
        sys.exit(1)
