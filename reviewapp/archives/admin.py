from django.contrib import admin

from reviewapp.archives.models import Archive


@admin.register(Archive)
class ArchiveAdmin(admin.ModelAdmin):
    """Read-only: archives are made by the beat or ``archive_history`` and brought back by
    ``restore_archive``; an edit here could break the link between a row and its files."""

    list_display = ["use_case", "cutoff", "state", "items", "items_removed", "created_at"]
    list_filter = ["state", "use_case"]
    readonly_fields = [f.name for f in Archive._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
