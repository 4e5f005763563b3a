from django.urls import path

from deployments import api as deployments_api
from reviewapp.control import api as control_api
from reviewapp.core import jobs_api, tokens_api
from reviewapp.datasets import api as datasets_api
from reviewapp.monitoring import api as monitoring_api
from reviewapp.reviews import api as reviews_api
from reviewapp.reviews import outcomes_api
from reviewapp.webhooks import api as webhooks_api

use_case = "use-cases/<slug:slug>/"

urlpatterns = [
    path("tokens/", tokens_api.TokenListApi.as_view(), name="api-tokens"),
    path("tokens/<str:token_id>/", tokens_api.TokenDetailApi.as_view(), name="api-token"),
    path("use-cases/", deployments_api.UseCaseListApi.as_view(), name="api-use-cases"),
    path(use_case, deployments_api.UseCaseDetailApi.as_view(), name="api-use-case"),
    path(f"{use_case}policy/", deployments_api.PolicyApi.as_view(), name="api-policy"),
    path(
        f"{use_case}policy/history/",
        deployments_api.PolicyHistoryApi.as_view(),
        name="api-policy-history",
    ),
    path(
        f"{use_case}change-requests/",
        deployments_api.ChangeRequestListApi.as_view(),
        name="api-change-requests",
    ),
    path(
        f"{use_case}change-requests/<int:request_id>/approve/",
        deployments_api.ChangeRequestApproveApi.as_view(),
        name="api-change-request-approve",
    ),
    path(
        f"{use_case}change-requests/<int:request_id>/reject/",
        deployments_api.ChangeRequestRejectApi.as_view(),
        name="api-change-request-reject",
    ),
    path(
        f"{use_case}policy/history/<int:version>/restore/",
        deployments_api.PolicyRestoreApi.as_view(),
        name="api-policy-restore",
    ),
    path(f"{use_case}models/", deployments_api.ModelVersionListApi.as_view(), name="api-models"),
    path(
        f"{use_case}models/rollback/",
        deployments_api.ModelRollbackApi.as_view(),
        name="api-model-rollback",
    ),
    path(
        f"{use_case}models/<str:version>/promote/",
        deployments_api.ModelPromoteApi.as_view(),
        name="api-model-promote",
    ),
    path(
        f"{use_case}models/<str:version>/artifact/",
        deployments_api.ModelArtifactApi.as_view(),
        name="api-model-artifact",
    ),
    path(
        f"{use_case}models/<str:version>/challenge/",
        deployments_api.ModelChallengeApi.as_view(),
        name="api-model-challenge",
    ),
    path(
        f"{use_case}backtests/",
        control_api.BacktestListApi.as_view(),
        name="api-backtests",
    ),
    path(
        f"{use_case}backtests/<str:job_id>/",
        control_api.BacktestDetailApi.as_view(),
        name="api-backtest",
    ),
    path(f"{use_case}readiness/", control_api.ReadinessApi.as_view(), name="api-readiness"),
    path(f"{use_case}slices/", control_api.SlicesApi.as_view(), name="api-slices"),
    path(f"{use_case}items/", reviews_api.ItemIngestApi.as_view(), name="api-items"),
    path(f"{use_case}items/batch/", reviews_api.ItemBatchApi.as_view(), name="api-items-batch"),
    path(
        f"{use_case}items/<str:external_id>/",
        reviews_api.ItemDetailApi.as_view(),
        name="api-item",
    ),
    path(f"{use_case}review/next/", reviews_api.ReviewNextApi.as_view(), name="api-review-next"),
    path(
        "review/tasks/<str:task_id>/decision/",
        reviews_api.DecisionApi.as_view(),
        name="api-review-decision",
    ),
    path("review/tasks/<str:task_id>/skip/", reviews_api.SkipApi.as_view(), name="api-review-skip"),
    path(
        f"{use_case}disagreements/",
        datasets_api.DisagreementExportApi.as_view(),
        name="api-disagreements",
    ),
    path(f"{use_case}outcomes/", outcomes_api.OutcomeFeedApi.as_view(), name="api-outcomes"),
    path(f"{use_case}metrics/", monitoring_api.MetricsApi.as_view(), name="api-metrics"),
    path("jobs/<str:job_id>/", jobs_api.JobDetailApi.as_view(), name="api-job"),
    path(
        f"{use_case}disagreements/matrix/",
        datasets_api.DisagreementMatrixApi.as_view(),
        name="api-disagreement-matrix",
    ),
    path(
        f"{use_case}items/<str:external_id>/history/",
        datasets_api.ItemHistoryApi.as_view(),
        name="api-item-history",
    ),
    path(f"{use_case}exports/", datasets_api.ExportListApi.as_view(), name="api-exports"),
    path(
        f"{use_case}exports/<str:export_id>/",
        datasets_api.ExportDetailApi.as_view(),
        name="api-export",
    ),
    path(
        f"{use_case}exports/<str:export_id>/download/",
        datasets_api.ExportDownloadApi.as_view(),
        name="api-export-download",
    ),
    path(
        f"{use_case}retrainings/",
        datasets_api.TrainingRunListApi.as_view(),
        name="api-retrainings",
    ),
    path(
        f"{use_case}retrainings/<str:run_id>/",
        datasets_api.TrainingRunDetailApi.as_view(),
        name="api-retraining",
    ),
    path("webhooks/", webhooks_api.WebhookListApi.as_view(), name="api-webhooks"),
    path("webhooks/<str:webhook_id>/", webhooks_api.WebhookDetailApi.as_view(), name="api-webhook"),
    path(
        "webhooks/<str:webhook_id>/secret/",
        webhooks_api.WebhookSecretApi.as_view(),
        name="api-webhook-secret",
    ),
    path(
        "webhooks/<str:webhook_id>/test/",
        webhooks_api.WebhookTestApi.as_view(),
        name="api-webhook-test",
    ),
    path(
        "webhooks/<str:webhook_id>/deliveries/",
        webhooks_api.WebhookDeliveriesApi.as_view(),
        name="api-webhook-deliveries",
    ),
    path(
        "webhooks/<str:webhook_id>/deliveries/<str:delivery_id>/retry/",
        webhooks_api.WebhookRetryApi.as_view(),
        name="api-webhook-retry",
    ),
]
