"""Keeping model calls within a time budget, and measuring how long they take.

A realtime caller must get an answer within its use case's latency budget even when the model
is slow. Python cannot interrupt a running model call, so the call runs in a worker thread and
the caller waits for it at most the remaining budget. A call that is late is abandoned: its
result is dropped when it arrives and nothing else ever reads it, so it cannot race the
routing that already went ahead without it. The threads are a bounded pool, so a model that
hangs occupies at most the pool's threads; once they are all busy, later calls time out
(their queued work is cancelled before it starts) and items go to humans instead of piling up.

Nothing here imports Django: the pool size and the budgets are passed in.
"""

import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

import numpy as np

LATENCY_BUDGET_EXCEEDED = "latency budget exceeded"


def budget_error(budget_ms: int) -> str:
    """The null output's reason when the model missed the budget; metrics match its prefix."""
    return f"{LATENCY_BUDGET_EXCEEDED}: no answer within {budget_ms} ms"


@dataclass(frozen=True, slots=True)
class CallOutcome:
    done: bool
    value: Any = None
    waited_ms: float = 0.0


class TimeoutPool:
    """A bounded pool of daemon threads that runs calls the caller waits for only so long."""

    def __init__(self, *, max_workers: int, name: str):
        self.max_workers = max(1, max_workers)
        self.name = name
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        # A forked child (a Celery or gunicorn worker) inherits the executor object but not its
        # threads; it starts its own on first use.
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._executor = None
        self._lock = threading.Lock()

    def _pool(self) -> ThreadPoolExecutor:
        executor = self._executor
        if executor is None:
            with self._lock:
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(
                        max_workers=self.max_workers, thread_name_prefix=self.name
                    )
                executor = self._executor
        return executor

    def call(self, fn: Callable[[], Any], *, timeout: float) -> CallOutcome:
        """Run ``fn`` in the pool and wait at most ``timeout`` seconds for its result.

        ``fn`` must not touch the database (its thread has no transaction of the caller's) and
        must not raise for expected failures; an unexpected exception is re-raised here.
        """
        started = time.perf_counter()
        future: Future = self._pool().submit(fn)
        try:
            value = future.result(timeout=max(timeout, 0.0))
        except FutureTimeout:
            future.cancel()  # still queued behind busy threads: it never runs
            return CallOutcome(done=False, waited_ms=(time.perf_counter() - started) * 1000)
        return CallOutcome(done=True, value=value, waited_ms=(time.perf_counter() - started) * 1000)

    def shutdown(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)


def call_in_own_thread(fn: Callable[[], Any], *, timeout: float) -> CallOutcome:
    """Like ``TimeoutPool.call`` on a fresh daemon thread: for rare, long checks (an upload)
    that must not take a realtime thread away, and whose hang must not block the request."""
    started = time.perf_counter()
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed back to the waiting thread
            box["error"] = exc

    thread = threading.Thread(target=run, name="model-check", daemon=True)
    thread.start()
    thread.join(timeout)
    waited = (time.perf_counter() - started) * 1000
    if thread.is_alive():
        return CallOutcome(done=False, waited_ms=waited)
    if "error" in box:
        raise box["error"]
    return CallOutcome(done=True, value=box.get("value"), waited_ms=waited)


class TimeoutCounter:
    """Latency budget misses per use case, counted in this process since it started.

    A metrics endpoint (Prometheus-style) reads ``snapshot()``; the database keeps the durable
    count (each miss is a null output whose error starts with LATENCY_BUDGET_EXCEEDED).
    """

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def increment(self, use_case: str, by: int = 1) -> None:
        with self._lock:
            self._counts[use_case] += by

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()


budget_timeouts = TimeoutCounter()


def latency_probe(
    call: Callable[[int], Any],
    *,
    calls: int,
    max_seconds: float,
    warmup: int = 3,
    clock: Callable[[], float] = time.perf_counter,
    abandoned: Callable[[], bool] = lambda: False,
) -> dict[str, Any]:
    """Time ``calls`` single calls (``call(i)`` for i = 0, 1, ...) after a short warm-up.

    Stops early once ``max_seconds`` have gone by, so a slow model does not hold an upload for
    minutes; the figures then come from fewer calls, which the result says. Stops before the
    next call once ``abandoned()`` is true: whoever asked no longer waits for the figures.
    """
    for i in range(warmup):
        if abandoned():
            break
        call(i)
    timings: list[float] = []
    deadline = clock() + max_seconds
    for i in range(calls):
        if abandoned():
            break
        started = clock()
        call(i)
        ended = clock()
        timings.append((ended - started) * 1000)
        if ended >= deadline:
            break
    if not timings:
        return {"calls": 0, "stopped_early": True}
    array = np.asarray(timings, dtype=float)
    return {
        "calls": len(timings),
        "stopped_early": len(timings) < calls,
        "p50_ms": round(float(np.percentile(array, 50)), 3),
        "p95_ms": round(float(np.percentile(array, 95)), 3),
        "p99_ms": round(float(np.percentile(array, 99)), 3),
        "max_ms": round(float(array.max()), 3),
    }


def latency_over_budget(latency: dict[str, Any], budget_ms: int | None) -> bool | None:
    """Whether a measured p99 exceeds the budget; None when either is unknown."""
    p99 = (latency or {}).get("p99_ms")
    if budget_ms is None or p99 is None:
        return None
    return p99 > budget_ms
