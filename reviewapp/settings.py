"""Settings for every environment, read from the process environment.

With nothing set, the app runs embedded: SQLite (WAL) beside the code and Celery tasks eager in
process. ``DATABASE_URL`` and ``CELERY_BROKER_URL`` switch it to PostgreSQL and real workers.
"""

import importlib.util
import ipaddress
import os
import re
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured
from kombu import Exchange, Queue

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if not raw:
        return default
    return [part.strip() for part in raw.split(",") if part.strip()]


DEBUG = env_bool("DEBUG", True)
# Django's technical 404 and 500 pages instead of the app's, for a developer (only with DEBUG).
DEBUG_ERROR_PAGES = env_bool("DEBUG_ERROR_PAGES", False)

_DEV_SECRET_KEY = "dev-only-insecure-key-never-use-in-production"
SECRET_KEY = os.environ.get("SECRET_KEY") or _DEV_SECRET_KEY
if not DEBUG and (SECRET_KEY == _DEV_SECRET_KEY or len(SECRET_KEY) < 50):
    raise ImproperlyConfigured(
        "SECRET_KEY must be set to a random string of at least 50 characters when DEBUG is off "
        "(python -c 'import secrets; print(secrets.token_urlsafe(50))')."
    )

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "rest_framework.authtoken",
    "mozilla_django_oidc",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "template_partials",
    "reviewapp.core",
    "deployments.apps.DeploymentsConfig",
    "reviewapp.reviews",
    "reviewapp.control",
    "reviewapp.demo",
    "reviewapp.monitoring",
    "reviewapp.datasets",
    "reviewapp.webhooks.apps.WebhooksConfig",
    "reviewapp.archives",
]

MIDDLEWARE = [
    "reviewapp.core.middleware.ServerTimingMiddleware",
    "reviewapp.core.views.FriendlyErrorPagesMiddleware",
    "reviewapp.monitoring.middleware.RequestIdMiddleware",
    "reviewapp.core.middleware.DatabaseUnavailableMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "reviewapp.core.middleware.ContentSecurityPolicyMiddleware",
    "reviewapp.core.url_input.UnstorableUrlTextMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "reviewapp.urls"
WSGI_APPLICATION = "reviewapp.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "reviewapp.core.context_processors.navigation",
                "reviewapp.webhooks.context_processors.webhook_notices",
                "reviewapp.monitoring.context_processors.system_notices",
                "reviewapp.reviews.context_processors.past_due_notices",
            ],
        },
    },
]

