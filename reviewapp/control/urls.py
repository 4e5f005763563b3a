from django.urls import path

from reviewapp.control import views

use_case = "use-cases/<slug:slug>/"

urlpatterns = [
    path("", views.overview, name="control-overview"),
    path("models/", views.models_index, name="control-models-index"),
    path(use_case, views.policy_page, name="control-policy"),
    path(f"{use_case}policy/", views.policy_change_view, name="control-policy-change"),
    path(
        f"{use_case}policy/<int:version>/restore/",
        views.policy_restore_view,
        name="control-policy-restore",
    ),
    path(f"{use_case}guardrails/", views.guardrails_page, name="control-guardrails"),
    path(f"{use_case}guardrails/check/", views.guardrails_check, name="control-guardrails-check"),
    path(
        f"{use_case}breaches/<int:breach_id>/resolve/",
        views.breach_resolve,
        name="control-breach-resolve",
    ),
    path(f"{use_case}ramp/", views.ramp_page, name="control-ramp"),
    path(f"{use_case}ramp/<str:action>/", views.ramp_action, name="control-ramp-action"),
    path(f"{use_case}models/", views.models_page, name="control-models"),
    path(f"{use_case}models/rollback/", views.model_rollback, name="control-model-rollback"),
    path(
        f"{use_case}models/<str:version>/<str:action>/",
        views.model_action,
        name="control-model-action",
    ),
    path(f"{use_case}items/<str:external_id>/", views.item_page, name="control-item"),
    path(f"{use_case}readiness/", views.readiness_page, name="control-readiness"),
    path(f"{use_case}backtests/", views.backtests_page, name="control-backtests"),
    path(f"{use_case}backtests/<uuid:job_id>/", views.backtest_page, name="control-backtest"),
]
