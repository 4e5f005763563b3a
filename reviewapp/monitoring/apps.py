from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    name = "reviewapp.monitoring"
    label = "monitoring"
    verbose_name = "Monitoring"

    def ready(self) -> None:
        # Carry the request id from a web request into the Celery tasks it enqueues, so a
        # batch's worker logs join up with the request that sent it.
        from reviewapp.core import request_context
        from reviewapp.monitoring import receivers
        from reviewapp.reviews import signals

        request_context.celery_hooks_connect()

        # Rollups follow the facts, inside the writer's transaction.
        signals.items_routed.connect(receivers.on_items_routed, dispatch_uid="monitoring.items")
        signals.decision_recorded.connect(
            receivers.on_decision_recorded, dispatch_uid="monitoring.decision"
        )
        signals.predictions_recorded.connect(
            receivers.on_predictions_recorded, dispatch_uid="monitoring.predictions"
        )

        # Worker and beat processes report themselves (heartbeats.py).
        from reviewapp.monitoring import heartbeats

        heartbeats.celery_signals_connect()
