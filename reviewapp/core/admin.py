from django.contrib import admin

from reviewapp.core.admin_mixins import AppendOnlyAdmin
from reviewapp.core.models import Job


@admin.register(Job)
class JobAdmin(AppendOnlyAdmin):
    list_display = ["id", "kind", "use_case", "state", "done", "total", "created_at"]
    list_filter = ["kind", "state"]
