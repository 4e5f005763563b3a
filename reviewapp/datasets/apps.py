from django.apps import AppConfig


class DatasetsConfig(AppConfig):
    name = "reviewapp.datasets"
    label = "datasets"
    verbose_name = "Datasets and retraining"

    def ready(self) -> None:
        from reviewapp.core.jobs import job_requeuer_register
        from reviewapp.core.models import Job
        from reviewapp.datasets.tasks import retrain, write_export

        # Exports and retraining queued while the broker was down are swept like scoring.
        job_requeuer_register(
            Job.Kind.EXPORT, lambda job: write_export.delay(export_id=job.params["export"])
        )
        job_requeuer_register(
            Job.Kind.RETRAIN,
            lambda job: retrain.delay(training_run_id=job.params["training_run"]),
        )
