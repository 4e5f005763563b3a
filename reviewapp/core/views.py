from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from deployments.selectors import use_cases_visible_to
from reviewapp.reviews.selectors import queue_stats


@login_required
def home(request):
    use_cases = list(use_cases_visible_to(request.user).order_by("name"))
    rows = [{"use_case": uc, **queue_stats(use_case=uc)} for uc in use_cases]
    return render(request, "core/home.html", {"rows": rows})


def healthz(request):
    """Liveness and readiness: 200 when the database answers, 503 when it does not."""
    from django.db import connection
    from django.http import JsonResponse

    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception:
        return JsonResponse({"ok": False, "database": "unavailable"}, status=503)
    return JsonResponse({"ok": True})
