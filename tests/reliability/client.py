"""HTTP load against the deployment, as an upstream system would send it, recording what the
server acknowledged so the oracle can check that every acknowledged write is in the database."""

import random
import threading
import time
from dataclasses import dataclass, field

import requests

from tests.factories import invoice


@dataclass
class Ledger:
    """What clients saw: status codes, and the external ids the server said it stored."""

    statuses: dict[int, int] = field(default_factory=dict)
    acknowledged: set[str] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, status: int, error: str = "") -> None:
        """``status`` 0 stands for no answer at all (connection refused or reset)."""
        with self.lock:
            self.statuses[status] = self.statuses.get(status, 0) + 1
            if error and len(self.errors) < 20:
                self.errors.append(error)

    def count(self, predicate) -> int:
        return sum(n for status, n in self.statuses.items() if predicate(status))

    @property
    def server_errors(self) -> int:
        """5xx other than a 503 (the documented "retry shortly")."""
        return self.count(lambda s: s >= 500 and s != 503)


class Api:
    def __init__(self, base_url: str, token: str, slug: str):
        self.base = base_url
        self.slug = slug
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Token {token}"

    def batch(self, rows: list[dict], *, timeout: float = 120) -> requests.Response:
        return self.session.post(
            f"{self.base}/api/v1/use-cases/{self.slug}/items/batch/",
            json={"items": rows},
            timeout=timeout,
        )

    def item(self, row: dict, *, timeout: float = 30) -> requests.Response:
        return self.session.post(
            f"{self.base}/api/v1/use-cases/{self.slug}/items/", json=row, timeout=timeout
        )


def rows(start: int, count: int, *, prefix: str = "inv") -> list[dict]:
    out = []
    for n in range(start, start + count):
        row = invoice(n)
        row["external_id"] = f"{prefix}-{n}"
        out.append(row)
    return out


def send_until_acknowledged(
    send, row_ids: list[str], ledger: Ledger, *, deadline: float, pause: float = 0.3
) -> bool:
    """Call ``send()`` until the server acknowledges it (2xx) or ``deadline`` passes, recording
    every answer; resending is safe because ingestion is idempotent on ``external_id``."""
    while time.monotonic() < deadline:
        try:
            response = send()
        except requests.RequestException as exc:
            ledger.record(0, error=type(exc).__name__)
            time.sleep(pause)
            continue
        body = response.text[:300] if response.status_code >= 500 else ""
        ledger.record(response.status_code, error=body)
        if response.status_code < 300:
            with ledger.lock:
                ledger.acknowledged.update(row_ids)
            return True
        time.sleep(pause + random.random() * pause)
    return False
