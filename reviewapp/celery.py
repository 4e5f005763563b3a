import functools
import logging
import os

from celery import Celery
from celery.contrib.django.task import DjangoTask

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "reviewapp.settings")

logger = logging.getLogger(__name__)


class Task(DjangoTask):
    """Tasks queued "on commit" never fail the request that committed: the data is saved by
    then, and a broker that is down must not turn that into a 500. The failure is logged and the
    work stays findable in the database (the sweeper re-enqueues pending items)."""

    def delay_on_commit(self, *args, **kwargs) -> None:
        self._on_commit(self.delay, *args, **kwargs)

    def apply_async_on_commit(self, *args, **kwargs) -> None:
        self._on_commit(self.apply_async, *args, **kwargs)

    def _on_commit(self, send, *args, **kwargs) -> None:
        from django.db import transaction

        transaction.on_commit(functools.partial(self._publish, send, *args, **kwargs))

    def _publish(self, send, *args, **kwargs) -> None:
        try:
            send(*args, **kwargs)
        except Exception:
            logger.exception(
                "could not queue %s after commit (broker unavailable?); left to the sweeper",
                self.name,
            )


app = Celery("reviewapp", task_cls=Task)
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_after_configure.connect
def _in_memory_broker_when_eager(sender, **kwargs) -> None:
    """Eager tasks still take a producer from kombu's pool; with no broker URL kombu would
    guess amqp://localhost and warn "No hostname was supplied". Nothing is published in eager
    mode, so an in-memory transport (named, as kombu wants a host) is the honest broker."""
    if sender.conf.task_always_eager and not sender.conf.broker_url:
        sender.conf.broker_url = "memory://localhost/"
