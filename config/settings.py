"""Settings, all read from the environment.

``DJANGO_ENV=development`` (default) runs on the embedded runtime: a SQLite file and a
SQLite-backed Celery broker under ``DATA_DIR``. ``DJANGO_ENV=production`` requires
``SECRET_KEY`` and turns on every deployment safeguard (``manage.py check --deploy`` is clean).
"""

import json
import os
import sys
from datetime import timedelta
from pathlib import Path

import dj_database_url
from csp.constants import NONCE, NONE, SELF, UNSAFE_INLINE
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


ENVIRONMENT = os.environ.get("DJANGO_ENV", "development")
if ENVIRONMENT not in {"development", "production"}:
    raise ImproperlyConfigured("DJANGO_ENV must be 'development' or 'production'")
PRODUCTION = ENVIRONMENT == "production"

DATA_DIR = Path(os.environ.get("DATA_DIR", BASE_DIR / "var")).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)
ARTIFACT_ROOT = Path(os.environ.get("ARTIFACT_ROOT", DATA_DIR / "artifacts")).resolve()
# Where registered artifacts are kept: empty = under ARTIFACT_ROOT (one machine or a shared
# filesystem); an fsspec URL (s3://bucket/prefix, gs://…) for workers on several machines
# (models_registry.storage). Its options (endpoint_url, key, secret…) are JSON, never logged.
ARTIFACT_STORAGE_URL = os.environ.get("ARTIFACT_STORAGE_URL", "").rstrip("/")
try:
    ARTIFACT_STORAGE_OPTIONS = json.loads(os.environ.get("ARTIFACT_STORAGE_OPTIONS") or "{}")
except ValueError as exc:
    raise ImproperlyConfigured("ARTIFACT_STORAGE_OPTIONS must be a JSON object") from exc
if not isinstance(ARTIFACT_STORAGE_OPTIONS, dict):
    raise ImproperlyConfigured("ARTIFACT_STORAGE_OPTIONS must be a JSON object")
# Experiment trackers every run reports to unless its config says otherwise (comma-separated:
# mlflow, tensorboard, wandb; their own env such as MLFLOW_TRACKING_URI configures them).
TRAINING_REPORT_TO = env_list("TRAINING_REPORT_TO", "")
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", DATA_DIR / "media")).resolve()
MEDIA_URL = "/media/"

DEBUG = env_bool("DEBUG", not PRODUCTION)
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if PRODUCTION:
        raise ImproperlyConfigured("SECRET_KEY must be set when DJANGO_ENV=production")
    SECRET_KEY = "dev-insecure-" + "k" * 50  # development only: never used in production
# Pseudonymous annotator ids in exports are HMACs under this key (stable across exports).
PSEUDONYM_KEY = os.environ.get("PSEUDONYM_KEY", SECRET_KEY)

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "" if PRODUCTION else "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "annotation",
    "models_registry",
    "training",
]

