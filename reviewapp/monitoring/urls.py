from django.urls import path

from reviewapp.monitoring import system_views, views

app_name = "monitoring"
urlpatterns = [
    path("", views.overview, name="overview"),
    # Before the use case routes: "system" is not a use case's slug here.
    path("system/", system_views.system, name="system"),
    path("<slug:slug>/", views.dashboard, name="dashboard"),
    path("<slug:slug>/<str:tab>/", views.dashboard, name="dashboard-tab"),
]
