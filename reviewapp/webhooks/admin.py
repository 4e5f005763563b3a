from django.contrib import admin

from reviewapp.webhooks.models import Delivery, Endpoint


@admin.register(Endpoint)
class EndpointAdmin(admin.ModelAdmin):
    list_display = ("id", "url", "active", "paused_at", "created_by", "created_at")
    list_filter = ("active",)
    exclude = ("secret",)  # shown once to its owner, never again


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = ("id", "endpoint", "event", "state", "attempts", "last_status_code")
    list_filter = ("state",)
    raw_id_fields = ("endpoint", "event")
    readonly_fields = [f.name for f in Delivery._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False
