from django.contrib import admin

from reviewapp.core.append_only import history_kept_by


class AppendOnlyAdmin(admin.ModelAdmin):
    """Rows that are history: readable in the admin, never edited or deleted there."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class KeepsHistoryAdmin(admin.ModelAdmin):
    """Rows that history refers to (an account that decided, a use case with items, a model
    version that scored) are not offered for deletion: the delete button is gone and "delete
    selected" lists them as refused. Deactivate or retire them instead."""

    def has_delete_permission(self, request, obj=None) -> bool:
        if obj is not None and history_kept_by(obj):
            return False
        return super().has_delete_permission(request, obj)
