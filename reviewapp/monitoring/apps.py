from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    name = "reviewapp.monitoring"
    label = "monitoring"
    verbose_name = "Monitoring"

    def ready(self) -> None:
        # Carry the request id from a web request into the Celery tasks it enqueues, so a
        # batch's worker logs join up with the request that sent it.
        from reviewapp.monitoring import request_context

        request_context.celery_hooks_connect()
        # Worker and beat processes report themselves (heartbeats.py).
        from reviewapp.monitoring import heartbeats

        heartbeats.celery_signals_connect()
