"""Each process's heartbeat and minute samples; the watcher marks silent processes gone, logs
it once, raises and clears alerts, and forgets old rows. Clocks are passed in."""

import logging
from datetime import UTC, datetime, timedelta

import pytest

from reviewapp.core.roles import Role
from reviewapp.monitoring import heartbeats
from reviewapp.monitoring.heartbeats import HeartbeatThread, ProcessProbe, heartbeat_record
from reviewapp.monitoring.models import (
    ProcessHeartbeat,
    ProcessSample,
    SystemAlert,
    ViewRequestRollup,
)
from reviewapp.monitoring.system import health_read, system_watch
from tests.factories import make_user

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 3, 2, 9, 0, 5, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _tasks_in_process(settings):
    """No "no worker" alert: tasks run in process, as without a broker."""
    settings.CELERY_TASK_ALWAYS_EAGER = True


def worker_probe(name="celery@box") -> ProcessProbe:
    return ProcessProbe(kind="worker", name=name, queues=["celery"])


def test_a_heartbeat_holds_the_process_and_host_figures():
    probe = worker_probe()
    probe.task_started()
    heartbeat_record(probe=probe, now=T0)
    row = ProcessHeartbeat.objects.get()
    assert (row.kind, row.name, row.pid, row.queues) == (
        "worker",
        "celery@box",
        probe.pid,
        ["celery"],
    )
    assert row.rss_bytes > 10 * 1024 * 1024  # a Django process holds tens of MB
    assert row.cpu_seconds > 0 and row.threads >= 1
    assert row.host_memory_total_bytes >= row.host_memory_available_bytes > 0
    assert row.tasks_in_flight == 1 and row.seen_at == T0 and row.gone_at is None


def test_one_row_per_process_and_one_sample_per_minute_with_the_minutes_requests():
    probe = ProcessProbe(kind="web", name="gunicorn")
    probe.request_count(view="home", status=200, seconds=0.02)
    heartbeat_record(probe=probe, now=T0)
    probe.request_count(view="home", status=503, seconds=0.3)
    probe.request_count(view="metrics", status=404, seconds=0.004)
    heartbeat_record(probe=probe, now=T0 + timedelta(seconds=10))  # same minute: no sample
    heartbeat_record(probe=probe, now=T0 + timedelta(seconds=60))
    assert ProcessHeartbeat.objects.count() == 1
    first, second = ProcessSample.objects.order_by("minute")
    assert (first.requests, first.errors_5xx) == (1, 0)
    assert (second.requests, second.errors_4xx, second.errors_5xx) == (2, 1, 1)
    assert second.minute - first.minute == 1 and second.seconds == 60
    by_view = {r.view: r for r in ViewRequestRollup.objects.all()}
    assert (by_view["home"].requests, by_view["home"].errors_5xx) == (2, 1)
    assert (by_view["metrics"].requests, by_view["metrics"].errors_4xx) == (1, 1)
    assert by_view["home"].le_1 == 0 and by_view["home"].le_2 == 1 and by_view["home"].le_6 == 1
    row = ProcessHeartbeat.objects.get()
    assert row.requests == {"2xx": 1, "3xx": 0, "4xx": 1, "5xx": 1}  # since the start


def test_requests_go_to_the_probe_in_memory_without_writing(client):
    client.force_login(make_user(Role.MANAGER))
    probe = heartbeats.current_probe() or heartbeats.process_start(kind="web", name="test")
    before = probe.requests["2xx"]
    assert client.get("/monitoring/").status_code == 200
    assert probe.requests["2xx"] == before + 1
    assert not ProcessHeartbeat.objects.exists()  # interval 0: nothing written


def test_a_failing_heartbeat_is_logged_never_raised(caplog):
    probe = worker_probe()

    def broken():
        raise OSError("no /proc")

    probe.read = broken
    with caplog.at_level(logging.WARNING):
        HeartbeatThread(probe).beat()
    assert "heartbeat of" in caplog.text
    assert not ProcessHeartbeat.objects.exists()


def test_a_silent_worker_is_gone_once_alerted_once_and_forgotten(settings, caplog):
    settings.HEARTBEAT_STALE_SECONDS = 30
    settings.HEARTBEAT_FORGET_SECONDS = 600
    heartbeat_record(probe=worker_probe(), now=T0)
    assert health_read(now=T0 + timedelta(seconds=20), with_broker=False).workers == ["celery@box"]

    later = T0 + timedelta(seconds=45)
    with caplog.at_level(logging.INFO, logger="reviewapp.events"):
        first = system_watch(now=later)
        again = system_watch(now=later + timedelta(seconds=10))
    assert (first["gone"], again["gone"]) == (1, 0)
    assert [r.event_fields["event"] for r in caplog.records].count("process_gone") == 1
    alert = SystemAlert.objects.get(kind="process_missing", cleared_at__isnull=True)
    assert "celery@box" in alert.message and "stopped reporting" in alert.message
    health = health_read(now=later, with_broker=False)
    assert health.workers == [] and any(a["kind"] == "process_missing" for a in health.alerts)

    forgotten = system_watch(now=T0 + timedelta(seconds=700))
    assert forgotten["forgotten"] == 1 and not ProcessHeartbeat.objects.exists()
    alert.refresh_from_db()
    assert alert.cleared_at == T0 + timedelta(seconds=700)


def test_a_restarted_worker_of_the_same_name_clears_the_alert(settings):
    settings.HEARTBEAT_STALE_SECONDS = 30
    old = worker_probe()
    heartbeat_record(probe=old, now=T0)
    system_watch(now=T0 + timedelta(seconds=60))
    assert SystemAlert.objects.filter(cleared_at__isnull=True).count() == 1
    new = worker_probe()
    new.key += ":restarted"  # another process of the same node
    heartbeat_record(probe=new, now=T0 + timedelta(seconds=70))
    system_watch(now=T0 + timedelta(seconds=75))
    assert not SystemAlert.objects.filter(cleared_at__isnull=True).exists()


