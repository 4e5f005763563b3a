from django.apps import AppConfig


class ControlConfig(AppConfig):
    name = "reviewapp.control"
    label = "control"
    verbose_name = "Control room"
