from django.contrib import admin


class AppendOnlyAdmin(admin.ModelAdmin):
    """Rows that are history: readable in the admin, never edited or deleted there."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
