"""Production settings come from the same file, switched by the environment."""

import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

ROOT = Path(__file__).resolve().parents[2]
GOOD_KEY = "k" * 20 + "3Jq9vX-2bTnR8wLm0pZs4yHcF7uE1dGa6"  # 53 characters


@pytest.fixture
def load_settings(monkeypatch):
    """Evaluate reviewapp/settings.py afresh under the given environment."""

    def load(**env: str) -> dict:
        for name in ("SECRET_KEY", "DEBUG", "CACHE_URL", "INGEST_RATE_LIMIT"):
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        return runpy.run_path(str(ROOT / "reviewapp" / "settings.py"))

    return load


@pytest.mark.parametrize(
    "secret_key",
    [None, "dev-only-insecure-key-never-use-in-production", "x" * 49],
    ids=["unset", "dev-default", "49-chars"],
)
def test_production_refuses_to_start_without_a_real_secret_key(load_settings, secret_key):
    env = {"DEBUG": "0"} | ({"SECRET_KEY": secret_key} if secret_key else {})
    with pytest.raises(ImproperlyConfigured, match="SECRET_KEY must be set"):
        load_settings(**env)


def test_production_secures_transport_and_cookies(load_settings):
    prod = load_settings(DEBUG="0", SECRET_KEY=GOOD_KEY)
    assert prod["SECURE_HSTS_SECONDS"] >= 31536000
    assert prod["SECURE_HSTS_INCLUDE_SUBDOMAINS"] and prod["SECURE_SSL_REDIRECT"]
    assert prod["SESSION_COOKIE_SECURE"] and prod["CSRF_COOKIE_SECURE"]
    assert prod["SESSION_COOKIE_HTTPONLY"]


def test_the_cache_comes_from_cache_url(load_settings):
    shared = load_settings(CACHE_URL="redis://127.0.0.1:6379/1")["CACHES"]["default"]
    assert shared["BACKEND"].endswith("RedisCache")
    assert shared["LOCATION"] == "redis://127.0.0.1:6379/1"
    # A Redis that hangs holds a cache call one timeout, not for ever.
    assert shared["OPTIONS"] == {"socket_timeout": 1.0, "socket_connect_timeout": 1.0}
    assert load_settings()["CACHES"]["default"]["BACKEND"].endswith("LocMemCache")
    with pytest.raises(ImproperlyConfigured, match="CACHE_URL"):
        load_settings(CACHE_URL="memcached://127.0.0.1:11211")


def test_a_malformed_ingest_rate_is_refused_at_start(load_settings):
    with pytest.raises(ImproperlyConfigured, match="INGEST_RATE_LIMIT"):
        load_settings(INGEST_RATE_LIMIT="lots")


def test_production_passes_the_deployment_checklist():
    dropped = {"SECRET_KEY", "DEBUG", "CACHE_URL", "DJANGO_ALLOW_ASYNC_UNSAFE"}
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env | {"DEBUG": "0", "SECRET_KEY": GOOD_KEY},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout
