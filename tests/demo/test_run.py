"""The demo's start-up wait for its servers and its instructions (demo/run.py)."""

import io
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import psycopg
import pytest
from django.db import connection
from django.utils import timezone

from conversations.models import Conversation, UserDailyUsage
from demo.run import (
    DEMO_ALREADY_RUNNING,
    DEMO_LOCK_KEY,
    SHOPPER_ID,
    TENANT_SLUG,
    app_command,
    check_log_directory,
    describe_assistant,
    free_port,
    http_error_exit,
    interrupt,
    keep_serving,
    lock_database,
    manage,
    parse_args,
    prepare_tenant,
    print_instructions,
    stop,
    stop_on_signals,
    wait_until_healthy,
)
from tenants.models import Tenant
from tests.factories import ConversationFactory
from tests.local_http import serving

PROJECT_DIR = Path(__file__).resolve().parents[2]


@contextmanager
def _server_returning(statuses: list[int]) -> Iterator[str]:
    """Serve each status of ``statuses`` in turn, then the last one for every request."""
    remaining = list(statuses)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status = remaining.pop(0) if len(remaining) > 1 else remaining[0]
            body = b'{"ok": true}' if status == 200 else b"error"
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    with serving(Handler) as url:
        yield f"{url}/health"


def _listening_socket() -> socket.socket:
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen()
    return server


def test_free_port_skips_listening_port():
    with _listening_socket() as server:
        listening_port = server.getsockname()[1]

        port = free_port(listening_port)

    assert port != listening_port
    assert port > 0


def test_free_port_keeps_port_in_time_wait():
    server = _listening_socket()
    port = server.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = server.accept()
    # The server's side closes first, as a stopped demo's servers do, so the port keeps a
    # connection in TIME_WAIT after the listening socket is gone.
    accepted.close()
    client.close()
    server.close()

    assert free_port(port) == port


@pytest.fixture
def idle_process() -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield process
    process.kill()
    process.wait()


def test_client_error_stops_wait_at_once(idle_process):
    with _server_returning([400]) as url:
        started = time.monotonic()
        with pytest.raises(SystemExit) as raised:
            wait_until_healthy(url, idle_process, "app")
        assert time.monotonic() - started < 5
        assert "HTTP 400" in str(raised.value)
        assert ".demo/app.log" in str(raised.value)


def test_server_error_is_retried(idle_process):
    with _server_returning([503, 503, 200]) as url:
        wait_until_healthy(url, idle_process, "app")


def test_instructions_name_the_pid_to_stop(capsys):
    credentials = {
        "public_key": "pk_live_public",
        "secret_key": "sk_live_secret",
        "admin_password": "password",
    }

    print_instructions(app_url="http://127.0.0.1:8000", credentials=credentials)

    output = capsys.readouterr().out
    assert f"run `kill {os.getpid()}` in another shell." in output
    assert "Bearer pk_live_public" in output


def test_keep_serving_stops_when_parent_exits(monkeypatch, capsys):
    servers = [_idle(), _idle(), _idle()]
    worker = _idle()
    processes = [*servers, worker]
    parent_pids = iter([100, 100, 1])
    monkeypatch.setattr(os, "getppid", lambda: next(parent_pids))
    monkeypatch.setattr(time, "sleep", lambda seconds: None)
    try:
        keep_serving(processes)

        assert processes == [*servers, worker]
        assert all(process.poll() is None for process in processes)
        output = capsys.readouterr().out
        assert output == "The process that started the demo exited; stopping.\n"
    finally:
        for process in processes:
            process.kill()
            process.wait()


def _start_in_new_session(
    command: list[str], *, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """Start ``command`` in the project folder as its own process group, with text pipes."""
    return subprocess.Popen(
        command,
        cwd=PROJECT_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _idle() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGHUP])
