"""Cargohold settings. Everything a deployment changes comes from the environment.

Over 450 lines: one flat list of documented settings (Django's convention); each block is short.
"""

from pathlib import Path

import dj_database_url
from datetime import timedelta

from project.env import env, env_bool, env_int, env_list

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env("CARGOHOLD_VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    # A stable per-installation key, so sessions survive restarts without configuration.
    _key_file = VAR_DIR / "secret_key"
    try:
        SECRET_KEY = _key_file.read_text().strip()
    except FileNotFoundError:
        import secrets

        VAR_DIR.mkdir(parents=True, exist_ok=True)
        SECRET_KEY = secrets.token_urlsafe(50)
        _key_file.write_text(SECRET_KEY)
        _key_file.chmod(0o600)

# Secrets at rest (repository credentials and passwords): see project/crypto.py.
ENCRYPTION_KEYS = env_list("CARGOHOLD_ENCRYPTION_KEY", "")
if not ENCRYPTION_KEYS and env("DJANGO_SECRET_KEY", ""):
    # Every process of a deployment shares DJANGO_SECRET_KEY (Compose's web, worker, beat
    # have no var/ in common): derive the key from it (HKDF) so they all agree. Set
    # CARGOHOLD_ENCRYPTION_KEY before ever changing the secret key (README).
    import base64

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    ENCRYPTION_KEYS = [base64.urlsafe_b64encode(HKDF(
        algorithm=hashes.SHA256(), length=32, salt=b"cargohold repository secrets", info=b"fernet",
    ).derive(env("DJANGO_SECRET_KEY").encode())).decode()]
if not ENCRYPTION_KEYS:
    import base64
    import os as _os
    import time as _time

    _enc_file = VAR_DIR / "encryption_key"
    for _ in range(50):  # web, worker and beat may start together on a fresh install
        try:
            _text = _enc_file.read_text().strip()
        except FileNotFoundError:
            # Written whole under a temporary name, then linked into place: another process
            # never reads a half-written key, and exactly one key wins.
            VAR_DIR.mkdir(parents=True, exist_ok=True)
            _tmp = VAR_DIR / f".encryption_key.{_os.getpid()}"
            _fd = _os.open(_tmp, _os.O_WRONLY | _os.O_CREAT | _os.O_TRUNC, 0o600)
            with _os.fdopen(_fd, "w") as _f:
                _f.write(base64.urlsafe_b64encode(_os.urandom(32)).decode())
            try:
                _os.link(_tmp, _enc_file)
            except FileExistsError:
                pass
            finally:
                _tmp.unlink()
            continue
        if _text:
            ENCRYPTION_KEYS = [_text]
            break
        _time.sleep(0.1)
    else:
        raise RuntimeError(f"{_enc_file} is empty: put a Fernet key in it or set CARGOHOLD_ENCRYPTION_KEY")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1],testserver")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "template_partials",
    "accounts",
    "jobs",
    "volumes",
    "backups",
    "restores",
    "insights",
    "django_celery_beat",
    "policies",
    "drills",  # restore drills (after policies: a drill belongs to a policy)
    "axes",  # login throttling; lockouts and lifts reach the audit trail through accounts.signals
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's JS and CSS from PyPI: no CDN needed
    "api",
    "metrics",
    "repositories",  # where backups go: the local folder, S3 buckets, restic repositories
    "hosts",  # the Docker hosts, each served by its own worker (hosts.refs: volume references)
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
    "django_htmx.middleware.HtmxMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "accounts.middleware.AuditActorMiddleware",
    # Last, as django-axes asks: it turns a lockout flagged during login into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "project.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            # {{ n|size }} (binary units) and {{ d|pretty_json }} in every template without {% load %}.
            "builtins": ["project.templatetags.display"],
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "volumes.context_processors.engine_status",
                "accounts.context_processors.user_role",
            ],
        },
    },
]

WSGI_APPLICATION = "project.wsgi.application"