# --- database -------------------------------------------------------------------------------
SQLITE_PATH = Path(os.environ.get("SQLITE_PATH", BASE_DIR / "db.sqlite3"))
DATABASES = {
    "default": dj_database_url.config(
        env="DATABASE_URL",
        default=f"sqlite:///{SQLITE_PATH}",
        conn_max_age=int(os.environ.get("CONN_MAX_AGE", "60")),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets readers proceed while one writer commits; IMMEDIATE takes the write lock at BEGIN
    # so concurrent writers queue on the busy timeout instead of failing mid-transaction.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
# PostgreSQL: the reads the review loop repeats are prepared once per connection by the server
# (reviewapp.core.compiled). Off behind a pooler in transaction mode (PgBouncer before 1.21).
DATABASE_PREPARED_STATEMENTS = env_bool("DATABASE_PREPARED_STATEMENTS", True)
DATABASES["default"]["TEST"] = {"NAME": os.environ.get("TEST_DATABASE_NAME") or None}
IS_POSTGRES = DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
if IS_POSTGRES and DATABASE_PREPARED_STATEMENTS:
    # psycopg prepares nothing unless a threshold is set; the statements that ask for it are
    # prepared at once, and no other reaches this count (Django's own cursors never prepare).
    DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = 2**31 - 1

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", BASE_DIR / "staticfiles"))
# Third-party JS comes from installed packages, never a CDN: Plotly from the plotly wheel
# (/static/plotly/plotly.min.js), htmx from django-htmx, Swagger UI from the sidecar.
STATICFILES_DIRS = [
    BASE_DIR / "static",
    ("plotly", Path(importlib.util.find_spec("plotly").origin).parent / "package_data"),
]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = DEBUG
# With DEBUG (the embedded demo, the tests) files are looked up when asked for, not indexed each
# time a handler starts: every test client starts one, and indexing 240 files cost ~15 ms.
WHITENOISE_AUTOREFRESH = DEBUG

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# --- single sign-on with OpenID Connect (off unless OIDC_RP_CLIENT_ID is set) ------------------
# The provider's groups claim maps to roles and use-case memberships at every sign-in
# (deployments.oidc); local accounts keep working beside it.
OIDC_RP_CLIENT_ID = os.environ.get("OIDC_RP_CLIENT_ID", "")
OIDC_ENABLED = bool(OIDC_RP_CLIENT_ID)
OIDC_RP_CLIENT_SECRET = os.environ.get("OIDC_RP_CLIENT_SECRET", "")
OIDC_RP_SIGN_ALGO = os.environ.get("OIDC_RP_SIGN_ALGO", "RS256")
OIDC_RP_SCOPES = os.environ.get("OIDC_RP_SCOPES", "openid email profile")
OIDC_OP_AUTHORIZATION_ENDPOINT = os.environ.get("OIDC_OP_AUTHORIZATION_ENDPOINT", "")
OIDC_OP_TOKEN_ENDPOINT = os.environ.get("OIDC_OP_TOKEN_ENDPOINT", "")
OIDC_OP_USER_ENDPOINT = os.environ.get("OIDC_OP_USER_ENDPOINT", "")
OIDC_OP_JWKS_ENDPOINT = os.environ.get("OIDC_OP_JWKS_ENDPOINT", "")
OIDC_OP_LOGOUT_ENDPOINT = os.environ.get("OIDC_OP_LOGOUT_ENDPOINT", "")
OIDC_PROVIDER_NAME = os.environ.get("OIDC_PROVIDER_NAME", "your organisation")
OIDC_GROUPS_CLAIM = os.environ.get("OIDC_GROUPS_CLAIM", "groups")
OIDC_GROUP_PREFIX = os.environ.get("OIDC_GROUP_PREFIX", "reviewapp:")
# A provider with one signing key may leave "kid" out of its tokens: set False for it.
OIDC_VERIFY_KID = env_bool("OIDC_VERIFY_KID", True)
LOGIN_REDIRECT_URL_FAILURE = "/accounts/refused/"
# Django's model backend, reading the user's roles with the user (one query, not two); Django's
# own name for it stays listed only for the sessions signed in under it (see RolesModelBackend).
AUTHENTICATION_BACKENDS = [
    "reviewapp.core.roles.RolesModelBackend",
    "django.contrib.auth.backends.ModelBackend",
]
if OIDC_ENABLED:
    AUTHENTICATION_BACKENDS.insert(0, "deployments.oidc.GroupClaimsBackend")

# --- security (production defaults when DEBUG is off) -----------------------------------------
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # htmx reads the token from the page, not the cookie
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"
# Scripts only from this origin: every template loads its JavaScript from static files, htmx
# runs without eval, and page data travels in data-* attributes (see core/templatetags/
# json_data.py). Styles allow 'unsafe-inline' because Plotly sizes and places its charts
# with inline styles; a style cannot run code.
CONTENT_SECURITY_POLICY = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'", "'unsafe-inline'"],
    "img-src": ["'self'", "data:"],
    "font-src": ["'self'", "data:"],
    "connect-src": ["'self'"],
    "object-src": ["'none'"],
    "base-uri": ["'self'"],
    "form-action": ["'self'"],
    "frame-ancestors": ["'none'"],
}
if not DEBUG:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "31536000"))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True