MIDDLEWARE = [
    "config.health.HealthCheckMiddleware",  # first: probes need no Host, HTTPS or login
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

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
                "annotation.context_processors.role",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{DATA_DIR / 'db.sqlite3'}"),
        conn_max_age=int(os.environ.get("DB_CONN_MAX_AGE", "60")),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # The same backend, with a health check that needs no round trip (config/postgresql).
    DATABASES["default"]["ENGINE"] = "config.postgresql"
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL + IMMEDIATE transactions serialize writers instead of failing with "database is locked".
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # A file (not :memory:) so that worker processes started by tests share the test database.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test-db.sqlite3")}
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# A cache shared by every process (Redis) serves sessions and the logged-in user without a
# database round trip per request. Without one, each process would hold its own copy and a
# logout or deactivation would not reach the others: sessions and users then stay in the
# database.
CACHE_URL = os.environ.get("CACHE_URL", "")
# API tokens are served from the cache only when it is shared (common.auth).
SHARED_CACHE = bool(CACHE_URL)
if CACHE_URL:
    if not CACHE_URL.startswith(("redis://", "rediss://")):
        raise ImproperlyConfigured("CACHE_URL must be a redis:// or rediss:// URL")
    CACHES = {
        "default": {
            "BACKEND": "config.cache.RedisCache",
            "LOCATION": CACHE_URL,
            "KEY_PREFIX": os.environ.get("CACHE_KEY_PREFIX", "governing-llms"),
        }
    }
    SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", DATA_DIR / "static")).resolve()
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"] if (BASE_DIR / "static").is_dir() else []
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

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "common.auth.CachedTokenAuthentication",
    ],
    # Roles per viewset action (annotation.permissions); every API view of the apps uses them.
    "DEFAULT_PERMISSION_CLASSES": ["annotation.permissions.RolePermission"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Governing LLMs API",
    "DESCRIPTION": "Principles, annotation, dataset snapshots, training runs and model lineage.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Several models have "kind" / "status" / "format" choices: name each enum explicitly.
    "ENUM_NAME_OVERRIDES": {
        "PrincipleSetStatusEnum": "annotation.models.PrincipleSetStatus",
        "PrincipleKindEnum": "annotation.models.PrincipleKind",
        "TaskKindEnum": "annotation.models.ProjectTaskKind",
        "AnnotatorKindEnum": "annotation.models.AnnotatorProfileKind",
        "SnapshotKindEnum": "annotation.models.DatasetSnapshotKind",
        "SnapshotFormatEnum": "annotation.models.DatasetSnapshotFormat",
        "SnapshotStatusEnum": "annotation.models.DatasetSnapshotStatus",
        "ImportJobStatusEnum": "annotation.models.ImportJobStatus",
        "ImportFormatEnum": "annotation.datasets.serializers.IMPORT_FORMATS",
        "WebhookDeliveryStatusEnum": "annotation.models.WebhookDeliveryStatus",
        "TrainingRunKindEnum": "training.models.TrainingRunKind",
        "TrainingRunStatusEnum": "training.models.TrainingRunStatus",
        "RegisteredModelKindEnum": "models_registry.models.RegisteredModelKind",
        "ModelVersionStageEnum": "models_registry.models.ModelVersionStage",
    },
}

# Data in and out (annotation.datasets.importers.jobs, annotation.snapshots).
IMPORT_INLINE_MAX_BYTES = int(os.environ.get("IMPORT_INLINE_MAX_BYTES", 2 * 1024 * 1024))
SNAPSHOT_INLINE_MAX_JUDGMENTS = int(os.environ.get("SNAPSHOT_INLINE_MAX_JUDGMENTS", 20_000))
# Large PostgreSQL exports split into this many processes (1 = one process; more only pays
# where cores are idle: on a 2-core box the database already needs one).
SNAPSHOT_WORKERS = int(os.environ.get("SNAPSHOT_WORKERS", "1"))
SNAPSHOT_PARALLEL_MIN_JUDGMENTS = int(os.environ.get("SNAPSHOT_PARALLEL_MIN_JUDGMENTS", 200_000))

# Celery: a real worker process always; the default broker is a SQLite file (no server needed).
CELERY_BROKER_URL = os.environ.get(
    "CELERY_BROKER_URL", f"sqla+sqlite:///{DATA_DIR / 'celery-broker.sqlite3'}"
)
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND") or None
CELERY_TASK_IGNORE_RESULT = CELERY_RESULT_BACKEND is None
CELERY_TASK_DEFAULT_QUEUE = "cpu"
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_ALWAYS_EAGER = False
if CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    # Long training jobs ack late: a message must not be redelivered while its job still runs.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 24 * 3600}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    # one INFO line per request would cost a judge job more CPU than the request itself
    "loggers": {"httpx": {"level": "WARNING"}, "httpcore": {"level": "WARNING"}},
}