DATABASES = {
    "default": dj_database_url.parse(
        env("DATABASE_URL", f"sqlite:///{VAR_DIR / 'cargohold.sqlite3'}"), conn_max_age=60
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web, worker, beat and watcher share one SQLite file: WAL lets readers run beside a
    # writer, IMMEDIATE transactions avoid lock-upgrade deadlocks, the timeout waits out
    # short write bursts instead of failing with "database is locked".
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and not env_bool("CARGOHOLD_POSTGRES_JIT", False):
    # No JIT: PostgreSQL compiled the overview's counting queries (many CASE terms, costed
    # high at 10,000 volumes) before running them, and that took longer than running them:
    # 2.1 s instead of 0.23 s for one (bench/many_hosts.py --profile /). Nothing here runs
    # the long analytical queries JIT is for.
    DATABASES["default"].setdefault("OPTIONS", {})["options"] = "-c jit=off"
if env("CARGOHOLD_TEST_DB"):
    # The tests' database (tests/envsetup.py): a SQLite file or a PostgreSQL database name
    # that the worker processes the tests start find under the same name.
    DATABASES["default"]["TEST"] = {"NAME": env("CARGOHOLD_TEST_DB")}

# Which Cargohold this is, on the containers it starts (volumes.engine.helper_labels): job
# ids are unique within one database only. Default: derived from the database's identity,
# the same for every process of one installation; set it when two share one database name.
INSTALL_ID = env("CARGOHOLD_INSTALL_ID", "") or __import__("hashlib").sha256(
    "|".join(str(DATABASES["default"].get(k) or "") for k in ("ENGINE", "HOST", "PORT", "NAME")).encode()
).hexdigest()[:12]

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True

# --- Security: HTTPS, login throttling --------------------------------------------
# Off by default so `make run` works on http://127.0.0.1; a deployment behind HTTPS sets
# CARGOHOLD_HTTPS=1 (README, "Deployment"), which is what `check --deploy` expects.
HTTPS = env_bool("CARGOHOLD_HTTPS", False)
# Reverse proxies in front of Cargohold that append the client's address to X-Forwarded-For
# (and set X-Forwarded-Proto). 0: trust no header, the TCP peer is the client.
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0)
SECURE_SSL_REDIRECT = HTTPS
SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", HTTPS)
CSRF_COOKIE_SECURE = env_bool("SECURE_COOKIES", HTTPS)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000) if HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
if not SECURE_HSTS_PRELOAD:
    # Asking browsers to preload the domain is its owner's decision, not a default of ours.
    SILENCED_SYSTEM_CHECKS = ["security.W021"]
if TRUSTED_PROXY_COUNT:
    # Only a proxy can be trusted to say the browser used HTTPS; without one the header
    # would let any client claim it.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"

AUTHENTICATION_BACKENDS = [
    # First: refuses a locked-out account or address before any password is checked.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# Locked when either the account or the address reaches the limit within the cool-off, so
# neither many guesses at one account nor one guess at many accounts gets through. Per
# database: each test process (and each deployment) counts its own failures.
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("LOGIN_LOCKOUT_MINUTES", 15))
# Attempts while locked neither count nor extend the lockout, so the page can say how long.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "accounts.views.login_locked_out"
AXES_ENABLE_ADMIN = False  # lockouts are lifted on /accounts/lockouts/ (audited), not by editing rows
AXES_VERBOSE = False
# The client's address for throttling and the audit trail: REMOTE_ADDR, or behind
# TRUSTED_PROXY_COUNT proxies the address the outermost one saw (X-Forwarded-For).
AXES_CLIENT_IP_CALLABLE = "accounts.services.client_address"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", "INFO")},
    # axes: its warnings name each failed login; its INFO lines are routine clean-ups.
    "loggers": {"docker": {"level": "WARNING"}, "urllib3": {"level": "WARNING"}, "axes": {"level": "WARNING"}},
}

