"""Fault-injection scenarios on real processes. They are slow, so they run only when asked:

    RELIABILITY=1 .venv/bin/pytest tests/reliability -p no:randomly

``RELIABILITY_SCALE`` = ``small`` (CI: five hundred items) or ``full`` (the default by hand:
ten thousand); ``RELIABILITY_SEEDS`` = how many seeds each scenario repeats over (default 3).
``RELIABILITY_KEEP_LOGS=1`` keeps each deployment's process logs (their folder is printed).
``RELIABILITY_PG_PORT``, ``RELIABILITY_REDIS_PORT``, ``RELIABILITY_WEB_PORT`` fix the ports
(free ones by default). Run without ``-n``: the scenarios share one deployment and load it.

A scenario takes ``stack`` (the shared deployment, healthy again), ``size`` and ``seed``;
builds its own use case with ``stack.world(slug=...)``; injects faults through
``stack.postgres`` / ``stack.redis`` / ``stack.web`` / ``stack.celery[i]``; checks
``oracle.violations(conn)``; and records a row with ``report.result_append``.
"""

import os

import pytest

from tests.reliability.processes import Stack

SIZES = {"small": 500, "full": 10_000}


def pytest_collection_modifyitems(config, items):
    if os.environ.get("RELIABILITY") == "1":
        return
    skip = pytest.mark.skip(reason="fault-injection scenarios run with RELIABILITY=1")
    for item in items:
        if "tests/reliability/" in str(item.fspath):
            item.add_marker(skip)


def pytest_generate_tests(metafunc):
    """Every scenario taking ``seed`` repeats over RELIABILITY_SEEDS seeds."""
    if "seed" in metafunc.fixturenames:
        count = int(os.environ.get("RELIABILITY_SEEDS", "3"))
        metafunc.parametrize("seed", range(1, count + 1))


@pytest.fixture(scope="session")
def scale() -> str:
    return os.environ.get("RELIABILITY_SCALE", "full")


@pytest.fixture(scope="session")
def size(scale) -> int:
    """How many items a scenario pushes through."""
    return SIZES[scale]


@pytest.fixture(scope="session")
def shared_stack():
    """One deployment for the whole run (starting one costs a minute on a busy machine):
    two supervised Celery workers of two children each, beat sweeping every 5 s."""
    stack = Stack(workers=2, concurrency=2, sweeper_seconds=5)
    stack.__enter__()
    yield stack
    if os.environ.get("RELIABILITY_KEEP_LOGS") == "1":
        print(f"process logs: {stack.dir}")
    stack.__exit__(None, None, None)


@pytest.fixture
def stack(shared_stack) -> Stack:
    """The shared deployment, every process up again, whatever the scenario before left."""
    shared_stack.healthy()
    return shared_stack


@pytest.fixture
def stack_factory():
    """``stack_factory(**Stack options)`` starts a deployment; every one is torn down after."""
    stacks: list[Stack] = []

    def start(**options) -> Stack:
        stack = Stack(**options)
        stacks.append(stack)
        stack.__enter__()
        return stack

    yield start
    for stack in stacks:
        if os.environ.get("RELIABILITY_KEEP_LOGS") == "1":
            print(f"process logs: {stack.dir}")
        stack.__exit__(None, None, None)
