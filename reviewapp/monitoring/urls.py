from django.urls import path

from reviewapp.monitoring import views

app_name = "monitoring"
urlpatterns = [
    path("", views.overview, name="overview"),
    path("<slug:slug>/", views.dashboard, name="dashboard"),
    path("<slug:slug>/<str:tab>/", views.dashboard, name="dashboard-tab"),
]