# --- Cargohold ---------------------------------------------------------------
DOCKER_HOST = env("DOCKER_HOST", "")  # empty: the docker SDK's default (unix socket)
# The host made from DOCKER_HOST on every install; its volumes keep their plain names.
DEFAULT_HOST_NAME = env("CARGOHOLD_DEFAULT_HOST", "local")
# The host this process's worker serves (`manage.py host_worker --host NAME` sets it).
WORKER_HOST = env("CARGOHOLD_WORKER_HOST", "")
# A host's worker reports every HOST_HEARTBEAT_SECONDS; silent for HOST_OFFLINE_SECONDS, it is offline.
HOST_HEARTBEAT_SECONDS = float(env("HOST_HEARTBEAT_SECONDS", "10"))
HOST_OFFLINE_SECONDS = float(env("HOST_OFFLINE_SECONDS", "45"))
DOCKER_TIMEOUT = env_int("DOCKER_TIMEOUT", 30)
HELPER_IMAGE = env("CARGOHOLD_HELPER_IMAGE", "busybox:stable")
# GNU tar + zstd (+ restic) run next to the data (helper/, scripts/setup.sh); empty: none.
DATA_HELPER_IMAGE = env("CARGOHOLD_DATA_HELPER_IMAGE", "cargohold-data-helper:current")
# auto: the data helper when its image is on the engine, else the engine's archive
# endpoint; helper: the helper or fail; engine: always the archive endpoint (loses user.*
# xattrs, ACLs, sub-second times and holes; slower: README "Speed").
DATA_PATH = env("CARGOHOLD_DATA_PATH", "auto")
if DATA_PATH not in ("auto", "helper", "engine"):
    raise ValueError(f"CARGOHOLD_DATA_PATH must be auto, helper or engine, got {DATA_PATH!r}")
# How the data helper's bytes reach the worker: fifo, a FIFO in a private folder under
# DATA_CHANNEL_DIR that the helper gets bind-mounted (the worker beside its engine: dockerd
# relays nothing); attach, the engine's attach stream (works everywhere); auto: fifo where
# a probe (once per process) shows it works, else attach (README "Data helper").
DATA_CHANNEL = env("CARGOHOLD_DATA_CHANNEL", "auto")
if DATA_CHANNEL not in ("auto", "attach", "fifo"):
    raise ValueError(f"CARGOHOLD_DATA_CHANNEL must be auto, attach or fifo, got {DATA_CHANNEL!r}")
DATA_CHANNEL_DIR = Path(env("CARGOHOLD_DATA_CHANNEL_DIR", str(VAR_DIR / "channels")))
# What a single-pass restore sends over the FIFO channel (the attach stream always carries
# the stored zstd bytes): tar (default), the tar the worker decompressed and checked, so the
# helper runs tar -x alone and zstd runs once per byte; zstd, the stored bytes (the helper
# decompresses them again, as before).
RESTORE_FIFO_FORM = env("CARGOHOLD_RESTORE_FIFO_FORM", "tar")
if RESTORE_FIFO_FORM not in ("tar", "zstd"):
    raise ValueError(f"CARGOHOLD_RESTORE_FIFO_FORM must be tar or zstd, got {RESTORE_FIFO_FORM!r}")
BACKUP_ROOT = Path(env("BACKUP_ROOT", str(VAR_DIR / "backups")))
# A backup waits this long in the queue for another operation on its volume, then is refused.
BACKUP_LOCK_WAIT_SECONDS = env_int("BACKUP_LOCK_WAIT_SECONDS", 300)
BACKUP_ZSTD_LEVEL = env_int("BACKUP_ZSTD_LEVEL", 3)
# Engine-path zstd archives are cut into independent frames of this much tar (the data
# helper's pzstd picks its own: 8 MiB at level 3). backups.partial reads
# one file by decompressing only the frames that hold it; plain `zstd -dc` reads them all).
BACKUP_FRAME_BYTES = env_int("BACKUP_FRAME_BYTES", 32 << 20)
BACKUP_GZIP_LEVEL = env_int("BACKUP_GZIP_LEVEL", 6)
# S3 archives go up in parts of this size (at least 5 MiB; a worker holds about two; the
# size doubles after 1,000 parts, triples after 2,000...: S3 allows 10,000 parts).
S3_PART_SIZE = env_int("CARGOHOLD_S3_PART_SIZE", 8 << 20)

