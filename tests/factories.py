"""Building blocks for tests: users by role, use cases and models through the real services."""

import functools
import itertools

import numpy as np
import pandas as pd
import skops.io as sio
from django.contrib.auth import get_user_model
from sklearn.compose import ColumnTransformer
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import RandomForestRegressor
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from deployments.models import UseCase, UseCaseMembership
from deployments.services.model_versions import model_version_register
from deployments.services.policies import policy_change
from deployments.services.use_cases import use_case_create
from reviewapp.core.roles import Role, role_groups_ensure

_counter = itertools.count(1)

LABELS = ["travel", "office", "other"]
FEATURES = [
    {"name": "amount", "type": "number", "required": True, "min": 0},
    {"name": "kind", "type": "category", "categories": ["a", "b", "c"], "required": False},
    {"name": "vendor", "type": "string", "required": False, "pii": True},
]
REGRESSION_FEATURES = [
    {"name": "x", "type": "number", "required": True},
    {"name": "y", "type": "number", "required": False},
]


def make_user(role: Role | None = Role.REVIEWER, username: str | None = None):
    groups = role_groups_ensure()
    User = get_user_model()
    user = User.objects.create_user(
        username=username or f"{role.value if role else 'nobody'}{next(_counter)}",
        password="test-pass-123",
    )
    if role is Role.ADMIN:
        user.is_superuser = True
        user.is_staff = True
        user.save()
    if role is not None:
        user.groups.add(groups[role])
    return user


def make_use_case(
    *,
    slug: str | None = None,
    task_type: str = "classification",
    members=(),
    level: str | None = None,
    pii_members=(),
    actor=None,
    **policy,
) -> UseCase:
    actor = actor or make_user(Role.MANAGER)
    classification = task_type == "classification"
    use_case = use_case_create(
        actor=actor,
        slug=slug or f"uc-{next(_counter)}",
        name="Invoice category" if classification else "Amount estimate",
        task_type=task_type,
        features=FEATURES if classification else REGRESSION_FEATURES,
        labels=LABELS if classification else None,
        tolerance=None if classification else 2.0,
        value_min=None if classification else -1000.0,
        value_max=None if classification else 1000.0,
    )
    for user in members:
        UseCaseMembership.objects.get_or_create(use_case=use_case, user=user)
    for user in pii_members:
        UseCaseMembership.objects.update_or_create(
            use_case=use_case, user=user, defaults={"can_view_pii": True}
        )
    if level or policy:
        changes = dict(policy)
        if level:
            changes["level"] = level
        policy_change(use_case=use_case, actor=actor, changes=changes, reason="test set-up")
    return use_case


def training_frame(n: int = 300, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    """Invoices whose category follows from amount and kind (learnable, with some noise)."""
    rng = np.random.default_rng(seed)
    amount = rng.gamma(2.0, 50.0, size=n).round(2)
    kind = rng.choice(["a", "b", "c"], size=n)
    label = np.where(amount > 150, "travel", np.where(kind == "a", "office", "other"))
    flip = rng.random(n) < 0.05
    label[flip] = rng.choice(LABELS, size=flip.sum())
    frame = pd.DataFrame({"amount": amount, "kind": kind, "vendor": ["ACME"] * n})
    return frame, pd.Series(label)


@functools.cache  # deterministic; training once per process keeps set-ups fast
def classifier_bytes(seed: int = 0) -> bytes:
    frame, target = training_frame(seed=seed)
    pipeline = Pipeline(
        [
            (
                "features",
                ColumnTransformer(
                    [
                        ("amount", StandardScaler(), ["amount"]),
                        ("kind", OneHotEncoder(handle_unknown="ignore"), ["kind"]),
                    ]
                ),
            ),
            ("model", LogisticRegression(max_iter=500)),
        ]
    )
    return sio.dumps(pipeline.fit(frame, target))


@functools.cache  # deterministic; training once per process keeps set-ups fast
def constant_classifier_bytes(label: str = "office", confidence: float = 0.8) -> bytes:
    """A model that always answers ``label`` with exactly ``confidence`` (a DummyClassifier
    trained on a label distribution with that share)."""
    n = 1000
    majority = round(n * confidence)
    others = [x for x in LABELS if x != label]
    labels = [label] * majority + [others[i % len(others)] for i in range(n - majority)]
    frame = pd.DataFrame({"amount": np.ones(n), "kind": ["a"] * n, "vendor": [None] * n})
    return sio.dumps(DummyClassifier(strategy="prior").fit(frame, labels))


@functools.cache  # deterministic; training once per process keeps set-ups fast
def regressor_bytes(seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"x": rng.normal(size=400), "y": rng.normal(size=400)})
    target = 3 * frame["x"] - frame["y"] + rng.normal(scale=0.1, size=400)
    pipeline = Pipeline(
        [
            ("features", ColumnTransformer([("num", "passthrough", ["x", "y"])])),
            ("model", RandomForestRegressor(n_estimators=20, random_state=seed)),
        ]
    )
    return sio.dumps(pipeline.fit(frame.fillna(0), target))


def register_model(use_case: UseCase, data: bytes, *, version: str = "v1", actor=None):
    actor = actor or make_user(Role.ML_ENGINEER)
    reference = (
        training_frame()[0]
        if use_case.is_classification
        else pd.DataFrame({"x": np.linspace(-2, 2, 50), "y": np.linspace(-1, 1, 50)})
    )
    return model_version_register(
        use_case=use_case, version=version, data=data, actor=actor, reference=reference
    )


def invoice(n: int, **overrides) -> dict:
    features = {"amount": 10.0 + n, "kind": "abc"[n % 3], "vendor": f"Vendor {n}"}
    features.update(overrides)
    return {"external_id": f"inv-{n}", "features": features}


def send_items(use_case: UseCase, numbers, **overrides) -> list:
    """Send invoices ``inv-<n>`` through the real ingestion service (scored, routed, tasks
    created); return the items."""
    from reviewapp.reviews.services.ingest import item_ingest

    return [item_ingest(use_case=use_case, **invoice(n, **overrides)).item for n in numbers]


def logged_in_client(user):
    """Django's test client with ``user``'s session, for the HTML pages."""
    from django.test import Client

    client = Client()
    client.force_login(user)
    return client
