"""Run the Vizochok demo: a scripted shopper conversation against a live merchant backend.

Started by ``make demo`` with DATABASE_URL set. It migrates, prepares the demo tenant and
imports the ATB catalog. It then starts the reference merchant, the app under gunicorn, the
WebSocket chat endpoint under uvicorn and a catalog worker, uploads a product through the
catalog API and plays the conversation through the HTTP API. The processes keep running
until Ctrl-C. After a stop signal it ends by that signal, so a shell reports status 130
after Ctrl-C and 143 after a SIGTERM.
"""

import argparse
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "demo" / "data"
STATE = ROOT / ".demo"
# The processes that start_process starts, each with its log file STATE/<name>.log.
SERVER_NAMES = ("merchant", "app", "websocket", "worker")
TENANT_SLUG = "demo-atb"
STORE_ID = "store-1"
SHOPPER_ID = "demo-shopper"
DEMO_ADMIN = "demo-admin"
# The shopper's cart already holds a loaf of bread, which the first message loads.
SEED_CART = f"{STORE_ID}:{SHOPPER_ID}:atb-0239:1"

sys.path.insert(0, str(ROOT))


def port_number(text: str) -> int:
    """Parse a TCP port for argparse: a whole number from 0 to 65535, where 0 is any free port."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"must be a whole number from 0 to 65535, got {text!r}")
    return port


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    defaults: dict[str, int] = {}
    for variable, fallback in (
        ("DEMO_APP_PORT", 8000),
        ("DEMO_MERCHANT_PORT", 8001),
        ("DEMO_WEBSOCKET_PORT", 8002),
    ):
        value = os.environ.get(variable, "")
        try:
            defaults[variable] = port_number(value) if value else fallback
        except argparse.ArgumentTypeError as error:
            parser.error(f"{variable} {error}")
    parser.add_argument(
        "--app-port",
        type=port_number,
        default=defaults["DEMO_APP_PORT"],
        help="Port of the app (gunicorn), default DEMO_APP_PORT or 8000; another free port "
        "when taken, any free port for 0.",
    )
    parser.add_argument(
        "--merchant-port",
        type=port_number,
        default=defaults["DEMO_MERCHANT_PORT"],
        help="Port of the reference merchant, default DEMO_MERCHANT_PORT or 8001; another free "
        "port when taken, any free port for 0.",
    )
    parser.add_argument(
        "--websocket-port",
        type=port_number,
        default=defaults["DEMO_WEBSOCKET_PORT"],
        help="Port of the WebSocket chat endpoint (uvicorn), default DEMO_WEBSOCKET_PORT or "
        "8002; another free port when taken, any free port for 0.",
    )
    parser.add_argument(
        "--once", action="store_true", help="Stop after the conversation instead of serving."
    )
    parser.add_argument(
        "--no-stream",
        action="store_true",
        help="Request each reply as one JSON response instead of Server-Sent Events.",
    )
    return parser.parse_args()


def free_port(preferred: int) -> int:
    """Return ``preferred`` when nothing listens on it, otherwise a free port."""
    with socket.socket() as probe:
        # The servers bind with SO_REUSEADDR, so the probe does too. Without it, the
        # TIME_WAIT connections of a demo stopped a minute ago make the port look taken.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", preferred))
            # For a preferred port of 0, the port that the system picked.
            return int(probe.getsockname()[1])
        except OSError:
            probe.bind(("127.0.0.1", 0))
            return int(probe.getsockname()[1])


def step(text: str) -> None:
    print(f"\n\033[1m==> {text}\033[0m", flush=True)


def prepare_environment(*, app_port: int) -> None:
    os.environ.setdefault("DJANGO_DEBUG", "1")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vizochok.settings")
    # The reference merchant listens on 127.0.0.1 over plain HTTP, which production
    # settings reject; these two settings allow it for the demo only.
    os.environ["WEBHOOK_ALLOW_HTTP"] = "1"
    os.environ["WEBHOOK_ALLOWED_NETWORKS"] = "127.0.0.0/8"
    os.environ["GUNICORN_BIND"] = f"127.0.0.1:{app_port}"
    # stop() waits 10 s before it kills, so a worker must hand its job back before that.
    os.environ["WORKER_SHUTDOWN_TIMEOUT_SECONDS"] = "5"


def manage(*arguments: str) -> None:
    """Run a management command; exit with its name and status when it fails.

    The command prints its own error, so a traceback of this process would add nothing. It
    runs in a session of its own, so that Ctrl-C reaches only the demo, which then stops it
    with a SIGTERM instead of letting it print a KeyboardInterrupt traceback. A demo killed
    with SIGKILL stops it too, through ``stopped_with_demo``.
    """
    command = subprocess.Popen(
        stopped_with_demo([sys.executable, str(ROOT / "manage.py"), *arguments]),
        cwd=ROOT,
        start_new_session=True,
    )
    try:
        returncode = command.wait()
    except BaseException:
        stop([command])
        raise
    if returncode != 0:
        raise SystemExit(
            f"manage.py {arguments[0]} failed with exit status {returncode}. See its output above."
        )


# The key of the PostgreSQL advisory lock that a running demo holds on its database.
DEMO_LOCK_KEY = 7_360_105_310
DEMO_ALREADY_RUNNING = (
    "Another demo is running on this database, and a second one would revoke its API keys "
    "and replace its webhook secret. Stop it first: press Ctrl-C in its terminal, or run "
    "`kill` with the PID that it printed. Then run `make demo` again."
)


def check_settings() -> None:
    """Load the settings, and exit with a message when they are invalid or reject 127.0.0.1.

    The demo serves on 127.0.0.1 only, so a DJANGO_ALLOWED_HOSTS without it, such as the one
    of a .env copied from .env.example, would fail every request with 400 after the import.
    """
    import django
    from django.core.exceptions import ImproperlyConfigured

    try:
        django.setup()
    except ImproperlyConfigured as error:
        raise SystemExit(f"Invalid settings: {error}") from None
    from django.conf import settings
    from django.http.request import validate_host

    allowed_hosts = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed_hosts:
        # Django 5.2's HttpRequest.get_host() uses these hosts for an empty list in debug mode.
        allowed_hosts = [".localhost", "127.0.0.1", "[::1]"]
    if not validate_host("127.0.0.1", allowed_hosts):
        raise SystemExit(
            f"DJANGO_ALLOWED_HOSTS is {','.join(allowed_hosts)!r}, from the environment or "
            ".env, and does not allow 127.0.0.1, where the demo serves. Add 127.0.0.1 to it, "
            "or remove it from .env to get the development default."
        )


def lock_database() -> None:
    """Connect to the database and take the demo's advisory lock for the life of this process.

    Exits with a message when the database cannot be reached or another demo holds the lock.
    The lock belongs to this process's Django connection and ends with it.
    """
    import django

    django.setup()
    from django.db import OperationalError, connection

    try:
        connection.ensure_connection()
    except OperationalError as error:
        database = connection.settings_dict
        raise SystemExit(
            f"Cannot connect to the database {database['NAME']!r} at "
            f"{database['HOST'] or 'the local socket'}:{database['PORT'] or 5432}: {error}\n"
            "Check DATABASE_URL, or unset it to use the local PostgreSQL that make starts "
            "(docs/database.md)."
        ) from None
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [DEMO_LOCK_KEY])
        (locked,) = cursor.fetchone()
    if not locked:
        raise SystemExit(DEMO_ALREADY_RUNNING)


def prepare_tenant(*, merchant_url: str) -> dict[str, str]:
    """Create or refresh the demo tenant; return fresh keys and the webhook secret."""
    import django

    django.setup()
    from django.contrib.auth import get_user_model

    from conversations.retention import shopper_data_erase
    from tenants.models import ApiKey, Tenant
    from tenants.services import (
        api_key_create,
        api_key_revoke,
        tenant_create,
        user_token_secret_set,
        webhook_secret_set,
        webhook_settings_get_or_create,
    )

    tenant = Tenant.objects.filter(slug=TENANT_SLUG).first()
    if tenant is None:
        tenant = tenant_create(name="ATB demo store", slug=TENANT_SLUG).tenant
    if not tenant.is_active:
        # A tenant deactivated in the admin rejects every key with 401, so the demo could
        # not run at all.
        tenant.is_active = True
        tenant.save(update_fields=["is_active", "updated_at"])
        print(f"  The tenant {TENANT_SLUG!r} was deactivated; the demo activated it again.")
    for old_key in ApiKey.objects.filter(tenant=tenant, revoked_at__isnull=True):
        api_key_revoke(tenant=tenant, api_key_id=old_key.pk)
    public_key = api_key_create(tenant=tenant, kind=ApiKey.Kind.PUBLIC, name="demo widget")
    secret_key = api_key_create(tenant=tenant, kind=ApiKey.Kind.SECRET, name="demo server")

    webhook_settings = webhook_settings_get_or_create(tenant=tenant)
    webhook_settings.products_url = f"{merchant_url}/vizochok/products"
    webhook_settings.cart_url = f"{merchant_url}/vizochok/cart"
    webhook_settings.cart_get_url = f"{merchant_url}/vizochok/cart"
    webhook_settings.save()
    webhook_secret = webhook_secret_set(webhook_settings=webhook_settings)
    user_token_secret = user_token_secret_set(tenant=tenant)
    # Each run starts a new conversation for the same shopper, whose daily conversation
    # limit (20 by default) would otherwise stop the 21st run of a day with 429.
    shopper_data_erase(tenant=tenant, user_id=SHOPPER_ID)
    # NOTE: AI settings changed in the admin or through the admin API are kept, so a rate
    # limit or daily message limit below the demo's message count stops each run with 429.

    admin_password = secrets.token_urlsafe(12)
    user_model = get_user_model()
    # A user of the demo's own, so that running the demo against a shared database never
    # changes the password of an existing "admin".
    admin, _ = user_model.objects.get_or_create(
        username=DEMO_ADMIN, defaults={"is_staff": True, "is_superuser": True}
    )
    admin.is_staff = admin.is_superuser = True
    admin.set_password(admin_password)
    admin.save()
    return {
        "public_key": public_key.raw_key,
        "secret_key": secret_key.raw_key,
        "webhook_secret": webhook_secret,
        "user_token_secret": user_token_secret,
        "admin_password": admin_password,
    }


def describe_assistant() -> str:
    """Return which assistant the app will use, from the settings django.setup() loaded."""
    from django.conf import settings

    if not (settings.OPENAI_BASE_URL or settings.OPENAI_API_KEY):
        return "the offline assistant (set OPENAI_BASE_URL or OPENAI_API_KEY to use the LLM agent)"
    endpoint = _without_credentials(settings.OPENAI_BASE_URL) or "the OpenAI API"
    return (
        f"the LLM agent at {endpoint} (complex model {settings.LLM_COMPLEX_MODEL}, "
        f"fast model {settings.LLM_FAST_MODEL}, unless the tenant sets its own)"
    )


def _without_credentials(url: str) -> str:
    """Return ``url`` without the user name and password that it may carry before its host."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


