"""What the System page shows: cards, charts and tables from ``system`` (reads) drawn with the
dashboards' Plotly conventions (``figures``)."""

from collections import defaultdict
from datetime import UTC, datetime

from reviewapp.monitoring import figures
from reviewapp.monitoring.figures import Chart
from reviewapp.monitoring.models import ProcessHeartbeat
from reviewapp.monitoring.system import (
    FOLD_TASK,
    SWEEPER_TASK,
    SYSTEM_RANGES,
    Health,
    health_read,
    samples_by_bucket,
    views_table,
)

PALETTE = ("#2456c7", "#2f9e6b", "#d9822b", "#9b7fd8", "#c2312b", "#5fa2f0", "#98a1b3", "#8c6d31")
MB = 1024 * 1024


def system_page_build(*, now: datetime, range_key: str) -> dict:
    health = health_read(now=now)
    return {
        "health": health,
        "cards": cards_of(health),
        "charts": system_charts(now=now, range_key=range_key),
        "views": views_table(now=now, range_key=range_key),
        "range": range_key,
        "ranges": {key: value[0] for key, value in SYSTEM_RANGES.items()},
    }


def system_charts(*, now: datetime, range_key: str) -> list[Chart]:
    """Memory, CPU, load, requests, request latency and tasks over the period, by process
    kind and host: the System page's charts, and the Software tab's."""
    rows, first, step = samples_by_bucket(now=now, range_key=range_key)
    current = int(now.timestamp() // 60) // step
    buckets = list(range(first, current + 1))
    x = [datetime.fromtimestamp(b * step * 60, UTC).isoformat() for b in buckets]
    unit = f"{step} min" if step < 60 else f"{step // 60} h"
    return [
        memory_chart(rows, buckets, x, unit),
        cpu_chart(rows, buckets, x, unit),
        load_chart(rows, buckets, x, unit),
        requests_chart(rows, buckets, x, unit),
        request_latency_chart(rows, buckets, x, unit),
        tasks_chart(rows, buckets, x, unit),
    ]


SOFTWARE_RANGE = "24h"


def software_panel(*, now: datetime) -> dict:
    """What the Software tab adds about the processes doing the work: the System page's cards,
    charts, broker queues and requests by view over the last 24 hours. The processes serve
    every use case, so this part is the same on each use case's tab."""
    health = health_read(now=now)
    # Only the charts with something to draw: with no process reporting (heartbeats off) the
    # tab keeps to the use case's own charts.
    charts = [c for c in system_charts(now=now, range_key=SOFTWARE_RANGE) if c.figure is not None]
    for chart in charts:
        chart.key = f"process-{chart.key}"
        chart.title += " (whole app, last 24 h)"
    return {
        "alerts": health.alerts,
        "cards": cards_of(health),
        "charts": charts,
        "queues": health.queues,
        "views": views_table(now=now, range_key=SOFTWARE_RANGE),
    }


def cards_of(health: Health) -> list[dict]:
    web = health.live_of(ProcessHeartbeat.Kind.WEB)
    workers = health.live_of(ProcessHeartbeat.Kind.WORKER)
    queued = sum(q.length for q in health.queues) if health.queues is not None else None
    sweeper = health.task_last_run(SWEEPER_TASK)
    fold = health.task_last_run(FOLD_TASK)
    rate = health.error_rate_5xx
    return [
        {
            "label": "Web processes",
            "value": str(len(web)),
            "note": "on " + _count(len({p.host for p in web}), "host"),
            "alert": not web,
        },
        {
            "label": "Celery workers",
            "value": str(len(health.workers)),
            "note": f"{_count(len(workers), 'process', 'processes')}, "
            f"{_count(health.tasks_in_flight, 'task')} in flight",
            "alert": any(a["kind"] in {"no_worker", "process_missing"} for a in health.alerts),
        },
        {
            "label": "Broker messages",
            "value": f"{queued:,}" if queued is not None else "—",
            "note": "waiting in the queues" if queued is not None else "no Redis broker to read",
            "alert": any(a["kind"] == "queue_stalled" for a in health.alerts),
        },
        {
            "label": "Server errors",
            "value": figures._pct(rate) if rate is not None else "—",
            "note": f"5xx of {health.errors['requests']:,} requests in 5 min; "
            f"{health.errors['4xx']:,} 4xx",
            "alert": any(a["kind"] == "error_rate" for a in health.alerts),
        },
        {
            "label": "Sweeper last ran",
            "value": _since(health.now, sweeper),
            "note": "re-enqueues unscored items",
        },
        {"label": "Rollups last folded", "value": _since(health.now, fold)},
    ]


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n:,} {one if n == 1 else many or one + 's'}"


