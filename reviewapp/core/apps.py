from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "reviewapp.core"
    label = "core"
    verbose_name = "Core"

    def ready(self) -> None:
        from django.contrib.auth import get_user_model

        from reviewapp.core.append_only import history_keeper

        history_keeper(get_user_model())
