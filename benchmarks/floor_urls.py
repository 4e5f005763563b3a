"""The app's URLs plus the floors the benchmarks compare with, served by the benchmarks'
gunicorn only (``harness.FLOOR_ENV``): a bare DRF view behind the app's own authentication (a
token, with its user and roles) and permission check, which answers an empty object.

    DJANGO_SETTINGS_MODULE=benchmarks.floor_settings
"""

from django.urls import include, path
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from benchmarks.harness import BARE_AUTHENTICATED_API


class BareAuthenticatedApi(APIView):
    """Everything an API request pays before its own work: middleware, DRF, the token."""

    permission_classes = [IsAuthenticated]

    def get(self, request):
        return Response({})

    def post(self, request):
        return Response({})


urlpatterns = [
    path(BARE_AUTHENTICATED_API, BareAuthenticatedApi.as_view()),
    path("", include("reviewapp.urls")),
]
