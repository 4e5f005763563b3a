"""Reviewer clients as separate processes, each with its own HTTP session and token, looping
claim -> decide over the public API until the queue has nothing left for them.

Nothing here imports Django: a client only knows the API, as a real reviewer's tool would.
Every client records what it saw (each claim with the lease it was given, each decision the
server acknowledged) so the scenarios can hold the database to it afterwards.
"""

import multiprocessing
import random
import time
import uuid
from dataclasses import dataclass, field

import requests

# A decision lost to a dropped connection or a 5xx is sent again with the same
# Idempotency-Key: that is what the key is for, and it must never decide twice.
DECISION_ATTEMPTS = 5
RETRY_PAUSE_SECONDS = 0.2


@dataclass(frozen=True)
class ReviewerConfig:
    base_url: str
    slug: str
    token: str
    name: str
    labels: tuple[str, ...]
    seed: int
    deadline_seconds: float = 600.0


@dataclass
class Claim:
    task: str
    external_id: str
    reviewer: str
    lease_token: str
    lease_expires_at: str
    claimed_at: float  # the client's wall clock when the answer arrived


@dataclass
class ReviewerReport:
    name: str
    claims: list[Claim] = field(default_factory=list)
    # (task, external_id, label) for every decision answered 201
    acknowledged: list[tuple[str, str, str]] = field(default_factory=list)
    conflicts: int = 0
    retries: int = 0
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    timed_out: bool = False


def api_session(token: str) -> requests.Session:
    session = requests.Session()
    session.headers["Authorization"] = f"Token {token}"
    return session


def _decide(session, config: ReviewerConfig, task: dict, label: str, report: ReviewerReport):
    url = f"{config.base_url}/api/v1/review/tasks/{task['task']}/decision/"
    body = {"label": label, "lease_token": task["lease_token"]}
    headers = {"Idempotency-Key": f"{config.name}-{uuid.uuid4()}"}
    for attempt in range(DECISION_ATTEMPTS):
        try:
            response = session.post(url, json=body, headers=headers, timeout=30)
        except requests.RequestException as exc:
            last = f"decide {type(exc).__name__}"
        else:
            if response.status_code == 201:
                report.acknowledged.append((task["task"], task["external_id"], label))
                return
            if response.status_code == 409:
                report.conflicts += 1
                return
            last = f"decide {response.status_code} {response.text[:200]}"
            if response.status_code < 500:
                break
        report.retries += attempt < DECISION_ATTEMPTS - 1
        time.sleep(RETRY_PAUSE_SECONDS)
    report.errors.append(last)


def reviewer_loop(config: ReviewerConfig) -> ReviewerReport:
    """Claim and decide until the server answers 204 (nothing left for this reviewer)."""
    rng = random.Random(config.seed)
    session = api_session(config.token)
    report = ReviewerReport(name=config.name)
    started = time.monotonic()
    next_url = f"{config.base_url}/api/v1/use-cases/{config.slug}/review/next/"
    while True:
        if time.monotonic() - started > config.deadline_seconds:
            report.timed_out = True
            break
        try:
            response = session.post(next_url, timeout=30)
        except requests.RequestException as exc:
            report.errors.append(f"next {type(exc).__name__}")
            time.sleep(RETRY_PAUSE_SECONDS)
            continue
        if response.status_code == 204:
            break
        if response.status_code != 200:
            report.errors.append(f"next {response.status_code} {response.text[:200]}")
            if response.status_code < 500:
                break
            time.sleep(RETRY_PAUSE_SECONDS)
            continue
        task = response.json()
        report.claims.append(
            Claim(
                task=task["task"],
                external_id=task["external_id"],
                reviewer=config.name,
                lease_token=task["lease_token"],
                lease_expires_at=task["lease_expires_at"],
                claimed_at=time.time(),
            )
        )
        _decide(session, config, task, rng.choice(config.labels), report)
    report.seconds = time.monotonic() - started
    return report


def reviewers_run(configs: list[ReviewerConfig]) -> list[ReviewerReport]:
    """Run one process per reviewer at once; their reports, in the order given.

    Spawned, not forked: the parent holds database connections and threads that a fork would
    copy half-way.
    """
    context = multiprocessing.get_context("spawn")
    with context.Pool(processes=len(configs)) as pool:
        return pool.map(reviewer_loop, configs, chunksize=1)
