from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin

from reviewapp.core.admin_mixins import AppendOnlyAdmin, KeepsHistoryAdmin
from reviewapp.core.models import Job

User = get_user_model()
admin.site.unregister(User)


@admin.register(User)
class AccountAdmin(KeepsHistoryAdmin, UserAdmin):
    """Django's user admin, but an account with history is deactivated, never deleted."""


@admin.register(Job)
class JobAdmin(AppendOnlyAdmin):
    list_display = ["id", "kind", "use_case", "state", "done", "total", "created_at"]
    list_filter = ["kind", "state"]
