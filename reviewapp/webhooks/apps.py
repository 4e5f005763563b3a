from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "reviewapp.webhooks"
    label = "webhooks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.core.signals import request_finished

        from reviewapp.core.events import events_committed
        from reviewapp.webhooks.tasks import embedded_sweep, fanout_soon

        events_committed.connect(fanout_soon, dispatch_uid="webhooks-fanout")
        # Embedded mode has no beat: the web process sweeps (retries) after its responses.
        request_finished.connect(embedded_sweep, weak=False, dispatch_uid="webhooks-embedded-sweep")