# A launcher that sets the Linux parent death signal of the command to SIGTERM, then runs
# the command in its place. The setting survives exec, so the kernel sends the signal when
# the demo process dies.
_SIGTERM_WITH_DEMO = """\
import ctypes, os, signal, sys
PR_SET_PDEATHSIG = 1
ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
# The kernel sends no signal for a demo that died before prctl, so the command must not start.
if os.getppid() != int(sys.argv[1]):
    sys.exit("The demo stopped before the command started.")
os.execvp(sys.argv[2], sys.argv[2:])
"""


def stopped_with_demo(command: list[str]) -> list[str]:
    """Return ``command`` started so that it gets a SIGTERM when the demo process dies.

    The children run in sessions of their own, so no terminal signal reaches them, and a
    demo killed with SIGKILL cannot stop them: a migrate or a server would run on.
    """
    if sys.platform != "linux":
        # NOTE: without prctl, the children of a demo killed with SIGKILL keep running.
        return command
    return [sys.executable, "-c", _SIGTERM_WITH_DEMO, str(os.getpid()), *command]


def check_log_directory() -> None:
    """Exit with a message unless the servers' log files in STATE can be opened for writing.

    The demo checks this before it migrates, so that a read-only checkout stops it at once
    instead of with a traceback after the import.
    """
    try:
        STATE.mkdir(exist_ok=True)
        for name in SERVER_NAMES:
            (STATE / f"{name}.log").open("ab").close()
    except OSError as error:
        raise SystemExit(
            f"Cannot write the demo's server logs in {STATE}: {error.strerror or error}."
            " Run the demo from a checkout that you can write to."
        ) from None