# --- caches and rate limits ------------------------------------------------------------------
# Throttle counters live in the cache; with several processes they must share one
# (CACHE_URL=redis://host:6379/1). The default keeps them in each process's memory.
CACHE_URL = os.environ.get("CACHE_URL", "")
# A Redis that hangs (its sockets open, nothing answered) costs a request at most this long per
# cache call; the callers then go on without the cache (reviewapp.core.throttles, events).
CACHE_SOCKET_TIMEOUT = float(os.environ.get("CACHE_SOCKET_TIMEOUT", "1"))
if CACHE_URL.startswith(("redis://", "rediss://", "unix://")):
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": CACHE_URL,
            "OPTIONS": {
                "socket_timeout": CACHE_SOCKET_TIMEOUT,
                "socket_connect_timeout": CACHE_SOCKET_TIMEOUT,
            },
        }
    }
elif CACHE_URL in ("", "locmem://"):
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
else:
    raise ImproperlyConfigured("CACHE_URL must be redis://..., rediss://... or locmem://.")
LOGIN_FAILURE_LIMIT = int(os.environ.get("LOGIN_FAILURE_LIMIT", "5"))
LOGIN_FAILURE_WINDOW_SECONDS = int(os.environ.get("LOGIN_FAILURE_WINDOW_SECONDS", "900"))
# Reverse proxies (addresses or networks, e.g. "10.0.0.0/8,127.0.0.1") whose X-Forwarded-For
# names the client, for limits kept per address; from anyone else the header is ignored.
TRUSTED_PROXIES = env_list("TRUSTED_PROXIES", [])
for _proxy in TRUSTED_PROXIES:
    try:
        ipaddress.ip_network(_proxy, strict=False)
    except ValueError:
        raise ImproperlyConfigured(
            f"TRUSTED_PROXIES: {_proxy!r} is not an address or a network"
        ) from None
INGEST_RATE_LIMIT = os.environ.get("INGEST_RATE_LIMIT", "60000/minute")
if not re.fullmatch(r"\d+/(second|minute|hour|day)", INGEST_RATE_LIMIT):
    raise ImproperlyConfigured(
        "INGEST_RATE_LIMIT must look like 60000/minute (second|minute|hour|day)."
    )

# --- REST API -------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "reviewapp.core.tokens.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "reviewapp.core.schema.ReviewAppSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # JSON only, checked for what the database and the models can take before any view sees
    # it (reviewapp.core.json_input); the one file upload (model versions) names its
    # multipart parser itself.
    "DEFAULT_PARSER_CLASSES": ["reviewapp.core.json_input.JSONBodyParser"],
    "EXCEPTION_HANDLER": "reviewapp.core.errors.api_exception_handler",
    # ``?format=csv`` selects the export format, not a DRF renderer.
    "URL_FORMAT_OVERRIDE": None,
    # Accept NaN/Infinity in JSON so validation can name the field that holds them.
    "STRICT_JSON": False,
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
if DEBUG:
    REST_FRAMEWORK["DEFAULT_RENDERER_CLASSES"].append(
        "rest_framework.renderers.BrowsableAPIRenderer"
    )

# Hostile input: a JSON body larger than this is refused with a 413 before it is read whole,
# one whose arrays and objects nest deeper than this with a 400 before it is parsed, and an
# error message repeats at most this many characters of any name or value that was sent.
API_MAX_BODY_BYTES = int(os.environ.get("API_MAX_BODY_BYTES", str(20 * 1024 * 1024)))
API_MAX_JSON_DEPTH = int(os.environ.get("API_MAX_JSON_DEPTH", "32"))
API_ERROR_EXCERPT_CHARS = int(os.environ.get("API_ERROR_EXCERPT_CHARS", "200"))

SPECTACULAR_SETTINGS = {
    "TITLE": "Review app API",
    "DESCRIPTION": (
        "Send items for ML-assisted decisions, steer automation policies, register model "
        "versions, review items and export the disagreements between humans and models."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "reviewapp.core.schema.request_bodies_closed",
        "reviewapp.core.schema.empty_query_dates_allowed",
        "reviewapp.core.schema.errors_share_one_shape",
    ],
}

