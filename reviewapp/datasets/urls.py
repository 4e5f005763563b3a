from django.urls import path

from reviewapp.datasets import views

urlpatterns = [
    path("", views.index, name="datasets"),
    path("<slug:slug>/", views.explorer, name="datasets-explorer"),
    path("<slug:slug>/items/<path:external_id>", views.item, name="datasets-item"),
    path("<slug:slug>/exports/", views.exports, name="datasets-exports"),
    path(
        "<slug:slug>/exports/<str:export_id>/download/",
        views.export_download,
        name="datasets-export-download",
    ),
    path(
        "<slug:slug>/exports/<str:export_id>/manifest/",
        views.export_manifest,
        name="datasets-export-manifest",
    ),
    path(
        "<slug:slug>/exports/<str:export_id>/delete/",
        views.export_remove,
        name="datasets-export-delete",
    ),
    path("<slug:slug>/retraining/", views.retraining, name="datasets-retraining"),
]