def test_a_5xx_rate_over_the_limit_raises_an_alert(settings, caplog):
    settings.SYSTEM_5XX_RATE_ALERT = 0.05
    settings.SYSTEM_5XX_MIN_REQUESTS = 20
    probe = ProcessProbe(kind="web", name="gunicorn")
    heartbeat_record(probe=probe, now=T0)
    for n in range(40):
        probe.request_count(view="items", status=500 if n < 4 else 200, seconds=0.01)
    heartbeat_record(probe=probe, now=T0 + timedelta(minutes=1))
    with caplog.at_level(logging.INFO, logger="reviewapp.events"):
        system_watch(now=T0 + timedelta(minutes=1, seconds=5))
    raised = [r.event_fields for r in caplog.records if r.msg == "system_alert_raised"]
    assert [e["kind"] for e in raised] == ["error_rate"]
    assert "10.0% of the last 40 requests" in raised[0]["message"]


def test_old_samples_are_deleted(settings):
    settings.HEARTBEAT_SAMPLE_DAYS = 30
    probe = ProcessProbe(kind="web", name="gunicorn")
    heartbeat_record(probe=probe, now=T0)
    heartbeat_record(probe=probe, now=T0 + timedelta(minutes=1))
    result = system_watch(now=T0 + timedelta(days=30, seconds=60))
    assert result["samples_deleted"] == 1 and ProcessSample.objects.count() == 1


def test_a_gunicorn_worker_that_exits_cleanly_removes_its_heartbeat():
    from reviewapp.monitoring import gunicorn

    gunicorn.post_fork(server=None, worker=None)
    probe = heartbeats.current_probe()
    heartbeat_record(probe=probe, now=T0)
    assert ProcessHeartbeat.objects.filter(key=probe.key).exists()
    gunicorn.worker_exit(server=None, worker=None)
    assert not ProcessHeartbeat.objects.exists() and heartbeats.current_probe() is None


def test_the_quarter_hour_rollup_adds_up_every_process_of_a_kind_on_a_host():
    from reviewapp.monitoring.models import ProcessRollup

    first, second = ProcessProbe(kind="web", name="a"), ProcessProbe(kind="web", name="b")
    second.key += ":other"
    for probe in (first, second):
        probe.request_count(view="home", status=500, seconds=0.01)
        heartbeat_record(probe=probe, now=T0)
        probe.request_count(view="home", status=200, seconds=0.01)
        heartbeat_record(probe=probe, now=T0 + timedelta(minutes=1))
    (rollup,) = ProcessRollup.objects.all()
    samples = ProcessSample.objects.all()
    assert rollup.samples == 4 and rollup.minute % 15 == 0
    assert (rollup.requests, rollup.errors_5xx) == (4, 2)
    assert rollup.rss_bytes == sum(s.rss_bytes for s in samples)
    assert rollup.cpu_seconds == pytest.approx(sum(s.cpu_seconds for s in samples))


def test_a_probe_that_cannot_start_never_fails_a_request(client, monkeypatch, caplog):
    def broken(**kwargs):
        raise PermissionError("no /proc here")

    monkeypatch.setattr(heartbeats, "current_probe", lambda: None)
    monkeypatch.setattr(heartbeats, "process_start", broken)
    client.force_login(make_user(Role.MANAGER))
    with caplog.at_level(logging.WARNING):
        assert client.get("/monitoring/").status_code == 200
    assert "process probe not started" in caplog.text


def _web_probe(monkeypatch) -> ProcessProbe:
    probe = ProcessProbe(kind="web", name="web")
    monkeypatch.setattr(heartbeats, "current_probe", lambda: probe)
    monkeypatch.setattr(heartbeats, "_last_watch", 0.0)
    monkeypatch.setattr(heartbeats.time, "monotonic", lambda: 1_000_000.0)
    return probe


def test_with_no_worker_a_web_process_runs_the_watch_and_raises_no_worker(settings, monkeypatch):
    """The watcher is a Celery task: with every worker gone nobody would run it, so the web
    process's heartbeat does, and the "no worker" alert is raised all the same."""
    settings.CELERY_TASK_ALWAYS_EAGER = False
    heartbeat_record(probe=_web_probe(monkeypatch), now=T0)
    heartbeats._watch_without_beat(T0)
    assert SystemAlert.objects.filter(kind="no_worker", cleared_at__isnull=True).exists()


@pytest.mark.parametrize(("watched_ago", "watched_here"), [(30, False), (600, True)])
def test_a_web_process_leaves_the_watch_to_workers_that_run_it(
    settings, monkeypatch, watched_ago, watched_here
):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.HEARTBEAT_STALE_SECONDS = 30
    heartbeat_record(probe=_web_probe(monkeypatch), now=T0)
    silent = worker_probe("celery@silent")
    silent.pid, silent.key = silent.pid + 1, f"{silent.key}-silent"  # another process
    heartbeat_record(probe=silent, now=T0 - timedelta(minutes=5))
    watcher = worker_probe("celery@watcher")
    watcher.tasks_last[heartbeats.WATCH_TASK] = (T0 - timedelta(seconds=watched_ago)).isoformat()
    heartbeat_record(probe=watcher, now=T0)
    heartbeats._watch_without_beat(T0)
    # The silent worker is marked gone only by a watch run here.
    gone = ProcessHeartbeat.objects.filter(name="celery@silent", gone_at__isnull=False).exists()
    assert gone is watched_here