# --- uploads and request limits (issue 17)
# common.limits: the cap on uploads (checked while the body streams in), the largest
# non-file request body (a 10,000-record bulk import of 1,500-character texts, prompt and two
# responses each, is ~46 MB of JSON), JSON nesting depth (API bodies and imported files), and
# the decompressed size of imports (annotation.files).
UPLOAD_MAX_BYTES = int(os.environ.get("UPLOAD_MAX_BYTES", 2 * 1024**3))
DATA_UPLOAD_MAX_MEMORY_SIZE = int(os.environ.get("DATA_UPLOAD_MAX_MEMORY_SIZE", 64 * 1024**2))
JSON_MAX_DEPTH = int(os.environ.get("JSON_MAX_DEPTH", 64))
IMPORT_MAX_DECOMPRESSED_BYTES = int(os.environ.get("IMPORT_MAX_DECOMPRESSED_BYTES", 4 * 1024**3))
IMPORT_MAX_COMPRESSION_RATIO = int(os.environ.get("IMPORT_MAX_COMPRESSION_RATIO", 100))
FILE_UPLOAD_HANDLERS = [
    "common.limits.UploadCapHandler",
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]
MIDDLEWARE.insert(1, "common.limits.RequestLimitsMiddleware")  # after the health probe
REST_FRAMEWORK["DEFAULT_PARSER_CLASSES"] = [
    "common.limits.DepthLimitedJSONParser",
    "rest_framework.parsers.FormParser",
    "rest_framework.parsers.MultiPartParser",
]

# --- exports (issue 17): streamed exports and snapshot jobs
# Records a streamed export (GET projects/<id>/export/) may read; 0 = no limit (memory is flat).
EXPORT_STREAM_MAX_JUDGMENTS = int(os.environ.get("EXPORT_STREAM_MAX_JUDGMENTS", "0"))
# Judgments per read batch of a snapshot build (memory against round trips; the tests use 1 to
# make a build last long enough to kill its worker mid-way).
SNAPSHOT_BATCH_JUDGMENTS = int(os.environ.get("SNAPSHOT_BATCH_JUDGMENTS", "4000"))

# --- auth (issue 17): brute force, proxies, API docs, Content-Security-Policy
# Proxies trusted only when configured: the client is the NUM_PROXIES-th address from the right
# of X-Forwarded-For, and with 0 (no proxy) the header is ignored (REMOTE_ADDR). DRF's throttles
# and django-axes' lockouts read it the same way (common.auth.client_address).
NUM_PROXIES = int(os.environ.get("NUM_PROXIES", "0"))
REST_FRAMEWORK["NUM_PROXIES"] = NUM_PROXIES
INSTALLED_APPS += ["axes", "csp"]
MIDDLEWARE.insert(
    MIDDLEWARE.index("django.middleware.security.SecurityMiddleware") + 1,
    "csp.middleware.CSPMiddleware",
)
MIDDLEWARE.append("axes.middleware.AxesMiddleware")  # last, as django-axes asks
# Every password entry point (/login/, /admin/login/, the API's token endpoint) goes through
# authenticate(request=...), where django-axes refuses a locked-out username before any check.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "common.auth.CachedModelBackend" if CACHE_URL else "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = int(os.environ.get("LOGIN_FAILURE_LIMIT", "10"))
AXES_COOLOFF_TIME = timedelta(minutes=int(os.environ.get("LOGIN_COOLOFF_MINUTES", "15")))
AXES_LOCKOUT_PARAMETERS = ["username", ["ip_address", "username"]]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "common.auth.client_address"
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
# The OpenAPI schema and its docs: public in development, signed-in users only in production.
API_DOCS_PUBLIC = env_bool("API_DOCS_PUBLIC", not PRODUCTION)
# Scripts only from our origin or with the response's nonce; inline <style> likewise. Style
# attributes stay allowed (computed bar widths and heat-map colours, matplotlib's SVG).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF, NONCE],
        "style-src": [SELF, UNSAFE_INLINE],  # browsers without -elem / -attr fall back here
        "style-src-elem": [SELF, NONCE],
        "style-src-attr": [UNSAFE_INLINE],
        "img-src": [SELF, "data:"],
        "object-src": [NONE],
        "base-uri": [SELF],
        "frame-ancestors": [NONE],
        "form-action": [SELF],
    }
}

