from django.apps import AppConfig


class DatasetsConfig(AppConfig):
    name = "reviewapp.datasets"
    label = "datasets"
    verbose_name = "Datasets and retraining"
