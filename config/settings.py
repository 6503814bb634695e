"""One settings module. Everything that differs between a laptop and production comes from the
environment, with a default that is safe and works offline (SQLite, in-process tasks, local files).
"""

import os
import secrets
import time
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def envstr(name: str, default: str = "") -> str:
    """A string setting; `NAME_FILE` (a path) wins over `NAME`, for secrets mounted as files."""
    path = os.environ.get(f"{name}_FILE")
    if path:
        return Path(path).read_text().strip()
    return os.environ.get(name, default)


def envbool(name: str, default: str) -> bool:
    value = envstr(name, default).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {value!r}")


def envint(name: str, default: str) -> int:
    value = envstr(name, default)
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, not {value!r}") from None


def envlist(name: str, default: str) -> list[str]:
    return [part.strip() for part in envstr(name, default).split(",") if part.strip()]


def generated_secret(path: Path) -> str:
    """A random secret kept in ``path``, made the first time (O_EXCL: concurrent starts agree)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_urlsafe(64))
    for _ in range(20):  # the winner of a race may not have written it yet
        value = path.read_text().strip()
        if value:
            return value
        time.sleep(0.05)
    raise ImproperlyConfigured(f"{path} is empty: delete it and start again")


DEBUG = envbool("DEBUG", "false")
# Data lives under var/ by default so a clone stays clean; production points elsewhere.
VAR_DIR = Path(envstr("VAR_DIR", str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)
# Secrets are never a constant from the source (anyone could mint download tokens with it).
# Production sets SECRET_KEY and LEDGER_SIGNING_KEY; a single-machine install (and `make demo`,
# `make test`) opts in with GENERATE_SECRETS=true to have them generated once under VAR_DIR.
# With DEBUG on they are generated too. Otherwise the process stops here, saying what to set.
GENERATE_SECRETS = envbool("GENERATE_SECRETS", "false") or DEBUG
SECRET_KEY = envstr("SECRET_KEY", "")
if not SECRET_KEY:
    if not GENERATE_SECRETS:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set SECRET_KEY (or SECRET_KEY_FILE) to a long random value, or, "
            "for a single-machine install, GENERATE_SECRETS=true to keep a generated one under VAR_DIR."
        )
    SECRET_KEY = generated_secret(VAR_DIR / "secret-key")
ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", "")
SITE_URL = envstr("SITE_URL", "http://127.0.0.1:8000")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "csp",
    "marketplace",
    "governance",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "marketplace.middleware.DatabaseBusyMiddleware",
    "marketplace.middleware.DomainErrorMiddleware",
    "marketplace.middleware.ApiNotFoundMiddleware",  # a path under /api/ that no route matches: JSON 404
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

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
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        envstr("DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
        conn_max_age=envint("DATABASE_CONN_MAX_AGE", "0"),
    )
}
SQLITE_BUSY_TIMEOUT = envint("SQLITE_BUSY_TIMEOUT", "20")  # seconds a writer waits for the lock
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Two writers on one SQLite file: WAL lets readers go on while one writes; IMMEDIATE makes
    # every transaction take the write lock when it begins, so a second writer waits (busy
    # timeout) at BEGIN instead of failing with "database is locked" when a deferred transaction
    # tries to upgrade its read lock mid-way (which no timeout can fix: SQLite refuses at once).
    # What still times out answers 503 with Retry-After (marketplace.middleware), never a 500.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": SQLITE_BUSY_TIMEOUT,
            "transaction_mode": "IMMEDIATE",
            "init_command": (
                "PRAGMA journal_mode=WAL; PRAGMA foreign_keys=ON; "
                f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT * 1000};"
            ),
        }
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "login"
# Wrong passwords per username before it is locked for the rest of the window (login_limits.py).
LOGIN_MAX_FAILURES = envint("LOGIN_MAX_FAILURES", "10")
LOGIN_LOCKOUT_SECONDS = envint("LOGIN_LOCKOUT_SECONDS", "900")
# Refused dataset slugs per user and hour before creating datasets answers 429 (workspace.editing):
# a slug held by a hidden draft is refused like any other, and probing for them is slow.
SLUG_REFUSALS_PER_HOUR = envint("SLUG_REFUSALS_PER_HOUR", "20")
LOGIN_REDIRECT_URL = "home"  # marketplace.views.home: each role lands on its own home
LOGOUT_REDIRECT_URL = "catalogue"

LANGUAGE_CODE = "en"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
MEDIA_URL = "media/"
MEDIA_ROOT = Path(envstr("MEDIA_ROOT", str(VAR_DIR / "media")))

# Storage: local files by default, S3 (or any S3-compatible endpoint) with STORAGE_BACKEND=s3.
STORAGE_BACKEND = envstr("STORAGE_BACKEND", "local")
if STORAGE_BACKEND == "local":
    _default_storage = {"BACKEND": "django.core.files.storage.FileSystemStorage"}
elif STORAGE_BACKEND == "s3":
    _default_storage = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": envstr("AWS_STORAGE_BUCKET_NAME", "datasets"),
            "endpoint_url": envstr("AWS_S3_ENDPOINT_URL") or None,
            "region_name": envstr("AWS_S3_REGION_NAME", "us-east-1"),
            "access_key": envstr("AWS_ACCESS_KEY_ID") or None,
            "secret_key": envstr("AWS_SECRET_ACCESS_KEY") or None,
            "default_acl": None,
            "file_overwrite": False,
            "querystring_auth": True,
            "querystring_expire": envint("DOWNLOAD_URL_TTL", "900"),
        },
    }
else:
    raise ImproperlyConfigured(f"STORAGE_BACKEND must be local or s3, not {STORAGE_BACKEND!r}")
STORAGES = {
    "default": _default_storage,
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# Seconds a signed download link stays valid.
DOWNLOAD_URL_TTL = envint("DOWNLOAD_URL_TTL", "900")

# Uploads: deliveries are big, so they stream to disk; the web server caps the request size.
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
# The size limit first, while the body streams; then memory or a temporary file as usual.
FILE_UPLOAD_HANDLERS = [
    "marketplace.uploads.LimitedUploadHandler",
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]
DATA_UPLOAD_MAX_NUMBER_FILES = 10
DELIVERY_MAX_BYTES = envint("DELIVERY_MAX_BYTES", str(20 * 1024**3))  # the uploaded archive
# What an archive may unpack to; checked while reading, since zip headers can lie.
DELIVERY_MAX_ENTRIES = envint("DELIVERY_MAX_ENTRIES", "250000")  # COCO train2017 has 118,287 images
DELIVERY_MAX_UNCOMPRESSED_BYTES = envint("DELIVERY_MAX_UNCOMPRESSED_BYTES", str(20 * 1024**3))
DELIVERY_MAX_ENTRY_BYTES = envint("DELIVERY_MAX_ENTRY_BYTES", str(4 * 1024**3))
DELIVERY_MAX_RATIO = envint("DELIVERY_MAX_RATIO", "200")  # compression ratio of one entry
# Processes that check a large delivery's images (marketplace.deliveries.image_pool): 0 = one per core, 1 = no pool.
IMAGE_CHECK_WORKERS = envint("IMAGE_CHECK_WORKERS", "0")
# One COCO JSON, read whole: parsed it costs a few times its size in memory (a 1 GB file took
# 2.3 GB), so 512 MB; refused by its declared size in the zip before a byte is read.
DELIVERY_MAX_JSON_BYTES = envint("DELIVERY_MAX_JSON_BYTES", str(512 * 1024**2))
# A refused delivery's archive is kept as evidence this many days, then deleted (retention.py).
DELIVERY_FAILED_RETENTION_DAYS = envint("DELIVERY_FAILED_RETENTION_DAYS", "30")
# The longest an ingest may take (a 20 GB delivery on slow storage: hours). The broker re-delivers
# an unacknowledged task only after its visibility timeout, which must be longer than this, or a
# second worker would start a delivery the first is still ingesting.
DELIVERY_MAX_INGEST_SECONDS = envint("DELIVERY_MAX_INGEST_SECONDS", str(3 * 3600))
# A delivery pending/validating with no sign of life this long lost its task: re-queued once, then
# failed (deliveries.sweeping); past the broker's own re-delivery, so that comes first.
DELIVERY_STUCK_AFTER = envint("DELIVERY_STUCK_AFTER", str(DELIVERY_MAX_INGEST_SECONDS + 2 * 3600))
# Blobs no row refers to (a run killed between storing its files and its commit) are deleted when
# older than this; longer than any ingest, since a running one's files are not referenced yet.
BLOB_ORPHAN_GRACE_SECONDS = envint("BLOB_ORPHAN_GRACE_SECONDS", str(2 * DELIVERY_STUCK_AFTER))

# Celery: with no broker, tasks run eagerly in-process (the embedded default).
CELERY_BROKER_URL = envstr("CELERY_BROKER_URL", "")
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_RESULT_BACKEND = envstr("CELERY_RESULT_BACKEND", "") or None
CELERY_TASK_ACKS_LATE = True
# A worker killed mid-task (OOM, SIGKILL) must not lose it: the message goes back to the queue.
# Every task is idempotent (an ingested delivery returns at once; a claim is a row lock).
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": envint("CELERY_VISIBILITY_TIMEOUT", str(DELIVERY_MAX_INGEST_SECONDS + 3600)),
    # How often a worker looks for messages whose worker died (Redis transport: every
    # interval x throttle seconds, kombu's default 10 x 10); only the smoke test needs it faster.
    "unacked_restore_interval": envint("CELERY_UNACKED_RESTORE_INTERVAL", "10"),
    "unacked_restore_throttle": envint("CELERY_UNACKED_RESTORE_THROTTLE", "10"),
}
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_DEFAULT_QUEUE = envstr("CELERY_TASK_DEFAULT_QUEUE", "registry")
# Periodic work, for `celery -A config beat` (README, Deployment).
CELERY_BEAT_SCHEDULE = {
    "expire-failed-deliveries": {"task": "marketplace.tasks.expire_failed_deliveries", "schedule": 24 * 3600},
    "sweep-stuck-deliveries": {"task": "marketplace.tasks.sweep_stuck_deliveries", "schedule": 15 * 60},
    "sweep-orphan-blobs": {"task": "marketplace.tasks.sweep_orphan_blobs", "schedule": 24 * 3600},
}
# Chunks a ledger verification started through the API is cut into (governance.ledger.verify_chain).
LEDGER_VERIFY_PARTS = envint("LEDGER_VERIFY_PARTS", "8")

# Ledger signing key (Ed25519, PEM). Unset: a key is generated under VAR_DIR when
# GENERATE_SECRETS (or DEBUG) allows it; otherwise the process stops, as for SECRET_KEY.
LEDGER_SIGNING_KEY = envstr("LEDGER_SIGNING_KEY", "")
if not LEDGER_SIGNING_KEY and not GENERATE_SECRETS:
    raise ImproperlyConfigured(
        "LEDGER_SIGNING_KEY is not set. Set LEDGER_SIGNING_KEY (or LEDGER_SIGNING_KEY_FILE) to an "
        "Ed25519 private key in PEM, or, for a single-machine install, GENERATE_SECRETS=true to keep "
        "a generated one under VAR_DIR."
    )

# The cache holds throttle counts, login attempts and cached reports: shared by every process
# when CACHE_URL (or REDIS_URL) names a Redis server, per process (local memory) otherwise.
CACHE_URL = envstr("CACHE_URL", "") or envstr("REDIS_URL", "")
if CACHE_URL:
    if not CACHE_URL.startswith(("redis://", "rediss://", "unix://")):
        raise ImproperlyConfigured("CACHE_URL must be a redis:// (or rediss://, unix://) URL")
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": CACHE_URL,
            "KEY_PREFIX": envstr("CACHE_KEY_PREFIX", "registry"),
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

EMAIL_BACKEND = envstr("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = envstr("DEFAULT_FROM_EMAIL", "registry@localhost")
# Self-service buyer sign-up (marketplace.accounts): attempts per client address per hour, link validity.
SIGNUP_RATE_PER_HOUR = envint("SIGNUP_RATE_PER_HOUR", "5")
SIGNUP_CONFIRM_DAYS = envint("SIGNUP_CONFIRM_DAYS", "3")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticatedOrReadOnly"],
    # DjangoFilterBackend that refuses parameters a list does not know (marketplace.api.query).
    "DEFAULT_FILTER_BACKENDS": ["marketplace.api.query.StrictFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "marketplace.api.pagination.Pagination",
    "PAGE_SIZE": 20,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "marketplace.api.errors.exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # Scoped rates; views opt in with a throttle class naming the scope (marketplace.api.samples).
    # Counts live in the default cache: per process unless CACHES points at a shared one (Redis).
    "DEFAULT_THROTTLE_RATES": {
        "previews_anon": envstr("PREVIEW_ANON_RATE", "240/minute"),
        # Password guessing: attempts per client address, and per username from any address.
        "login": envstr("LOGIN_RATE", "10/minute"),
        "login_username": envstr("LOGIN_USERNAME_RATE", "20/hour"),
    },
    # JSON bodies: parsed with size and depth limits (a deep body used to answer 500).
    "DEFAULT_PARSER_CLASSES": [
        "marketplace.api.parsers.LimitedJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
}
API_JSON_MAX_BYTES = envint("API_JSON_MAX_BYTES", str(1024 * 1024))
API_JSON_MAX_DEPTH = envint("API_JSON_MAX_DEPTH", "32")
if DEBUG:
    REST_FRAMEWORK["DEFAULT_RENDERER_CLASSES"].append("rest_framework.renderers.BrowsableAPIRenderer")

SPECTACULAR_SETTINGS = {
    "TITLE": "Annotated dataset registry API",
    "DESCRIPTION": "Catalogue, licensing, exports and provenance of annotated computer-vision datasets.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI comes from a CDN by default; the sidecar serves it from our static files,
    # because the machine running the registry may be offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Every operation declares the error shape and its 4xx answers (marketplace.api.schema).
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "marketplace.api.schema.add_error_responses",
    ],
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": envstr("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}

SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
SECURE_REFERRER_POLICY = "same-origin"
# Content Security Policy (django-csp 4): our own scripts, styles and images only. Sample
# previews are data: or same-origin URLs; Swagger UI comes from the sidecar's static files.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "img-src": ["'self'", "data:", "blob:"],
        "style-src": ["'self'", "'unsafe-inline'"],
        # No inline script but the catalogue's sort menu, onchange="this.form.submit()", by hash.
        "script-src": ["'self'", "'unsafe-hashes'", "'sha256-osjxnKEPL/pQJbFk1dKsF7PYFmTyMWGmVSiL9inhxJY='"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
    }
}
HTTPS = not DEBUG and envbool("HTTPS", "false")
if HTTPS:
    # Behind a proxy that terminates TLS and sets X-Forwarded-Proto (README, Deployment).
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", "true")
    SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", str(365 * 24 * 3600))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("SECURE_HSTS_INCLUDE_SUBDOMAINS", "true")
    SECURE_HSTS_PRELOAD = envbool("SECURE_HSTS_PRELOAD", "false")
    if not SECURE_HSTS_PRELOAD:
        # Preloading is hard to undo (browsers ship the list); the operator opts in, so
        # `check --deploy` is not asked to warn about the choice.
        SILENCED_SYSTEM_CHECKS = ["security.W021"]
