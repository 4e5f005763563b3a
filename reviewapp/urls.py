from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularSwaggerSplitView

from reviewapp.core import oidc_views, tokens_views
from reviewapp.core import views as core_views
from reviewapp.monitoring import api as monitoring_api
from reviewapp.reviews import views as reviews_views

urlpatterns = [
    path("", reviews_views.home, name="home"),
    path("healthz", core_views.healthz, name="healthz"),
    path("accounts/login/", core_views.ThrottledLoginView.as_view(), name="login"),
    path("accounts/logout/", oidc_views.sign_out, name="logout"),
    path("accounts/refused/", oidc_views.oidc_refused, name="oidc-refused"),
    path("oidc/authenticate/", oidc_views.oidc_sign_in, name="oidc_authentication_init"),
    path("oidc/callback/", oidc_views.oidc_callback, name="oidc_authentication_callback"),
    # Before admin.site.urls, so the admin's sign-in is the throttled one.
    path("admin/login/", core_views.ThrottledAdminLoginView.as_view(), name="admin-login"),
    path("admin/", admin.site.urls),
    path("tokens/", tokens_views.tokens, name="api-tokens-page"),
    path("tokens/new/", tokens_views.token_create, name="api-token-create"),
    path("tokens/<int:token_id>/revoke/", tokens_views.token_revoke, name="api-token-revoke"),
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

handler400 = "reviewapp.core.views.bad_request"
handler404 = "reviewapp.core.views.page_not_found"
handler500 = "reviewapp.core.views.server_error"
