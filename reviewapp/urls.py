from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularSwaggerSplitView

from reviewapp.core import views as core_views
from reviewapp.monitoring import api as monitoring_api
from reviewapp.reviews import views as reviews_views

urlpatterns = [
    path("", reviews_views.home, name="home"),
    path("healthz", core_views.healthz, name="healthz"),
    path("accounts/login/", core_views.ThrottledLoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("", include("reviewapp.reviews.urls")),
    path("control/", include("reviewapp.control.urls")),
    path("datasets/", include("reviewapp.datasets.urls")),
    path("api/v1/", include("reviewapp.api_urls")),
    path("monitoring/", include("reviewapp.monitoring.urls")),
    path("webhooks/", include("reviewapp.webhooks.urls")),
    path("metrics", monitoring_api.PrometheusMetricsApi.as_view(), name="metrics"),
    path("api/schema/", core_views.SchemaView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
]

handler404 = "reviewapp.core.views.page_not_found"
handler500 = "reviewapp.core.views.server_error"