# --- webhooks: SSRF, Redis down (issue 17)
# Hooks reach public hosts only (common.outbound); these names, addresses or networks
# (e.g. "hooks.internal,10.0.0.0/8") are let through for closed deployments.
WEBHOOK_ALLOWED_HOSTS = env_list("WEBHOOK_ALLOWED_HOSTS", "")
# Redis down: the cache answers misses (config/cache.py) after at most this socket timeout, and
# skips Redis for CACHE_RETRY_AFTER_S before trying again; requests are served from the database.
if CACHE_URL:
    CACHES["default"]["OPTIONS"] = {
        "socket_timeout": float(os.environ.get("CACHE_SOCKET_TIMEOUT_S", "0.5")),
        "socket_connect_timeout": float(os.environ.get("CACHE_SOCKET_TIMEOUT_S", "0.5")),
        "retry_after": float(os.environ.get("CACHE_RETRY_AFTER_S", "5")),
    }
# A hung or down broker fails a publish within these seconds instead of holding the request
# (forever, without a socket timeout); a request's fire-and-forget sends (webhooks, metrics
# refresh) then skip the broker for BROKER_RETRY_AFTER_S (common.background).
if CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    _broker_timeout = float(os.environ.get("BROKER_SOCKET_TIMEOUT_S", "1"))
    CELERY_BROKER_TRANSPORT_OPTIONS |= {
        "socket_timeout": _broker_timeout,
        "socket_connect_timeout": _broker_timeout,
        "connect_retries_timeout": _broker_timeout,
    }
BROKER_RETRY_AFTER_S = float(os.environ.get("BROKER_RETRY_AFTER_S", "10"))

if PRODUCTION:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "31536000"))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_CONTENT_TYPE_NOSNIFF = True
    SECURE_REFERRER_POLICY = "same-origin"
    X_FRAME_OPTIONS = "DENY"
    REST_FRAMEWORK["DEFAULT_THROTTLE_CLASSES"] = [
        "rest_framework.throttling.AnonRateThrottle",
        "rest_framework.throttling.UserRateThrottle",
    ]
    REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] = {
        "anon": os.environ.get("THROTTLE_ANON", "60/min"),
        "user": os.environ.get("THROTTLE_USER", "6000/min"),
    }

# --- launch (issue 17): what a training launch may ask for (training.validation), and how long
# queueing a run may keep trying a broker that is down before the launch fails (HTTP 503).
TRAINING_MAX_STEPS = int(os.environ.get("TRAINING_MAX_STEPS", "1000000"))
TRAINING_MAX_BATCH_SIZE = int(os.environ.get("TRAINING_MAX_BATCH_SIZE", "4096"))
TRAINING_MAX_GRADIENT_ACCUMULATION = int(
    os.environ.get("TRAINING_MAX_GRADIENT_ACCUMULATION", "1024")
)
TRAINING_MAX_LENGTH = int(os.environ.get("TRAINING_MAX_LENGTH", "131072"))
TRAINING_MAX_LEARNING_RATE = float(os.environ.get("TRAINING_MAX_LEARNING_RATE", "1.0"))
TRAINING_MAX_PROCESSES = int(os.environ.get("TRAINING_MAX_PROCESSES", "8"))
# Local base models are accepted only inside these directories (os.pathsep-separated).
MODEL_ROOTS = [
    Path(root).resolve()
    for root in os.environ.get("MODEL_ROOTS", str(DATA_DIR / "models")).split(os.pathsep)
    if root
]
# --- runs that never hang (issue 18): every worker's watchdog thread looks every
# TRAINING_WATCH_SECONDS for runs whose training process died while the worker lives and
# re-queues them (resuming from the newest checkpoint) or, after TRAINING_MAX_ATTEMPTS starts,
# fails them. 0 turns the watchdog off (the check still runs when a worker starts).
TRAINING_WATCH_SECONDS = float(os.environ.get("TRAINING_WATCH_SECONDS", "15"))
TRAINING_MAX_ATTEMPTS = int(os.environ.get("TRAINING_MAX_ATTEMPTS", "3"))
# Whether workers may download hub models (huggingface_hub's HF_HUB_OFFLINE; config/celery.py
# defaults workers to offline): when offline, a launch's hub id must already be in the local
# Hugging Face cache (HF_HUB_CACHE, shared with the workers).
HF_HUB_OFFLINE = os.environ.get("HF_HUB_OFFLINE", "1").strip().lower() not in ("0", "false", "no")
LAUNCH_PUBLISH_RETRIES = int(os.environ.get("LAUNCH_PUBLISH_RETRIES", "2"))
LAUNCH_PUBLISH_RETRY_INTERVAL = float(os.environ.get("LAUNCH_PUBLISH_RETRY_INTERVAL", "0.2"))