def _since(now: datetime, then: datetime | None) -> str:
    if then is None:
        return "—"
    return f"{figures._duration(max((now - then).total_seconds(), 0))} ago"


def _series(rows, buckets, value, *, key=lambda r: f"{r['kind']} @ {r['host']}", kinds=None):
    """One line per key, a value per bucket (None where the bucket has no sample)."""
    by_key: dict[str, dict[int, float]] = defaultdict(dict)
    for row in rows:
        if kinds is not None and row["kind"] not in kinds:
            continue
        amount = value(row)
        if amount is None:
            continue
        slot = by_key[key(row)]
        slot[row["bucket"]] = slot.get(row["bucket"], 0) + amount
    return {name: [slot.get(b) for b in buckets] for name, slot in sorted(by_key.items())}


def _lines_chart(chart: Chart, series: dict, x, *, y_title: str, unit: str, hover: str) -> Chart:
    if not series:
        return chart
    chart.figure = {
        "data": [
            figures._line(name, x, ys, PALETTE[i % len(PALETTE)], hovertemplate=hover)
            for i, (name, ys) in enumerate(series.items())
        ],
        "layout": figures._layout(
            x_title=f"Time (UTC, per {unit})", y_title=y_title, yaxis={"rangemode": "tozero"}
        ),
    }
    return chart


def _last(series: dict) -> dict[str, float]:
    return {
        name: next((v for v in reversed(ys) if v is not None), None) for name, ys in series.items()
    }


def memory_chart(rows, buckets, x, unit) -> Chart:
    chart = Chart(
        key="memory",
        title="Memory by process kind and host",
        reading="No process has reported yet.",
    )
    series = _series(rows, buckets, lambda r: r["rss"] / r["minutes"] / MB)
    if series:
        last = _last(series)
        top = max(last, key=lambda k: last[k] or 0)
        chart.reading = (
            f"Resident memory summed over each kind's processes on a host; {top} uses "
            f"the most, {figures.number(last[top])} MB in the last {unit}."
        )
    return _lines_chart(
        chart, series, x, y_title="Resident memory (MB)", unit=unit, hover="%{y:.0f} MB"
    )


def cpu_chart(rows, buckets, x, unit) -> Chart:
    chart = Chart(
        key="cpu", title="CPU by process kind and host", reading="No process has reported yet."
    )
    series = _series(rows, buckets, lambda r: r["cpu"] / (r["minutes"] * 60))
    if series:
        last = _last(series)
        busiest = max(last, key=lambda k: last[k] or 0)
        chart.reading = (
            f"CPU seconds used per second (1 = one core busy); {busiest} is the busiest at "
            f"{figures.number(last[busiest])} cores in the last {unit}."
        )
    return _lines_chart(chart, series, x, y_title="CPU (cores busy)", unit=unit, hover="%{y:.2f}")


def load_chart(rows, buckets, x, unit) -> Chart:
    chart = Chart(key="load", title="Load average by host", reading="No host has reported yet.")
    per_host: dict[tuple, list[float]] = defaultdict(list)
    for row in rows:
        per_host[(row["bucket"], row["host"])].append(row["load"])
    averaged = [
        {"bucket": b, "host": h, "kind": "", "load": sum(v) / len(v)}
        for (b, h), v in per_host.items()
    ]
    series = _series(averaged, buckets, lambda r: r["load"], key=lambda r: r["host"])
    if series:
        last = _last(series)
        chart.reading = "One-minute load average; latest " + ", ".join(
            f"{host} {figures.number(v)}" for host, v in last.items()
        )
    return _lines_chart(chart, series, x, y_title="Load (1 min)", unit=unit, hover="%{y:.2f}")


