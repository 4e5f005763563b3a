"""Prometheus metrics at /metrics.

Two sources, chosen so the numbers are right however many processes serve the app:
- Request latency is measured in the web process that served the request. Under gunicorn
  with several workers, set ``PROMETHEUS_MULTIPROC_DIR`` to an empty directory shared by
  them: prometheus-client then writes each process's samples to memory-mapped files there
  and every scrape, whichever worker answers it, merges all of them.
- The processes themselves (memory, CPU, liveness, responses by status, Celery workers and
  tasks) come from the heartbeat table and the broker queues from the broker, also at scrape
  time (``system_metrics.SystemCollector``): one web process answers for every process.
- Everything about the work (predictions, null outputs, routes, decisions, prediction
  latency, queue depth) is read from the database at scrape time: the rollups and the review
  queue. Batch and challenger scoring happen in Celery workers, often on other machines, whose
  in-process counters no web process could see; the database sees them all, and a counter
  read from the rollups survives restarts.
"""

import os
from collections import defaultdict

from django.db.models import Sum
from django.utils import timezone
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)

from deployments.models import UseCase
from reviewapp.monitoring import stats
from reviewapp.monitoring.models import FoldLock, HourlyRollup, RollupEvent
from reviewapp.monitoring.system_metrics import SystemCollector
from reviewapp.reviews.selectors import queue_health_for

MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
REQUEST_LATENCY = Histogram(
    "reviewapp_http_request_duration_seconds",
    "Time to answer an HTTP request, by view and status class.",
    ["method", "view", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=None,  # registered per scrape (see metrics_registry)
)
# Prometheus histogram buckets for prediction latency: every doubling of the rollup buckets.
LATENCY_EXPORT_EVERY = stats.DURATION_STEPS_PER_DOUBLING


def request_observe(*, method: str, view: str, status: int, seconds: float) -> None:
    REQUEST_LATENCY.labels(method=method, view=view, status=f"{status // 100}xx").observe(seconds)


class DatabaseCollector:
    """Counters and gauges read from the rollups and the queue, for the given use cases."""

    def __init__(self, use_case_ids: list[int]):
        self.use_case_ids = use_case_ids

    def collect(self):
        rows = HourlyRollup.objects.filter(use_case_id__in=self.use_case_ids)
        predictions = CounterMetricFamily(
            "reviewapp_predictions",
            "Predictions made, by use case and model version (shadow: a challenger's).",
            labels=["use_case", "model_version", "shadow"],
        )
        nulls = CounterMetricFamily(
            "reviewapp_null_outputs",
            "Predictions that were unusable (the model failed or answered out of contract).",
            labels=["use_case", "model_version", "shadow"],
        )
        for row in (
            rows.exclude(model_version__isnull=True)
            .values("use_case__slug", "model_version__version", "shadow")
            .annotate(n=Sum("predictions"), null=Sum("null_outputs"))
            .order_by()
        ):
            shadow = "true" if row["shadow"] else "false"  # lower case, as PromQL users write
            labels = [row["use_case__slug"], row["model_version__version"], shadow]
            predictions.add_metric(labels, row["n"] or 0)
            nulls.add_metric(labels, row["null"] or 0)
        yield predictions
        yield nulls

        routes = CounterMetricFamily(
            "reviewapp_items_routed",
            "Items routed, by use case and route.",
            labels=["use_case", "route"],
        )
        decisions = CounterMetricFamily(
            "reviewapp_decisions",
            "Human decisions, by use case and kind.",
            labels=["use_case", "kind"],
        )
        sums = {f"route_{r}": Sum(f"route_{r}") for r in ("auto", "assisted", "blind", "human")} | {
            f"decisions_{k}": Sum(f"decisions_{k}") for k in ("accepted", "overridden", "blind")
        }
        for row in rows.filter(shadow=False).values("use_case__slug").annotate(**sums).order_by():
            for route in ("auto", "assisted", "blind", "human"):
                routes.add_metric([row["use_case__slug"], route], row[f"route_{route}"] or 0)
            for kind in ("accepted", "overridden", "blind"):
                decisions.add_metric([row["use_case__slug"], kind], row[f"decisions_{kind}"] or 0)
        yield routes
        yield decisions

        latency = HistogramMetricFamily(
            "reviewapp_prediction_latency_seconds",
            "Model scoring time per item, by use case and model version.",
            labels=["use_case", "model_version"],
        )
        merged: dict[tuple[str, str], dict] = defaultdict(dict)
        totals: dict[tuple[str, str], float] = defaultdict(float)
        for slug, version, buckets, total in rows.exclude(model_version__isnull=True).values_list(
            "use_case__slug", "model_version__version", "latency_buckets", "latency_sum_ms"
        ):
            stats.counts_add(merged[(slug, version)], buckets or {})
            totals[(slug, version)] += total
        for (slug, version), buckets in merged.items():
            cumulative, exported = 0.0, []
            counts = {int(k): n for k, n in buckets.items()}
            for k in range(stats.DURATION_BUCKETS):
                cumulative += counts.get(k, 0)
                if k % LATENCY_EXPORT_EVERY == 0:
                    upper = stats.duration_bucket_bounds(k)[1] / 1000
                    exported.append((f"{upper:.6g}", cumulative))
            exported.append(("+Inf", cumulative))
            latency.add_metric([slug, version], exported, totals[(slug, version)] / 1000)
        yield latency

        depth = GaugeMetricFamily(
            "reviewapp_queue_depth", "Open review tasks, by use case.", labels=["use_case"]
        )
        age = GaugeMetricFamily(
            "reviewapp_queue_oldest_age_seconds",
            "Age of the oldest open review task, by use case.",
            labels=["use_case"],
        )
        past_due = GaugeMetricFamily(
            "reviewapp_queue_past_due_items",
            "Items waiting for review past their due time, by use case.",
            labels=["use_case"],
        )
        clear = GaugeMetricFamily(
            "reviewapp_queue_clear_forecast_seconds",
            "Time to clear the open review tasks at the last 24 hours' decisions per hour, by"
            " use case (absent while tasks wait and no decision was made in that window).",
            labels=["use_case"],
        )
        health = queue_health_for(use_case_ids=self.use_case_ids, now=timezone.now())
        for pk, slug in UseCase.objects.filter(pk__in=self.use_case_ids).values_list("pk", "slug"):
            queue = health[pk]
            depth.add_metric([slug], queue.waiting)
            age.add_metric([slug], queue.oldest_waiting_seconds or 0)
            past_due.add_metric([slug], queue.past_due_items)
            if queue.clear_seconds is not None:
                clear.add_metric([slug], queue.clear_seconds)
        yield depth
        yield age
        yield past_due
        yield clear

        pending = GaugeMetricFamily(
            "reviewapp_rollup_events_pending", "Facts recorded but not yet folded into rollups."
        )
        pending.add_metric([], RollupEvent.objects.count())
        yield pending
        folded = FoldLock.objects.filter(pk=1).values_list("folded_at", flat=True).first()
        if folded:
            last = GaugeMetricFamily(
                "reviewapp_rollup_last_fold_timestamp_seconds", "When the rollups last folded."
            )
            last.add_metric([], folded.timestamp())
            yield last


def metrics_registry(*, use_case_ids: list[int]) -> CollectorRegistry:
    """A registry for one scrape: this process's (or all processes') request latency, process
    figures, and the database collector limited to the use cases the scraper may see."""
    registry = CollectorRegistry()
    if MULTIPROCESS:
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)
    else:
        from prometheus_client import ProcessCollector

        registry.register(REQUEST_LATENCY)
        ProcessCollector(registry=registry)
    registry.register(DatabaseCollector(use_case_ids))
    registry.register(SystemCollector())
    return registry
