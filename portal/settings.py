"""Settings for the screening portal, read from the environment.

With no environment at all the portal runs embedded: SQLite and media under
./var, Celery tasks executed in-process. Set DATABASE_URL and REDIS_URL for
PostgreSQL and a Redis broker with separate workers; PORTAL_ENV=production for
a deployment where `manage.py check --deploy` is clean.
"""

from __future__ import annotations

import ipaddress
import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

from portal.env import (
    env_bool,
    env_int,
    env_list,
    env_networks,
    env_origins,
    env_secret,
    env_str,
    env_training_overrides,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("PORTAL_VAR_DIR", str(BASE_DIR / "var")))

PORTAL_ENV = env_str("PORTAL_ENV", "development")
if PORTAL_ENV not in ("development", "production"):
    raise ImproperlyConfigured(f"PORTAL_ENV must be development or production, got {PORTAL_ENV!r}")
PRODUCTION = PORTAL_ENV == "production"

# Off unless asked for (DJANGO_DEBUG=true while developing): the run command must never show
# Django's debug pages, which list the URL configuration and settings.
DEBUG = env_bool("DJANGO_DEBUG", default=False)
if PRODUCTION and DEBUG:
    raise ImproperlyConfigured("DJANGO_DEBUG must be false when PORTAL_ENV=production")


def _secret_key() -> str:
    key = env_secret("DJANGO_SECRET_KEY")
    if key:
        if PRODUCTION and len(key) < 50:
            raise ImproperlyConfigured("DJANGO_SECRET_KEY must be at least 50 characters in production")
        return key
    if PRODUCTION:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY (or DJANGO_SECRET_KEY_FILE) is required in production")
    # Embedded mode: a random key kept beside the SQLite database, so sessions
    # survive restarts without a secret ever living in the repository.
    path = VAR_DIR / "secret_key"
    if not path.exists():
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(64))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env_list(
    "DJANGO_ALLOWED_HOSTS", [] if PRODUCTION else ["localhost", "127.0.0.1", "[::1]", "testserver"]
)
if PRODUCTION and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("DJANGO_ALLOWED_HOSTS is required in production")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")
# Reverse proxies whose X-Forwarded-For is believed (addresses or CIDR ranges): see portal/net.py.
PORTAL_TRUSTED_PROXIES = env_networks("PORTAL_TRUSTED_PROXIES")

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
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_filters",
    "django_celery_beat",
    "axes",
    "csp",
    "portal.apps.PortalConfig",
    "screening",
]

MIDDLEWARE = [
    # First: a chunked request body (STOW-RS from dicomweb-client, Orthanc) readable by every view.
    "portal.chunked.ChunkedBodyMiddleware",
    # Before authentication: a CORS preflight carries no credentials (PORTAL_DICOMWEB_CORS_ORIGINS).
    "portal.middleware.DicomWebCorsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "portal.middleware.NoStoreByDefaultMiddleware",
    "portal.middleware.ServiceUnavailableMiddleware",
    "portal.middleware.ReadAuditMiddleware",  # every read of patient data, audited (screening.audit.services)
    # Last, as django-axes asks: it turns a lockout flagged during the view into the lockout answer.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"

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
                "screening.accounts.context_processors.roles",
                "screening.monitoring.context_processors.alerts",
            ],
        },
    },
]

# Database: DATABASE_URL (postgres://user@host:5432/name) or embedded SQLite.
_database_url = env_str("DATABASE_URL")
if _database_url:
    try:
        DATABASES = {"default": dj_database_url.parse(_database_url, conn_max_age=60, conn_health_checks=True)}
    except ValueError as exc:
        raise ImproperlyConfigured(f"DATABASE_URL is not a valid database URL: {exc}") from None
else:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    # WAL and IMMEDIATE transactions: uploads and in-process predictions write concurrently.
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": VAR_DIR / "portal.sqlite3",
            "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"},
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# One brute-force guard for every way in (the login page, the admin login, the token endpoint):
# django-axes counts failed logins per account and per client address (portal.net.client_ip)
# and refuses both for a while after too many. Failures expire PORTAL_LOGIN_LOCKOUT_MINUTES
# after the last one. A success does not clear them: axes would also clear the address's
# failures against other accounts.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("PORTAL_LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("PORTAL_LOGIN_LOCKOUT_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_CLIENT_IP_CALLABLE = "portal.net.client_ip"
AXES_LOCKOUT_CALLABLE = "portal.login_guard.lockout_response"
AXES_RESET_ON_SUCCESS = False
AXES_VERBOSE = False
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "worklist"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-gb"
TIME_ZONE = env_str("PORTAL_TIME_ZONE", "Europe/London")
USE_I18N = True
USE_TZ = True

# Static files: vendored into static/, served by WhiteNoise (compressed, hashed in production).
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
# collectstatic copies them here (run.sh into ./var/static, the production image at start-up);
# with DEBUG on, WhiteNoise serves them straight from the source folders instead.
STATIC_ROOT = Path(env_str("DJANGO_STATIC_ROOT", str(BASE_DIR / "staticfiles" if PRODUCTION else VAR_DIR / "static")))

# Media: local disk by default; any S3-compatible store with PORTAL_S3_BUCKET set,
# so several web and worker nodes share one store. Media is never served directly:
# screening.reading.views streams it after a permission check.
MEDIA_ROOT = Path(env_str("PORTAL_MEDIA_ROOT", str(VAR_DIR / "media")))
_s3_bucket = env_str("PORTAL_S3_BUCKET")
if _s3_bucket:
    _default_storage = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": _s3_bucket,
            "endpoint_url": env_str("PORTAL_S3_ENDPOINT_URL") or None,
            "region_name": env_str("PORTAL_S3_REGION") or None,
            "access_key": env_secret("PORTAL_S3_ACCESS_KEY") or None,
            "secret_key": env_secret("PORTAL_S3_SECRET_KEY") or None,
            "default_acl": "private",
            "querystring_auth": True,
            "file_overwrite": False,
        },
    }
else:
    _default_storage = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": MEDIA_ROOT, "base_url": None},
    }
STORAGES = {
    "default": _default_storage,
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage",
    },
}

# Uploads: anything over 2.5 MB streams to a temporary file, so a 27 MB DICOM is
# never held in memory twice. PORTAL_MAX_UPLOAD_MB caps a single file (MB = 1,000,000
# bytes, the unit of every size message). PORTAL_MAX_IMAGE_PIXELS caps the pixels, read
# from the header before decoding; one upload may allocate its pixels at 16 bits each.
# PORTAL_MAX_CONCURRENT_DECODES uploads decode at once in one process; the others wait.
PORTAL_MAX_UPLOAD_BYTES = env_int("PORTAL_MAX_UPLOAD_MB", 200, minimum=1) * 1_000_000
PORTAL_MAX_IMAGE_PIXELS = env_int("PORTAL_MAX_IMAGE_PIXELS", 60_000_000, minimum=1)
PORTAL_MAX_CONCURRENT_DECODES = env_int("PORTAL_MAX_CONCURRENT_DECODES", 2, minimum=1)
PORTAL_RENDITION_MAX_SIDE = env_int("PORTAL_RENDITION_MAX_SIDE", 2048, minimum=256)
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024


def _dicom_peers(name: str) -> list[tuple[str, str]]:
    """`AE@IP,AE@IP`: the calling AEs the DICOM receiver accepts, each by AE title and IP address."""
    peers = []
    for item in env_list(name):
        ae_title, _, host = item.rpartition("@")
        try:
            host = str(ipaddress.ip_address(host.strip()))
        except ValueError:
            host = ""
        ae_title = ae_title.strip()
        if not host or not ae_title or len(ae_title) > 16 or not ae_title.isprintable() or "\\" in ae_title:
            raise ImproperlyConfigured(
                f"{name}: {item!r} is not AE_TITLE@IP_ADDRESS (an AE title of 1 to 16 characters, an IP address)"
            )
        peers.append((ae_title, host))
    return peers