def requests_chart(rows, buckets, x, unit) -> Chart:
    chart = Chart(
        key="requests", title="Requests and errors", reading="No request was served in this period."
    )
    web = [r for r in rows if r["kind"] == ProcessHeartbeat.Kind.WEB]
    total = sum(r["requests"] or 0 for r in web)
    if not total:
        return chart

    def per_minute(field):
        minutes: dict[int, int] = defaultdict(int)
        counts: dict[int, float] = defaultdict(float)
        for r in web:
            counts[r["bucket"]] += r[field] or 0
            minutes[r["bucket"]] = max(minutes[r["bucket"]], r["minutes"])
        return [counts[b] / minutes[b] if minutes.get(b) else None for b in buckets]

    chart.figure = {
        "data": [
            figures._line("all requests", x, per_minute("requests"), "#2456c7"),
            figures._line("4xx (refused)", x, per_minute("e4"), "#d9822b"),
            figures._line("5xx (server errors)", x, per_minute("e5"), figures.LIMIT_COLOUR),
        ],
        "layout": figures._layout(
            x_title=f"Time (UTC, per {unit})",
            y_title="Requests per minute",
            yaxis={"rangemode": "tozero"},
        ),
    }
    e4 = sum(r["e4"] or 0 for r in web)
    e5 = sum(r["e5"] or 0 for r in web)
    chart.reading = (
        f"{total:,} requests in the period: {e4 / total:.1%} refused (4xx), "
        f"{e5 / total:.2%} server errors (5xx)."
    )
    return chart


def request_latency_chart(rows, buckets, x, unit) -> Chart:
    chart = Chart(
        key="request-latency",
        title="Request latency by web host",
        reading="No request was served in this period.",
    )
    totals: dict[tuple, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for r in rows:
        if r["kind"] == ProcessHeartbeat.Kind.WEB and r["requests"]:
            slot = totals[(r["bucket"], r["host"])]
            slot[0] += r["request_seconds"] or 0
            slot[1] += r["requests"]
    merged = [
        {"bucket": b, "host": h, "kind": "", "ms": s / n * 1000}
        for (b, h), (s, n) in totals.items()
    ]
    series = _series(merged, buckets, lambda r: r["ms"], key=lambda r: r["host"])
    if series:
        chart.reading = (
            "Mean time to answer a request; the table below has each view's p95 from the "
            "request histogram."
        )
    return _lines_chart(
        chart, series, x, y_title="Mean ms per request", unit=unit, hover="%{y:.1f} ms"
    )


def tasks_chart(rows, buckets, x, unit) -> Chart:
    chart = Chart(
        key="tasks", title="Celery tasks by worker host", reading="No worker has reported."
    )
    workers = {ProcessHeartbeat.Kind.WORKER}
    done = _series(
        rows, buckets, lambda r: r["done"] / r["minutes"], key=lambda r: r["host"], kinds=workers
    )
    in_flight = _series(
        rows,
        buckets,
        lambda r: r["in_flight"] / r["minutes"],
        key=lambda r: r["host"],
        kinds=workers,
    )
    if not done:
        return chart
    data = []
    for i, host in enumerate(done):
        colour = PALETTE[i % len(PALETTE)]
        data.append(figures._line(f"done per minute · {host}", x, done[host], colour))
        data.append(
            figures._line(
                f"in flight · {host}",
                x,
                in_flight[host],
                colour,
                line={"dash": "dot", "color": colour},
            )
        )
    chart.figure = {
        "data": data,
        "layout": figures._layout(
            x_title=f"Time (UTC, per {unit})", y_title="Tasks", yaxis={"rangemode": "tozero"}
        ),
    }
    total = sum(r["done"] or 0 for r in rows if r["kind"] in workers)
    chart.reading = (
        f"Tasks finished per minute (solid) and running (dotted); {total:,} tasks finished "
        "in the period."
    )
    return chart
