"""Outcomes back to the caller, on PostgreSQL: the feed, webhook delivery, and what writing
events adds to a decision.

1. Feed read: 100,000 outcomes (5,000 with --small) read through ``outcomes_after`` in pages of
   1,000 and serialised to JSON, against the floor measured in the same run: a bare
   ``SELECT`` of the same rows in the same order, fetched to the end.
2. Webhook delivery: events committed at once, fanned out and delivered by 2 real Celery worker
   processes to a local receiver; events/s from the commit to the last 2xx, against the floor
   in the same run: as many bare POSTs to the same receiver from 2 processes, 4 in flight each
   on kept-alive connections (what a delivery costs in HTTP alone).
3. Overhead on a decision: p50 of a transaction that writes a row, with and without
   ``event_record`` (its INSERT and its after-commit work: the change counter, the fan-out
   queued on the broker with an active endpoint). The difference is the cost.

    python benchmarks/run.py outcomes [--small]
"""

import json
import os
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from benchmarks.harness import celery_workers, fmt, pct, table

FEED_ROWS, SMALL_FEED_ROWS = 100_000, 5_000
WEBHOOK_EVENTS, SMALL_WEBHOOK_EVENTS = 5_000, 500
OVERHEAD_RUNS, SMALL_OVERHEAD_RUNS = 1_000, 200
PAGE = 1_000
TARGET_FEED_PER_SECOND = 50_000
TARGET_WEBHOOKS_PER_SECOND = 500
TARGET_OVERHEAD_MS = 1.0


def _use_case():
    from django.contrib.auth import get_user_model

    from deployments.services.use_cases import use_case_create
    from reviewapp.core.roles import Role, role_groups_ensure

    groups = role_groups_ensure()
    user, _ = get_user_model().objects.get_or_create(username="bench-outcomes")
    user.groups.add(groups[Role.ADMIN])
    user.is_superuser = True
    user.save()
    use_case = use_case_create(
        actor=user,
        slug=f"bench-outcomes-{uuid.uuid4().hex[:12]}",
        name="Outcomes bench",
        task_type="classification",
        features=[{"name": "amount", "type": "number", "required": True}],
        labels=["a", "b"],
    )
    return use_case, user


def _outcome(n: int) -> dict:
    return {
        "external_id": f"inv-{n}",
        "decision": {"label": "a", "source": "model", "by": None, "model_version": "v1"},
        "route": "auto",
        "decided_at": "2026-12-04T12:00:00+00:00",
    }


def feed_read(*, rows: int) -> list:
    from django.db import connection, transaction

    from reviewapp.core.events import START, events_record, position_parse
    from reviewapp.reviews.outcomes import OUTCOME_DECIDED, outcomes_after, outcomes_json

    use_case, _ = _use_case()
    for start in range(0, rows, 10_000):
        with transaction.atomic():
            events_record(
                type=OUTCOME_DECIDED,
                use_case_id=use_case.pk,
                datas=[_outcome(n) for n in range(start, min(rows, start + 10_000))],
            )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE core_event")
    # Readable once no older transaction runs on the server (others' included): wait for that
    # outside the timing.
    deadline = time.monotonic() + 120
    while len(outcomes_after(use_case=use_case, after=START, limit=rows).outcomes) < rows:
        assert time.monotonic() < deadline, "the outbox horizon did not move for 2 minutes"
        time.sleep(0.2)

    started = time.perf_counter()
    after, read = START, 0
    while True:  # what the API sends: the page as JSON text
        body, count = outcomes_json(use_case=use_case, after=after, limit=PAGE)
        if not count:
            break
        read += count
        after = position_parse(json.loads("{" + body[body.rindex('"next"') :])["next"])
    feed_seconds = time.perf_counter() - started
    assert read == rows, (read, rows)

    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id, txid, data FROM core_event WHERE use_case_id = %s AND type = %s "
            "ORDER BY txid, id",
            [use_case.pk, OUTCOME_DECIDED],
        )
        floor_rows = len(cursor.fetchall())
    floor_seconds = time.perf_counter() - started
    feed_rate, floor_rate = rows / feed_seconds, floor_rows / floor_seconds
    return [
        "feed read (pages of 1,000)",
        f"{rows:,}",
        fmt(feed_rate, 0) + " outcomes/s",
        fmt(floor_rate, 0) + " rows/s (bare SELECT)",
        f"{feed_rate / floor_rate:.2f}",
        f">= {TARGET_FEED_PER_SECOND:,}/s",
        "yes" if feed_rate >= TARGET_FEED_PER_SECOND else "NO",
    ]