# The DICOM receiver (manage.py dicom_receiver) accepts these calling AEs; admins add more as DICOM peers.
PORTAL_DICOM_ALLOWED_AES = _dicom_peers("PORTAL_DICOM_ALLOWED_AES")


def _dicom_destinations(name: str) -> list[tuple[str, str, int]]:
    """`AE@HOST:PORT,AE@HOST:PORT`: the C-STORE SCPs (PACS) that receive the portal's SRs."""
    destinations = []
    for item in env_list(name):
        ae_title, _, address = item.rpartition("@")
        host, _, port = address.rpartition(":")
        ae_title, host = ae_title.strip(), host.strip().strip("[]")
        good_ae = 0 < len(ae_title) <= 16 and ae_title.isprintable() and ae_title.isascii() and "\\" not in ae_title
        if not good_ae or not host or " " in host or not port.strip().isdigit() or not 0 < int(port) < 65536:
            raise ImproperlyConfigured(
                f"{name}: {item!r} is not AE_TITLE@HOST:PORT (an AE title of 1 to 16 characters, a port 1-65535)"
            )
        destinations.append((ae_title, host, int(port)))
    return destinations


# Where the AI-result and decision SRs go (C-STORE); admins add more as DICOM destinations.
PORTAL_DICOM_DESTINATIONS = _dicom_destinations("PORTAL_DICOM_DESTINATIONS")
# The portal's own (calling) AE title when it sends SRs, and how often a send is tried before it fails.
PORTAL_DICOM_EXPORT_AE_TITLE = env_str("PORTAL_DICOM_EXPORT_AE_TITLE") or "SCREENING"
PORTAL_DICOM_EXPORT_MAX_ATTEMPTS = env_int("PORTAL_DICOM_EXPORT_MAX_ATTEMPTS", 5, minimum=1)
# The AI-result SR of a study goes out once no image has arrived for this long (as Orthanc's StableAge):
# a modality sends a study image by image, and the PACS should get one SR of the whole exam.
PORTAL_DICOM_EXPORT_STABLE_SECONDS = env_int("PORTAL_DICOM_EXPORT_STABLE_SECONDS", 30, minimum=0)
# How long the portal waits for a RIS's HL7 acknowledgement (AA) of a result it sent over MLLP (HL7
# destinations are added in the admin; sends are tried PORTAL_DICOM_EXPORT_MAX_ATTEMPTS times, as the SRs).
PORTAL_HL7_ACK_TIMEOUT = env_int("PORTAL_HL7_ACK_TIMEOUT", 30, minimum=1)
FILE_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
# Each upload is hashed while it streams in (the dedup key), never read again for it.
FILE_UPLOAD_HANDLERS = [
    "screening.intake.uploads.HashingMemoryFileUploadHandler",
    "screening.intake.uploads.HashingTemporaryFileUploadHandler",
]
FILE_UPLOAD_PERMISSIONS = 0o640

# Celery: with a broker URL, tasks go to separate workers; without, they run
# in-process (embedded mode) so one command gives predictions without Redis.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL") or env_str("REDIS_URL")
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
if CELERY_TASK_ALWAYS_EAGER:
    # Eager tasks still open a (never used) producer connection: name a host, or kombu
    # warns "No hostname was supplied" on every task.
    CELERY_BROKER_URL = "memory://localhost/"
CELERY_TASK_EAGER_PROPAGATES = False
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600, "socket_timeout": 5, "socket_connect_timeout": 5}
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {
    "screening.tasks.predict_image": {"queue": "inference"},
    "screening.tasks.predict_waiting_images": {"queue": "inference"},
    "screening.tasks.sweep_stuck_predictions": {"queue": "inference"},
    "screening.tasks.retrain": {"queue": "training"},
    "screening.tasks.export_study_sr": {"queue": "export"},
    "screening.tasks.send_hl7_result": {"queue": "export"},
    "screening.tasks.render_image": {"queue": "render"},
    "screening.tasks.release_expired_locks": {"queue": "inference"},  # beside the other sweeper
    "screening.monitoring.tasks.*": {"queue": "export"},  # reads originals, no GPU: beside the SR sender
    "screening.research_export.tasks.*": {"queue": "export"},
}
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.5, "interval_max": 1}
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_BEAT_SCHEDULE = {
    "sweep-stuck-predictions": {"task": "screening.tasks.sweep_stuck_predictions", "schedule": 60.0},
}