SYNC_INTERVAL_SECONDS = env_int("SYNC_INTERVAL_SECONDS", 30)
SIZE_REFRESH_SECONDS = env_int("SIZE_REFRESH_SECONDS", 300)
# The event watcher measures sizes after changes: events within SIZE_DEBOUNCE_SECONDS are one
# measurement, one at a time, at least SIZE_MIN_INTERVAL_SECONDS apart (bench/sizes.py: its cost).
SIZE_DEBOUNCE_SECONDS = float(env("SIZE_DEBOUNCE_SECONDS", "2"))
SIZE_MIN_INTERVAL_SECONDS = float(env("SIZE_MIN_INTERVAL_SECONDS", "15"))
# The engine is "down" for the banner when the last sync attempt failed or no sync
# succeeded for this long.
ENGINE_STALE_SECONDS = env_int("ENGINE_STALE_SECONDS", 180)

# --- Celery ------------------------------------------------------------------
REDIS_URL = env("REDIS_URL", "redis://127.0.0.1:6379/0")
CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_DEFAULT_QUEUE = env("CELERY_QUEUE", "cargohold")
CELERY_TASK_ACKS_LATE = True
# A pool child lost mid-task: acknowledge (never run a job twice); jobs.signals fails its job.
CELERY_TASK_REJECT_ON_WORKER_LOST = False
# How long the main process waits for a lost child's last words before it reports
# WorkerLostError (Celery's default is 10 s). We keep no results, so a short wait only
# makes a killed child's job fail sooner.
CELERY_WORKER_LOST_WAIT = float(env("CELERY_WORKER_LOST_WAIT", "2"))
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Redis hands an unacknowledged message out again after this. Longer than any task's
# time limit (the longest, volume prune, is about an hour); backups, restores and
# imports have no time limit and may outlast it: their second delivery finds the job
# running under a live owner and leaves it alone (jobs.runner._claim).
BROKER_VISIBILITY_TIMEOUT_SECONDS = env_int("CELERY_VISIBILITY_TIMEOUT_SECONDS", 6 * 3600)
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": BROKER_VISIBILITY_TIMEOUT_SECONDS}
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
# Engine work runs on every host: beat sends hosts.tasks.on_every_host, which sends the
# named task to each host's queue (the worker beside that engine runs it).
CELERY_BEAT_SCHEDULE = {
    "sync-mirror": {
        "task": "hosts.tasks.on_every_host",
        "args": ["volumes.tasks.sync_mirror", SYNC_INTERVAL_SECONDS],
        "schedule": timedelta(seconds=SYNC_INTERVAL_SECONDS),
        "options": {"expires": SYNC_INTERVAL_SECONDS},
    },
    "refresh-sizes": {
        "task": "hosts.tasks.on_every_host",
        "args": ["volumes.tasks.refresh_sizes", SIZE_REFRESH_SECONDS],
        "schedule": timedelta(seconds=SIZE_REFRESH_SECONDS),
        "options": {"expires": SIZE_REFRESH_SECONDS},
    },
    "sweep-stale-jobs": {
        "task": "hosts.tasks.on_every_host",
        "args": ["jobs.tasks.sweep_stale_jobs", 60],
        "schedule": timedelta(seconds=60),
        "options": {"expires": 60},
    },
}

JOB_HEARTBEAT_SECONDS = float(env("JOB_HEARTBEAT_SECONDS", "1"))
# A running job whose heartbeat is older than this has an owner proven gone: the sweep,
# start-up recovery and a second delivery of its message fail it. Many beats long.
JOB_STALE_SECONDS = env_int("JOB_STALE_SECONDS", 60)
# Locks are refreshed by the heartbeat; one left by a dead worker expires after this.
# Longer than JOB_STALE_SECONDS: a live job's lock never expires before its owner
# could be presumed dead.
LOCK_TTL_SECONDS = env_int("LOCK_TTL_SECONDS", 120)
# Extra task modules for the worker (the test suite registers demo tasks this way).
CELERY_IMPORTS = env_list("CELERY_EXTRA_IMPORTS", "")