# --- Slurm launcher (issue 18): runs on these Celery queues are submitted as Slurm jobs by the
# worker that takes them (a CPU worker on a login node), which then supervises the job
# (training.slurm). ARTIFACT_ROOT must be on a filesystem the worker and the nodes share.
TRAINING_SLURM_QUEUES = [
    q.strip() for q in os.environ.get("TRAINING_SLURM_QUEUES", "slurm").split(",") if q.strip()
]
TRAINING_QUEUE_LAUNCHERS = {queue: "slurm" for queue in TRAINING_SLURM_QUEUES}
TRAINING_SLURM_PARTITION = os.environ.get("TRAINING_SLURM_PARTITION", "")
TRAINING_SLURM_NODES = int(os.environ.get("TRAINING_SLURM_NODES", "1"))
# torchrun agents per node: 1 on a real cluster; >1 emulates several nodes on one machine.
TRAINING_SLURM_TASKS_PER_NODE = int(os.environ.get("TRAINING_SLURM_TASKS_PER_NODE", "1"))
TRAINING_SLURM_CPUS_PER_TASK = int(os.environ.get("TRAINING_SLURM_CPUS_PER_TASK", "1"))
TRAINING_SLURM_GPUS_PER_NODE = int(os.environ.get("TRAINING_SLURM_GPUS_PER_NODE", "0"))
TRAINING_SLURM_TIME_LIMIT = os.environ.get("TRAINING_SLURM_TIME_LIMIT", "")  # e.g. "12:00:00"
# More sbatch options, shell-quoted (e.g. "--account=ml --qos=high").
TRAINING_SLURM_EXTRA_ARGS = os.environ.get("TRAINING_SLURM_EXTRA_ARGS", "")
# The Python that runs torchrun on the nodes (default: the worker's own, on the shared disk).
TRAINING_SLURM_PYTHON = os.environ.get("TRAINING_SLURM_PYTHON", sys.executable)
# Rendezvous port on the job's first node: this + job id % 1000 (two jobs never share one).
TRAINING_SLURM_RDZV_PORT = int(os.environ.get("TRAINING_SLURM_RDZV_PORT", "29500"))
TRAINING_SLURM_POLL_SECONDS = float(os.environ.get("TRAINING_SLURM_POLL_SECONDS", "2"))

# --- registry filter: query time limit (issue 17)
# Each statement of a user-built query (the registry's MLflow-style search: API and page) may
# run this long; PostgreSQL cancels it (statement_timeout), SQLite interrupts it. 0: no limit.
QUERY_TIME_LIMIT_MS = int(os.environ.get("QUERY_TIME_LIMIT_MS", "5000"))

# --- datasets in the browser (issue 16)
# A snapshot's dataset card reads its file once (cached by content hash) for the mean agreement
# and the consensus / conflict / indifference split; past this many rows it reads only these.
DATASET_CARD_SCAN_MAX_ROWS = int(os.environ.get("DATASET_CARD_SCAN_MAX_ROWS", "200000"))

# --- judges (issue 19): LLM judges and principle oracles as jobs (training.judges)
# Requests in flight per HTTP judge job at most; questions answered between two progress writes
# (and cancel checks); seconds a worker waits before the first retry of a 429 / 5xx (doubling).
JUDGE_MAX_CONCURRENCY = int(os.environ.get("JUDGE_MAX_CONCURRENCY", "64"))
JUDGE_CHUNK = int(os.environ.get("JUDGE_CHUNK", "256"))
JUDGE_BACKOFF_S = float(os.environ.get("JUDGE_BACKOFF_S", "0.5"))
