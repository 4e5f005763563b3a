"""8. Promote and roll back model versions while items are being scored.

Twenty promote/rollback calls at once, with realtime items arriving all the while: exactly one
champion at every instant (sampled continuously; the database holds it with a partial unique
index), every prediction was made by the version it names, every change has its audit row.
"""

import io
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from tests.factories import constant_classifier_bytes
from tests.reliability import oracle
from tests.reliability.client import rows
from tests.reliability.clients import api_session
from tests.reliability.report import result_append

CALLS = 20
SCORERS = 3  # upstream callers sending realtime items throughout
# Constant models: whatever the item, each answers with its own label and confidence, so a
# prediction shows which version really made it.
SIGNATURES = {"v2": ("travel", 0.9), "v3": ("other", 0.8)}

CHAMPION_INDEX = """
    SELECT indexdef FROM pg_indexes WHERE indexname = 'one_champion_per_use_case'"""
CHAMPIONS = """
    SELECT count(*) FROM deployments_modelversion WHERE use_case_id = %s AND role = 'champion'"""
CHANGES = """
    SELECT count(*) FROM deployments_modelversionevent
    WHERE use_case_id = %s AND action IN ('promote', 'rollback')"""
PREDICTIONS = """
    SELECT i.external_id, v.version, p.label, p.confidence, i.prediction_id = p.id
    FROM reviews_prediction p
    JOIN deployments_modelversion v ON v.id = p.model_version_id
    JOIN reviews_item i ON i.id = p.item_id
    WHERE p.use_case_id = %s AND p.error = ''"""


def made_by_another(version: str, label: str, confidence: float) -> bool:
    """Whether the answer cannot have come from ``version``."""
    if version in SIGNATURES:
        expected_label, expected_confidence = SIGNATURES[version]
        return label != expected_label or abs(confidence - expected_confidence) > 1e-6
    # v1 is a trained model: it cannot give a constant model's exact answer
    return any(
        label == sig_label and abs(confidence - sig_confidence) < 1e-9
        for sig_label, sig_confidence in SIGNATURES.values()
    )


def model_upload(session, base: str, version: str) -> None:
    label, confidence = SIGNATURES[version]
    response = session.post(
        f"{base}/models/",
        data={"version": version},
        files={
            "file": (f"{version}.skops", io.BytesIO(constant_classifier_bytes(label, confidence)))
        },
        timeout=300,
    )
    assert response.status_code == 201, response.text[:500]


class ChampionSampler(threading.Thread):
    """Counts the use case's champions over and over on its own connection."""

    def __init__(self, stack, use_case: int):
        super().__init__(daemon=True)
        self.conn = stack.postgres.connect()
        self.use_case = use_case
        self.samples = 0
        self.not_one = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            champions = self.conn.execute(CHAMPIONS, [self.use_case]).fetchone()[0]
            self.samples += 1
            self.not_one += champions != 1
        self.conn.close()


class Scorer(threading.Thread):
    """Sends realtime items until stopped; keeps what each answer said about its prediction."""

    def __init__(self, session, base: str, prefix: str):
        super().__init__(daemon=True)
        self.session, self.base, self.prefix = session, base, prefix
        self.answers: dict[str, dict | None] = {}
        self.failures = 0
        self.done = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.done.is_set():
            row = rows(n, 1, prefix=self.prefix)[0]
            n += 1
            try:
                response = self.session.post(f"{self.base}/items/", json=row, timeout=30)
            except requests.RequestException:
                self.failures += 1
                continue
            if response.status_code == 201:
                self.answers[row["external_id"]] = response.json()["prediction"]
            else:
                self.failures += 1


def test_promote_and_rollback_under_load_keep_one_champion(stack, seed):
    rng = random.Random(seed)
    world = stack.world(slug=f"promo-{seed}", level="assisted", reviewers=0)
    use_case = world["use_case_id"]
    base = f"{stack.web.url}/api/v1/use-cases/{world['slug']}"
    # The manager owns models too and, unlike the world's ML engineer, is a member here.
    owner = api_session(world["manager"])
    for version in SIGNATURES:
        model_upload(owner, base, version)
    first = owner.post(f"{base}/models/v2/promote/", json={"reason": "start"}, timeout=60)
    assert first.status_code == 200
    conn = stack.postgres.connect()
    index = conn.execute(CHAMPION_INDEX).fetchone()
    changes_before = conn.execute(CHANGES, [use_case]).fetchone()[0]

    sampler = ChampionSampler(stack, use_case)
    scorers = [
        Scorer(api_session(world["manager"]), base, prefix=f"promo{seed}-{n}")
        for n in range(SCORERS)
    ]
    sampler.start()
    for scorer in scorers:
        scorer.start()
    time.sleep(1.0)  # scoring is under way before the first change
    calls = [rng.choice(["v2/promote", "v3/promote", "rollback"]) for _ in range(CALLS)]
    barrier = threading.Barrier(CALLS)
    sessions = [api_session(world["manager"]) for _ in calls]

    def call(index_and_path):
        n, path = index_and_path
        url = f"{base}/models/{path}/"
        barrier.wait(timeout=60)
        return sessions[n].post(url, json={"reason": f"seed {seed} call {n}"}, timeout=120)

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=CALLS) as pool:
        answers = list(pool.map(call, enumerate(calls)))
    storm = time.monotonic() - started
    time.sleep(1.0)  # and goes on after the last
    for scorer in scorers:
        scorer.done.set()
        scorer.join(timeout=60)
    answered = {ext: answer for scorer in scorers for ext, answer in scorer.answers.items()}
    sampler.done.set()
    sampler.join(timeout=60)

    applied = sum(a.status_code == 200 for a in answers)
    refused = sum(a.status_code == 409 for a in answers)
    predictions = conn.execute(PREDICTIONS, [use_case]).fetchall()
    routing = {ext: version for ext, version, _, _, routed in predictions if routed}
    violations = {
        "champion_index_missing": int(
            index is None or "UNIQUE" not in index[0] or "champion" not in index[0]
        ),
        "champion_samples_not_one": sampler.not_one,
        "champions_at_end_not_one": int(conn.execute(CHAMPIONS, [use_case]).fetchone()[0] != 1),
        "calls_neither_200_nor_409": len(answers) - applied - refused,
        "prediction_not_by_named_version": sum(
            made_by_another(version, label, confidence)
            for _, version, label, confidence, _ in predictions
        ),
        "answer_names_other_version": sum(
            answer is not None and routing.get(ext) != answer["model_version"]
            for ext, answer in answered.items()
        ),
        "changes_without_audit_row": abs(
            conn.execute(CHANGES, [use_case]).fetchone()[0] - changes_before - applied
        ),
        "scoring_failures": sum(scorer.failures for scorer in scorers),
        **oracle.violations(conn),
    }
    conn.close()
    result_append(
        scenario="8 promote/rollback under load",
        size=CALLS,
        seed=seed,
        faults={"concurrent_changes": CALLS},
        violations=violations,
        load={
            "changes_applied": applied,
            "conflicts_409": refused,
            "items_scored": len(answered),
            "champion_samples": sampler.samples,
            "storm_s": storm,
        },
        duration_s=storm + 2,
    )
    assert violations == dict.fromkeys(violations, 0), violations
    assert answered and sampler.samples > CALLS
