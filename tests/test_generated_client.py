"""A client generated from the schema by openapi-python-client, used as it comes, drives the
integration a team builds, with no raw HTTP: personal tokens; a use case created, two models
uploaded and one promoted; items sent one by one and in a batch; a reviewer's claims and
decisions; the outcome feed, an item's history, metrics and readiness; an export created and
downloaded; the disagreement stream; the model's artifact; policy changes. Every answer is
parsed into the generated types: an undeclared status or media type would come back as ``None``
or raise."""

import hashlib
import importlib
import io
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet
import pytest
import skops.io
from django.core.management import call_command

from deployments.models import UseCase, UseCaseMembership
from reviewapp.core.roles import Role
from reviewapp.core.tokens import api_token_create
from reviewapp.reviews.services.ingest import item_ingest
from reviewapp.reviews.services.review import review_task_claim, review_task_decide
from tests.factories import (
    classifier_bytes,
    make_use_case,
    make_user,
    register_model,
    regressor_bytes,
)

# Generating takes seconds and the answers depend on no engine: the SQLite pass runs it.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.engine_agnostic]

PACKAGE = "reviewapp_client"


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """The client package, generated from the schema this code serves."""
    where = tmp_path_factory.mktemp("client")
    schema = where / "schema.json"
    call_command("spectacular", "--format", "openapi-json", "--file", str(schema))
    tool = Path(sys.executable).with_name("openapi-python-client")
    subprocess.run(
        [str(tool), "generate", "--path", str(schema), "--meta", "none"]
        + ["--output-path", str(where / PACKAGE)],
        check=True,
        capture_output=True,
        cwd=where,
    )
    sys.path.insert(0, str(where))
    try:
        yield lambda name: importlib.import_module(f"{PACKAGE}.{name}")
    finally:
        sys.path.remove(str(where))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
            del sys.modules[name]