class _Receiver:
    def __init__(self):
        self.count = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # the stdlib's name
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()
                with receiver.lock:
                    receiver.count += 1

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def _floor_posts(url: str, count: int, body: bytes) -> int:
    """``count`` bare POSTs from this process, 4 in flight on kept-alive connections: the
    delivery's HTTP work with nothing of the app around it (no outbox, no signing, no rows)."""
    from concurrent.futures import ThreadPoolExecutor

    import urllib3

    pool = urllib3.PoolManager(maxsize=4, retries=False)
    headers = {"Content-Type": "application/json", "webhook-id": "evt_0"}

    def post(_: int) -> int:
        return pool.request("POST", url, body=body, headers=headers).status

    with ThreadPoolExecutor(4) as threads:
        return sum(1 for status in threads.map(post, range(count)) if status == 204)


def _delivery_floor(url: str, events: int) -> float:
    """Events/s of the floor: the same number of posts from 2 processes, as from 2 workers."""
    from concurrent.futures import ProcessPoolExecutor

    body = json.dumps({"type": "outcome.decided", "timestamp": 0, "data": _outcome(0)}).encode()
    with ProcessPoolExecutor(2) as processes:
        list(processes.map(int, [0, 0]))  # both started before the clock
        started = time.perf_counter()
        halves = [events // 2, events - events // 2]
        sent = sum(processes.map(_floor_posts, [url, url], halves, [body, body]))
        return sent / (time.perf_counter() - started)


def webhook_delivery(*, events: int) -> list:
    from django.conf import settings
    from django.db import transaction

    from reviewapp.core.events import events_record
    from reviewapp.reviews.outcomes import OUTCOME_DECIDED
    from reviewapp.webhooks.models import Delivery
    from reviewapp.webhooks.services import endpoint_create

    receiver = _Receiver()
    os.environ["WEBHOOK_ALLOWED_HOSTS"] = "127.0.0.1"
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    use_case, user = _use_case()
    endpoint_create(user=user, url=receiver.url, events=[OUTCOME_DECIDED], use_cases=None)
    with celery_workers(concurrency=2):
        started = time.perf_counter()
        with transaction.atomic():
            events_record(
                type=OUTCOME_DECIDED,
                use_case_id=use_case.pk,
                datas=[_outcome(n) for n in range(events)],
            )
        deadline = time.monotonic() + 600
        while receiver.count < events and time.monotonic() < deadline:
            time.sleep(0.05)
        seconds = time.perf_counter() - started
    delivered = Delivery.objects.filter(state="delivered").count()
    received = receiver.count
    rate = received / seconds
    floor = _delivery_floor(receiver.url, events)
    return [
        "webhook delivery (2 workers)",
        f"{events:,}",
        fmt(rate, 0) + " events/s",
        f"{fmt(floor, 0)} posts/s (bare POSTs, 2 processes); "
        f"{delivered:,} delivered, {received:,} received",
        f"{rate / floor:.2f}",
        f">= {TARGET_WEBHOOKS_PER_SECOND}/s",
        "yes" if rate >= TARGET_WEBHOOKS_PER_SECOND else "NO",
    ]


def decision_overhead(*, runs: int) -> list:
    from django.db import transaction

    from deployments.models import UseCase
    from reviewapp.celery import app
    from reviewapp.core.events import event_record
    from reviewapp.reviews.outcomes import OUTCOME_DECIDED

    use_case = UseCase.objects.order_by("-id").first()  # with an active endpoint (above)
    app.conf.task_always_eager = False  # the fan-out is queued on the broker, as in production

    def write(with_event: bool) -> float:
        started = time.perf_counter()
        with transaction.atomic():
            UseCase.objects.filter(pk=use_case.pk).update(name="Outcomes bench")
            if with_event:
                event_record(type=OUTCOME_DECIDED, use_case_id=use_case.pk, data=_outcome(0))
        return (time.perf_counter() - started) * 1000

    plain, with_event = [], []
    for _ in range(runs):  # interleaved, so drift hits both alike
        plain.append(write(False))
        with_event.append(write(True))
    overhead = pct(with_event, 50) - pct(plain, 50)
    return [
        "event written with a decision",
        f"{runs:,}",
        fmt(overhead, 3) + " ms at p50",
        f"{fmt(pct(plain, 50), 3)} ms without, {fmt(pct(with_event, 50), 3)} ms with",
        "",
        f"<= {TARGET_OVERHEAD_MS} ms",
        "yes" if overhead <= TARGET_OVERHEAD_MS else "NO",
    ]


def main(*, small: bool = False) -> None:
    rows = [
        feed_read(rows=SMALL_FEED_ROWS if small else FEED_ROWS),
        webhook_delivery(events=SMALL_WEBHOOK_EVENTS if small else WEBHOOK_EVENTS),
        decision_overhead(runs=SMALL_OVERHEAD_RUNS if small else OVERHEAD_RUNS),
    ]
    table(
        "Outcomes and webhooks (PostgreSQL)",
        ["measure", "n", "result", "floor / detail", "ratio", "target", "met"],
        rows,
    )


if __name__ == "__main__":
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "reviewapp.settings")
    django.setup()
    main()
