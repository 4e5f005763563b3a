"""The simulated people and systems of bench_load.py, for Locust (not a benchmark itself: run.py
runs ``bench_*.py`` only). Locust imports this file with gevent's monkey patching, so it
imports neither Django nor the app: everything it needs is in the JSON plan that
``LOAD_PLAN`` names (use cases, tokens, a manager's session, feature rows, batch sizes).

Every request is named by operation; an outcome the API defines for an expected situation is
reported under its own name rather than folded into the errors or hidden among the successes:
``claim: nothing waiting`` (204) and ``decide: lease lost`` (409). Anything else that is not
the operation's success status is a failure.
"""

import itertools
import json
import os
import random
import time
import uuid
from pathlib import Path

from locust import HttpUser, between, constant, task

PLAN = json.loads(Path(os.environ["LOAD_PLAN"]).read_text())
_reviewers = itertools.cycle(PLAN["reviewers"])  # (slug, token), one per simulated reviewer
_slugs = [use_case["slug"] for use_case in PLAN["use_cases"]]
_labels = PLAN["labels"]


def _expect(response, status: int) -> None:
    if response.status_code == status:
        response.success()
    elif response.status_code == 0:  # no answer: the connection failed or was closed
        response.failure(repr(response.error))
    else:
        response.failure(f"{response.status_code}: {response.text[:200]}")


class Reviewer(HttpUser):
    """Claims the next task of its use case, looks at it, decides; mostly agrees with the
    suggestion when there is one."""

    wait_time = between(*PLAN["reviewer_think_seconds"])

    def on_start(self) -> None:
        self.slug, token = next(_reviewers)
        self.client.headers["Authorization"] = f"Token {token}"

    @task
    def review(self) -> None:
        with self.client.post(
            f"/api/v1/use-cases/{self.slug}/review/next/",
            name="claim (review-next)",
            catch_response=True,
        ) as response:
            if response.status_code == 204:
                response.request_meta["name"] = "claim: nothing waiting (204)"
                response.success()
                return
            _expect(response, 200)
            if response.status_code != 200:
                return
            claimed = response.json()
        suggestion = claimed.get("suggestion") or {}
        label = suggestion.get("label") if random.random() < 0.8 else None
        with self.client.post(
            f"/api/v1/review/tasks/{claimed['task']}/decision/",
            json={"label": label or random.choice(_labels), "lease_token": claimed["lease_token"]},
            name="decide",
            catch_response=True,
        ) as response:
            if response.status_code == 409:
                response.request_meta["name"] = "decide: lease lost (409)"
                response.success()
                return
            _expect(response, 201)


def _item(prefix: str) -> dict:
    return {
        "external_id": f"{prefix}-{uuid.uuid4().hex}",
        "features": random.choice(PLAN["rows"]),
    }


class RealtimeUpstream(HttpUser):
    """An upstream system sending single items and waiting for each answer."""

    fixed_count = PLAN["realtime_upstreams"]
    wait_time = between(*PLAN["realtime_wait_seconds"])

    def on_start(self) -> None:
        self.client.headers["Authorization"] = f"Token {PLAN['integration_token']}"

    @task
    def send(self) -> None:
        with self.client.post(
            f"/api/v1/use-cases/{random.choice(_slugs)}/items/",
            json=_item("rt"),
            name="ingest realtime item",
            catch_response=True,
        ) as response:
            _expect(response, 201)


class BatchUpstream(HttpUser):
    """An upstream system sending a batch now and then and waiting for its job."""

    fixed_count = 1
    wait_time = constant(PLAN["batch_every_seconds"])

    def on_start(self) -> None:
        self.client.headers["Authorization"] = f"Token {PLAN['integration_token']}"

    @task
    def send(self) -> None:
        items = [_item("b") for _ in range(PLAN["batch_size"])]
        with self.client.post(
            f"/api/v1/use-cases/{random.choice(_slugs)}/items/batch/",
            json={"items": items},
            name=f"ingest batch ({PLAN['batch_size']} items)",
            catch_response=True,
        ) as response:
            _expect(response, 202)
            if response.status_code != 202:
                return
            job = response.json()["job"]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with self.client.get(
                f"/api/v1/jobs/{job}/", name="batch job status", catch_response=True
            ) as response:
                _expect(response, 200)
                state = response.json().get("state") if response.status_code == 200 else None
                if state == "failed":
                    response.failure(f"job failed: {response.text[:200]}")
            if state in ("done", "failed", None):
                return
            time.sleep(0.5)


class Manager(HttpUser):
    """A manager reading a use case's dashboard (signed in) and exporting its disagreements."""

    fixed_count = 1
    wait_time = between(*PLAN["manager_wait_seconds"])

    def on_start(self) -> None:
        self.client.cookies.set("sessionid", PLAN["manager_session"])

    @task(3)
    def dashboard(self) -> None:
        with self.client.get(
            f"/monitoring/{random.choice(_slugs)}/",
            name="dashboard page",
            catch_response=True,
            allow_redirects=False,
        ) as response:
            _expect(response, 200)

    @task(1)
    def export(self) -> None:
        with self.client.get(
            f"/api/v1/use-cases/{random.choice(_slugs)}/disagreements/?format=csv",
            headers={"Authorization": f"Token {PLAN['manager_token']}"},
            name="export disagreements (CSV)",
            catch_response=True,
        ) as response:
            _expect(response, 200)