# --- Celery ---------------------------------------------------------------------------------
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "")
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = int(os.environ.get("CELERY_TASK_TIME_LIMIT", "600"))
CELERY_TASK_SOFT_TIME_LIMIT = CELERY_TASK_TIME_LIMIT - 30
# Redis redelivers an unacknowledged task after the visibility timeout; it must exceed the
# longest task or a slow task would run twice at once.
# A broker that hangs without closing the connection (failover, a dropped NAT entry) would
# hold a publish, and the request that made it, forever: socket operations time out instead,
# the failed publish is logged and the sweeper re-enqueues the work.
BROKER_SOCKET_TIMEOUT = float(os.environ.get("BROKER_SOCKET_TIMEOUT", "5"))
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": CELERY_TASK_TIME_LIMIT * 2,
    "socket_timeout": BROKER_SOCKET_TIMEOUT,
    "socket_connect_timeout": BROKER_SOCKET_TIMEOUT,
}
# An acknowledgement lost to a hung broker must not cost the worker its prefetch slot for good
# (reviewapp.celery.RedisQoS).
if urlsplit(CELERY_BROKER_URL).scheme in ("redis", "rediss"):
    CELERY_BROKER_TRANSPORT = "reviewapp.celery:RedisTransport"
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_WORKER_MAX_TASKS_PER_CHILD = 1000
# Celery's Django fix-up closes every database connection before and after each task unless
# this is set: each task then opened a new PostgreSQL session (about 8 ms more of CPU a task,
# its catalog loaded again, its prepared statements lost). Set this high, the fix-up never
# closes them, and reviewapp.celery treats a task as Django treats a request: CONN_MAX_AGE
# and CONN_HEALTH_CHECKS hold, and a task that failed leaves a fresh connection.
CELERY_DB_REUSE_MAX = 2**62
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A worker whose broker goes away keeps trying to reconnect, every few seconds, for as long as
# it takes (reviewapp.celery.Consumer): work resumes within seconds of the broker's return.
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
CELERY_WORKER_CONSUMER = "reviewapp.celery:Consumer"
BROKER_RECONNECT_MAX_SECONDS = float(os.environ.get("BROKER_RECONNECT_MAX_SECONDS", "2"))
# Queues by kind of work, so that each kind gets a worker pool sized for it and none waits
# behind another: a 100,000-item backtest or a retraining run never holds back a webhook, a
# guardrail step-down or a batch. A worker started without -Q consumes every queue below (the
# embedded mode and single-process set-ups); docker-compose.yml runs one pool per queue.
#   realtime    what an upstream system waits on after an answer: the outcome fan-out and the
#               webhook deliveries (short, I/O-bound). Realtime items themselves are scored in
#               the web process, under the use case's latency budget, never on a queue.
#   batch       scoring the chunks of accepted batches (and what the sweeper sends again).
#   challenger  challengers scoring in shadow: nobody waits, and a slow challenger model must
#               never hold back the champion.
#   monitoring  the rollup fold, the guardrail and ramp watch, the System watch, service
#               levels and the sweeps: short and periodic, and a guardrail step-down must not
#               wait behind anything long.
#   heavy       backtests, dataset exports and retraining: minutes of CPU and hundreds of MB.
# Webhook deliveries are with the realtime work rather than the monitoring: a receiver that
# answers slowly (up to WEBHOOK_TOTAL_TIMEOUT_SECONDS) must not delay a guardrail step-down,
# and an outcome must not wait behind a batch or a backtest.
TASK_QUEUE_KINDS = ("realtime", "batch", "challenger", "monitoring", "heavy")
TASK_KINDS = {
    "webhooks.fanout": "realtime",
    "webhooks.deliver": "realtime",
    "reviews.score_items": "batch",
    "reviews.score_challenger": "challenger",
    "monitoring.fold_rollups": "monitoring",
    "monitoring.watch_system": "monitoring",
    "reviews.sweep_unscored_items": "monitoring",
    "reviews.check_service_levels": "monitoring",
    "deployments.watch_use_case": "monitoring",
    "deployments.watch_use_cases": "monitoring",
    "webhooks.sweep": "monitoring",
    "core.sweep_queued_jobs": "monitoring",
    "deployments.run_backtest": "heavy",
    "datasets.write_export": "heavy",
    "datasets.retrain": "heavy",
    "archives.archive_due": "heavy",
    "reviews.partitions_ensure": "monitoring",
}
# Prefixed to every queue's name: deployments (or parallel tests) sharing one broker each see
# only their own queues.
TASK_QUEUE_PREFIX = os.environ.get("TASK_QUEUE_PREFIX", "")
TASK_QUEUES = {kind: f"{TASK_QUEUE_PREFIX}{kind}" for kind in TASK_QUEUE_KINDS}
CELERY_TASK_ROUTES = {task: {"queue": TASK_QUEUES[kind]} for task, kind in TASK_KINDS.items()}
# Where a task no route names would go (a test keeps every task routed); consumed with the
# monitoring queue, so nothing sent there is stranded.
CELERY_TASK_DEFAULT_QUEUE = (
    os.environ.get("CELERY_TASK_DEFAULT_QUEUE") or f"{TASK_QUEUE_PREFIX}celery"
)
CELERY_TASK_QUEUES = [
    Queue(name, Exchange(name), routing_key=name)
    for name in (*TASK_QUEUES.values(), CELERY_TASK_DEFAULT_QUEUE)
]
SWEEPER_INTERVAL_SECONDS = int(os.environ.get("SWEEPER_INTERVAL_SECONDS", "60"))
# A pending item whose scoring failed this many times (its batch's task, then each sweep) is
# routed to a human as a null output naming the error instead of being retried again. Two
# keeps the promise that an accepted item is routed within two sweeper intervals.
SCORING_MAX_ATTEMPTS = int(os.environ.get("SCORING_MAX_ATTEMPTS", "2"))
CELERY_BEAT_SCHEDULE = {
    "sweep-unscored-items": {
        "task": "reviews.sweep_unscored_items",
        "schedule": SWEEPER_INTERVAL_SECONDS,
    },
    # Exports, retraining and backtests whose task was never published or was lost.
    "sweep-queued-jobs": {
        "task": "core.sweep_queued_jobs",
        "schedule": SWEEPER_INTERVAL_SECONDS,
    },
}
# Monitoring: recorded facts are folded into the hourly rollups this often (dashboards lag by
# at most this much when tasks run on workers; with eager tasks they fold on commit).
ROLLUP_FOLD_SECONDS = int(os.environ.get("ROLLUP_FOLD_SECONDS", "15"))
CELERY_BEAT_SCHEDULE["fold-monitoring-rollups"] = {
    "task": "monitoring.fold_rollups",
    "schedule": ROLLUP_FOLD_SECONDS,
}
# /metrics also admits a scraper presenting this secret as "Authorization: Bearer <secret>".
METRICS_SCRAPE_TOKEN = os.environ.get("METRICS_SCRAPE_TOKEN", "")

