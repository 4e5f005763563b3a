"""The Celery settings that make a killed worker lose nothing: a task is acknowledged only once
done, handed back when its worker dies, never hoarded, and not redelivered while still running;
and a broker that hangs stalls no worker for good."""

import contextlib
import socket
from types import SimpleNamespace

import pytest
from django.conf import settings

from reviewapp.celery import app
from reviewapp.reviews.tasks import score_challenger, score_items, sweep_unscored_items


def test_tasks_are_acknowledged_late_and_requeued_when_the_worker_dies():
    assert app.conf.task_acks_late is True
    assert app.conf.task_reject_on_worker_lost is True
    for task in (score_items, score_challenger, sweep_unscored_items):
        assert task.acks_late is True
        assert task.reject_on_worker_lost is True


def test_a_worker_takes_one_task_at_a_time():
    assert app.conf.worker_prefetch_multiplier == 1


def test_the_broker_redelivers_only_after_the_longest_task_could_have_run():
    time_limit = app.conf.task_time_limit
    assert time_limit and app.conf.task_soft_time_limit < time_limit
    assert app.conf.broker_transport_options["visibility_timeout"] > time_limit


def test_the_sweeper_runs_periodically_at_the_configured_interval():
    entry = app.conf.beat_schedule["sweep-unscored-items"]
    assert entry["task"] == sweep_unscored_items.name
    assert entry["schedule"] == settings.SWEEPER_INTERVAL_SECONDS


def test_a_hung_broker_times_out_instead_of_holding_a_request():
    options = app.conf.broker_transport_options
    assert 0 < options["socket_timeout"] <= 30
    assert 0 < options["socket_connect_timeout"] <= 30


def test_a_worker_outlives_a_broker_outage_and_retries_every_few_seconds():
    """Celery's consumer would wait up to 30 s between reconnects and exit after 100."""
    assert app.conf.broker_connection_max_retries is None
    assert app.conf.worker_consumer == "reviewapp.celery:Consumer"
    assert 0 < settings.BROKER_RECONNECT_MAX_SECONDS <= 5


def test_reconnects_are_paced_by_the_cap():
    from kombu import Connection

    from reviewapp.celery import reconnect_paced

    waits = []
    # Port 9 (discard): nothing listens, every attempt is refused at once.
    conn = reconnect_paced(Connection("redis://127.0.0.1:9/0"), seconds=0.01)
    try:
        conn.ensure_connection(errback=lambda exc, interval: waits.append(interval), max_retries=4)
    except Exception:
        pass  # gave up after the four retries this test allows
    finally:
        conn.release()
    assert len(waits) >= 3 and max(waits) <= 0.01


@pytest.mark.parametrize(
    "settle", [lambda qos: qos.ack("tag"), lambda qos: qos.reject("tag", requeue=True)]
)
def test_an_ack_a_hung_broker_never_answers_still_frees_the_workers_prefetch_slot(settle):
    """kombu frees the slot only once Redis answers: each ack lost to a hung Redis cost the
    worker a slot for good, and with every slot lost it took no more messages at all."""
    import redis
    from kombu.transport.redis import get_redis_error_classes

    from reviewapp.celery import RedisQoS

    # The kernel accepts connections to a listening socket nobody reads: a server that hangs.
    with socket.create_server(("127.0.0.1", 0)) as hung:
        # No retries of its own, as kombu builds its clients.
        client = redis.Redis(port=hung.getsockname()[1], socket_timeout=0.2, retry=None)
        channel = SimpleNamespace(
            conn_or_acquire=lambda _=None: contextlib.nullcontext(client),
            connection_errors=get_redis_error_classes().connection_errors,
            unacked_key="unacked",
            unacked_index_key="unacked_index",
            do_restore=False,
        )
        qos = RedisQoS(channel, prefetch_count=1)
        qos._delivered["tag"] = object()  # the one message the worker may hold, delivered
        assert not qos.can_consume()

        with pytest.raises(channel.connection_errors):
            settle(qos)  # Redis still has it as unacknowledged, and restores it later
        client.close()
    assert qos.can_consume()
