from django.apps import AppConfig


class ControlConfig(AppConfig):
    name = "reviewapp.control"
    label = "control"
    verbose_name = "Control room"

    def ready(self) -> None:
        from reviewapp.control.guardrail_watch import use_case_watch_soon
        from reviewapp.control.tasks import run_backtest
        from reviewapp.core.jobs import job_requeuer_register
        from reviewapp.core.models import Job
        from reviewapp.reviews.signals import use_case_facts_changed

        def on_use_case_facts_changed(sender, *, use_case_id, **kwargs) -> None:
            """Queue a guardrail watch of the use case (cheap; the watch runs after commit)."""
            use_case_watch_soon(use_case_id=use_case_id)

        # The facts layer announces committed writes; the guardrail watch re-checks the use case.
        use_case_facts_changed.connect(
            on_use_case_facts_changed, weak=False, dispatch_uid="control.guardrail_watch"
        )
        # A backtest queued while the broker was down is swept like scoring.
        job_requeuer_register(Job.Kind.BACKTEST, lambda job: run_backtest.delay(job_id=str(job.pk)))
