from django.contrib import admin

from reviewapp.core.admin_mixins import AppendOnlyAdmin
from reviewapp.reviews.models import Decision, Disagreement, Item, Prediction, ReviewTask, TaskSkip


@admin.register(Item)
class ItemAdmin(AppendOnlyAdmin):
    list_display = ["external_id", "use_case", "status", "route", "decision_source", "received_at"]
    list_filter = ["use_case", "status", "route"]
    search_fields = ["external_id"]
    list_select_related = ["use_case"]


@admin.register(Prediction)
class PredictionAdmin(AppendOnlyAdmin):
    list_display = ["item", "model_version", "label", "value", "confidence", "error", "created_at"]
    list_filter = ["use_case", "model_version"]
    list_select_related = ["item", "model_version__use_case"]


@admin.register(ReviewTask)
class ReviewTaskAdmin(AppendOnlyAdmin):
    list_display = [
        "id",
        "item",
        "reason",
        "show_suggestion",
        "state",
        "claimed_by",
        "lease_expires_at",
        "created_at",
    ]
    list_filter = ["use_case", "state", "reason"]
    list_select_related = ["item", "claimed_by"]


@admin.register(TaskSkip)
class TaskSkipAdmin(AppendOnlyAdmin):
    list_display = ["task", "user", "created_at"]


@admin.register(Decision)
class DecisionAdmin(AppendOnlyAdmin):
    list_display = ["item", "reviewer", "label", "value", "kind", "created_at"]
    list_filter = ["use_case", "kind"]
    list_select_related = ["item", "reviewer"]


@admin.register(Disagreement)
class DisagreementAdmin(AppendOnlyAdmin):
    list_display = ["item", "kind", "model_version", "model_label", "human_label", "decided_at"]
    list_filter = ["use_case", "kind"]
    list_select_related = ["item", "model_version__use_case"]
