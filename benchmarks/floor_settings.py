"""The app's settings with the benchmarks' floor views added to its URLs (``floor_urls``)."""

from reviewapp.settings import *  # noqa: F403

ROOT_URLCONF = "benchmarks.floor_urls"