def test_stop_signals_raise_keyboard_interrupt(signal_number):
    previous = {number: signal.getsignal(number) for number in (signal.SIGTERM, signal.SIGHUP)}
    try:
        stop_on_signals()
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal_number)
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def test_stop_signals_undo_ignored_sigint():
    # `make demo &` in a script starts the demo with SIGINT ignored.
    script = (
        "import signal\n"
        "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        "from demo.run import stop_on_signals\n"
        "stop_on_signals()\n"
        "try:\n"
        "    signal.raise_signal(signal.SIGINT)\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout == "interrupted\n"


def test_second_interrupt_does_not_break_stop():
    # An impatient user presses Ctrl-C again while the demo stops its servers.
    script = (
        "import subprocess, sys\n"
        "from demo.run import stop, stop_on_signals\n"
        "stop_on_signals()\n"
        "child = subprocess.Popen(\n"
        "    [sys.executable, '-c', 'import signal, time; "
        "signal.signal(signal.SIGTERM, signal.SIG_IGN); print(1, flush=True); time.sleep(3)'],\n"
        "    stdout=subprocess.PIPE, start_new_session=True,\n"
        ")\n"
        "child.stdout.readline()\n"
        "print('stopping', flush=True)\n"
        "stop([child])\n"
        "print('stopped', child.returncode, flush=True)\n"
    )
    demo = _start_in_new_session([sys.executable, "-c", script])
    assert demo.stdout is not None
    assert demo.stdout.readline() == "stopping\n"
    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        time.sleep(0.3)
        os.kill(demo.pid, number)
    stdout, stderr = demo.communicate(timeout=60)

    assert demo.returncode == 0, stderr
    assert stdout == "stopped 0\n"
    assert "Traceback" not in stderr
    assert "KeyboardInterrupt" not in stderr


def test_stop_restores_signal_handlers():
    previous = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        stop_on_signals()
        stop([])

        assert signal.getsignal(signal.SIGINT) is interrupt
        assert signal.getsignal(signal.SIGTERM) is interrupt
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def test_stop_kills_process_that_ignores_sigterm(monkeypatch):
    monkeypatch.setattr("demo.run.STOP_TIMEOUT_SECONDS", 1)
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print(1, flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    assert process.stdout is not None
    process.stdout.readline()
    started = time.monotonic()

    stop([process])

    assert process.wait(timeout=10) == -signal.SIGKILL
    assert time.monotonic() - started < 10


def test_instructions_name_db_stop(capsys):
    credentials = {
        "public_key": "pk_live_public",
        "secret_key": "sk_live_secret",
        "admin_password": "password",
    }

    print_instructions(app_url="http://127.0.0.1:8000", credentials=credentials)

    output = capsys.readouterr().out
    assert "A local PostgreSQL that make started keeps running; `make db-stop` stops it." in output


def test_app_command_opens_no_control_socket(tmp_path):
    command = app_command()
    assert command[1:] == [
        "-c",
        "python:vizochok.gunicorn",
        "--no-control-socket",
        "vizochok.wsgi",
    ]
    env = {key: value for key, value in os.environ.items() if key != "XDG_RUNTIME_DIR"}
    env["HOME"] = str(tmp_path)
    env["GUNICORN_BIND"] = "127.0.0.1:0"
    env["GUNICORN_WORKERS"] = "1"
    log_path = tmp_path / "app.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while b"Booting worker" not in log_path.read_bytes():
            assert process.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert not (tmp_path / ".gunicorn").exists()
    assert b"Control socket" not in log_path.read_bytes()


def test_instructions_stream_without_progress_meter(capsys):
    credentials = {
        "public_key": "pk_live_public",
        "secret_key": "sk_live_secret",
        "admin_password": "password",
    }

    print_instructions(app_url="http://127.0.0.1:8000", credentials=credentials)

    output = capsys.readouterr().out
    assert "curl -sN -X POST http://127.0.0.1:8000/api/v1/conversations/" in output
    assert "curl -N " not in output


@pytest.mark.django_db
def test_prepare_tenant_erases_earlier_demo_shopper():
    prepare_tenant(merchant_url="http://127.0.0.1:9")
    tenant = Tenant.objects.get(slug=TENANT_SLUG)
    earlier = ConversationFactory(tenant=tenant, user_id=SHOPPER_ID, session_id=SHOPPER_ID)
    other = ConversationFactory(tenant=tenant, user_id="other-shopper", session_id="other-shopper")
    UserDailyUsage.objects.create(
        tenant=tenant,
        identity=f"user:{SHOPPER_ID}",
        date=timezone.now().date(),
        messages=140,
        conversations=20,
    )

    prepare_tenant(merchant_url="http://127.0.0.1:9")

    assert not Conversation.objects.filter(pk=earlier.pk).exists()
    assert not UserDailyUsage.objects.filter(tenant=tenant).exists()
    assert Conversation.objects.filter(pk=other.pk).exists()


@pytest.mark.django_db
def test_prepare_tenant_activates_deactivated_tenant(capsys):
    prepare_tenant(merchant_url="http://127.0.0.1:9")
    Tenant.objects.filter(slug=TENANT_SLUG).update(is_active=False)
    capsys.readouterr()

    prepare_tenant(merchant_url="http://127.0.0.1:9")

    assert Tenant.objects.get(slug=TENANT_SLUG).is_active is True
    assert capsys.readouterr().out == (
        "  The tenant 'demo-atb' was deactivated; the demo activated it again.\n"
    )


@pytest.mark.django_db
def test_prepare_tenant_keeps_active_tenant_quiet(capsys):
    prepare_tenant(merchant_url="http://127.0.0.1:9")
    capsys.readouterr()

    prepare_tenant(merchant_url="http://127.0.0.1:9")

    assert Tenant.objects.get(slug=TENANT_SLUG).is_active is True
    assert capsys.readouterr().out == ""


def test_http_error_exit_shows_error_body():
    body = b'{"detail": "Too many conversations today.", "code": "user_conversation_limit"}'
    error = urllib.error.HTTPError(
        "http://127.0.0.1:8000/api/v1/conversations", 429, "Too Many Requests", {}, io.BytesIO(body)
    )

    exit_error = http_error_exit(error)

    assert str(exit_error) == (
        "The request to http://127.0.0.1:8000/api/v1/conversations failed with HTTP 429: "
        '{"detail": "Too many conversations today.", "code": "user_conversation_limit"}\n'
        "See .demo/app.log for the app's side."
    )


def _other_session() -> psycopg.Connection:
    """Open a second session on the test database, as a second demo process would."""
    database = connection.settings_dict
    return psycopg.connect(
        dbname=database["NAME"],
        user=database["USER"],
        password=database["PASSWORD"],
        host=database["HOST"],
        port=database["PORT"],
        autocommit=True,
    )


def _try_lock(session: psycopg.Connection) -> bool:
    row = session.execute("SELECT pg_try_advisory_lock(%s)", [DEMO_LOCK_KEY]).fetchone()
    assert row is not None
    return bool(row[0])


@pytest.mark.django_db
def test_lock_database_rejects_second_demo():
    with _other_session() as running_demo:
        assert _try_lock(running_demo)

        with pytest.raises(SystemExit) as raised:
            lock_database()

    assert str(raised.value) == DEMO_ALREADY_RUNNING
    assert "make demo" in str(raised.value)


@pytest.mark.django_db
def test_lock_database_holds_lock_for_process():
    lock_database()
    try:
        with _other_session() as second_demo:
            assert not _try_lock(second_demo)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [DEMO_LOCK_KEY])


def test_demo_without_database_exits_with_message():
    env = {
        **os.environ,
        "DATABASE_URL": "postgres://postgres@127.0.0.1:9/vizochok_missing",
        "DEMO_APP_PORT": "0",
        "DEMO_MERCHANT_PORT": "0",
        "DEMO_WEBSOCKET_PORT": "0",
    }
    result = subprocess.run(
        [sys.executable, "demo/run.py", "--once"],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 1
    assert result.stderr.startswith(
        "Cannot connect to the database 'vizochok_missing' at 127.0.0.1:9: "
    )
    assert "Check DATABASE_URL" in result.stderr
    assert "Traceback" not in result.stderr
    assert "Migrating" not in result.stdout
    assert "Stopped" not in result.stdout


def _run_demo_without_database(**variables: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DATABASE_URL": "postgres://postgres@127.0.0.1:9/vizochok_missing",
        "DJANGO_ENV_FILE": "",
        "DEMO_APP_PORT": "0",
        "DEMO_MERCHANT_PORT": "0",
        "DEMO_WEBSOCKET_PORT": "0",
        **variables,
    }
    return subprocess.run(
        [sys.executable, "demo/run.py", "--once"],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_demo_rejects_hosts_without_loopback():
    result = _run_demo_without_database(DJANGO_ALLOWED_HOSTS="shop-assistant.example.com")

    assert result.returncode == 1
    assert result.stderr == (
        "DJANGO_ALLOWED_HOSTS is 'shop-assistant.example.com', from the environment or .env, "
        "and does not allow 127.0.0.1, where the demo serves. Add 127.0.0.1 to it, or remove "
        "it from .env to get the development default.\n"
    )
    assert result.stdout == ""


def test_demo_accepts_hosts_with_loopback():
    result = _run_demo_without_database(DJANGO_ALLOWED_HOSTS="shop.example,127.0.0.1")

    assert result.returncode == 1
    assert result.stderr.startswith("Cannot connect to the database 'vizochok_missing'")


def test_demo_invalid_settings_exit_without_traceback():
    result = _run_demo_without_database(DATABASE_URL="sqlite:///demo.sqlite3")

    assert result.returncode == 1
    assert result.stderr.startswith(
        "Invalid settings: DATABASE_URL is a URL with the scheme 'sqlite', which is not a "
        "PostgreSQL URL."
    )
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_failed_command_exits_with_its_name():
    with pytest.raises(SystemExit) as raised:
        manage("no_such_command")

    assert str(raised.value) == (
        "manage.py no_such_command failed with exit status 1. See its output above."
    )


def test_interrupted_command_stops_without_traceback():
    # Ctrl-C in a terminal sends SIGINT to the whole foreground process group.
    script = (
        "from demo.run import manage, stop_on_signals\n"
        "stop_on_signals()\n"
        "print('started', flush=True)\n"
        "try:\n"
        "    manage('shell', '-v', '0', '-c', 'import time; time.sleep(60)')\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted')\n"
    )
    demo = _start_in_new_session([sys.executable, "-c", script])
    assert demo.stdout is not None
    assert demo.stdout.readline() == "started\n"
    # Time for the command to reach its sleep.
    time.sleep(5)
    started = time.monotonic()
    os.killpg(demo.pid, signal.SIGINT)
    stdout, stderr = demo.communicate(timeout=60)

    assert demo.returncode == 0, stderr
    assert stdout == "interrupted\n"
    assert "Traceback" not in stderr
    assert "KeyboardInterrupt" not in stderr
    assert time.monotonic() - started < 15


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("signal_number", "shell_status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)]
)
def test_stopped_demo_ends_by_its_signal(signal_number, shell_status):
    database = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": (
            f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}/"
            f"{database['NAME']}"
        ),
        "DJANGO_ENV_FILE": "",
        "DEMO_APP_PORT": "0",
        "DEMO_MERCHANT_PORT": "0",
        "DEMO_WEBSOCKET_PORT": "0",
    }
    demo = _start_in_new_session([sys.executable, "demo/run.py", "--once"], env=env)
    assert demo.stdout is not None
    while "Migrating the database" not in demo.stdout.readline():
        assert demo.poll() is None, demo.stderr.read() if demo.stderr else ""
    os.kill(demo.pid, signal_number)
    stdout, stderr = demo.communicate(timeout=60)

    # subprocess reports a death by signal N as -N, which a shell reports as 128 + N.
    assert demo.returncode == -signal_number, stderr
    assert 128 - demo.returncode == shell_status
    assert stdout.endswith("\nStopped before starting any server.\n")
    assert "Traceback" not in stderr


