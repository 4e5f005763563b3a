"""Retrain a use case's model on its human-labelled items, into a challenger."""

from django.core.management.base import BaseCommand, CommandError

from reviewapp.core.errors import DomainError
from reviewapp.datasets.management.progress import ProgressBar
from reviewapp.datasets.management.targets import use_case_and_user
from reviewapp.datasets.models import TrainingRun
from reviewapp.datasets.services.retraining import (
    HOLDOUT_DEFAULT,
    training_run_create,
    training_run_execute,
)


class Command(BaseCommand):
    help = (
        "Fit a fresh copy of the champion's pipeline (or --base-version's) on the human "
        "labels, evaluate it against the champion on the latest items, and register it as a "
        "challenger. Runs in this process, showing progress."
    )

    def add_arguments(self, parser):
        parser.add_argument("use_case", help="the use case's slug")
        parser.add_argument("--base-version", help="the recipe; the champion by default")
        parser.add_argument(
            "--holdout",
            type=float,
            default=HOLDOUT_DEFAULT,
            help="the latest share of items held out to evaluate (default 0.2)",
        )
        parser.add_argument("--name", dest="new_version", help="the new version's name")
        parser.add_argument("--user", help="who asked for it (recorded on the model)")

    def handle(self, *args, **options):
        use_case, actor = use_case_and_user(slug=options["use_case"], username=options["user"])
        try:
            run = training_run_create(
                use_case=use_case,
                actor=actor,
                base_version=options["base_version"],
                holdout_fraction=options["holdout"],
                version=options["new_version"],
            )
        except DomainError as exc:
            raise CommandError(str(exc.detail)) from exc
        bar = ProgressBar(label="Retraining", unit="%", stream=self.stderr, rate=False)
        run = training_run_execute(run_id=run.pk, on_progress=bar)
        bar.close()
        if run.state != TrainingRun.State.DONE:
            raise CommandError(f"Retraining failed: {run.error}")
        metrics = run.metrics
        self.stdout.write(
            f"Registered {run.model_version.version} as a {run.model_version.role}, trained on "
            f"{metrics['train']['rows']:,} items (export {run.export_id}, "
            f"sha256 {metrics['dataset']['sha256']})."
        )
        self.stdout.write(
            f"Held out: the latest {metrics['holdout']['rows']:,} items "
            f"({metrics['holdout']['first_decided_at']} to {metrics['holdout']['last_decided_at']})"
        )
        champion, challenger = metrics["champion"], metrics["challenger"]
        names = [k for k in challenger if k != "rows"]
        self.stdout.write(f"  {'measure':<18}{'champion ' + champion['version']:>22}{'new':>12}")
        for name in names:
            self.stdout.write(f"  {name:<18}{champion[name]:>22.4f}{challenger[name]:>12.4f}")
