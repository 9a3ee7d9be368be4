"""Settings, all read from the environment (see .env.example for every variable).

With no environment at all the product runs embedded: SQLite, a file-system Celery broker and
local media under ``var/``. Production sets DATABASE_URL, CELERY_BROKER_URL, SECRET_KEY, etc.
"""
import os
import secrets
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()
if env.bool("DJANGO_READ_DOT_ENV_FILE", default=True) and (BASE_DIR / ".env").exists():
    env.read_env(str(BASE_DIR / ".env"))

VAR_DIR = Path(env.str("VAR_DIR", default=str(BASE_DIR / "var")))
# Embedded = no DATABASE_URL: the one-machine `make run` setup (SQLite, file broker, plain HTTP on
# 127.0.0.1). Anything with a real database is treated as production and must configure its secrets.
EMBEDDED = not env.str("DATABASE_URL", default="")

# Values that were ever published (old defaults, .env.example placeholders): never accept them.
_PUBLIC_SECRETS = {"", "change-me", "change-me-in-production", "dev-only-insecure-key-change-me-" + "x" * 20}


def _flag(name: str, default: bool) -> bool:
    """A boolean variable; blank (as in .env.example) means the default, not false."""
    return env.bool(name) if env.str(name, default="").strip() else default


def _number(name: str, default: int) -> int:
    return env.int(name) if env.str(name, default="").strip() else default


def _secret(var: str, file_name: str) -> str:
    """The secret in ``var``; else, embedded or in DEBUG, one generated on first start and kept in
    VAR_DIR/``file_name`` (mode 0600, shared by the web process and the worker); else refuse to start,
    because a public fallback would let anyone forge signatures or reverse pseudonyms."""
    value = env.str(var, default="")
    if value and value not in _PUBLIC_SECRETS:
        return value
    if not (EMBEDDED or DEBUG):
        raise ImproperlyConfigured(
            f"{var} is {'a public placeholder' if value else 'not set'}. Production (DATABASE_URL set, "
            f"DJANGO_DEBUG off) needs its own random value, e.g. "
            f"`python -c 'import secrets; print(secrets.token_urlsafe(50))'` (see docs/operations.md)."
        )
    path = VAR_DIR / file_name
    if not path.exists():
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        tmp = VAR_DIR / f".{file_name}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(50))
        try:  # link, not rename: if another process (web vs worker) won the race, keep its value
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text().strip()


# --- Core --------------------------------------------------------------------------------------
DEBUG = _flag("DJANGO_DEBUG", False)
SECRET_KEY = _secret("DJANGO_SECRET_KEY", "secret_key")
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "jobs",
    "annotation",
    "rewardtrain",
    "policytrain",
    "frontend",
]
# The synthetic-world demo (`manage.py demo`, `manage.py seed_demo`) is a tool around the product, not
# part of it: the embedded one-machine setup and `make run` include it, a production deployment
# (DATABASE_URL set) only with DEMO_APP=true (docs/decisions/0012).
if _flag("DEMO_APP", EMBEDDED):
    INSTALLED_APPS.append("demo")

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "core.middleware.DatabaseUnavailableMiddleware",
]
if env.bool("DB_STATEMENT_COUNT_HEADER", default=False):  # benchmarks only (core.middleware)
    MIDDLEWARE.insert(0, "core.middleware.StatementCountMiddleware")

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "frontend.context_processors.roles",
            ],
        },
    },
]

