from django.apps import AppConfig


class DeploymentsConfig(AppConfig):
    name = "deployments"
    verbose_name = "Deployments"

    def ready(self) -> None:
        from deployments.models import ModelVersion, UseCase
        from reviewapp.core.append_only import history_keeper

        history_keeper(UseCase)
        history_keeper(ModelVersion)
