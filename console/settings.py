"""Switchyard settings, read from the environment (see README "Configuration")."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str | None = None) -> str | None:
    """A string from NAME, or from the file named by NAME_FILE (for secrets)."""
    file_name = os.environ.get(f"{name}_FILE")
    if file_name:
        try:
            return Path(file_name).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE={file_name} cannot be read: {exc.strerror}") from None
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def env_bool(name: str, default: bool = False) -> bool:
    value = env_str(name)
    if value is None:
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (true/false), got {value!r}")


def env_int(name: str, default: int) -> int:
    value = env_str(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}") from None


def env_list(name: str, default: list[str] | None = None) -> list[str]:
    value = env_str(name)
    if value is None:
        return list(default or [])
    return [item.strip() for item in value.split(",") if item.strip()]


def database_from_url(url: str) -> dict:
    parsed = urlparse(url)
    if parsed.scheme not in ("postgres", "postgresql"):
        raise ImproperlyConfigured(f"DATABASE_URL must be a postgres:// URL, got scheme {parsed.scheme!r}")
    options = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
    config = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parsed.path.lstrip("/")) or "switchyard",
        "USER": unquote(parsed.username or "postgres"),
        "PASSWORD": unquote(parsed.password or ""),
        "HOST": parsed.hostname or "127.0.0.1",
        "PORT": str(parsed.port or 5432),
        "CONN_MAX_AGE": env_int("DATABASE_CONN_MAX_AGE", 60),
        "CONN_HEALTH_CHECKS": True,
        "OPTIONS": options,
        "TEST": {"NAME": env_str("DATABASE_TEST_NAME")},
    }
    return config


# --- Environment and secrets -------------------------------------------------------------
ENVIRONMENT = env_str("SWITCHYARD_ENV", "development")
if ENVIRONMENT not in ("development", "test", "production"):
    raise ImproperlyConfigured("SWITCHYARD_ENV must be development, test or production")
PRODUCTION = ENVIRONMENT == "production"
TESTING = ENVIRONMENT == "test" or "pytest" in sys.modules

DEBUG = env_bool("DJANGO_DEBUG", default=not PRODUCTION)
if PRODUCTION and DEBUG:
    raise ImproperlyConfigured("DJANGO_DEBUG must be off when SWITCHYARD_ENV=production")

_INSECURE_SECRET = "insecure-development-secret-key-never-use-in-production-0123456789"
SECRET_KEY = env_str("DJANGO_SECRET_KEY")
if PRODUCTION:
    if not SECRET_KEY:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY (or DJANGO_SECRET_KEY_FILE) is required in production")
    if len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5 or SECRET_KEY.startswith("django-insecure") or SECRET_KEY == _INSECURE_SECRET:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY is too weak: use at least 50 random characters")
SECRET_KEY = SECRET_KEY or _INSECURE_SECRET

# The key-encryption key that wraps every tenant's data keys (32 bytes, base64). The keys app
# reads it through its provider; production refuses to start without one.
SWITCHYARD_KEK = env_str("SWITCHYARD_KEK")
if PRODUCTION and not SWITCHYARD_KEK:
    raise ImproperlyConfigured("SWITCHYARD_KEK (or SWITCHYARD_KEK_FILE) is required in production")

# audit: the Ed25519 seed (32 bytes, base64) that signs audit checkpoints. It lives outside the
# database; development and test generate one under SWITCHYARD_DATA_DIR when it is missing.
SWITCHYARD_AUDIT_SIGNING_KEY = env_str("SWITCHYARD_AUDIT_SIGNING_KEY")
if PRODUCTION and not SWITCHYARD_AUDIT_SIGNING_KEY:
    raise ImproperlyConfigured("SWITCHYARD_AUDIT_SIGNING_KEY (or SWITCHYARD_AUDIT_SIGNING_KEY_FILE) is required in production")

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["*"] if not PRODUCTION else [])
if PRODUCTION and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("DJANGO_ALLOWED_HOSTS is required in production")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")
SITE_URL = env_str("SWITCHYARD_SITE_URL", "http://127.0.0.1:8000").rstrip("/")

# --- Applications -------------------------------------------------------------------------
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "apps.core",
    "apps.keys",
    "apps.audit",
    "apps.tenants",
    "apps.accounts",
    "apps.regions",
    "apps.gateway",
    "apps.sla",
    "apps.billing",
    "apps.integrations",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "apps.core.middleware.RequestContextMiddleware",
    # accounts: idle/absolute session timeouts, then MFA before any console page.
    "apps.accounts.middleware.SessionPolicyMiddleware",
    "apps.accounts.middleware.MFAEnforcementMiddleware",
]

ROOT_URLCONF = "console.urls"
WSGI_APPLICATION = "console.wsgi.application"
ASGI_APPLICATION = "console.asgi.application"

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
                "apps.core.context_processors.console",
            ],
        },
    },
]

# --- Data stores --------------------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/switchyard")
DATABASES = {"default": database_from_url(DATABASE_URL)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
# Every key Switchyard writes starts with this prefix, so one Redis can serve several installs.
# Test runs take a namespace of their own per process (and pass it on to the servers and workers
# they start through the environment), so parallel runs never see or delete each other's keys.
REDIS_KEY_PREFIX = env_str("SWITCHYARD_REDIS_PREFIX") or (
    f"sytest:{os.environ.get('PYTEST_XDIST_WORKER', 'main')}:{os.getpid()}:" if "pytest" in sys.modules else "sy:"
)

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": REDIS_KEY_PREFIX + "cache",
    }
}

# --- Auth and sessions --------------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "apps.accounts.backends.EmailPasswordBackend",
    # accounts: hold SAML/OIDC/LDAP sessions (they authenticate nobody themselves).
    "apps.accounts.backends.SAMLSignInBackend",
    "apps.accounts.backends.OIDCSignInBackend",
    "apps.accounts.backends.LDAPSignInBackend",
]
LOGIN_URL = "accounts:signin"
LOGIN_REDIRECT_URL = "core:home"
LOGOUT_REDIRECT_URL = "accounts:signin"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
if TESTING:
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

SESSION_ENGINE = "django.contrib.sessions.backends.db"
SESSION_COOKIE_AGE = env_int("SWITCHYARD_SESSION_ABSOLUTE_SECONDS", 12 * 3600)
SESSION_IDLE_SECONDS = env_int("SWITCHYARD_SESSION_IDLE_SECONDS", 30 * 60)
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = True

SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", PRODUCTION)
SESSION_COOKIE_SECURE = PRODUCTION
CSRF_COOKIE_SECURE = PRODUCTION
SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 31536000 if PRODUCTION else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = PRODUCTION
SECURE_HSTS_PRELOAD = PRODUCTION
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
if env_bool("DJANGO_BEHIND_TLS_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# /healthz and /readyz answer plain HTTP to load balancers even when TLS is enforced.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]

# --- accounts: sign-in, MFA, tokens ----------------------------------------------------------
# Brute-force protection: failures counted per account and per client address over the window.
SIGNIN_MAX_FAILURES_PER_ACCOUNT = env_int("SWITCHYARD_SIGNIN_MAX_FAILURES_PER_ACCOUNT", 5)
SIGNIN_MAX_FAILURES_PER_IP = env_int("SWITCHYARD_SIGNIN_MAX_FAILURES_PER_IP", 50)
SIGNIN_LOCKOUT_SECONDS = env_int("SWITCHYARD_SIGNIN_LOCKOUT_SECONDS", 15 * 60)
# How long a re-authentication allows MFA, email and recovery-code changes.
SWITCHYARD_REAUTH_SECONDS = env_int("SWITCHYARD_REAUTH_SECONDS", 5 * 60)
ACCESS_TOKEN_SECONDS = env_int("SWITCHYARD_ACCESS_TOKEN_SECONDS", 3600)
REFRESH_TOKEN_SECONDS = env_int("SWITCHYARD_REFRESH_TOKEN_SECONDS", 30 * 86400)
ACCESS_TOKEN_CACHE_SECONDS = env_int("SWITCHYARD_ACCESS_TOKEN_CACHE_SECONDS", 30)
OIDC_HTTP_TIMEOUT = float(env_int("SWITCHYARD_OIDC_HTTP_TIMEOUT_SECONDS", 5))
LDAP_TIMEOUT_SECONDS = env_int("SWITCHYARD_LDAP_TIMEOUT_SECONDS", 5)
# (accounts' periodic cleanup is added to SWITCHYARD_BEAT below, where the schedule is defined.)

# --- I18N, time and static ----------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "var" / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if PRODUCTION
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}
WHITENOISE_USE_FINDERS = not PRODUCTION
if not PRODUCTION:
    # Outside production files are served from the app folders; whitenoise still expects the
    # collectstatic folder to exist.
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)
MEDIA_ROOT = Path(env_str("SWITCHYARD_MEDIA_ROOT", str(BASE_DIR / "var" / "media")))
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("SWITCHYARD_MAX_BODY_BYTES", 2 * 1024 * 1024)

# --- REST framework -----------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # accounts: `Authorization: Bearer sya_...` access tokens from /api/v1/auth/token. First,
        # so a missing or bad credential is a 401 with WWW-Authenticate rather than a 403.
        "apps.accounts.tokens.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "apps.core.pagination.Pagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "apps.core.errors.api_exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Switchyard API",
    "DESCRIPTION": "Multi-tenant LLM gateway: data plane and management API.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}
# accounts: tenant roles appear on several models (memberships, service clients, identity
# providers); name their schema enum once.
SPECTACULAR_SETTINGS.setdefault("ENUM_NAME_OVERRIDES", {})["RoleEnum"] = "apps.core.roles.Role"

# --- Celery -------------------------------------------------------------------------------
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL)
CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND", REDIS_URL)
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_TRANSPORT_OPTIONS = {"global_keyprefix": REDIS_KEY_PREFIX + "celery:"}
CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = {"global_keyprefix": REDIS_KEY_PREFIX + "celery:"}
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)

# Beat schedule: name -> (task, seconds). Each entry expires before its next run so a backlog
# never piles up. Apps add their periodic work here.
SWITCHYARD_BEAT = {
    "audit-checkpoint": ("apps.audit.tasks.checkpoint_chains", 300),
    "audit-deliver-outbox": ("apps.audit.tasks.deliver_outbox", 10),
    "audit-retention": ("apps.audit.tasks.purge_expired_events", 86400),
    "keys-rotation-check": ("apps.keys.tasks.rotate_due_keys", 86400),
    # accounts: drop long-expired tokens and ended session rows.
    "accounts-purge-expired-credentials": ("apps.accounts.tasks.purge_expired_credentials", 86400),
}


def beat_schedule(entries: dict[str, tuple[str, int]]) -> dict:
    return {
        name: {"task": task, "schedule": float(seconds), "options": {"expires": max(1.0, seconds * 0.9)}}
        for name, (task, seconds) in entries.items()
    }


# --- Email and notifications --------------------------------------------------------------
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "switchyard@localhost")

# --- Logging: structured JSON lines to stdout ---------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "apps.core.logging.JsonFormatter"}},
    "handlers": {"stdout": {"class": "logging.StreamHandler", "formatter": "json"}},
    "root": {"handlers": ["stdout"], "level": env_str("SWITCHYARD_LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "django.server": {"level": "WARNING"},
    },
}

# --- Switchyard -----------------------------------------------------------------------------
SWITCHYARD_DATA_DIR = Path(env_str("SWITCHYARD_DATA_DIR", str(BASE_DIR / "var")))
RESERVED_TENANT_SLUGS = {"admin", "api", "static", "new", "console", "system", "platform"}

# --- audit ----------------------------------------------------------------------------------
# Retired checkpoint-signing public keys (base64, comma-separated) still trusted by verify_audit.
SWITCHYARD_AUDIT_TRUSTED_KEYS = env_list("SWITCHYARD_AUDIT_TRUSTED_KEYS")
# Sinks beyond the database, each off when unset. File: JSON lines, rotated by size.
SWITCHYARD_AUDIT_FILE_SINK = env_str("SWITCHYARD_AUDIT_FILE_SINK")
SWITCHYARD_AUDIT_FILE_MAX_BYTES = env_int("SWITCHYARD_AUDIT_FILE_MAX_BYTES", 100 * 1024 * 1024)
SWITCHYARD_AUDIT_FILE_BACKUPS = env_int("SWITCHYARD_AUDIT_FILE_BACKUPS", 10)
# Syslog (RFC 5424): tcp://host:port or udp://host:port.
SWITCHYARD_AUDIT_SYSLOG = env_str("SWITCHYARD_AUDIT_SYSLOG")
# Splunk-HEC-style webhook: events POSTed as JSON with "Authorization: Splunk <token>".
SWITCHYARD_AUDIT_WEBHOOK_URL = env_str("SWITCHYARD_AUDIT_WEBHOOK_URL")
SWITCHYARD_AUDIT_WEBHOOK_TOKEN = env_str("SWITCHYARD_AUDIT_WEBHOOK_TOKEN")
SWITCHYARD_AUDIT_WEBHOOK_VERIFY_TLS = env_bool("SWITCHYARD_AUDIT_WEBHOOK_VERIFY_TLS", True)
# Outbox delivery: events per batch, and the backoff after a failure (doubling, capped).
SWITCHYARD_AUDIT_SINK_BATCH = env_int("SWITCHYARD_AUDIT_SINK_BATCH", 500)
SWITCHYARD_AUDIT_SINK_BACKOFF_SECONDS = env_int("SWITCHYARD_AUDIT_SINK_BACKOFF_SECONDS", 5)
SWITCHYARD_AUDIT_SINK_BACKOFF_MAX_SECONDS = env_int("SWITCHYARD_AUDIT_SINK_BACKOFF_MAX_SECONDS", 300)
# Retention of the platform chain and of the chains of deleted tenants (tenants set their own).
SWITCHYARD_AUDIT_PLATFORM_RETENTION_DAYS = env_int("SWITCHYARD_AUDIT_PLATFORM_RETENTION_DAYS", 365)
SWITCHYARD_AUDIT_DELETED_TENANT_RETENTION_DAYS = env_int("SWITCHYARD_AUDIT_DELETED_TENANT_RETENTION_DAYS", 365)
# The most events one export returns (CSV or JSON, streamed).
SWITCHYARD_AUDIT_EXPORT_MAX_ROWS = env_int("SWITCHYARD_AUDIT_EXPORT_MAX_ROWS", 100_000)
if PRODUCTION and SWITCHYARD_AUDIT_WEBHOOK_URL and not SWITCHYARD_AUDIT_WEBHOOK_URL.startswith("https://"):
    raise ImproperlyConfigured("SWITCHYARD_AUDIT_WEBHOOK_URL must be https:// in production")

# --- keys: KEK provider, data-key cache, rotation and re-encryption ----------------------------
# The class that wraps data keys (a KekProvider subclass with a from_settings() constructor).
SWITCHYARD_KEK_PROVIDER = env_str("SWITCHYARD_KEK_PROVIDER", "apps.keys.providers.LocalKekProvider")
# Seconds an unwrapped data key (and which version is primary) stays in process memory.
SWITCHYARD_KEYS_CACHE_SECONDS = env_int("SWITCHYARD_KEYS_CACHE_SECONDS", 60)
# Rows re-encrypted per transaction, and the rotation period of the platform keyring.
SWITCHYARD_KEYS_REENCRYPT_BATCH = env_int("SWITCHYARD_KEYS_REENCRYPT_BATCH", 500)
SWITCHYARD_PLATFORM_KEY_ROTATION_DAYS = env_int("SWITCHYARD_PLATFORM_KEY_ROTATION_DAYS", 90)
# Key events are audited through this function (keys sits below audit, so it is named here, not imported).
SWITCHYARD_KEYS_AUDIT_HOOK = env_str("SWITCHYARD_KEYS_AUDIT_HOOK", "apps.audit.services.record_event")

# --- gateway quotas, violations, notifications and metrics (engineer Q) --------------------------
# While Redis is down and a tenant chose the degraded mode, each server process admits this
# fraction (1/N) of the tenant's per-minute, per-day and concurrency limits: set N to the number
# of server processes. After a Redis connection failure, it is not retried for this many seconds.
SWITCHYARD_QUOTA_DEGRADED_DIVISOR = env_int("SWITCHYARD_QUOTA_DEGRADED_DIVISOR", 2)
SWITCHYARD_QUOTA_BREAKER_SECONDS = float(env_str("SWITCHYARD_QUOTA_BREAKER_SECONDS", "1") or "1")
# Redis connections for quota admission per server process; more requests than this wait their turn.
SWITCHYARD_QUOTA_REDIS_POOL = env_int("SWITCHYARD_QUOTA_REDIS_POOL", 64)
# Quota violations: at most one notification per tenant and limit per this many minutes.
SWITCHYARD_VIOLATION_NOTIFY_MINUTES = env_int("SWITCHYARD_VIOLATION_NOTIFY_MINUTES", 15)
# Notification delivery: HTTP timeout and retries (exponential backoff from 10 s).
SWITCHYARD_NOTIFY_TIMEOUT_SECONDS = env_int("SWITCHYARD_NOTIFY_TIMEOUT_SECONDS", 10)
SWITCHYARD_NOTIFY_MAX_RETRIES = env_int("SWITCHYARD_NOTIFY_MAX_RETRIES", 5)
# Repeated notifications with the same dedup key are dropped for this long.
SWITCHYARD_NOTIFY_DEDUP_SECONDS = env_int("SWITCHYARD_NOTIFY_DEDUP_SECONDS", 900)
# Webhook channels may target private and loopback addresses (off in production: SSRF).
SWITCHYARD_NOTIFY_ALLOW_PRIVATE = env_bool("SWITCHYARD_NOTIFY_ALLOW_PRIVATE", not PRODUCTION)
# Core sits below audit: its audit events go through the function named here.
SWITCHYARD_CORE_AUDIT_HOOK = env_str("SWITCHYARD_CORE_AUDIT_HOOK", "apps.audit.services.record_event")
# Where server processes share Prometheus values (so /metrics on any worker reports them all);
# PROMETHEUS_MULTIPROC_DIR, if set, wins. Off under tests: each process keeps its own registry.
SWITCHYARD_METRICS_DIR = env_str("SWITCHYARD_METRICS_DIR", None if TESTING else str(SWITCHYARD_DATA_DIR / "prometheus"))
# When set, GET /metrics requires "Authorization: Bearer <token>".
SWITCHYARD_METRICS_TOKEN = env_str("SWITCHYARD_METRICS_TOKEN")
SWITCHYARD_VIOLATION_RETENTION_DAYS = env_int("SWITCHYARD_VIOLATION_RETENTION_DAYS", 90)
SWITCHYARD_BEAT["gateway-flush-quota-violations"] = ("apps.gateway.violations.flush_violations", 15)
SWITCHYARD_BEAT["gateway-purge-quota-violations"] = ("apps.gateway.violations.purge_old_violations", 86400)
# Task modules outside the apps' tasks.py that workers must import.
CELERY_IMPORTS = [*globals().get("CELERY_IMPORTS", []), "apps.core.notifications", "apps.gateway.violations"]

# --- Regions: deployments, passive health, router and upstream providers (apps.regions, ---------
# --- apps/gateway/router.py, apps/gateway/providers) ---------------------------------------------
# Consecutive upstream failures that put a deployment in a cool-down, and how long it lasts.
REGIONS_HEALTH_FAILURE_THRESHOLD = env_int("SWITCHYARD_HEALTH_FAILURE_THRESHOLD", 3)
REGIONS_HEALTH_COOLDOWN_SECONDS = env_int("SWITCHYARD_HEALTH_COOLDOWN_SECONDS", 30)
# Each gateway process re-reads the shared health state at most this often (milliseconds); its own
# failures count at once. Another process's cool-down is seen within this delay.
REGIONS_HEALTH_CACHE_SECONDS = env_int("SWITCHYARD_HEALTH_CACHE_MS", 500) / 1000
# The router's in-process deployment table: the Redis version counter is checked at most this often
# (milliseconds), and the table is reloaded at least this often (seconds) even if no change was signalled.
ROUTER_VERSION_CHECK_SECONDS = env_int("SWITCHYARD_ROUTER_VERSION_CHECK_MS", 1000) / 1000
ROUTER_SNAPSHOT_MAX_AGE_SECONDS = env_int("SWITCHYARD_ROUTER_SNAPSHOT_MAX_AGE_SECONDS", 30)
# Upstream connections one gateway process may hold open (all deployments together).
GATEWAY_UPSTREAM_POOL_SIZE = env_int("SWITCHYARD_UPSTREAM_POOL_SIZE", 4096)
GATEWAY_ANTHROPIC_VERSION = env_str("SWITCHYARD_ANTHROPIC_VERSION", "2023-06-01")
# The Messages API requires max_tokens; used when a caller leaves it out.
GATEWAY_ANTHROPIC_DEFAULT_MAX_TOKENS = env_int("SWITCHYARD_ANTHROPIC_DEFAULT_MAX_TOKENS", 1024)

# --- gateway: API keys, the request pipeline, metering (engineer G) ------------------------------
# Largest prompt (characters over all messages) a request may carry: larger ones get 413.
SWITCHYARD_MAX_PROMPT_CHARS = env_int("SWITCHYARD_MAX_PROMPT_CHARS", 200_000)
# max_tokens when a request leaves it out (it is also the token reservation), and its ceiling.
SWITCHYARD_DEFAULT_MAX_TOKENS = env_int("SWITCHYARD_DEFAULT_MAX_TOKENS", 1024)
SWITCHYARD_MAX_OUTPUT_TOKENS = env_int("SWITCHYARD_MAX_OUTPUT_TOKENS", 32_768)
# Usage records: queued in Redis, written in batches of this size every this many milliseconds.
SWITCHYARD_USAGE_BATCH = env_int("SWITCHYARD_USAGE_BATCH", 500)
SWITCHYARD_USAGE_FLUSH_MS = env_int("SWITCHYARD_USAGE_FLUSH_MS", 200)
# Off: the servers only queue records and a `manage.py drain_usage --follow` process stores them.
SWITCHYARD_USAGE_DRAIN_IN_SERVER = env_bool("SWITCHYARD_USAGE_DRAIN_IN_SERVER", True)
# Monthly usage partitions older than this are dropped (prompts/responses follow each tenant's retention_days).
SWITCHYARD_USAGE_RETENTION_MONTHS = env_int("SWITCHYARD_USAGE_RETENTION_MONTHS", 13)
SWITCHYARD_BEAT["gateway-drain-usage"] = ("apps.gateway.tasks.drain_usage", 10)
SWITCHYARD_BEAT["gateway-usage-partitions"] = ("apps.gateway.tasks.maintain_usage_partitions", 86400)
SWITCHYARD_BEAT["gateway-purge-content"] = ("apps.gateway.tasks.purge_stored_content", 3600)
# Requests of one server process that may be in a Redis-heavy step (auth, admission, settling) at once.
SWITCHYARD_REDIS_PHASE_LIMIT = env_int("SWITCHYARD_REDIS_PHASE_LIMIT", 128)

# --- sla: rollups, compliance and burn-rate alerts, reports ----------------------------------------
# plotly.js is served from the installed plotly package (never a CDN, never a committed copy), as
# /static/vendor/plotly/plotly.min.js; added once even if another app asks for it too.
import plotly as _plotly  # noqa: E402

if not any(isinstance(entry, tuple) and entry[0] == "vendor/plotly" for entry in STATICFILES_DIRS):
    STATICFILES_DIRS.append(("vendor/plotly", str(Path(_plotly.__file__).parent / "package_data")))
# Minutes of usage records each rollup run recomputes (records land late through the usage queue).
SWITCHYARD_SLA_ROLLUP_LOOKBACK_MINUTES = env_int("SWITCHYARD_SLA_ROLLUP_LOOKBACK_MINUTES", 10)
SWITCHYARD_BEAT["sla-rollup-usage"] = ("apps.sla.tasks.rollup_usage", 15)
SWITCHYARD_BEAT["sla-evaluate"] = ("apps.sla.tasks.evaluate_sla", 60)
SWITCHYARD_BEAT["sla-monthly-reports"] = ("apps.sla.tasks.monthly_reports", 3600)
SWITCHYARD_BEAT["sla-prune-rollups"] = ("apps.sla.tasks.prune_rollups", 86400)

# --- billing: prices, allocation, chargeback, invoices, budgets (apps.billing) --------------------
# Invoice numbers read <prefix>-<year>-<6-digit gap-free sequence>, e.g. SY-2026-000123.
BILLING_INVOICE_PREFIX = env_str("SWITCHYARD_INVOICE_PREFIX", "SY")
# Budgets: re-push hard limits to the gateway and send 50/80/100 % alerts every minute.
SWITCHYARD_BEAT["billing-check-budgets"] = ("apps.billing.tasks.check_budgets", 60)
# Invoices: hourly, the last closed month is invoiced for every tenant not invoiced yet (idempotent).
SWITCHYARD_BEAT["billing-monthly-invoices"] = ("apps.billing.tasks.monthly_invoices", 3600)
# Daily usage rollups (what allocation, chargeback and budgets read): finished days since the last run.
SWITCHYARD_BEAT["billing-rollup-usage"] = ("apps.billing.tasks.rollup_usage", 300)

# --- regions HA: active health checks, failover/failback, redirect hooks, single beat, tracing -----
# Active probes: every this many seconds (beat), each with this timeout; a deployment counts as down
# after this many consecutive failed probes (its cool-down then lasts a few intervals, renewed while down).
SWITCHYARD_HEALTH_CHECK_SECONDS = env_int("SWITCHYARD_HEALTH_CHECK_SECONDS", 5)
SWITCHYARD_HEALTH_PROBE_TIMEOUT_SECONDS = float(env_str("SWITCHYARD_HEALTH_PROBE_TIMEOUT_SECONDS", "2") or "2")
SWITCHYARD_HEALTH_PROBE_FAILURES = env_int("SWITCHYARD_HEALTH_PROBE_FAILURES", 2)
# Probe history (per-minute rollups) is kept this many days.
SWITCHYARD_HEALTH_HISTORY_DAYS = env_int("SWITCHYARD_HEALTH_HISTORY_DAYS", 30)
# Failover policies without their own setting fail back after the primary is healthy this long.
SWITCHYARD_FAILBACK_AFTER_SECONDS = env_int("SWITCHYARD_FAILBACK_AFTER_SECONDS", 120)
# Traffic-redirect hooks called with the new primary on each failover/failback (dotted classes with
# from_settings()); the webhook is added when its URL is set. Body signed as the notification webhooks are.
SWITCHYARD_FAILOVER_HOOKS = env_list("SWITCHYARD_FAILOVER_HOOKS")
SWITCHYARD_FAILOVER_WEBHOOK_URL = env_str("SWITCHYARD_FAILOVER_WEBHOOK_URL")
SWITCHYARD_FAILOVER_WEBHOOK_SECRET = env_str("SWITCHYARD_FAILOVER_WEBHOOK_SECRET")
# DNS redirect: a DnsProvider subclass, the record to point ({model} is replaced) and region -> endpoint (JSON).
SWITCHYARD_FAILOVER_DNS_PROVIDER = env_str("SWITCHYARD_FAILOVER_DNS_PROVIDER")
SWITCHYARD_FAILOVER_DNS_RECORD = env_str("SWITCHYARD_FAILOVER_DNS_RECORD", "{model}.llm.internal")
SWITCHYARD_FAILOVER_DNS_TARGETS = __import__("json").loads(env_str("SWITCHYARD_FAILOVER_DNS_TARGETS", "{}") or "{}")
SWITCHYARD_FAILOVER_HOOK_TIMEOUT_SECONDS = float(env_str("SWITCHYARD_FAILOVER_HOOK_TIMEOUT_SECONDS", "5") or "5")
# Single active beat: the beat holding this Redis lock schedules; others wait until it expires.
SWITCHYARD_BEAT_LOCK_SECONDS = env_int("SWITCHYARD_BEAT_LOCK_SECONDS", 30)
# OpenTelemetry: spans are exported over OTLP/HTTP only when OTEL_EXPORTER_OTLP_ENDPOINT is set.
OTEL_EXPORTER_OTLP_ENDPOINT = env_str("OTEL_EXPORTER_OTLP_ENDPOINT")
OTEL_SERVICE_NAME = env_str("OTEL_SERVICE_NAME", "switchyard")
SWITCHYARD_BEAT["regions-health-checks"] = ("apps.regions.tasks.run_health_checks", SWITCHYARD_HEALTH_CHECK_SECONDS)
SWITCHYARD_BEAT["regions-prune-health-history"] = ("apps.regions.tasks.prune_health_history", 86400)

# --- Beat schedule: built last, from every app's SWITCHYARD_BEAT entries above ---------------
CELERY_BEAT_SCHEDULE = beat_schedule(SWITCHYARD_BEAT)

# --- integrations: API gateway config exports (Kong, Apigee, AWS API Gateway, Prometheus) ------------
# Where the outer gateway forwards traffic (default SWITCHYARD_SITE_URL), where it sends request logs,
# and the JWKS URL the edge verifies tenants' JWTs against (default <upstream>/.well-known/jwks.json).
SWITCHYARD_EXPORT_UPSTREAM_URL = env_str("SWITCHYARD_EXPORT_UPSTREAM_URL")
SWITCHYARD_EXPORT_LOG_ENDPOINT = env_str("SWITCHYARD_EXPORT_LOG_ENDPOINT", "http://127.0.0.1:9880/gateway-logs")
SWITCHYARD_EXPORT_JWKS_URL = env_str("SWITCHYARD_EXPORT_JWKS_URL")
# Passive health by error rate (apps/regions/error_rate.py): at least MIN_REQUESTS calls in the window, of
# which this share failed, start the cool-down even without consecutive failures.
SWITCHYARD_HEALTH_ERROR_RATE = float(env_str("SWITCHYARD_HEALTH_ERROR_RATE", "0.5") or "0.5")
SWITCHYARD_HEALTH_ERROR_RATE_MIN_REQUESTS = env_int("SWITCHYARD_HEALTH_ERROR_RATE_MIN_REQUESTS", 20)
SWITCHYARD_HEALTH_ERROR_RATE_WINDOW_SECONDS = env_int("SWITCHYARD_HEALTH_ERROR_RATE_WINDOW_SECONDS", 30)
