import json

from django.contrib import admin
from django.utils.html import format_html

from reviewapp.archives.models import Archive


@admin.register(Archive)
class ArchiveAdmin(admin.ModelAdmin):
    """Read-only: archives are made by the beat or ``archive_history`` and brought back by
    ``restore_archive``; an edit here could break the link between a row and its files."""

    list_display = ["use_case", "cutoff", "state", "items", "items_removed", "items_kept"]
    list_filter = ["state", "use_case"]
    list_select_related = ["use_case"]
    exclude = ["manifest"]
    readonly_fields = [
        *(f.name for f in Archive._meta.fields if f.name != "manifest"),
        "manifest_shown",
    ]

    @admin.display(description="Manifest")
    def manifest_shown(self, archive: Archive) -> str:
        return format_html(
            '<pre style="white-space: pre-wrap; margin: 0">{}</pre>',
            json.dumps(archive.manifest, indent=2, sort_keys=True),
        )

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
