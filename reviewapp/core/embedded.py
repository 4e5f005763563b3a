"""Periodic work in embedded mode (eager Celery, no beat, no worker): run from the web process
after a response, at most every so many seconds, so the default single-process deployment does
what the beat does elsewhere."""

import logging
import threading
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)


class AfterResponse:
    """``task`` (a Celery task) run after a response at most every ``seconds()`` (0: never),
    and only when tasks run eagerly. Never raises into the response."""

    def __init__(self, task, *, seconds: Callable[[], float], what: str) -> None:
        self.task, self.seconds, self.what = task, seconds, what
        self.last: float | None = None
        self._lock = threading.Lock()

    def run_if_due(self, *, clock: Callable[[], float] = time.monotonic) -> bool:
        """Run the task if its interval has passed; True when it ran."""
        interval = self.seconds()
        if not self.task.app.conf.task_always_eager or interval <= 0:
            return False
        now = clock()
        with self._lock:
            if self.last is not None and now - self.last < interval:
                return False
            self.last = now
        try:
            self.task()
        except Exception:
            logger.exception("the embedded %s failed; it runs again later", self.what)
        return True

    def __call__(self, sender=None, **kwargs) -> None:
        """A ``request_finished`` receiver."""
        self.run_if_due()
