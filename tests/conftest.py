import os
import shutil
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from deployments.ml.loading import model_cache
from reviewapp.celery import app as celery_app
from tests.factories import make_user

# Playwright's sync API runs an event loop in the test thread; the ORM calls a test makes
# around it are still synchronous, so Django's async-safety guard is lifted for tests only.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture(autouse=True)
def _eager_tasks_and_fresh_cache(settings):
    """Celery runs in process during tests unless a test starts a real worker; models are
    reloaded per test so no estimator leaks between databases."""
    celery_app.conf.task_always_eager = True
    # No heartbeat thread in the test process: tests write heartbeats with a clock of theirs.
    settings.HEARTBEAT_INTERVAL_SECONDS = 0
    # No webhook sweep after responses: tests sweep with a clock of theirs.
    settings.WEBHOOK_SWEEP_SECONDS = 0
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    model_cache.clear()
    yield
    model_cache.clear()


@pytest.fixture(autouse=True)
def _short_latency_probe(settings):
    """An upload times a few hundred single-row calls; a few are enough to test with."""
    settings.MODEL_LATENCY_PROBE_CALLS = 5


@pytest.fixture
def api():
    """An API client factory: ``api(user)`` authenticates with a DRF token."""
    from rest_framework.authtoken.models import Token

    def client_for(user=None) -> APIClient:
        client = APIClient()
        if user is not None:
            token, _ = Token.objects.get_or_create(user=user)
            client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        return client

    return client_for


@pytest.fixture
def manager(db):
    from reviewapp.core.roles import Role

    return make_user(Role.MANAGER)


def chromium_path() -> str | None:
    path = "/usr/bin/chromium"
    return path if os.path.exists(path) and shutil.which(path) else None


def pytest_collection_modifyitems(config, items):
    from django.conf import settings

    require_browser = os.environ.get("REQUIRE_BROWSER") == "1"
    skip_browser = pytest.mark.skip(reason="Debian's chromium is not installed (/usr/bin/chromium)")
    skip_pg = pytest.mark.skip(reason="needs PostgreSQL (set DATABASE_URL)")
    skip_worker = pytest.mark.skip(reason="needs a Celery broker (set CELERY_BROKER_URL)")
    for item in items:
        if "browser" in item.keywords and chromium_path() is None and not require_browser:
            item.add_marker(skip_browser)
        if "postgres" in item.keywords and not settings.IS_POSTGRES:
            item.add_marker(skip_pg)
        if "worker" in item.keywords and not settings.CELERY_BROKER_URL:
            item.add_marker(skip_worker)


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium driven by Playwright; never a downloaded browser."""
    path = chromium_path()
    if path is None:
        if os.environ.get("REQUIRE_BROWSER") == "1":
            pytest.fail("REQUIRE_BROWSER=1 but /usr/bin/chromium is missing")
        pytest.skip("Debian's chromium is not installed (/usr/bin/chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=path, args=CHROMIUM_FLAGS)
        yield instance
        instance.close()


@pytest.fixture
def signed_in(browser, live_server):
    """``signed_in(user, width=1280)`` -> a Playwright page with that user's session."""
    from django.conf import settings as django_settings
    from django.test import Client

    contexts = []

    def open_page(user, *, width: int = 1280, height: int = 900):
        client = Client()
        client.force_login(user)
        cookie = client.cookies[django_settings.SESSION_COOKIE_NAME]
        context = browser.new_context(viewport={"width": width, "height": height})
        context.add_cookies(
            [
                {
                    "name": django_settings.SESSION_COOKIE_NAME,
                    "value": cookie.value,
                    "url": live_server.url,
                }
            ]
        )
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(10_000)
        page.base_url = live_server.url
        return page

    yield open_page
    for context in contexts:
        context.close()


def screenshot(page, name: str) -> Path:
    """Save a screenshot under tests/artifacts/ for a human to look at."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@pytest.fixture(autouse=True)
def _exports_in_a_temporary_directory(settings, tmp_path):
    """Dataset export files go to the test's own directory, never the working tree."""
    settings.STORAGES = {
        **settings.STORAGES,
        "exports": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": tmp_path / "exports"},
        },
    }
