from django.urls import path

from reviewapp.webhooks import views

app_name = "webhooks"

urlpatterns = [
    path("", views.webhooks, name="page"),
    path("new/", views.webhook_create, name="create"),
    path(
        "<int:endpoint_id>/<str:action>/",
        views.webhook_action,
        name="action",
    ),
    path(
        "<int:endpoint_id>/deliveries/<int:delivery_id>/retry/",
        views.delivery_retry_view,
        name="retry",
    ),
]
