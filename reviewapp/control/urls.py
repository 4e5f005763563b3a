from django.urls import path

from reviewapp.control.views import (
    backtests,
    change_requests,
    models,
    overview,
    policy,
    ramp,
    readiness,
    reviewers,
)

use_case = "use-cases/<slug:slug>/"

urlpatterns = [
    path("", overview.overview, name="control-overview"),
    path("models/", overview.models_index, name="control-models-index"),
    path(use_case, policy.policy_page, name="control-policy"),
    path(f"{use_case}policy/", policy.policy_change_view, name="control-policy-change"),
    path(
        f"{use_case}policy/<int:version>/restore/",
        policy.policy_restore_view,
        name="control-policy-restore",
    ),
    path(f"{use_case}four-eyes/", change_requests.four_eyes_set, name="control-four-eyes"),
    path(f"{use_case}gold-rate/", change_requests.gold_rate_set, name="control-gold-rate"),
    path(f"{use_case}queue-order/", change_requests.queue_order_set, name="control-queue-order"),
    path(f"{use_case}costs/", change_requests.costs_set, name="control-costs"),
    path(
        f"{use_case}suggestion-preselected/",
        change_requests.suggestion_preselected_set,
        name="control-suggestion-preselected",
    ),
    path(
        f"{use_case}change-requests/<int:request_id>/<str:action>/",
        change_requests.change_request_decide,
        name="control-change-request",
    ),
    path(f"{use_case}guardrails/", policy.guardrails_page, name="control-guardrails"),
    path(f"{use_case}guardrails/check/", policy.guardrails_check, name="control-guardrails-check"),
    path(
        f"{use_case}breaches/<int:breach_id>/resolve/",
        policy.breach_resolve,
        name="control-breach-resolve",
    ),
    path(f"{use_case}ramp/", ramp.ramp_page, name="control-ramp"),
    path(f"{use_case}ramp/<str:action>/", ramp.ramp_action, name="control-ramp-action"),
    path(f"{use_case}models/", models.models_page, name="control-models"),
    path(f"{use_case}models/rollback/", models.model_rollback, name="control-model-rollback"),
    path(
        f"{use_case}models/<str:version>/<str:action>/",
        models.model_action,
        name="control-model-action",
    ),
    path(f"{use_case}items/<str:external_id>/", models.item_page, name="control-item"),
    path(f"{use_case}readiness/", readiness.readiness_page, name="control-readiness"),
    path(f"{use_case}reviewers/", reviewers.reviewers_page, name="control-reviewers"),
    path(f"{use_case}backtests/", backtests.backtests_page, name="control-backtests"),
    path(f"{use_case}backtests/<uuid:job_id>/", backtests.backtest_page, name="control-backtest"),
]
