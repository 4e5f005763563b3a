from django.contrib import admin

from reviewapp.core.admin_mixins import AppendOnlyAdmin
from reviewapp.datasets.models import Export, TrainingRun


@admin.register(Export)
class ExportAdmin(AppendOnlyAdmin):
    list_display = ["id", "use_case", "scope", "format", "pii", "state", "row_count", "created_at"]
    list_filter = ["use_case", "scope", "format", "state"]
    list_select_related = ["use_case"]


@admin.register(TrainingRun)
class TrainingRunAdmin(AppendOnlyAdmin):
    list_display = ["id", "use_case", "version", "state", "created_at", "finished_at"]
    list_filter = ["use_case", "state"]
    list_select_related = ["use_case"]