# Cache: Redis when configured (shared by web nodes: throttles, idempotency keys), else in-process.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": env_str("REDIS_URL"),
        "KEY_PREFIX": "portal",
    }
    if env_str("REDIS_URL")
    else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
}

# Inference workers. Device: "" = CUDA when present (mixed precision), else CPU.
PORTAL_INFERENCE_DEVICE = env_str("PORTAL_INFERENCE_DEVICE")
PORTAL_INFERENCE_BATCH = env_int("PORTAL_INFERENCE_BATCH", 8, minimum=1)
# Batches one inference task predicts at most, each claimed when the loader thread is due to decode it (on a
# GPU while the model runs the previous one, on the CPU while the previous one's heatmaps are stored); each
# batch is stored as it ends. More batches a task: fewer task boundaries, where the loader stands idle. In
# embedded mode a task runs in the upload's request: one batch, so no upload waits for a queue of others.
PORTAL_INFERENCE_BATCHES_PER_TASK = env_int(
    "PORTAL_INFERENCE_BATCHES_PER_TASK", 1 if CELERY_TASK_ALWAYS_EAGER else 12, minimum=1
)
PORTAL_PREDICTION_SOFT_TIME_LIMIT = env_int("PORTAL_PREDICTION_SOFT_TIME_LIMIT", 300, minimum=10)
# A prediction `running` for longer than this is taken to belong to a dead worker.
PORTAL_PREDICTION_STALE_SECONDS = env_int("PORTAL_PREDICTION_STALE_SECONDS", 600, minimum=1)
# A prediction still `queued` after this long has its task published again.
PORTAL_PREDICTION_REQUEUE_SECONDS = env_int("PORTAL_PREDICTION_REQUEUE_SECONDS", 300, minimum=1)
PORTAL_PREDICTION_MAX_ATTEMPTS = env_int("PORTAL_PREDICTION_MAX_ATTEMPTS", 3, minimum=1)
# Renditions (queue "render"): an image without one after this long has its task sent again
# (a render worker died, or the broker lost the task); after this many tries it fails with the reason.
PORTAL_RENDER_STALE_SECONDS = env_int("PORTAL_RENDER_STALE_SECONDS", 300, minimum=1)
PORTAL_RENDER_MAX_ATTEMPTS = env_int("PORTAL_RENDER_MAX_ATTEMPTS", 3, minimum=1)
# Retraining (screening.ai.services.training).
PORTAL_VALIDATION_FRACTION = env_int("PORTAL_VALIDATION_PERCENT", 20, minimum=1) / 100
PORTAL_PROMOTION_AUC_MARGIN = env_int("PORTAL_PROMOTION_AUC_MARGIN_PERMILLE", 20, minimum=0) / 1000
PORTAL_TRAINING_FROM_SCRATCH = env_bool("PORTAL_TRAINING_FROM_SCRATCH", False)
PORTAL_REPREDICT_ON_PROMOTION = env_bool("PORTAL_REPREDICT_ON_PROMOTION", False)
PORTAL_TRAINING_STALE_SECONDS = env_int("PORTAL_TRAINING_STALE_SECONDS", 1800, minimum=60)
# Training worker: hard limit for one retraining run (seconds), and the soft limit at which the run stops
# itself cleanly (failed, with the reason) before the hard one kills it.
PORTAL_TRAINING_TIME_LIMIT = env_int("PORTAL_TRAINING_TIME_LIMIT", 4 * 3600, minimum=60)
PORTAL_TRAINING_SOFT_TIME_LIMIT = env_int(
    "PORTAL_TRAINING_SOFT_TIME_LIMIT", max(30, PORTAL_TRAINING_TIME_LIMIT - 60), minimum=0
)
if PORTAL_TRAINING_SOFT_TIME_LIMIT >= PORTAL_TRAINING_TIME_LIMIT:
    raise ImproperlyConfigured("PORTAL_TRAINING_SOFT_TIME_LIMIT must be below PORTAL_TRAINING_TIME_LIMIT")
