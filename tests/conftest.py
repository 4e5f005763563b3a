import os
import shutil
import time
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from deployments.ml.loading import model_cache
from reviewapp.celery import app as celery_app
from tests.factories import make_user
from tests.template_database import (
    database_copy_from_template,
    database_destroy,
    template_build_once,
)

# Playwright's sync API runs an event loop in the test thread; the ORM calls a test makes
# around it are still synchronous, so Django's async-safety guard is lifted for tests only.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture(scope="session")
def django_db_setup(
    request, django_test_environment, django_db_blocker, django_db_modify_db_settings, worker_id
):
    """pytest-django's set-up, except that under xdist the run migrates one template database
    and every worker copies it (see tests/template_database.py). ``--reuse-db`` and
    ``--no-migrations`` keep pytest-django's own behaviour."""
    from django.db import connections
    from django.test.utils import setup_databases, teardown_databases

    config = request.config
    if worker_id == "master" or config.getvalue("reuse_db") or config.getvalue("nomigrations"):
        if config.getvalue("nomigrations"):
            from pytest_django.fixtures import _disable_migrations

            _disable_migrations()
        with django_db_blocker.unblock():
            created = setup_databases(
                verbosity=0, interactive=False, keepdb=bool(config.getvalue("reuse_db"))
            )
        yield
        if not config.getvalue("reuse_db"):
            with django_db_blocker.unblock():
                teardown_databases(created, verbosity=0)
        return

    # Every worker's basetemp sits in one directory per run: the template's lock lives there.
    run_dir = request.getfixturevalue("tmp_path_factory").getbasetemp().parent
    originals = {}
    with django_db_blocker.unblock():
        for connection in connections.all():
            template_name = connection.creation._get_test_db_name().removesuffix(f"_{worker_id}")
            template_name = template_build_once(
                connection, run_dir=run_dir, template_name=f"{template_name}_template"
            )
            originals[connection.alias] = database_copy_from_template(
                connection, template_name=template_name
            )
    yield
    with django_db_blocker.unblock():
        for alias, original_name in originals.items():
            database_destroy(connections[alias], original_name=original_name)


@pytest.fixture(autouse=True)
def _eager_tasks_and_fresh_cache(settings):
    """Celery runs in process during tests unless a test starts a real worker; models are
    reloaded per test so no estimator leaks between databases."""
    from deployments.selectors import scoring_configs_forget
    from reviewapp.control.guardrail_watch import watch_notes_clear

    celery_app.conf.task_always_eager = True
    # No heartbeat thread in the test process: tests write heartbeats with a clock of theirs.
    settings.HEARTBEAT_INTERVAL_SECONDS = 0
    # No webhook sweep after responses: tests sweep with a clock of theirs.
    settings.WEBHOOK_SWEEP_SECONDS = 0
    # No service-level check after responses: tests check with a clock of theirs.
    settings.SLA_CHECK_SECONDS = 0
    # No history archive after responses: tests archive with a clock of theirs.
    settings.ARCHIVE_EMBEDDED_SECONDS = 0
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    model_cache.clear()
    # What this process noted of queued guardrail watches belongs to another test's database
    # and clock.
    watch_notes_clear()
    scoring_configs_forget()
    yield
    model_cache.clear()
    watch_notes_clear()
    scoring_configs_forget()


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


DESELECTED_DB_FREE = pytest.StashKey[int]()


def uses_database(item) -> bool:
    """A ``django_db`` marker, or a fixture that needs the test database (``db``,
    ``transactional_db``, ``live_server``, ``client`` with a user...) anywhere in its closure."""
    return item.get_closest_marker("django_db") is not None or "django_db_setup" in getattr(
        item, "fixturenames", ()
    )


def pytest_collection_modifyitems(config, items):
    from django.conf import settings

    if os.environ.get("DB_TESTS_ONLY") == "1":
        # A second pass on another database engine: tests that never touch a database, the
        # browser tests (same templates, same behaviour) and the tests marked engine_agnostic
        # (who may reach what: the database only stores it) already ran on the first pass.
        # Tests that need a real broker ("worker") only run here, database or not.
        kept = [
            item
            for item in items
            if "worker" in item.keywords
            or (
                uses_database(item)
                and "browser" not in item.keywords
                and "engine_agnostic" not in item.keywords
            )
        ]
        kept_ids = {id(item) for item in kept}
        deselected = [item for item in items if id(item) not in kept_ids]
        if deselected:
            config.hook.pytest_deselected(items=deselected)
            items[:] = kept
        config.stash[DESELECTED_DB_FREE] = len(deselected)
        if hasattr(config, "workerinput"):
            config.workeroutput["db_tests_only_deselected"] = len(deselected)

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


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    """xdist workers collect (and deselect); the count reaches the terminal through here."""
    count = getattr(node, "workeroutput", {}).get("db_tests_only_deselected")
    if count is not None:
        node.config.stash[DESELECTED_DB_FREE] = count


def pytest_terminal_summary(terminalreporter, config):
    count = config.stash.get(DESELECTED_DB_FREE, None)
    if count is not None:
        terminalreporter.write_line(
            f"DB_TESTS_ONLY=1: {count} tests deselected (no database, browser, engine_agnostic)"
        )


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
        requests_tracked(page)
        return page

    yield open_page
    for context in contexts:
        context.close()


def requests_tracked(page) -> None:
    """Count the page's requests in flight and note when one last started or ended
    (``settled`` reads them)."""
    page.requests_in_flight = 0
    page.network_changed_at = time.monotonic()

    def changed(delta: int):
        def record(request) -> None:
            page.requests_in_flight += delta
            page.network_changed_at = time.monotonic()

        return record

    page.on("request", changed(+1))
    page.on("requestfinished", changed(-1))
    page.on("requestfailed", changed(-1))


# Every figure drawn: each element the page's scripts mark as drawn holds Plotly's SVG.
FIGURES_DRAWN = """() => [...document.querySelectorAll('[data-drawn]')]
  .every(el => el.querySelector('.main-svg') !== null)"""


def settled(page, *, quiet_ms: int = 100) -> None:
    """Wait, after a page's load, until its figures are drawn and no request has been in flight
    for ``quiet_ms``.

    Playwright's ``networkidle`` waits a fixed 500 ms of quiet, most of a page sweep's time.
    Nothing on these pages requests anything after load but the polls, every 20 s or more, and
    what starts right at load (the API docs' schema): requests this tracker sees start."""
    page.wait_for_load_state("load")
    page.wait_for_function(FIGURES_DRAWN)
    deadline = time.monotonic() + 10
    while page.requests_in_flight or time.monotonic() - page.network_changed_at < quiet_ms / 1000:
        assert time.monotonic() < deadline, f"{page.url}: requests still in flight after 10 s"
        page.wait_for_timeout(20)


def screenshot(page, name: str) -> Path:
    """Save a screenshot under tests/artifacts/ for a human to look at."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@pytest.fixture(autouse=True)
def _exports_in_a_temporary_directory(settings, tmp_path):
    """Dataset export and archive files go to the test's own directory, never the working
    tree."""
    settings.STORAGES = {
        **settings.STORAGES,
        "exports": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": tmp_path / "exports"},
        },
        "archives": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": tmp_path / "archives"},
        },
    }