# --- Database ----------------------------------------------------------------------------------
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
DATABASES["default"].setdefault("ATOMIC_REQUESTS", False)
# Persistent connections by default: a new PostgreSQL backend per request cost more CPU than the
# annotator's whole next+submit loop. ``?conn_max_age=N`` in DATABASE_URL overrides (0 = per request).
if "conn_max_age" not in env.str("DATABASE_URL", default=""):
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE", default=60)
# Check a persistent connection before reusing it, so a database restart costs no request an error.
DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # WAL + a busy timeout let the web process and the embedded worker share one file; IMMEDIATE
    # transactions take the write lock up front, so concurrent writers wait instead of "database is locked".
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 30, "transaction_mode": "IMMEDIATE",
         "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"}
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# No MD5 (or any unsalted/fast hasher): a stored MD5 hash would authenticate. Tests use a fast one
# in config/test_settings.py only.
PASSWORD_HASHERS = env.list("DJANGO_PASSWORD_HASHERS", default=[]) or ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
# Every password check goes through the throttled backend: N failures per account or per client
# address within the window lock that account/address out (login page, admin, API token).
AUTHENTICATION_BACKENDS = ["annotation.auth_backend.RoleAwareBackend"]
LOGIN_FAILURES_PER_ACCOUNT = _number("LOGIN_FAILURES_PER_ACCOUNT", 10)
LOGIN_FAILURES_PER_ADDRESS = _number("LOGIN_FAILURES_PER_ADDRESS", 30)
LOGIN_LOCKOUT_SECONDS = _number("LOGIN_LOCKOUT_SECONDS", 900)
# API tokens expire this long after they were issued (annotation.api.auth.ExpiringTokenAuthentication).
TOKEN_TTL_SECONDS = _number("TOKEN_TTL_SECONDS", 24 * 3600)
LOGIN_URL = "/accounts/login/"
# Set-password links (curators' invitations and "forgot password") go out by e-mail: printed to the
# console in the embedded default; EMAIL_BACKEND=django.core.mail.backends.smtp.EmailBackend and
# EMAIL_HOST… send them.
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = env.str("EMAIL_HOST", default="localhost")
EMAIL_PORT = env.int("EMAIL_PORT", default=25)
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=False)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="onereward@localhost")
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Static and media --------------------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
MEDIA_URL = "/media/"
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(VAR_DIR / "media")))
ARTIFACTS_ROOT = Path(env.str("ARTIFACTS_ROOT", default=str(VAR_DIR / "artifacts")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Object storage (docs/operations.md, "Several hosts"; the `s3` extra installs the clients). The
# credentials and endpoint serve both media (django-storages) and artifacts (core.artifacts); None
# lets boto3 use AWS itself and its own credential chain (instance roles, ~/.aws).
AWS_S3_ENDPOINT_URL = env.str("AWS_S3_ENDPOINT_URL", default="") or None  # MinIO and other S3-compatible stores
AWS_S3_REGION_NAME = env.str("AWS_S3_REGION_NAME", default="") or None
AWS_ACCESS_KEY_ID = env.str("AWS_ACCESS_KEY_ID", default="") or None
AWS_SECRET_ACCESS_KEY = env.str("AWS_SECRET_ACCESS_KEY", default="") or None
AWS_STORAGE_BUCKET_NAME = env.str("AWS_STORAGE_BUCKET_NAME", default="")
if AWS_STORAGE_BUCKET_NAME:
    # Media in the bucket under MEDIA_STORE_PREFIX; every web host and worker reads the same files.
    STORAGES["default"] = {"BACKEND": "storages.backends.s3.S3Storage"}
    AWS_LOCATION = env.str("MEDIA_STORE_PREFIX", default="media")
    AWS_DEFAULT_ACL = None  # the bucket's policy decides; media are served through the application
# Finished artifact folders (snapshots, checkpoints, models) are published here and fetched into
# each host's ARTIFACTS_ROOT, which becomes a cache: s3://bucket/prefix, file:///mounted/folder, or
# empty for one shared local disk (the embedded default).
ARTIFACTS_STORE_URL = env.str("ARTIFACTS_STORE_URL", default="")
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=10 * 1024 * 1024)
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024

# --- Uploads (validated in annotation.images) ----------------------------------------------------
UPLOAD_MAX_IMAGE_BYTES = env.int("UPLOAD_MAX_IMAGE_BYTES", default=20 * 1024 * 1024)
UPLOAD_MAX_IMAGE_PIXELS = env.int("UPLOAD_MAX_IMAGE_PIXELS", default=40_000_000)
UPLOAD_MAX_ARCHIVE_BYTES = env.int("UPLOAD_MAX_ARCHIVE_BYTES", default=500 * 1024 * 1024)

# --- REST framework ----------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        # A bad or expired token answers 401 (core.api_errors), no credentials 403.
        "core.authentication.ExpiringTokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    # DRF's scopes and rates as fixed-window counters: one cache round trip per request instead
    # of DRF's read-modify-write of a pickled history (core.throttling).
    "DEFAULT_THROTTLE_CLASSES": [
        "core.throttling.AnonRateThrottle",
        "core.throttling.UserRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env.str("THROTTLE_ANON", default="60/min"),
        "user": env.str("THROTTLE_USER", default="6000/min"),
        # POST /api/auth/token/ per client address, successes included (failures also lock out: above).
        "auth": env.str("THROTTLE_AUTH", default="30/min"),
    },
    # Proxies in front of the app that append to X-Forwarded-For. 0 = use REMOTE_ADDR; DRF's default
    # (None) would trust a client-sent X-Forwarded-For and let it dodge every per-address limit.
    "NUM_PROXIES": _number("NUM_PROXIES", 0),
    "EXCEPTION_HANDLER": "core.api_errors.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "OneReward Platform API",
    "DESCRIPTION": "Pairwise preference annotation, reward-model training and fill-policy RL.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Schema and docs for signed-in users only; Swagger UI from the pinned, vendored sidecar
    # package (served by us), not from a CDN.
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "SplitEnum": "annotation.models.Split",
        "OptionalSplitEnum": "annotation.api.serializers.OPTIONAL_SPLIT_CHOICES",
        "AccountRoleEnum": "core.roles.ACCOUNT_ROLES",
        # Snapshots and imports share these four states (queued, running, succeeded, failed).
        "JobStateEnum": "annotation.models.ImportStatus",
        "JobStatusEnum": "jobs.models.JobStatus",
        "JobKindEnum": "jobs.models.JobKind",
        "CampaignStatusEnum": "annotation.models.CampaignStatus",
    },
}