def test_keep_serving_exits_when_a_server_stops(monkeypatch, capsys):
    stopped = subprocess.Popen([sys.executable, "-c", "pass"])
    stopped.wait()
    servers = [_idle(), stopped, _idle()]
    worker = _idle()
    monkeypatch.setattr(time, "sleep", lambda seconds: None)
    try:
        with pytest.raises(SystemExit) as raised:
            keep_serving([*servers, worker])

        assert str(raised.value) == "A server stopped unexpectedly; see the logs in .demo/."
        assert capsys.readouterr().out == ""
    finally:
        for process in [*servers, worker]:
            process.kill()
            process.wait()


def _process_running(pid: int) -> bool:
    """Return whether ``pid`` runs; a zombie that no parent has reaped yet does not."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    # The state follows the command name, which is in parentheses and may hold spaces.
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.skipif(sys.platform != "linux", reason="The parent death signal is Linux's.")
def test_killed_demo_stops_its_command(tmp_path):
    pid_file = tmp_path / "command.pid"
    command = (
        f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    )
    script = f"from demo.run import manage\nmanage('shell', '-v', '0', '-c', {command!r})\n"
    demo = subprocess.Popen([sys.executable, "-c", script], cwd=PROJECT_DIR)
    command_pid = None
    try:
        deadline = time.monotonic() + 60
        while not pid_file.exists() or not pid_file.read_text():
            assert time.monotonic() < deadline, "The command did not start within 60 s."
            time.sleep(0.1)
        command_pid = int(pid_file.read_text())
        assert _process_running(command_pid)

        demo.kill()
        demo.wait(timeout=10)

        deadline = time.monotonic() + 15
        while _process_running(command_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _process_running(command_pid)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        if command_pid is not None and _process_running(command_pid):
            os.kill(command_pid, signal.SIGKILL)


@pytest.mark.parametrize(
    ("base_url", "shown"),
    [
        ("http://user:secret@127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1"),
        ("https://sk-secret@llm.example/v1", "https://llm.example/v1"),
        ("http://127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1"),
    ],
)
def test_assistant_line_hides_url_credentials(settings, base_url, shown):
    settings.OPENAI_BASE_URL = base_url
    settings.LLM_COMPLEX_MODEL = "big"
    settings.LLM_FAST_MODEL = "small"

    line = describe_assistant()

    assert line == (
        f"the LLM agent at {shown} (complex model big, fast model small, "
        "unless the tenant sets its own)"
    )
    assert "secret" not in line


def test_log_directory_not_writable_exits(monkeypatch, tmp_path):
    # A directory below a regular file cannot be created, even by root, as in a read-only
    # checkout.
    (tmp_path / "checkout").write_text("")
    state = tmp_path / "checkout" / ".demo"
    monkeypatch.setattr("demo.run.STATE", state)

    with pytest.raises(SystemExit) as raised:
        check_log_directory()

    assert raised.value.code == (
        f"Cannot write the demo's server logs in {state}: Not a directory."
        " Run the demo from a checkout that you can write to."
    )
    assert not state.exists()


def test_log_directory_creates_log_files(monkeypatch, tmp_path):
    state = tmp_path / ".demo"
    monkeypatch.setattr("demo.run.STATE", state)

    check_log_directory()

    assert sorted(path.name for path in state.iterdir()) == [
        "app.log",
        "merchant.log",
        "websocket.log",
        "worker.log",
    ]


@pytest.mark.parametrize(
    ("arguments", "environment", "message"),
    [
        (["--app-port", "70000"], {}, "argument --app-port: must be a whole number from 0"),
        (["--merchant-port", "-1"], {}, "argument --merchant-port: must be a whole number from"),
        (["--websocket-port", "x"], {}, "argument --websocket-port: must be a whole number from"),
        ([], {"DEMO_APP_PORT": "65536"}, "DEMO_APP_PORT must be a whole number from 0"),
        ([], {"DEMO_WEBSOCKET_PORT": "80a"}, "DEMO_WEBSOCKET_PORT must be a whole number from 0"),
    ],
)
def test_demo_rejects_invalid_port(arguments, environment, message):
    result = subprocess.run(
        [sys.executable, "demo/run.py", "--once", *arguments],
        cwd=PROJECT_DIR,
        env={**os.environ, **environment},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 2
    assert f"run.py: error: {message}" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_demo_port_from_environment(monkeypatch):
    monkeypatch.setenv("DEMO_APP_PORT", "8100")
    monkeypatch.delenv("DEMO_MERCHANT_PORT", raising=False)
    monkeypatch.setattr(sys, "argv", ["run.py", "--websocket-port", "8102"])

    args = parse_args()

    assert args.app_port == 8100
    assert args.merchant_port == 8001
    assert args.websocket_port == 8102


def test_free_port_picks_port_for_zero():
    port = free_port(0)

    assert 1 <= port <= 65535