# --- Insights: usage history, overview, risks -----------------------------------------
# The sampler reuses the size refresh's measurement when it is fresh (see insights.services).
USAGE_SAMPLE_SECONDS = env_int("USAGE_SAMPLE_SECONDS", 600)
# Samples are thinned (all for 48 h, hourly for 7 days, daily after) and dropped after this.
USAGE_HISTORY_DAYS = env_int("USAGE_HISTORY_DAYS", 90)
RISK_WRITABLE_LAYER_BYTES = env_int("RISK_WRITABLE_LAYER_BYTES", 100 * 1024 * 1024)
RISK_ANONYMOUS_VOLUME_BYTES = env_int("RISK_ANONYMOUS_VOLUME_BYTES", 1024 * 1024)
RISK_BACKUP_MAX_AGE_DAYS = env_int("RISK_BACKUP_MAX_AGE_DAYS", 7)
# Host paths flagged like /etc when bind-mounted (comma-separated), besides the built-in ones.
RISK_SENSITIVE_PATHS = env_list("RISK_SENSITIVE_PATHS", "")
# Whole-catalogue figures whose last counting took this long are shown stale after a change
# while the page asks for a recount (insights.snapshot.counted); 0: always, after a change.
FIGURES_SLOW_MS = env_int("CARGOHOLD_FIGURES_SLOW_MS", 100)
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    # Those last figures: in the database (its table made by insights/migrations/0002), so
    # every web process shows them, also after a restart.
    "figures": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "cargohold_figures_cache",
                "TIMEOUT": 3600, "OPTIONS": {"MAX_ENTRIES": 5000}},
}
CELERY_BEAT_SCHEDULE["sample-usage"] = {
    "task": "hosts.tasks.on_every_host",
    "args": ["insights.tasks.sample_usage", USAGE_SAMPLE_SECONDS],
    "schedule": timedelta(seconds=USAGE_SAMPLE_SECONDS),
    "options": {"expires": USAGE_SAMPLE_SECONDS},
}
CELERY_BEAT_SCHEDULE["thin-usage"] = {
    "task": "insights.tasks.thin_usage",
    "schedule": timedelta(hours=1),
    "options": {"expires": 3600},
}

# --- Policies: scheduled backups, retention, health, notifications ----------------------
# Beat keeps its schedule in the database (django-celery-beat): policy edits in the UI
# take effect without restarting beat. The static entries above are imported into it.
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# Follow runs, prune, detect missed runs and overdue volumes this often.
POLICY_CHECK_SECONDS = env_int("POLICY_CHECK_SECONDS", 30)
# A due time with no run this long after it is recorded as missed.
POLICY_MISSED_GRACE_SECONDS = env_int("POLICY_MISSED_GRACE_SECONDS", 300)
CELERY_BEAT_SCHEDULE["check-policies"] = {
    "task": "policies.tasks.check_policies",
    "schedule": timedelta(seconds=POLICY_CHECK_SECONDS),
    "options": {"expires": POLICY_CHECK_SECONDS},
}
NOTIFY_WEBHOOK_TIMEOUT_SECONDS = env_int("NOTIFY_WEBHOOK_TIMEOUT_SECONDS", 10)
NOTIFY_MAX_ATTEMPTS = env_int("NOTIFY_MAX_ATTEMPTS", 5)
NOTIFY_RETRY_BASE_SECONDS = env_int("NOTIFY_RETRY_BASE_SECONDS", 30)
# Email for notifications: Django's settings, from the environment.
EMAIL_BACKEND = env("EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
EMAIL_HOST = env("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10)
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", "cargohold@localhost")

# --- Restores and imports -----------------------------------------------------------------
# Uploaded archives are saved here by the web process, then imported into BACKUP_ROOT by a
# worker (the web container mounts the backups read-only); it must be shared by both.
UPLOAD_DIR = Path(env("UPLOAD_DIR", str(VAR_DIR / "uploads")))
# The largest archive accepted for import (bytes; 0: no limit). Uploads stream to disk.
UPLOAD_MAX_BYTES = env_int("UPLOAD_MAX_BYTES", 20 * 1024**3)
# Emptying a volume before a restore in place runs a helper container this long at most.
RESTORE_EMPTY_TIMEOUT_SECONDS = env_int("RESTORE_EMPTY_TIMEOUT_SECONDS", 3600)
# Decompression bombs: an imported archive (no trusted record of its size) may expand to
# this many times its compressed size (gzip/zstd of real volumes stay under ~20x, logs and
# text under ~100x)... but always to IMPORT_EXPANSION_FREE_BYTES (small archives are
# harmless whatever their ratio: an empty preallocated file compresses 1000x), and never
# beyond IMPORT_MAX_EXPANDED_BYTES. An Admin can raise the limit for one import.
IMPORT_MAX_EXPANSION_RATIO = env_int("IMPORT_MAX_EXPANSION_RATIO", 200)
IMPORT_EXPANSION_FREE_BYTES = env_int("IMPORT_EXPANSION_FREE_BYTES", 256 * 1024**2)
IMPORT_MAX_EXPANDED_BYTES = env_int("IMPORT_MAX_EXPANDED_BYTES", 1024**4)

# --- REST API and metrics (api/, metrics/) ---------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "api.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",  # the browsable API, with CSRF
    ],
    "DEFAULT_PERMISSION_CLASSES": ["api.permissions.ApiAccess"],
    "DEFAULT_PAGINATION_CLASS": "api.pagination.Pagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "api.schema.AutoSchema",
    "EXCEPTION_HANDLER": "api.errors.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Cargohold API",
    "DESCRIPTION": "Volumes, backups, restores, policies, jobs and the audit trail of a Cargohold installation.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "ENUM_NAME_OVERRIDES": {
        "JobStatusEnum": "jobs.models.Job.Status",
        "PolicyRunStatusEnum": "policies.models.PolicyRun.Status",
        "CompressionEnum": "backups.models.Backup.Compression",
        "PolicyCompressionEnum": "policies.models.BackupPolicy.Compression",
    },
}
# A new API token's default lifetime (days) and the longest a user may choose.
API_TOKEN_DEFAULT_DAYS = env_int("API_TOKEN_DEFAULT_DAYS", 90)
API_TOKEN_MAX_DAYS = env_int("API_TOKEN_MAX_DAYS", 366)
# /metrics answers a scrape that sends `Authorization: Bearer $METRICS_TOKEN`, or comes from
# one of METRICS_ALLOWED_ADDRESSES (addresses or networks: 127.0.0.1,10.0.0.0/8). Neither
# set: /metrics answers 404 (off).
METRICS_TOKEN = env("METRICS_TOKEN", "")
METRICS_ALLOWED_ADDRESSES = env_list("METRICS_ALLOWED_ADDRESSES", "")
# Celery queues whose depth /metrics reports (default: the default queue).
METRICS_QUEUES = env_list("METRICS_QUEUES", "") or [CELERY_TASK_DEFAULT_QUEUE]