# --- the review domain ----------------------------------------------------------------------
REVIEW_LEASE_SECONDS = int(os.environ.get("REVIEW_LEASE_SECONDS", "300"))
BATCH_MAX_ITEMS = 10_000
BATCH_CHUNK_SIZE = int(os.environ.get("BATCH_CHUNK_SIZE", "1000"))
MODEL_UPLOAD_MAX_BYTES = int(os.environ.get("MODEL_UPLOAD_MAX_BYTES", str(50 * 1024 * 1024)))
# A .skops upload is a zip: its entries' declared sizes are summed before anything is read (no
# zip bombs), and loading it runs on a thread the request stops waiting for after the timeout.
MODEL_UPLOAD_MAX_UNCOMPRESSED_BYTES = int(
    os.environ.get("MODEL_UPLOAD_MAX_UNCOMPRESSED_BYTES", str(512 * 1024 * 1024))
)
MODEL_LOAD_TIMEOUT_SECONDS = float(os.environ.get("MODEL_LOAD_TIMEOUT_SECONDS", "30"))
# An upload is loaded, scored on its reference rows and timed (single-row calls, stopping at
# whichever limit comes first) before it is accepted; a model silent for the check's timeout is
# refused. Realtime scoring under a use case's latency budget runs on a bounded thread pool.
MODEL_CHECK_TIMEOUT_SECONDS = float(os.environ.get("MODEL_CHECK_TIMEOUT_SECONDS", "60"))
MODEL_LATENCY_PROBE_CALLS = int(os.environ.get("MODEL_LATENCY_PROBE_CALLS", "300"))
MODEL_LATENCY_PROBE_MAX_SECONDS = float(os.environ.get("MODEL_LATENCY_PROBE_MAX_SECONDS", "5"))
REALTIME_SCORING_THREADS = int(os.environ.get("REALTIME_SCORING_THREADS", "4"))
# scikit-learn, SciPy, pandas and skops are imported on first use. A gunicorn worker (started
# with --config python:reviewapp.monitoring.gunicorn) loads every champion with an artifact
# after it forks and before its first request, so no realtime item pays the ~2 s of imports
# and the model load inside its latency budget; the worker then holds them (about 200 MB more
# resident). Off: a web process stays small until it first scores, and that first item may
# miss its budget.
SCORING_WARM_ON_START = env_bool("SCORING_WARM_ON_START", True)
DATA_UPLOAD_MAX_MEMORY_SIZE = 20 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
# Service levels: how often open review tasks are checked against their due times (a
# ``queue.sla_breached`` event per use case with newly late items). The beat runs the check; in
# embedded mode (eager Celery, no beat) the web process runs it after a response at most this
# often (0: never there; the beat keeps 60 s).
SLA_CHECK_SECONDS = float(os.environ.get("SLA_CHECK_SECONDS", "60"))
CELERY_BEAT_SCHEDULE["check-service-levels"] = {
    "task": "reviews.check_service_levels",
    "schedule": SLA_CHECK_SECONDS or 60.0,
}

