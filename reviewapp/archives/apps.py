from django.apps import AppConfig


class ArchivesConfig(AppConfig):
    name = "reviewapp.archives"
    label = "archives"
    verbose_name = "History archives"
