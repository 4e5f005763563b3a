from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "reviewapp.webhooks"
    label = "webhooks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from reviewapp.core.events import events_committed
        from reviewapp.webhooks.tasks import fanout_soon

        events_committed.connect(fanout_soon, dispatch_uid="webhooks-fanout")