def start_process(name: str, command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    STATE.mkdir(exist_ok=True)
    log = (STATE / f"{name}.log").open("ab")
    return subprocess.Popen(
        stopped_with_demo(command),
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def wait_until_healthy(url: str, process: subprocess.Popen[bytes], name: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"The {name} exited at start-up; see .demo/{name}.log")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except urllib.error.HTTPError as error:
            # A 4xx, such as Django's 400 for a host missing from DJANGO_ALLOWED_HOSTS, stays
            # the same however long the demo waits. A 5xx may pass once start-up finishes.
            if 400 <= error.code < 500:
                raise SystemExit(
                    f"The {name} responded to {url} with HTTP {error.code}; see .demo/{name}.log"
                ) from error
            time.sleep(0.2)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.2)
    raise SystemExit(f"The {name} did not answer {url} within 60 s; see .demo/{name}.log")


# A product the reference merchant does not stock, so the assistant never shows it to shoppers.
DEMO_API_PRODUCT = {
    "sku": "demo-api-sponge",
    "name": "Губки кухонні Demo 5 шт",
    "brand": "Demo",
    "category_path": "Побутові товари > Губки",
    "unit": "pcs",
}
CATALOG_JOB_TIMEOUT_SECONDS = 120


def catalog_request(
    method: str, url: str, secret_key: str, body: dict[str, Any] | None = None
) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url,
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {secret_key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def http_error_exit(error: urllib.error.HTTPError) -> SystemExit:
    """Return the exit for an API request that failed, with the API's error body.

    The body names the problem ({"detail", "code"}), which a traceback would hide.
    """
    body = error.read().decode("utf-8", errors="replace")[:1000]
    return SystemExit(
        f"The request to {error.url} failed with HTTP {error.code}: {body}\n"
        "See .demo/app.log for the app's side."
    )


def upload_demo_product(*, app_url: str, secret_key: str) -> None:
    """PUT one product, then poll its job until it is complete or failed, printing both."""
    accepted = catalog_request(
        "PUT", f"{app_url}/api/v1/catalog/products", secret_key, {"products": [DEMO_API_PRODUCT]}
    )
    print(f"  PUT /api/v1/catalog/products -> 202 {json.dumps(accepted)}")
    job_url = f"{app_url}/api/v1/catalog/jobs/{accepted['job_id']}"
    deadline = time.monotonic() + CATALOG_JOB_TIMEOUT_SECONDS
    job = catalog_request("GET", job_url, secret_key)
    while job["status"] in ("pending", "embedding"):
        if time.monotonic() > deadline:
            raise SystemExit(
                f"The catalog job is still {job['status']} after {CATALOG_JOB_TIMEOUT_SECONDS} s; "
                "see .demo/worker.log"
            )
        time.sleep(0.5)
        job = catalog_request("GET", job_url, secret_key)
    print(f"  GET /api/v1/catalog/jobs/{job['job_id']} -> {json.dumps(job, ensure_ascii=False)}")
    if job["status"] != "complete":
        raise SystemExit("The catalog job failed; see .demo/worker.log")


def wait_until_worker_runs(process: subprocess.Popen[bytes], *, since: float) -> None:
    """Wait until the worker has registered in the queue's table after ``since``."""
    from datetime import UTC, datetime

    from procrastinate.contrib.django.models import ProcrastinateWorker

    started = datetime.fromtimestamp(since, tz=UTC)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("The worker exited at start-up; see .demo/worker.log")
        if ProcrastinateWorker.objects.filter(last_heartbeat__gte=started).exists():
            return
        time.sleep(0.2)
    raise SystemExit("The worker did not register within 60 s; see .demo/worker.log")


# The signals that stop the demo (see stop_on_signals).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# How long stop() waits for all processes together before it kills those still running.
STOP_TIMEOUT_SECONDS = 10


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    """Send SIGTERM to each process group, then SIGKILL to those still running after 10 s.

    The stop signals are ignored meanwhile, because a second Ctrl-C would otherwise raise
    KeyboardInterrupt half-way. The remaining processes would then get no SIGTERM or SIGKILL,
    and the demo would print a traceback. The timeout bounds the wait instead.
    """
    previous = {number: signal.signal(number, signal.SIG_IGN) for number in STOP_SIGNALS}
    try:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        for process in processes:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def app_command() -> list[str]:
    """Return the gunicorn command line of the app.

    gunicorn 25.1+ opens a control socket at one path per user ($XDG_RUNTIME_DIR/gunicorn.ctl
    or ~/.gunicorn/gunicorn.ctl), outside the checkout and shared with every other gunicorn of
    that user. The demo does not use it, so it turns it off.
    """
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    return [gunicorn, "-c", "python:vizochok.gunicorn", "--no-control-socket", "vizochok.wsgi"]


# The stop signal that interrupted the demo, which main() ends with once its servers stopped.
received_signal: int | None = None


def interrupt(number: int, frame: FrameType | None) -> None:
    """Store the signal ``number``, then raise KeyboardInterrupt as Ctrl-C does."""
    global received_signal
    received_signal = number
    raise KeyboardInterrupt


def stop_on_signals() -> None:
    """Make SIGINT, SIGTERM and SIGHUP raise KeyboardInterrupt, so that stop() runs.

    The servers run in sessions of their own, so a signal that ends the demo reaches only
    this process: Ctrl-C, `kill`, a SIGTERM that make forwards, or a closed terminal
    (SIGHUP). A shell without job control starts a background command with SIGINT ignored,
    and Python then installs no handler of its own, so SIGINT is set here too.
    """
    for number in STOP_SIGNALS:
        signal.signal(number, interrupt)


def exit_by_signal(number: int) -> NoReturn:
    """End the process by the signal ``number``, which the shell reports as 128 + number.

    Ending by the signal, rather than exiting with that status, also lets a calling shell
    script see that the user pressed Ctrl-C, so that the script stops too.
    """
    with contextlib.suppress(OSError):
        sys.stdout.flush()
    signal.signal(number, signal.SIG_DFL)
    os.kill(os.getpid(), number)
    # The default action of each stop signal ends the process before this line.
    raise SystemExit(128 + number)


def start_worker() -> subprocess.Popen[bytes]:
    return start_process(
        "worker",
        [sys.executable, "manage.py", "procrastinate", "worker", "--queues", "catalog"],
        dict(os.environ),
    )


def keep_serving(processes: list[subprocess.Popen[bytes]]) -> None:
    """Wait for Ctrl-C; restart the catalog worker if it stops, as a process manager would.

    The worker is the last process. A stopped app, WebSocket server or merchant ends the demo
    with status 1. The end of the process that started the demo, such as a killed ``make``,
    ends it too, with status 0.
    """
    parent_pid = os.getppid()
    *servers, worker = processes
    while all(process.poll() is None for process in servers):
        if os.getppid() != parent_pid:
            print("The process that started the demo exited; stopping.", flush=True)
            return
        if worker.poll() is not None:
            print("The catalog worker stopped; starting a new one.", flush=True)
            worker = processes[-1] = start_worker()
        time.sleep(1)
    raise SystemExit("A server stopped unexpectedly; see the logs in .demo/.")


# The maximum lifetime the server accepts for a user token (docs/security.md).
WIDGET_USER_TOKEN_LIFETIME_SECONDS = 24 * 3600


def widget_demo_url(*, app_url: str, public_key: str, user_token_secret: str | None) -> str:
    """Return the widget demo page's URL with the settings in its fragment.

    Browsers never send the fragment to the server, so the key and the user token stay out
    of its access logs. With the tenant's user token secret, the page chats as the demo
    shopper with a token valid for 24 hours. Without the secret, the shopper is anonymous.
    """
    settings = {"key": public_key, "store": STORE_ID}
    if user_token_secret:
        from demo.conversation import user_token_issue

        settings["user"] = SHOPPER_ID
        settings["token"] = user_token_issue(
            secret=user_token_secret,
            user_id=SHOPPER_ID,
            lifetime_seconds=WIDGET_USER_TOKEN_LIFETIME_SECONDS,
        )
    settings["lang"] = "uk"
    return f"{app_url}/widget/demo/#{urllib.parse.urlencode(settings)}"


def print_instructions(
    *, app_url: str, credentials: dict[str, str], websocket_url: str | None = None
) -> None:
    step("The demo keeps serving; try it yourself")
    widget_url = widget_demo_url(
        app_url=app_url,
        public_key=credentials["public_key"],
        user_token_secret=credentials.get("user_token_secret"),
    )
    websocket = ""
    if websocket_url is not None:
        websocket = f"""
  WebSocket chat (docs/websocket.md); the first message authenticates:
    {websocket_url}
    {{"type": "auth", "token": "{credentials["public_key"]}", "store_id": "{STORE_ID}"}}
    {{"type": "message", "text": "покажи кефір"}}
"""
    print(
        f"""
  Chat widget on a demo store page, as the demo shopper (the user token lasts 24 hours):
    {widget_url}

  Chat API (public key, scope chat):
    curl -s -X POST {app_url}/api/v1/conversations \\
      -H 'Authorization: Bearer {credentials["public_key"]}' \\
      -H 'Content-Type: application/json' -d '{{"store_id": "{STORE_ID}"}}'
    curl -s -X POST {app_url}/api/v1/conversations/<conversation_id>/messages \\
      -H 'Authorization: Bearer {credentials["public_key"]}' \\
      -H 'Content-Type: application/json' -d '{{"text": "покажи кефір"}}'
    # The same reply as Server-Sent Events, printed as it arrives:
    curl -sN -X POST {app_url}/api/v1/conversations/<conversation_id>/messages \\
      -H 'Authorization: Bearer {credentials["public_key"]}' -H 'Accept: text/event-stream' \\
      -H 'Content-Type: application/json' -d '{{"text": "а ряжанка є?"}}'
{websocket}
  Catalog API (secret key, scope catalog); the worker embeds in the background:
    curl -s -X PUT {app_url}/api/v1/catalog/products \\
      -H 'Authorization: Bearer {credentials["secret_key"]}' \\
      -H 'Content-Type: application/json' \\
      -d '{{"products": [{{"sku": "demo-1", "name": "Кефір домашній 1 л"}}]}}'
    curl -s {app_url}/api/v1/catalog/jobs -H 'Authorization: Bearer {credentials["secret_key"]}'

  Management commands for the demo tenant need the same development egress settings as
  the app, because its merchant listens on 127.0.0.1 over plain HTTP:
    WEBHOOK_ALLOW_HTTP=1 WEBHOOK_ALLOWED_NETWORKS=127.0.0.0/8 \\
      make manage ARGS="check_merchant {TENANT_SLUG}"

  Secret key (server side: catalog and admin API): {credentials["secret_key"]}
  Admin: {app_url}/admin/  user {DEMO_ADMIN}, password {credentials["admin_password"]}
  Logs: .demo/app.log, .demo/websocket.log, .demo/worker.log and .demo/merchant.log

  Press Ctrl-C to stop the app, the WebSocket server, the worker and the merchant. When the
  demo is not in the foreground, run `kill {os.getpid()}` in another shell. GNU make does not
  pass on a SIGINT sent to the make process alone, so that does not stop the demo.
  A local PostgreSQL that make started keeps running; `make db-stop` stops it.
"""
    )


def main() -> None:
    args = parse_args()
    app_port = free_port(args.app_port)
    merchant_port = free_port(args.merchant_port)
    websocket_port = free_port(args.websocket_port)
    app_url = f"http://127.0.0.1:{app_port}"
    merchant_url = f"http://127.0.0.1:{merchant_port}"
    prepare_environment(app_port=app_port)
    stop_on_signals()

    processes: list[subprocess.Popen[bytes]] = []
    interrupted = False
    try:
        check_log_directory()
        check_settings()
        lock_database()

        step("Migrating the database")
        manage("migrate", "--noinput", "--verbosity", "0")

        step(f"Preparing the demo tenant {TENANT_SLUG!r}")
        credentials = prepare_tenant(merchant_url=merchant_url)
        step(f"Assistant: {describe_assistant()}")

        step("Importing the ATB catalog (507 products; only changed products are embedded)")
        manage("import_catalog", "--tenant", TENANT_SLUG, str(DATA / "atb-catalog.jsonl"))

        step(f"Starting the reference merchant on {merchant_url}")
        merchant_env = {**os.environ, "MERCHANT_WEBHOOK_SECRET": credentials["webhook_secret"]}
        processes.append(
            start_process(
                "merchant",
                [
                    sys.executable,
                    "-m",
                    "merchant",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(merchant_port),
                    "--secret-env",
                    "MERCHANT_WEBHOOK_SECRET",
                    "--stock",
                    str(DATA / "atb-stock.json"),
                    "--catalog",
                    str(DATA / "atb-catalog.jsonl"),
                    "--seed-cart",
                    SEED_CART,
                ],
                merchant_env,
            )
        )
        wait_until_healthy(f"{merchant_url}/health", processes[-1], "merchant")

        step(f"Starting Vizochok under gunicorn on {app_url}")
        processes.append(
            start_process(
                "app",
                app_command(),
                dict(os.environ),
            )
        )
        wait_until_healthy(f"{app_url}/api/v1/health", processes[-1], "app")

        websocket_url = f"ws://127.0.0.1:{websocket_port}/api/v1/ws/chat"
        step(f"Starting the WebSocket chat endpoint under uvicorn on {websocket_url}")
        uvicorn = str(Path(sys.executable).with_name("uvicorn"))
        processes.append(
            start_process(
                "websocket",
                [
                    uvicorn,
                    "vizochok.asgi:application",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(websocket_port),
                    "--lifespan",
                    "off",
                ],
                dict(os.environ),
            )
        )
        # The ASGI application also serves Django's HTTP views, its health check included.
        wait_until_healthy(
            f"http://127.0.0.1:{websocket_port}/api/v1/health", processes[-1], "websocket"
        )

        step("Starting a catalog worker")
        worker_started = time.time()
        processes.append(start_worker())
        wait_until_worker_runs(processes[-1], since=worker_started)

        step("Uploading a product through the catalog API; the worker embeds it")
        upload_demo_product(app_url=app_url, secret_key=credentials["secret_key"])

        from demo.conversation import play_conversation

        step("Playing the shopper conversation" + ("" if args.no_stream else " (streamed)"))
        play_conversation(
            app_url=app_url,
            public_key=credentials["public_key"],
            user_token_secret=credentials["user_token_secret"],
            store_id=STORE_ID,
            user_id=SHOPPER_ID,
            stream=not args.no_stream,
        )
        if args.once:
            return
        print_instructions(app_url=app_url, credentials=credentials, websocket_url=websocket_url)
        keep_serving(processes)
    except KeyboardInterrupt:
        interrupted = True
    except urllib.error.HTTPError as error:
        raise http_error_exit(error) from None
    finally:
        # Stop first: printing can fail with BrokenPipeError when the output pipe is gone.
        stop(processes)
        with contextlib.suppress(OSError):
            if processes:
                print(
                    "\nStopped the app, the WebSocket server, the worker and the merchant.",
                    flush=True,
                )
            elif interrupted:
                print("\nStopped before starting any server.", flush=True)
    if interrupted:
        exit_by_signal(received_signal or signal.SIGINT)


if __name__ == "__main__":
    main()