# --- dataset exports -------------------------------------------------------------------------
# Export files live in a directory, not in the database: they are large write-once blobs
# (a million rows is ~100 MB of CSV) that stream in and out with flat memory, that training
# code reads by path, and that would otherwise bloat the database, its WAL and its backups.
# The database keeps each file's manifest and SHA-256. Every web process and worker must see
# the same directory (a shared volume; see docker-compose.yml), or point the "exports" storage
# at an object store: the code only uses Django's Storage API.
EXPORT_ROOT = Path(os.environ.get("EXPORT_ROOT", BASE_DIR / "var" / "exports"))
STORAGES["exports"] = {
    "BACKEND": "django.core.files.storage.FileSystemStorage",
    "OPTIONS": {"location": EXPORT_ROOT, "file_permissions_mode": 0o640},
}
# History archives (Parquet files and their manifests; see reviewapp/archives): like exports,
# files every worker must see, kept apart so they can live on cheaper, longer-kept storage.
ARCHIVE_ROOT = Path(os.environ.get("ARCHIVE_ROOT", BASE_DIR / "var" / "archives"))
STORAGES["archives"] = {
    "BACKEND": "django.core.files.storage.FileSystemStorage",
    "OPTIONS": {"location": ARCHIVE_ROOT, "file_permissions_mode": 0o640},
}
# Items an archive reads, and removes, per transaction.
ARCHIVE_CHUNK_ITEMS = int(os.environ.get("ARCHIVE_CHUNK_ITEMS", "1000"))
# PostgreSQL keeps items, predictions, tasks and decisions in monthly partitions
# (reviewapp/reviews/partitions.py): the beat creates this many months ahead, once a day; an
# archive that empties a month drops its partitions, waiting at most this long for the locks.
HISTORY_PARTITIONS_AHEAD = int(os.environ.get("HISTORY_PARTITIONS_AHEAD", "1"))
HISTORY_PARTITION_LOCK_TIMEOUT_MS = int(os.environ.get("HISTORY_PARTITION_LOCK_TIMEOUT_MS", "5000"))
CELERY_BEAT_SCHEDULE["create-history-partitions"] = {
    "task": "reviews.partitions_ensure",
    "schedule": crontab(hour=1, minute=10),
}
# Use cases with a retention move their older history to archives once a day (in embedded
# mode, after a response at most this often; 0: only by hand).
ARCHIVE_EMBEDDED_SECONDS = int(os.environ.get("ARCHIVE_EMBEDDED_SECONDS", str(24 * 3600)))
# Use cases with a retention move their older history to archives once a day.
CELERY_BEAT_SCHEDULE["archive-history"] = {
    "task": "archives.archive_due",
    "schedule": crontab(hour=2, minute=30),
}
# Keys the hash that stands in for PII values in exports that ask for joinable ids. Rotating
# it makes new exports unjoinable with old ones; each manifest names the key by a fingerprint.
EXPORT_HASH_KEY = os.environ.get("EXPORT_HASH_KEY") or SECRET_KEY
RETRAIN_MIN_ITEMS = int(os.environ.get("RETRAIN_MIN_ITEMS", "30"))
SPECTACULAR_SETTINGS.setdefault("ENUM_NAME_OVERRIDES", {}).update(
    {
        "ExportStateEnum": "reviewapp.datasets.models.Export.State",
        "TrainingRunStateEnum": "reviewapp.datasets.models.TrainingRun.State",
        "PiiEnum": "reviewapp.datasets.models.Export.Pii",
        # Who made a decision, the same two choices in item answers and the outcome feed.
        "DecisionBodySourceEnum": ["model", "human"],
        # An item's status kept the plain name it had before other statuses joined the schema.
        "StatusEnum": ["pending", "in_review", "decided"],
        # The automation levels a policy takes, in its inputs and the shapes that echo them.
        "PolicyInputLevelEnum": [
            ("human_only", "human_only"),
            ("shadow", "shadow"),
            ("assisted", "assisted"),
            ("partial", "partial"),
            ("full", "full"),
        ],
    }
)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # One JSON object per line, with the request id (LOG_FORMAT=text for plain lines).
    "formatters": {
        "json": {"()": "reviewapp.core.logs.JsonFormatter"},
        "text": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": os.environ.get("LOG_FORMAT", "json"),
        }
    },
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# --- the control room: guardrails, ramp plans, backtests ---------------------------------------
# A use case's guardrails are checked after decisions and ingestion, at most once per interval
# (per use case, across all processes), and by the beat below.
GUARDRAIL_CHECK_INTERVAL_SECONDS = int(os.environ.get("GUARDRAIL_CHECK_INTERVAL_SECONDS", "15"))
BACKTEST_CHUNK_SIZE = int(os.environ.get("BACKTEST_CHUNK_SIZE", "10000"))
CELERY_BEAT_SCHEDULE["watch-guardrails-and-ramp-plans"] = {
    "task": "deployments.watch_use_cases",
    "schedule": int(os.environ.get("GUARDRAIL_SWEEP_SECONDS", "60")),
}

