import contextlib
import functools
import logging
import os
import time

import celery.states
import celery.worker.consumer
from celery import Celery, signals
from celery.contrib.django.task import DjangoTask
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "reviewapp.settings")

logger = logging.getLogger(__name__)


class Task(DjangoTask):
    """Tasks queued "on commit" never fail the request that committed: the data is saved by
    then, and a broker that is down must not turn that into a 500. The failure is logged and the
    work stays findable in the database (the sweeper re-enqueues pending items). Nor may a
    broker that hangs hold the request for long: every publish gives up after
    ``BROKER_SOCKET_TIMEOUT`` (``retry_policy_within``)."""

    def apply_async(self, args=None, kwargs=None, **options):
        # Any publish, after a commit or not, gives up after one socket timeout on a broker
        # that hangs (a caller's own retry policy keeps its other settings): a sweep or a
        # fan-out publishing from a worker is not held some 25 s per message either. The
        # caller sees the error as soon as the deadline has passed, as it would have after
        # kombu's retries.
        from django.conf import settings

        options["retry_policy"] = retry_policy_within(
            settings.BROKER_SOCKET_TIMEOUT, options.get("retry_policy")
        )
        return super().apply_async(args, kwargs, **options)

    def delay_on_commit(self, *args, **kwargs) -> None:
        self._on_commit(args, kwargs)

    def apply_async_on_commit(self, args=None, kwargs=None, **options) -> None:
        self._on_commit(args, kwargs, **options)

    def _on_commit(self, args, kwargs, **options) -> None:
        from django.db import transaction

        transaction.on_commit(functools.partial(self._publish, args, kwargs, **options))

    def _publish(self, args, kwargs, **options) -> None:
        try:
            self.apply_async(args, kwargs, **options)
        except Exception:
            logger.exception(
                "could not queue %s after commit (broker unavailable?); left to the sweeper",
                self.name,
            )


def retry_policy_within(seconds: float, policy: dict | None = None) -> dict:
    """A publish retry policy (``policy`` over the app's) that stops retrying once ``seconds``
    have passed since it was made. Retrying is quick against a broker that refuses or a pooled
    connection gone stale; against one that hangs, every attempt and every reconnection waits
    out a socket timeout, and kombu's three retries held a request some 25 s."""
    deadline = time.monotonic() + seconds

    def give_up_past_deadline(exc, interval) -> None:
        if time.monotonic() >= deadline:
            raise exc

    return {**(policy or {}), "errback": give_up_past_deadline}


class Consumer(celery.worker.consumer.Consumer):
    """The worker's consumer, reconnecting to a broker that went away every
    ``BROKER_RECONNECT_MAX_SECONDS`` at most, for as long as it takes (Celery's own waits 2, 4,
    6 ... up to 30 s between attempts and gives up after 100, and has no setting for the
    waits: after a long outage a worker slept up to half a minute past the broker's return,
    and after a longer one it exited)."""

    def ensure_connected(self, conn):
        from django.conf import settings

        return super().ensure_connected(
            reconnect_paced(conn, seconds=settings.BROKER_RECONNECT_MAX_SECONDS)
        )


def reconnect_paced(conn, *, seconds: float):
    """``conn`` (a kombu connection) retrying every ``seconds`` at most when it reconnects."""
    if not isinstance(conn.ensure_connection, functools.partial):  # once per connection
        conn.ensure_connection = functools.partial(
            conn.ensure_connection, interval_start=0, interval_step=seconds, interval_max=seconds
        )
    return conn


class RedisQoS(kombu_redis.QoS):
    """kombu's Redis bookkeeping of unacknowledged messages, where an acknowledgement that
    Redis never answered (hung past ``BROKER_SOCKET_TIMEOUT``) still frees its prefetch slot.
    kombu frees the slot only after Redis answers, so each such ack cost the worker a slot for
    good and, once all were lost, it stopped taking messages at all, with Redis back and the
    queues filling. The message stays in Redis's unacked set and comes back after the
    visibility timeout; the task is idempotent, so running it again changes nothing."""

    def ack(self, delivery_tag):
        try:
            super().ack(delivery_tag)
        except self.channel.connection_errors:
            virtual.QoS.ack(self, delivery_tag)
            raise

    def reject(self, delivery_tag, requeue=False):
        try:
            super().reject(delivery_tag, requeue=requeue)
        except self.channel.connection_errors:
            virtual.QoS.ack(self, delivery_tag)  # forgotten here; Redis restores it later
            raise


class RedisChannel(kombu_redis.Channel):
    QoS = RedisQoS


class RedisTransport(kombu_redis.Transport):
    """kombu's Redis transport with ``RedisQoS`` (``CELERY_BROKER_TRANSPORT`` names it for a
    ``redis://`` or ``rediss://`` broker)."""

    Channel = RedisChannel


app = Celery("reviewapp", task_cls=Task)
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.worker_init.connect
def _scoring_libraries_before_fork(sender, **kwargs) -> None:
    """A worker consuming a queue whose tasks score (batch, challenger, heavy) imports the
    scoring libraries in its main process, before the pool forks: its pool processes share
    those pages instead of each importing a copy of its own. A worker of the other queues
    (realtime, monitoring) never holds them."""
    from django.conf import settings

    from deployments.ml.loading import scoring_libraries_import

    scoring = {settings.TASK_QUEUES[kind] for kind in ("batch", "challenger", "heavy")}
    if scoring & set(sender.app.amqp.queues.consume_from):
        scoring_libraries_import()


@signals.task_prerun.connect
def _database_connections_checked(sender=None, **kwargs) -> None:
    """Before a task, as before a request: a connection past ``CONN_MAX_AGE``, or one an error
    left unusable, is closed, and the next query opens a new one (``CELERY_DB_REUSE_MAX``
    keeps Celery's fix-up from closing every connection instead)."""
    if not getattr(sender.request, "is_eager", False):
        from django.db import close_old_connections

        close_old_connections()


@signals.task_postrun.connect
def _database_connections_after(sender=None, state=None, **kwargs) -> None:
    """After a task, as after a request; but a task that did not succeed (failed, retried, timed
    out part-way through a statement) closes its connections, so that its retry starts on a new
    one whatever state the old one was left in."""
    if getattr(sender.request, "is_eager", False):
        return
    from django.db import DatabaseError, close_old_connections, connections

    if state == celery.states.SUCCESS:
        close_old_connections()
        return
    for conn in connections.all(initialized_only=True):
        with contextlib.suppress(DatabaseError):
            conn.close()


@app.on_after_configure.connect
def _in_memory_broker_when_eager(sender, **kwargs) -> None:
    """Eager tasks still take a producer from kombu's pool; with no broker URL kombu would
    guess amqp://localhost and warn "No hostname was supplied". Nothing is published in eager
    mode, so an in-memory transport (named, as kombu wants a host) is the honest broker."""
    if sender.conf.task_always_eager and not sender.conf.broker_url:
        sender.conf.broker_url = "memory://localhost/"