# A run still `queued` after this long is taken to be lost by the broker.
PORTAL_TRAINING_QUEUED_STALE_SECONDS = env_int(
    "PORTAL_TRAINING_QUEUED_STALE_SECONDS", PORTAL_TRAINING_TIME_LIMIT + PORTAL_TRAINING_STALE_SECONDS, minimum=60
)
# Seed of every retraining run (the same labels give the same candidate).
PORTAL_TRAINING_SEED = env_int("PORTAL_TRAINING_SEED", 0, minimum=0)
# Device for training and for scoring the locked validation set ('' = cpu; 'cuda' on a GPU worker).
PORTAL_TRAINING_DEVICE = env_str("PORTAL_TRAINING_DEVICE")
# Backbone features cached between runs, keyed by image content.
PORTAL_TRAINING_CACHE_DIR = Path(env_str("PORTAL_TRAINING_CACHE_DIR", str(VAR_DIR / "training-cache")))
# Model settings a run uses instead of the champion's, as a JSON object: PORTAL_TRAINING_OVERRIDES='{"epochs": 20}'.
PORTAL_TRAINING_OVERRIDES = env_training_overrides("PORTAL_TRAINING_OVERRIDES")
CELERY_TIMEZONE = TIME_ZONE

# Origins (scheme://host[:port]) whose pages may call DICOMweb from the browser (CORS): a viewer such as
# OHIF served from another origin. None by default; "*" is refused (patient data, named origins only).
PORTAL_DICOMWEB_CORS_ORIGINS = env_origins("PORTAL_DICOMWEB_CORS_ORIGINS")
# The prebuilt OHIF viewer served at /ohif/ to readers (scripts/build_ohif.sh installs it there).
PORTAL_OHIF_DIR = Path(env_str("PORTAL_OHIF_DIR", str(BASE_DIR / "vendor" / "ohif")))

# OIDC bearer tokens (screening.api.authentication), off unless PORTAL_OIDC_ISSUER is set: the identity
# provider's issuer, the audience its access tokens carry for the portal, its JWKS URL (the `jwks_uri` of
# its discovery document), and the claim that holds the portal username.
PORTAL_OIDC_ISSUER = env_str("PORTAL_OIDC_ISSUER")
PORTAL_OIDC_AUDIENCE = env_str("PORTAL_OIDC_AUDIENCE")
PORTAL_OIDC_JWKS_URL = env_str("PORTAL_OIDC_JWKS_URL")
PORTAL_OIDC_USERNAME_CLAIM = env_str("PORTAL_OIDC_USERNAME_CLAIM", "preferred_username")
if PORTAL_OIDC_ISSUER and not (PORTAL_OIDC_AUDIENCE and PORTAL_OIDC_JWKS_URL):
    raise ImproperlyConfigured("PORTAL_OIDC_ISSUER needs PORTAL_OIDC_AUDIENCE and PORTAL_OIDC_JWKS_URL")

REST_FRAMEWORK = {
    # Token first: its scheme is the one a 401's WWW-Authenticate names (never Basic, which would make a
    # browser whose session ended pop up a password dialog over the viewer).
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "screening.api.authentication.BearerAuthentication",
        "screening.api.authentication.GuardedBasicAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["screening.api.permissions.HasPortalRole"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "screening.api.errors.exception_handler",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_THROTTLE_RATES": {
        "uploads": env_str("PORTAL_UPLOAD_THROTTLE", "600/minute"),
    },
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Breast screening portal API",
    "DESCRIPTION": "Research use only. Not a medical device.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["screening.api.permissions.HasPortalRole"],
    # Swagger UI from the installed sidecar package: no CDN, works offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "ImageStatusEnum": "screening.models.Image.Status",
        "StudyStatusEnum": "screening.models.Study.Status",
        "PredictionStatusEnum": "screening.models.Prediction.Status",
        "LateralityEnum": "screening.models.Image.Laterality",
        "FindingTypeEnum": "screening.models.Finding.Type",  # a mark's type; the lexicon finding's has its own
        "UploadLateralityEnum": [("L", "Left"), ("R", "Right")],
        # DICOM and HL7 sends share one choice set: one enum for both
        "ExportStatusEnum": "screening.models.DicomExport.Status",
    },
}

