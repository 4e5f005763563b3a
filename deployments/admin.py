from django.contrib import admin

from deployments.models import (
    AutomationPolicy,
    GuardrailBreach,
    ModelVersion,
    ModelVersionEvent,
    UseCase,
    UseCaseMembership,
)
from reviewapp.core.admin_mixins import AppendOnlyAdmin, KeepsHistoryAdmin


class MembershipInline(admin.TabularInline):
    model = UseCaseMembership
    extra = 1
    autocomplete_fields = ["user"]


@admin.register(UseCase)
class UseCaseAdmin(KeepsHistoryAdmin):
    list_display = ["slug", "name", "task_type", "prediction_source", "created_at"]
    search_fields = ["slug", "name"]
    inlines = [MembershipInline]

    def get_readonly_fields(self, request, obj=None):
        # The caller-facing contract is fixed once items arrive (see use_case_update).
        if obj is not None and obj.items.exists():
            return ["slug", "task_type", "labels", "features", "prediction_source"]
        return ["slug"] if obj is not None else []


@admin.register(UseCaseMembership)
class UseCaseMembershipAdmin(admin.ModelAdmin):
    list_display = ["use_case", "user", "can_view_pii"]
    list_filter = ["use_case", "can_view_pii"]


@admin.register(AutomationPolicy)
class AutomationPolicyAdmin(AppendOnlyAdmin):
    list_display = [
        "use_case",
        "version",
        "level",
        "confidence_threshold",
        "traffic_percent",
        "audit_rate",
        "author",
        "changed_at",
        "reason",
    ]
    list_filter = ["use_case", "level", "changed_by_system"]


@admin.register(ModelVersion)
class ModelVersionAdmin(KeepsHistoryAdmin):
    list_display = ["use_case", "version", "role", "source", "estimator", "created_at"]
    list_filter = ["use_case", "role", "source"]
    readonly_fields = [
        "use_case",
        "version",
        "role",
        "source",
        "artifact_sha256",
        "artifact_size",
        "estimator",
        "reference_stats",
        "environment",
        "metrics",
        "created_by",
        "created_at",
    ]
    exclude = ["artifact"]

    def has_add_permission(self, request) -> bool:
        return False  # uploads go through the API or the model page, which check the file

    def get_queryset(self, request):
        return super().get_queryset(request).defer("artifact")


@admin.register(ModelVersionEvent)
class ModelVersionEventAdmin(AppendOnlyAdmin):
    list_display = ["use_case", "model_version", "action", "actor", "reason", "created_at"]
    list_filter = ["use_case", "action"]


@admin.register(GuardrailBreach)
class GuardrailBreachAdmin(AppendOnlyAdmin):
    list_display = ["use_case", "guardrail", "observed", "limit", "detected_at", "resolved_at"]
    list_filter = ["use_case", "guardrail"]