def test_a_generated_client_runs_the_whole_integration(generated, live_server):
    manager = make_user(Role.MANAGER, "mona")
    reviewer = make_user(Role.REVIEWER, "rita")
    _, manager_key = api_token_create(user=manager, name="integration")
    _, reviewer_key = api_token_create(user=reviewer, name="review bot")

    client_module = generated("client")
    models = generated("models")
    types = generated("types")
    # The generated default: "Authorization: Bearer <token>".
    as_manager = client_module.AuthenticatedClient(base_url=live_server.url, token=manager_key)
    as_reviewer = client_module.AuthenticatedClient(base_url=live_server.url, token=reviewer_key)

    # The use case and its model, through the API.
    created = generated("api.use_cases.use_cases_create").sync_detailed(
        client=as_manager,
        body=models.UseCaseInputRequest(
            slug="invoices",
            name="Invoice category",
            task_type=models.TaskTypeEnum.CLASSIFICATION,
            labels=["office", "travel", "other"],
            features=[
                models.FeatureRequest(name="amount", type_=models.TypeEnum.NUMBER, unit="EUR"),
                models.FeatureRequest(
                    name="kind", type_=models.TypeEnum.CATEGORY, categories=["a", "b", "c"]
                ),
                models.FeatureRequest(name="vendor", type_=models.TypeEnum.STRING, required=False),
            ],
        ),
    )
    assert created.status_code == 201, created.content
    assert isinstance(created.parsed, models.UseCaseOutput)
    UseCaseMembership.objects.create(  # the admin's screen adds reviewers
        use_case=UseCase.objects.get(slug="invoices"), user=reviewer
    )
    for version, seed in (("v1", 0), ("v2", 5)):
        uploaded = generated("api.models.models_create").sync_detailed(
            "invoices",
            client=as_manager,
            body=models.UploadInputRequest(
                version=version,
                file=types.File(payload=io.BytesIO(classifier_bytes(seed)), file_name="m.skops"),
                notes="trained on last quarter",
            ),
        )
        assert uploaded.status_code == 201, uploaded.content
        assert isinstance(uploaded.parsed, models.ModelVersionOutput)
    # The first became the champion; the second replaces it.
    promoted = generated("api.models.models_promote_create").sync_detailed(
        "invoices", "v2", client=as_manager, body=models.ReasonInputRequest(reason="retrained")
    )
    assert promoted.status_code == 200, promoted.content
    assert isinstance(promoted.parsed, models.ModelVersionOutput)
    assert promoted.parsed.role == models.RoleEnum.CHAMPION
    twice = generated("api.models.models_promote_create").sync_detailed(
        "invoices", "v2", client=as_manager, body=models.ReasonInputRequest(reason="again")
    )
    assert twice.status_code == 409 and isinstance(twice.parsed, models.Error)
    policy = generated("api.policy.policy_partial_update").sync_detailed(
        "invoices",
        client=as_manager,
        body=models.PatchedPolicyInputRequest(
            level=models.PolicyInputLevelEnum.PARTIAL,
            confidence_threshold=0.99,
            audit_rate=0,
            reason="start with the most confident items",
        ),
    )
    assert policy.status_code == 200, policy.content

    def features(n: int):
        return models.ItemInputRequestFeatures.from_dict(
            {"amount": 20.0 + 40 * n, "kind": "abc"[n % 3], "vendor": f"Vendor {n}"}
        )

    sent = generated("api.items.items_create").sync_detailed(
        "invoices",
        client=as_manager,
        body=models.ItemInputRequest(external_id="inv-0", features=features(0)),
    )
    assert sent.status_code == 201, sent.content
    assert isinstance(sent.parsed, models.ItemOutput)

    batch = generated("api.items.items_batch_create").sync_detailed(
        "invoices",
        client=as_manager,
        body=models.BatchInputRequest(
            items=[
                models.ItemInputRequest(external_id=f"inv-{n}", features=features(n))
                for n in range(1, 4)
            ]
        ),
    )
    assert batch.status_code == 202, batch.content
    assert isinstance(batch.parsed, models.BatchOutput)

    # Bad input is a typed error naming the field, not a crash of the client.
    refused = generated("api.items.items_create").sync_detailed(
        "invoices",
        client=as_manager,
        body=models.ItemInputRequest(
            external_id="inv-x", features=models.ItemInputRequestFeatures.from_dict({})
        ),
    )
    assert refused.status_code == 400
    assert isinstance(refused.parsed, models.Error)

    # The reviewer decides everything the threshold left to people.
    decided = 0
    while True:
        offered = generated("api.review.review_next_create").sync_detailed(
            "invoices", client=as_reviewer
        )
        if offered.status_code == 204:
            break
        assert offered.status_code == 200, offered.content
        task = offered.parsed
        assert isinstance(task, models.TaskOutput)
        answer = generated("api.review.review_tasks_decision_create").sync_detailed(
            task.task,
            client=as_reviewer,
            body=models.DecisionInputRequest(label="travel", lease_token=task.lease_token),
        )
        assert answer.status_code == 201, answer.content
        assert isinstance(answer.parsed, models.DecisionOutput)
        decided += 1
    assert decided >= 1

    feed = generated("api.outcomes.outcomes_list").sync_detailed(
        "invoices", client=as_manager, limit=1000
    )
    assert feed.status_code == 200, feed.content
    assert isinstance(feed.parsed, models.OutcomeFeed)
    outcomes = {o.external_id: o for o in feed.parsed.outcomes}
    assert set(outcomes) == {"inv-0", "inv-1", "inv-2", "inv-3"}
    assert sum(o.decision.source == "human" for o in outcomes.values()) == decided
    again = generated("api.outcomes.outcomes_list").sync_detailed(
        "invoices", client=as_manager, after=feed.parsed.next_
    )
    assert again.status_code == 200 and again.parsed.outcomes == []

    history = generated("api.items.items_history_retrieve").sync_detailed(
        "invoices", "inv-0", client=as_manager
    )
    assert history.status_code == 200, history.content
    assert isinstance(history.parsed, models.ItemHistoryOutput)
    assert history.parsed.predictions[0].routed is True

    metrics = generated("api.monitoring.metrics_retrieve").sync_detailed(
        "invoices", client=as_manager
    )
    assert metrics.status_code == 200, metrics.content
    assert isinstance(metrics.parsed, models.MetricsOutput)
    assert metrics.parsed.items == 4 and metrics.parsed.labelled == decided
    assert metrics.parsed.evidence.automation_rate.method == "wilson"
    assert isinstance(metrics.parsed.mae, types.Unset)  # classification

    readiness = generated("api.monitoring.readiness_retrieve").sync_detailed(
        "invoices", client=as_manager
    )
    assert readiness.status_code == 200, readiness.content
    assert isinstance(readiness.parsed, models.ReadinessOutput)

    export = generated("api.datasets.exports_create").sync_detailed(
        "invoices",
        client=as_manager,
        body=models.ExportInputRequest(format_=models.ExportInputFormatEnum.CSV),
    )
    assert export.status_code in (201, 202), export.content
    assert isinstance(export.parsed, models.ExportOutput)
    done = generated("api.datasets.exports_retrieve").sync_detailed(
        "invoices", str(export.parsed.id), client=as_manager
    )
    assert done.parsed.state == models.ExportStateEnum.READY  # eager: built on commit
    download = generated("api.datasets.exports_download_retrieve").sync_detailed(
        "invoices", str(export.parsed.id), client=as_manager
    )
    assert download.status_code == 200
    assert download.parsed.startswith("external_id,")
    assert hashlib.sha256(download.content).hexdigest() == done.parsed.manifest.file.sha256

    stream = generated("api.datasets.disagreements_retrieve").sync_detailed(
        "invoices", client=as_manager
    )
    assert stream.status_code == 200, stream.content
    assert stream.parsed.startswith("external_id,")  # CSV, the default, is text
    parquet = generated("api.datasets.disagreements_retrieve").sync_detailed(
        "invoices",
        client=as_manager,
        format_=generated("models").DisagreementsRetrieveFormat.PARQUET,
    )
    assert parquet.status_code == 200
    assert pyarrow.parquet.read_table(io.BytesIO(parquet.content)).num_rows == decided

    artifact = generated("api.models.models_artifact_retrieve").sync_detailed(
        "invoices", "v2", client=as_manager
    )
    assert artifact.status_code == 200
    data = artifact.parsed.payload.read()
    model = skops.io.load(io.BytesIO(data), trusted=skops.io.get_untrusted_types(data=data))
    assert hasattr(model, "predict_proba")

    changed = generated("api.policy.policy_partial_update").sync_detailed(
        "invoices",
        client=as_manager,
        body=models.PatchedPolicyInputRequest(
            confidence_threshold=0.95, reason="the reviewers agree with the model"
        ),
    )
    assert changed.status_code == 200, changed.content
    assert isinstance(changed.parsed, models.PolicyOutput)
    assert changed.parsed.confidence_threshold == 0.95
    guarded = generated("api.policy.policy_partial_update").sync_detailed(
        "invoices",
        client=as_manager,
        body=models.PatchedPolicyInputRequest(
            guardrails=models.GuardrailsRequest(
                override_rate=models.RateGuardrailRequest(max_=0.2, window=50)
            ),
            reason="watch the overrides",
        ),
    )
    assert guarded.status_code == 200, guarded.content
    assert guarded.parsed.guardrails.override_rate.max_ == 0.2
    assert guarded.parsed.guardrails.override_rate.window == 50
    # A backtest replays the decided items; its result is typed down to the curve.
    started = generated("api.policy.backtests_create").sync_detailed(
        "invoices", client=as_manager, body=models.BacktestInputRequest(model_version="v2")
    )
    assert started.status_code == 202, started.content
    backtest = generated("api.policy.backtests_retrieve").sync_detailed(
        "invoices", str(started.parsed.job), client=as_manager
    )
    assert backtest.status_code == 200, backtest.content
    result = backtest.parsed.result
    assert result.items == decided and result.model_version == "v2"
    assert len(result.curve.thresholds) == len(result.curve.automated) == 100
    assert result.replay.routes_now.auto + result.replay.routes_now.assisted <= decided

    # A regression use case's figures differ (errors, not accuracy): typed as well.
    amounts = make_use_case(
        slug="amounts", task_type="regression", actor=manager, members=[manager, reviewer],
        level="assisted", audit_rate=0,
    )  # fmt: skip
    register_model(amounts, regressor_bytes())
    for n in range(3):
        item_ingest(use_case=amounts, external_id=f"a-{n}", features={"x": n / 2, "y": 1.0})
    while (task := review_task_claim(use_case=amounts, user=reviewer)) is not None:
        review_task_decide(task=task, user=reviewer, value=2.5)
    metrics = generated("api.monitoring.metrics_retrieve").sync_detailed(
        "amounts", client=as_manager
    )
    assert metrics.status_code == 200, metrics.content
    assert isinstance(metrics.parsed, models.MetricsOutput)
    assert metrics.parsed.labelled == 3 and metrics.parsed.mae > 0
    assert metrics.parsed.evidence.mae.n == 3
    assert isinstance(metrics.parsed.accuracy, types.Unset)
    history = generated("api.items.items_history_retrieve").sync_detailed(
        "amounts", "a-0", client=as_manager
    )
    assert history.parsed.decisions[0].value == 2.5

    unauthorised = client_module.AuthenticatedClient(base_url=live_server.url, token="rvt_nope")
    denied = generated("api.outcomes.outcomes_list").sync_detailed("invoices", client=unauthorised)
    assert denied.status_code == 401
    assert isinstance(denied.parsed, models.Error)