# Production hardening (manage.py check --deploy is clean with PORTAL_ENV=production).
if PRODUCTION:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 31536000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
# Every page may run only the portal's own scripts and styles (no inline code, no CDN).
# The API docs use drf-spectacular's split Swagger view, so they need no exception.
# The case viewer (Cornerstone3D) decodes compressed DICOM pixel data with WebAssembly codecs in
# Web Workers: 'wasm-unsafe-eval' lets a page compile WebAssembly (it allows no JavaScript eval),
# and the workers are the portal's own files ('self').
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF, "'wasm-unsafe-eval'"],
        "worker-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:", "blob:"],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}
SESSION_COOKIE_HTTPONLY = True

# Logs carry ids, never patient names or identifiers.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("PORTAL_LOG_LEVEL", "INFO")},
    # axes logs every login at INFO; its lockout warnings stay.
    "loggers": {"django.request": {"level": "ERROR"}, "axes": {"level": "WARNING"}},
}

# Post-market monitoring (screening/monitoring): drift per model version against the reference it was
# validated on, subgroup performance, alerts. PSI above the threshold is a major shift (see drift.py).
PORTAL_MONITORING_PSI_THRESHOLD = env_int("PORTAL_MONITORING_PSI_THRESHOLD_PERMILLE", 250, minimum=1) / 1000
PORTAL_MONITORING_WINDOW_DAYS = env_int("PORTAL_MONITORING_WINDOW_DAYS", 30, minimum=1)
# Fewer images than this in a window (or a site's, or a source's): "too few images", no PSI, no alert.
PORTAL_MONITORING_MIN_IMAGES = env_int("PORTAL_MONITORING_MIN_IMAGES", 100, minimum=10)
# Images a run measures at most (window and locked reference alike; a stable hash-chosen sample beyond that):
# the worker reads each image's statistics once, from its original.
PORTAL_MONITORING_MAX_IMAGES = env_int("PORTAL_MONITORING_MAX_IMAGES", 3000, minimum=100)
# A version validated outside the portal: its first N images in service are its reference.
PORTAL_MONITORING_REFERENCE_IMAGES = env_int("PORTAL_MONITORING_REFERENCE_IMAGES", 200, minimum=10)
# Fewer cancers (or clear exams) than this in a subgroup: "too few cases", no alert.
PORTAL_MONITORING_MIN_CASES = env_int("PORTAL_MONITORING_MIN_CASES", 10, minimum=1)
# An acknowledged alert is not raised again on the same thing for this many days.
PORTAL_MONITORING_ACK_DAYS = env_int("PORTAL_MONITORING_ACK_DAYS", 30, minimum=0)
# Who gets alert e-mails (Django's e-mail backend, EMAIL_* settings); empty: the banner and the page only.
PORTAL_MONITORING_ALERT_EMAILS = env_list("PORTAL_MONITORING_ALERT_EMAILS")
# Outgoing mail (alert e-mails): Django's SMTP backend unless DJANGO_EMAIL_BACKEND names another.
EMAIL_BACKEND = env_str("DJANGO_EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
EMAIL_HOST = env_str("DJANGO_EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("DJANGO_EMAIL_PORT", 25, minimum=1)
EMAIL_HOST_USER = env_str("DJANGO_EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_secret("DJANGO_EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("DJANGO_EMAIL_USE_TLS", False)
EMAIL_TIMEOUT = 10
DEFAULT_FROM_EMAIL = env_str("DJANGO_DEFAULT_FROM_EMAIL", "screening-portal@localhost")
