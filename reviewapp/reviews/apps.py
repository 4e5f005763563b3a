from django.apps import AppConfig


class ReviewsConfig(AppConfig):
    name = "reviewapp.reviews"
    label = "reviews"
    verbose_name = "Reviews"

    def ready(self) -> None:
        from django.core.signals import request_finished

        from reviewapp.reviews.tasks import embedded_check, embedded_partitions

        # Embedded mode has no beat: the web process checks service levels after responses.
        request_finished.connect(
            embedded_check, weak=False, dispatch_uid="reviews-embedded-sla-check"
        )
        request_finished.connect(
            embedded_partitions, weak=False, dispatch_uid="reviews-embedded-partitions"
        )
