"""The app's URLs plus one page that fails, so a browser test can see the 500 page."""

from django.urls import path

from reviewapp.urls import handler404, handler500
from reviewapp.urls import urlpatterns as app_urlpatterns

__all__ = ["handler404", "handler500", "urlpatterns"]

BROKEN_PATH = "/test-only/broken/"


def broken(request):
    raise RuntimeError("a page that fails, on purpose")


urlpatterns = [*app_urlpatterns, path(BROKEN_PATH.strip("/") + "/", broken)]
