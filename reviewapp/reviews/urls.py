from django.urls import path

from reviewapp.reviews import views

app_name = "reviews"

task = "queue/<slug:slug>/tasks/<int:task_id>/"
gold = "queue/<slug:slug>/gold/<int:check_id>/"

urlpatterns = [
    path("queue/<slug:slug>/", views.queue, name="queue"),
    path("queue/<slug:slug>/stats/", views.queue_stats_view, name="queue-stats"),
    path(f"{task}decide/", views.decide, name="decide"),
    path(f"{task}skip/", views.skip, name="skip"),
    path(f"{task}escalate/", views.escalate, name="escalate"),
    path(f"{gold}decide/", views.gold_decide, name="gold-decide"),
    path(f"{gold}skip/", views.gold_pass, name="gold-skip"),
    path(f"{gold}escalate/", views.gold_pass, name="gold-escalate"),
    path("my-work/", views.my_work, name="my-work"),
    path("escalations/", views.escalations, name="escalations"),
    path(
        "escalations/<int:escalation_id>/resolve/",
        views.escalation_resolve_view,
        name="escalation-resolve",
    ),
]
