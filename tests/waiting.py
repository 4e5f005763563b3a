"""Waiting for another process (a Celery worker, a receiver) without depending on its speed:
a condition polled until it holds, with a generous deadline."""

import time


def wait_for(condition, seconds: float = 90, *, interval: float = 0.25) -> bool:
    """Poll ``condition()`` until it is true (True) or ``seconds`` have passed (False)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True