# --- Cache (throttling state) --------------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
        if REDIS_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}

# --- Celery ------------------------------------------------------------------------------------
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = VAR_DIR / "celery" / "broker"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir),
        "data_folder_out": str(_broker_dir),
        "processed_folder": str(VAR_DIR / "celery" / "processed"),
        "control_folder": str(VAR_DIR / "celery" / "control"),  # else kombu writes ./control/
        "store_processed": False,
    }
CELERY_TASK_IGNORE_RESULT = True  # run state lives in our own tables, not in a result backend
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True  # a worker killed mid-task gets the message redelivered
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TASK_DEFAULT_QUEUE = "default"
# Every job is one task (jobs.tasks.run_job) sent to its kind's queue: queues are per role, not per
# task. Each kind declares its role (jobs.registry): `default` takes the CPU jobs a web host's
# worker runs in minutes (snapshots, exports, imports, the baseline learner); `gpu` takes training,
# generation and scoring, which need torch and, in production, a GPU. Training never runs in the
# web queue. CELERY_GPU_QUEUE renames the whole GPU role; JOB_QUEUES sends single kinds elsewhere,
# e.g. JOB_QUEUES="policy=gpu-h200,generation=gpu-h200" for a worker started with `-Q gpu-h200`
# on the big cards. Kinds not named here go to their role's queue.
JOB_GPU_QUEUE = env.str("CELERY_GPU_QUEUE", default="gpu")
JOB_QUEUES: dict[str, str] = {
    kind.strip(): queue.strip() for kind, _, queue in
    (item.partition("=") for item in env.list("JOB_QUEUES", default=[])) if kind.strip() and queue.strip()
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# --- Product settings --------------------------------------------------------------------------
# Exports with more rows than this run as a job in the CPU worker (annotation.services.exports)
# instead of streaming from the request, where a web worker's timeout would cut them.
EXPORT_SYNC_MAX_ROWS = env.int("EXPORT_SYNC_MAX_ROWS", default=100_000)

ANNOTATION_EDIT_WINDOW_SECONDS = env.int("ANNOTATION_EDIT_WINDOW_SECONDS", default=600)
# Campaign-wide progress scans the campaign; every reader within this window shares one scan.
PROGRESS_CACHE_SECONDS = env.int("PROGRESS_CACHE_SECONDS", default=5)
# A campaign's criteria and current guidelines, read by every hand-out and submit; dropped from the
# cache whenever they change (annotation.cache_invalidation), so this only bounds the unforeseen.
CRITERIA_CACHE_SECONDS = env.int("CRITERIA_CACHE_SECONDS", default=300)
# Each web process also keeps its own copy this long (no cache round trip per call): a change
# made elsewhere reaches that process's hand-outs and submits within these seconds (0 = off).
CRITERIA_LOCAL_CACHE_SECONDS = env.int("CRITERIA_LOCAL_CACHE_SECONDS", default=2)
# Key of the HMAC that turns user ids into export/snapshot pseudonyms: per deployment, never public
# (with a known salt every pseudonym maps back to its user id).
ANNOTATOR_ID_SALT = _secret("ANNOTATOR_ID_SALT", "annotator_id_salt")
ML_DEVICE = env.str("ML_DEVICE", default="cpu")
# A running job whose worker has not beaten for this long is considered lost (jobs.services).
JOB_STALE_AFTER_SECONDS = env.int("JOB_STALE_AFTER_SECONDS", default=300)
# A job whose database went away (restart, failover) keeps training; its outcome waits this long
# for the database to come back before the worker gives up (jobs.services.JobReporter.finish).
JOB_DB_OUTAGE_SECONDS = env.int("JOB_DB_OUTAGE_SECONDS", default=300)
TORCH_NUM_THREADS = env.int("TORCH_NUM_THREADS", default=1)
# The gate a checkpoint passes to become the production policy (policytrain.selectors.PromotionRule):
# side-by-side judgments against production per task, none worse overall or on any criterion,
# better overall on "any" or "all" of the required tasks (blank = the tasks its RL run trained).
POLICY_PROMOTION = {
    "min_judgments": env.int("PROMOTION_MIN_JUDGMENTS", default=30),
    "require_better": env.str("PROMOTION_REQUIRE_BETTER", default="any"),
    "allow_worse_criteria": env.bool("PROMOTION_ALLOW_WORSE_CRITERIA", default=False),
    "tasks": env.list("PROMOTION_TASKS", default=[]),
}
# Base models and base policies named in a form or the API load only from ARTIFACTS_ROOT, from a
# folder under one of MODEL_ROOTS, or from a registered model (core.model_sources); the default adds
# the default artifacts folder, where `make demo` and its test cache their pre-trained bases. Hub
# ids (org/name) only with ALLOW_HUB_MODELS: a worker would download and load them.
MODEL_ROOTS = env.list("MODEL_ROOTS", default=[str(ARTIFACTS_ROOT), str(VAR_DIR / "artifacts")])
ALLOW_HUB_MODELS = env.bool("ALLOW_HUB_MODELS", default=False)

# --- HTTPS hardening ------------------------------------------------------------------------------
# On by default in production (DEBUG off and not embedded); off for the embedded `make run`, which
# serves plain HTTP on 127.0.0.1 (secure cookies would never come back, the redirect would loop).
# Each can be set explicitly, e.g. DJANGO_SECURE_SSL_REDIRECT=false behind a proxy that redirects.
_HTTPS_DEFAULT = not DEBUG and not EMBEDDED
SECURE_SSL_REDIRECT = _flag("DJANGO_SECURE_SSL_REDIRECT", _HTTPS_DEFAULT)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = _flag("DJANGO_SECURE_COOKIES", _HTTPS_DEFAULT)
# HSTS follows the secure cookies (served over HTTPS, whoever redirects); browsers ignore it on HTTP.
SECURE_HSTS_SECONDS = _number("DJANGO_SECURE_HSTS_SECONDS", 31536000 if SESSION_COOKIE_SECURE else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_PRELOAD = bool(SECURE_HSTS_SECONDS)
if _flag("DJANGO_TRUST_X_FORWARDED_PROTO", SESSION_COOKIE_SECURE):
    # Only behind a proxy that sets this header itself (and drops a client's own).
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # Refusals (403/404) are expected: one line each, no traceback (core.log_filters).
    "filters": {"one_line_refusals": {"()": "core.log_filters.OneLineRefusals"}},
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"django.server": {"level": "WARNING"}, "django.request": {"filters": ["one_line_refusals"]}},
}
