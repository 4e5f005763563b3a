"""Production settings come from the same file, switched by the environment."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GOOD_KEY = "k" * 20 + "3Jq9vX-2bTnR8wLm0pZs4yHcF7uE1dGa6"  # 53 characters


def process_env(**env: str) -> dict[str, str]:
    """This process's environment without what the test run sets for itself."""
    dropped = {"SECRET_KEY", "DEBUG", "CACHE_URL", "DJANGO_ALLOW_ASYNC_UNSAFE"}
    return {k: v for k, v in os.environ.items() if k not in dropped} | env


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    environment = process_env(**env)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    "secret_key",
    [None, "dev-only-insecure-key-never-use-in-production", "short-but-not-default-" * 2],
    ids=["unset", "dev-default", "49-chars"],
)
def test_production_refuses_to_start_without_a_real_secret_key(secret_key):
    env = {"DEBUG": "0"} | ({"SECRET_KEY": secret_key} if secret_key else {})
    result = manage("check", **env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "SECRET_KEY must be set" in result.stderr


def test_production_passes_the_deployment_checklist():
    result = manage("check", "--deploy", "--fail-level", "WARNING", DEBUG="0", SECRET_KEY=GOOD_KEY)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_settings_secure_the_transport_and_cookies():
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.SECURE_HSTS_SECONDS, s.SECURE_HSTS_INCLUDE_SUBDOMAINS, s.SESSION_COOKIE_SECURE, "
        "s.CSRF_COOKIE_SECURE, s.SECURE_SSL_REDIRECT, s.SESSION_COOKIE_HTTPONLY)"
    )
    environment = process_env(
        DEBUG="0", SECRET_KEY=GOOD_KEY, DJANGO_SETTINGS_MODULE="reviewapp.settings"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=environment, capture_output=True, text=True
    )
    assert result.stdout.split() == ["31536000", "True", "True", "True", "True", "True"]


def test_an_unknown_cache_url_is_refused_at_start():
    result = manage("check", CACHE_URL="memcached://127.0.0.1:11211")
    assert result.returncode != 0
    assert "CACHE_URL" in result.stderr
