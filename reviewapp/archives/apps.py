from django.apps import AppConfig


class ArchivesConfig(AppConfig):
    name = "reviewapp.archives"
    label = "archives"
    verbose_name = "History archives"

    def ready(self) -> None:
        from django.core.signals import request_finished

        from reviewapp.archives.tasks import embedded_archive

        request_finished.connect(
            embedded_archive, weak=False, dispatch_uid="archives-embedded-archive"
        )