# --- Hooks, dumps of known images, restore drills (issue 15) ------------------------------
# A backup hook (container label or policy) without its own timeout is killed after this.
HOOK_TIMEOUT_SECONDS = env_int("HOOK_TIMEOUT_SECONDS", 300)
# A database dump (a recipe for a known image) or its load is killed after this.
DUMP_TIMEOUT_SECONDS = env_int("DUMP_TIMEOUT_SECONDS", 3600)
# A drill's probe (a policy's command, in a throw-away helper container) is stopped after this.
DRILL_PROBE_TIMEOUT_SECONDS = env_int("DRILL_PROBE_TIMEOUT_SECONDS", 600)
# A drill's scratch database server (to load a dump into) must answer within this.
DRILL_SERVER_START_SECONDS = env_int("DRILL_SERVER_START_SECONDS", 120)
CELERY_BEAT_SCHEDULE["start-due-drills"] = {
    "task": "drills.tasks.start_due_drills",
    "schedule": timedelta(hours=1),
    "options": {"expires": 3600},
}

# --- restic repositories (repositories.restic) -------------------------------------------
# Each restic repository is pruned (its forgotten snapshots' data removed) this often;
# 0: never on a schedule (the Prune button only). Beat looks hourly for the ones due.
RESTIC_PRUNE_EVERY_DAYS = env_int("RESTIC_PRUNE_EVERY_DAYS", 7)
# What `restic check` reads back when a restic backup is verified, unless the repository
# says otherwise (Repository.verify_read_subset): a percentage, n/m, or a size (500M).
RESTIC_VERIFY_READ_SUBSET = env("RESTIC_VERIFY_READ_SUBSET", "5%")
CELERY_BEAT_SCHEDULE["prune-restic-repositories"] = {
    "task": "repositories.tasks.restic_prune_due",
    "schedule": timedelta(hours=1),
    "options": {"expires": 3600},
}