# --- software health: every process reports itself (monitoring/heartbeats.py) -----------------
# Each web process, worker process and beat writes a heartbeat this often (0: never, as in
# tests) and one sample row a minute; a heartbeat older than the stale limit means the process
# is gone (a banner, an event), and its row is deleted after the forget limit.
HEARTBEAT_INTERVAL_SECONDS = float(os.environ.get("HEARTBEAT_INTERVAL_SECONDS", "10"))
HEARTBEAT_STALE_SECONDS = float(
    os.environ.get("HEARTBEAT_STALE_SECONDS") or max(3 * HEARTBEAT_INTERVAL_SECONDS, 30)
)
HEARTBEAT_FORGET_SECONDS = float(os.environ.get("HEARTBEAT_FORGET_SECONDS", "3600"))
HEARTBEAT_SAMPLE_DAYS = int(os.environ.get("HEARTBEAT_SAMPLE_DAYS", "30"))
# Banners on the System page and the Software tab (and a logged event when one is raised):
# the share of 5xx answers over the last five minutes (with at least the minimum requests),
# and a broker queue whose oldest message has waited longer than this.
SYSTEM_5XX_RATE_ALERT = float(os.environ.get("SYSTEM_5XX_RATE_ALERT", "0.05"))
SYSTEM_5XX_MIN_REQUESTS = int(os.environ.get("SYSTEM_5XX_MIN_REQUESTS", "20"))
SYSTEM_QUEUE_STALL_SECONDS = float(os.environ.get("SYSTEM_QUEUE_STALL_SECONDS", "300"))
# Queues measured on the broker besides the default one and those live workers consume.
SYSTEM_BROKER_QUEUES = env_list("SYSTEM_BROKER_QUEUES", [])
CELERY_BEAT_SCHEDULE["watch-system"] = {
    "task": "monitoring.watch_system",
    "schedule": int(os.environ.get("SYSTEM_WATCH_SECONDS", "60")),
}

# --- webhooks ---------------------------------------------------------------------------------
# Hosts a webhook may reach although they resolve to a loopback, private, link-local or other
# non-public address (comma-separated names or IPs, e.g. "hooks.internal,10.0.0.7").
WEBHOOK_ALLOWED_HOSTS = [
    h.strip().lower() for h in os.environ.get("WEBHOOK_ALLOWED_HOSTS", "").split(",") if h.strip()
]
WEBHOOK_CONNECT_TIMEOUT_SECONDS = float(os.environ.get("WEBHOOK_CONNECT_TIMEOUT_SECONDS", "3"))
WEBHOOK_READ_TIMEOUT_SECONDS = float(os.environ.get("WEBHOOK_READ_TIMEOUT_SECONDS", "10"))
WEBHOOK_MAX_RESPONSE_BYTES = int(os.environ.get("WEBHOOK_MAX_RESPONSE_BYTES", "65536"))
# The whole exchange (connect, send, answer), however the receiver paces its bytes.
WEBHOOK_TOTAL_TIMEOUT_SECONDS = float(os.environ.get("WEBHOOK_TOTAL_TIMEOUT_SECONDS", "30"))
# Posts in flight at once per delivery batch, each on a kept-alive connection: a receiver
# 50 ms away gets 4 / 0.05 = 80 events/s from each worker process, not 20. (On one machine with
# the receiver beside it, 4 measured faster than 2 or 8.)
WEBHOOK_DELIVERY_CONCURRENCY = int(os.environ.get("WEBHOOK_DELIVERY_CONCURRENCY", "4"))
# Seconds between a failed attempt and the next: the Standard Webhooks schedule (5 s, 5 min,
# 30 min, 2 h, 5 h, 10 h, 10 h: eight attempts over ~27 hours). After the last, the delivery
# fails; an endpoint that failed all that time is paused.
WEBHOOK_RETRY_SCHEDULE = [
    float(s)
    for s in os.environ.get("WEBHOOK_RETRY_SCHEDULE", "5,300,1800,7200,18000,36000,36000").split(
        ","
    )
]
# Retries up to this far ahead are scheduled on the broker; later ones are left to the sweep.
WEBHOOK_COUNTDOWN_MAX_SECONDS = float(os.environ.get("WEBHOOK_COUNTDOWN_MAX_SECONDS", "60"))
# How often the webhooks' sweep runs: fans out events no commit announced (the broker was down)
# and attempts due retries. The beat runs it; in embedded mode (eager Celery, no beat) the web
# process runs it after a response at most this often (0: never there; the beat keeps 10 s).
WEBHOOK_SWEEP_SECONDS = float(os.environ.get("WEBHOOK_SWEEP_SECONDS", "10"))
CELERY_BEAT_SCHEDULE["sweep-webhooks"] = {
    "task": "webhooks.sweep",
    "schedule": WEBHOOK_SWEEP_SECONDS or 10.0,
}
