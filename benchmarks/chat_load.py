"""Drive the chat with many concurrent shoppers and check what they leave behind.

The app runs as in production (docs/deployment.md): gunicorn with ``vizochok/gunicorn.py``
for HTTP, and uvicorn for the WebSocket chat, both with ``DJANGO_DEBUG=0``. The script
starts them on free ports of 127.0.0.1, with the reference merchant (``python -m merchant``)
and the scripted model server of ``benchmarks/chat_load_model.py`` (or, with
``--assistant offline``, no model at all). ``--app-url``, ``--websocket-url``,
``--merchant-url`` and ``--llm-url`` use running servers instead.

It creates ``--tenants`` tenants with a small catalog from demo/data (dairy, bread, tea and
coffee, embedded with the configured embedder), and one secret API key per shopper, because
a key may hold only 3 WebSocket sockets at once. Each shopper starts one conversation with a
user id of its own and sends ``--messages`` messages one after another, cycling through
"знайди X", "додай перший" and "покажи кошик", over JSON, SSE or a WebSocket (``--mix``).

It prints, per transport, messages per second, turn latency percentiles and the count of
each rejection code, and the CPU seconds that each process used. Then it checks:

1. no HTTP status 5xx and no ``internal_error``, on any transport;
2. every turn ended with ``response_complete`` and no client error occurred;
3. per tenant, the ``TokenUsage`` rows add up to the conversations' ``tokens_used``, and,
   with the scripted model started here, to the tokens that it served;
4. each conversation's cart equals the merchant's cart for its store and session;
5. no conversation is left busy (``turn_started_at`` set).

It exits with status 1 when a check fails. Usage, from the repository root::

    export DATABASE_URL=postgres://postgres@127.0.0.1:5432/vz_bench
    make migrate
    .venv/bin/python benchmarks/chat_load.py --shoppers 25 --tenants 3 --messages 5 --mix json=1,sse=1,ws=1

The script ignores .env (``DJANGO_ENV_FILE`` is set empty), and deletes its tenants at the
end unless ``--keep-tenants`` is given.
"""

import argparse
import contextlib
import hashlib
import http.client
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.exceptions import WebSocketException
from websockets.sync.client import ClientConnection, connect

ROOT = Path(__file__).resolve().parent.parent
DEMO_DATA = ROOT / "demo" / "data"
TRANSPORTS = ("json", "sse", "ws")
STORE_ID = "store-1"
# Catalog words. Each gets an equal share of --products, taken from the demo catalog.
PRODUCT_WORDS = ("молоко", "кефір", "хліб", "масло", "чай", "кава")
# Seconds a client waits for one reply, above the app's 120 s turn limit.
TURN_TIMEOUT_SECONDS = 180
START_TIMEOUT_SECONDS = 60


def parse_mix(text: str) -> dict[str, int]:
    """Parse ``json=1,sse=1,ws=1`` into weights. A transport left out gets 0."""
    weights = dict.fromkeys(TRANSPORTS, 0)
    for part in text.split(","):
        name, _, weight = part.partition("=")
        name = name.strip()
        if name not in weights:
            raise argparse.ArgumentTypeError(
                f"unknown transport {name!r} in --mix; expected json, sse or ws"
            )
        try:
            weights[name] = int(weight or "1")
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"invalid weight {weight!r} for {name} in --mix; expected a whole number"
            ) from None
        if weights[name] < 0:
            raise argparse.ArgumentTypeError(f"weight of {name} in --mix must be 0 or more")
    if not any(weights.values()):
        raise argparse.ArgumentTypeError("--mix needs at least one transport with weight above 0")
    return weights


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shoppers", type=positive, default=10, help="Concurrent shoppers.")
    parser.add_argument("--tenants", type=positive, default=2, help="Tenants they spread over.")
    parser.add_argument("--messages", type=positive, default=5, help="Messages per shopper.")
    parser.add_argument(
        "--mix",
        type=parse_mix,
        default=parse_mix("json=1,sse=1,ws=1"),
        help="Weights of the transports, such as json=2,sse=1,ws=1 (default: equal).",
    )
    parser.add_argument(
        "--products", type=positive, default=30, help="Products per tenant (default 30)."
    )
    parser.add_argument(
        "--assistant",
        choices=("scripted", "offline"),
        default="scripted",
        help="The LLM agent with the scripted model server, or the offline assistant.",
    )
    parser.add_argument(
        "--llm-delay",
        type=float,
        default=0.0,
        help="Seconds the scripted model waits before each response (default 0).",
    )
    parser.add_argument(
        "--llm-url",
        help="OpenAI-compatible base URL (such as http://127.0.0.1:8003/v1) for the app that "
        "the script starts, instead of starting the scripted model.",
    )
    parser.add_argument(
        "--app-url", help="A running app (gunicorn), such as http://127.0.0.1:8000."
    )
    parser.add_argument(
        "--websocket-url", help="A running WebSocket endpoint, such as ws://127.0.0.1:8002."
    )
    parser.add_argument(
        "--merchant-url",
        help="A running reference merchant, such as http://127.0.0.1:8001; its webhook secret "
        "comes from the MERCHANT_WEBHOOK_SECRET environment variable.",
    )
    parser.add_argument(
        "--keep-tenants", action="store_true", help="Keep the tenants and conversations."
    )
    args = parser.parse_args(argv)
    if args.app_url and args.mix["ws"] and not args.websocket_url:
        parser.error("--app-url with WebSocket shoppers needs --websocket-url too")
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tenants.keys import CUSTOM_SECRET_MIN_LENGTH

    merchant_secret = os.environ.get("MERCHANT_WEBHOOK_SECRET", "")
    if args.merchant_url and not merchant_secret:
        parser.error("--merchant-url needs the merchant's secret in MERCHANT_WEBHOOK_SECRET")
    if args.merchant_url and len(merchant_secret) < CUSTOM_SECRET_MIN_LENGTH:
        # The script stores this secret as each tenant's webhook secret, whose rules reject
        # a shorter one only after the first tenant exists.
        parser.error(
            f"MERCHANT_WEBHOOK_SECRET has {len(merchant_secret)} characters; a webhook secret "
            f"needs at least {CUSTOM_SECRET_MIN_LENGTH}"
        )
    if args.llm_url and args.assistant == "offline":
        parser.error("--llm-url cannot be combined with --assistant offline")
    return args


# ---------------------------------------------------------------------------------------
# Processes


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Started:
    name: str
    process: subprocess.Popen[bytes]
    log: Path


class Processes:
    """Servers started by the script, each in a session of its own, stopped with SIGTERM."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[Started] = []

    def start(
        self, name: str, command: list[str], env: dict[str, str], *, stdout_pipe: bool = False
    ) -> Started:
        log = self.log_dir / f"{name}.log"
        with log.open("ab") as log_file:
            process = subprocess.Popen(
                command,
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE if stdout_pipe else log_file,
                stderr=log_file,
                start_new_session=True,
            )
        started = Started(name, process, log)
        self.started.append(started)
        return started

    def stop(self) -> None:
        for started in reversed(self.started):
            if started.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(started.process.pid, signal.SIGTERM)
        for started in self.started:
            try:
                started.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(started.process.pid, signal.SIGKILL)
                started.process.wait()


def wait_until_healthy(url: str, started: Started) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if started.process.poll() is not None:
            raise SystemExit(f"The {started.name} exited at start-up; see {started.log}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (OSError, http.client.HTTPException):
            time.sleep(0.2)
    raise SystemExit(
        f"The {started.name} did not respond to {url} within {START_TIMEOUT_SECONDS} s; "
        f"see {started.log}"
    )


def server_environment(*, llm_base_url: str | None) -> dict[str, str]:
    """Return the environment of the processes that the script starts, and of the script."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "vizochok.settings",
        "DJANGO_ENV_FILE": "",
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": os.environ.get("DJANGO_SECRET_KEY") or secrets.token_urlsafe(50),
        "DJANGO_ALLOWED_HOSTS": os.environ.get("DJANGO_ALLOWED_HOSTS") or "127.0.0.1",
        # The reference merchant listens on 127.0.0.1 over plain HTTP.
        "WEBHOOK_ALLOW_HTTP": "1",
        "WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
        "OPENAI_BASE_URL": llm_base_url or "",
        "OPENAI_API_KEY": "benchmark" if llm_base_url else "",
    }


def start_model(processes: Processes, *, delay: float) -> str:
    started = processes.start(
        "model",
        [sys.executable, str(ROOT / "benchmarks" / "chat_load_model.py"), "--delay", str(delay)],
        dict(os.environ),
        stdout_pipe=True,
    )
    assert started.process.stdout is not None
    line = started.process.stdout.readline().decode().strip()
    if not line.startswith("listening on "):
        raise SystemExit(f"The scripted model did not start; see {started.log}")
    return line.removeprefix("listening on ")


def start_merchant(processes: Processes, env: dict[str, str], secret: str) -> str:
    port = free_port()
    started = processes.start(
        "merchant",
        [
            sys.executable,
            "-m",
            "merchant",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--secret-env",
            "MERCHANT_WEBHOOK_SECRET",
            "--stock",
            str(DEMO_DATA / "atb-stock.json"),
            "--catalog",
            str(DEMO_DATA / "atb-catalog.jsonl"),
        ],
        {**env, "MERCHANT_WEBHOOK_SECRET": secret},
    )
    url = f"http://127.0.0.1:{port}"
    wait_until_healthy(f"{url}/health", started)
    return url


def start_app(processes: Processes, env: dict[str, str]) -> str:
    port = free_port()
    gunicorn = str(Path(sys.executable).with_name("gunicorn"))
    started = processes.start(
        "gunicorn",
        [gunicorn, "-c", "python:vizochok.gunicorn", "--no-control-socket", "vizochok.wsgi"],
        {**env, "GUNICORN_BIND": f"127.0.0.1:{port}"},
    )
    url = f"http://127.0.0.1:{port}"
    wait_until_healthy(f"{url}/api/v1/health", started)
    return url


def start_websocket(processes: Processes, env: dict[str, str]) -> str:
    port = free_port()
    uvicorn = str(Path(sys.executable).with_name("uvicorn"))
    started = processes.start(
        "uvicorn",
        [
            uvicorn,
            "vizochok.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--lifespan",
            "off",
            "--no-proxy-headers",
            "--no-access-log",
        ],
        env,
    )
    # The ASGI application serves Django's HTTP views too, the health check included.
    wait_until_healthy(f"http://127.0.0.1:{port}/api/v1/health", started)
    return f"ws://127.0.0.1:{port}"


def process_tree_cpu_seconds(pid: int) -> float:
    """Return the user and system CPU seconds of ``pid`` and its descendants that run now."""
    children: dict[int, list[int]] = defaultdict(list)
    times: dict[int, float] = {}
    ticks = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # The command name in brackets may contain spaces; the fields follow its ")".
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        children[int(fields[1])].append(int(entry.name))
        times[int(entry.name)] = (int(fields[11]) + int(fields[12])) / ticks
    total, pending = 0.0, [pid]
    while pending:
        current = pending.pop()
        total += times.get(current, 0.0)
        pending.extend(children.get(current, []))
    return total


def machine_busy_seconds() -> float:
    """Return the CPU seconds that all cores spent outside idle and iowait since boot."""
    values = [int(value) for value in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    ticks = os.sysconf("SC_CLK_TCK")
    return (sum(values) - values[3] - values[4]) / ticks


def cpu_snapshot(processes: Processes) -> dict[str, float]:
    snapshot = {
        started.name: process_tree_cpu_seconds(started.process.pid) for started in processes.started
    }
    own = os.times()
    snapshot["shoppers (this script)"] = own.user + own.system
    snapshot["machine"] = machine_busy_seconds()
    return snapshot


# ---------------------------------------------------------------------------------------
# Tenants and catalog


@dataclass
class TenantSetup:
    tenant_id: int
    slug: str
    shopper_keys: list[str]
    warm_up_key: str


def catalog_rows(count: int) -> tuple[list[dict[str, Any]], list[str]]:
    """Return ``count`` in-stock products of the demo catalog and the words that find them."""
    stock = json.loads((DEMO_DATA / "atb-stock.json").read_text(encoding="utf-8"))
    with (DEMO_DATA / "atb-catalog.jsonl").open(encoding="utf-8") as lines:
        products = [json.loads(line) for line in lines if line.strip()]
    per_word = max(1, count // len(PRODUCT_WORDS))
    chosen: dict[str, dict[str, Any]] = {}
    words = []
    for word in PRODUCT_WORDS:
        matches = [
            product
            for product in products
            if word in product["name"].lower()
            and stock.get(product["sku"], {}).get("in_stock")
            and product["sku"] not in chosen
        ][:per_word]
        if matches:
            words.append(word)
        chosen.update((product["sku"], product) for product in matches)
    return list(chosen.values())[:count], words


def prepare_tenants(
    *, run_id: str, tenants: int, shoppers: int, products: int, merchant_url: str, secret: str
) -> tuple[list[TenantSetup], list[str]]:
    from catalog.schemas import ProductInput
    from catalog.services import product_upsert_many, products_embed_pending
    from tenants.models import ApiKey
    from tenants.services import (
        api_key_create,
        tenant_create,
        webhook_secret_set,
        webhook_settings_get_or_create,
    )

    rows, words = catalog_rows(products)
    setups = []
    for number in range(tenants):
        slug = f"chat-load-{run_id}-{number + 1}"
        tenant = tenant_create(name=f"Chat load {run_id} {number + 1}", slug=slug).tenant
        product_upsert_many(tenant=tenant, products=[ProductInput(**row) for row in rows])
        products_embed_pending(tenant=tenant)
        webhook_settings = webhook_settings_get_or_create(tenant=tenant)
        webhook_settings.products_url = f"{merchant_url}/vizochok/products"
        webhook_settings.cart_url = f"{merchant_url}/vizochok/cart"
        webhook_settings.cart_get_url = f"{merchant_url}/vizochok/cart"
        webhook_settings.save()
        webhook_secret_set(webhook_settings=webhook_settings, secret=secret)
        keys = [
            api_key_create(tenant=tenant, kind=ApiKey.Kind.SECRET, name=f"shopper {shopper}")
            for shopper in range(number, shoppers, tenants)
        ]
        warm_up_key = api_key_create(tenant=tenant, kind=ApiKey.Kind.SECRET, name="warm-up")
        setups.append(
            TenantSetup(tenant.pk, slug, [key.raw_key for key in keys], warm_up_key.raw_key)
        )
    return setups, words


def delete_run_tenants(*, run_id: str) -> None:
    """Delete the tenants of one run by their slug, including those of a half-done setup."""
    from tenants.models import Tenant

    Tenant.objects.filter(slug__startswith=f"chat-load-{run_id}-").delete()


# ---------------------------------------------------------------------------------------
# Shoppers


@dataclass
class Results:
    """The shoppers' results per transport, shared by their threads."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    turns: Counter[str] = field(default_factory=Counter)
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    rejections: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    problems: list[str] = field(default_factory=list)

    def turn(self, transport: str, seconds: float, events: list[dict[str, Any]]) -> None:
        with self.lock:
            self.turns[transport] += 1
            self.latencies[transport].append(seconds)
        if not events or events[-1].get("type") != "response_complete":
            self.problem(f"{transport}: a reply did not end with response_complete")
        for event in events:
            if event.get("type") == "error":
                self.rejection(transport, event.get("code", "?"))

    def rejection(self, transport: str, code: str) -> None:
        with self.lock:
            self.rejections[transport][code] += 1
        if code == "internal_error":
            self.problem(f"{transport}: internal_error")

    def problem(self, text: str) -> None:
        with self.lock:
            self.problems.append(text)


@dataclass
class Shopper:
    user_id: str
    transport: str
    key: str
    texts: list[str]


def shopper_texts(*, number: int, messages: int, words: list[str]) -> list[str]:
    texts = []
    for index in range(messages):
        word = words[(number + index // 3) % len(words)]
        texts.append(("знайди {}", "додай перший", "покажи кошик")[index % 3].format(word))
    return texts


def http_request(
    app: urllib.parse.SplitResult,
    method: str,
    path: str,
    key: str,
    body: dict[str, Any],
    **headers: str,
) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection(app.hostname, app.port, timeout=TURN_TIMEOUT_SECONDS)
    payload = json.dumps(body, ensure_ascii=False).encode()
    connection.request(
        method,
        path,
        body=payload,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json", **headers},
    )
    return connection.getresponse()


def rejected_code(response: http.client.HTTPResponse) -> str:
    """Return the ``code`` of an error response, or a description of a malformed one."""
    body = response.read()
    try:
        code = json.loads(body)["code"]
    except (ValueError, KeyError, TypeError):
        return f"http_{response.status}"
    return str(code)


def run_http_shopper(shopper: Shopper, *, app: urllib.parse.SplitResult, results: Results) -> None:
    created = http_request(
        app,
        "POST",
        "/api/v1/conversations",
        shopper.key,
        {"store_id": STORE_ID, "user_id": shopper.user_id},
    )
    if created.status != 201:
        results.rejection(shopper.transport, rejected_code(created))
        _check_status(shopper.transport, created.status, results)
        return
    path = f"/api/v1/conversations/{json.loads(created.read())['conversation_id']}/messages"
    accept = "text/event-stream" if shopper.transport == "sse" else "application/json"
    for text in shopper.texts:
        started = time.monotonic()
        response = http_request(app, "POST", path, shopper.key, {"text": text}, Accept=accept)
        if response.status != 200:
            results.rejection(shopper.transport, rejected_code(response))
            _check_status(shopper.transport, response.status, results)
            continue
        if shopper.transport == "sse":
            events = [
                json.loads(line[len(b"data: ") :])
                for line in response
                if line.startswith(b"data: ")
            ]
        else:
            events = json.loads(response.read())["events"]
        results.turn(shopper.transport, time.monotonic() - started, events)


def _check_status(transport: str, status: int, results: Results) -> None:
    if status >= 500:
        results.problem(f"{transport}: HTTP {status}")


def run_websocket_shopper(shopper: Shopper, *, websocket_url: str, results: Results) -> None:
    with connect(f"{websocket_url}/api/v1/ws/chat", open_timeout=30, close_timeout=5) as websocket:
        websocket.send(
            json.dumps(
                {
                    "type": "auth",
                    "token": shopper.key,
                    "store_id": STORE_ID,
                    "user_id": shopper.user_id,
                }
            )
        )
        frame = json.loads(websocket.recv(timeout=30))
        if frame["type"] != "auth_ok":
            results.rejection("ws", frame.get("code", frame["type"]))
            return
        conversation_id = None
        for text in shopper.texts:
            message: dict[str, Any] = {"type": "message", "text": text}
            if conversation_id:
                message["conversation_id"] = conversation_id
            started = time.monotonic()
            websocket.send(json.dumps(message, ensure_ascii=False))
            events, conversation_id = _websocket_reply(websocket, conversation_id)
            if events and events[-1]["type"] == "error" and "detail" in events[-1]:
                # A rejected frame: no reply follows.
                results.rejection("ws", events[-1]["code"])
                continue
            results.turn("ws", time.monotonic() - started, events)


def _websocket_reply(
    websocket: ClientConnection, conversation_id: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """Read one reply's frames up to ``response_complete`` or a rejection."""
    events: list[dict[str, Any]] = []
    while True:
        frame = json.loads(websocket.recv(timeout=TURN_TIMEOUT_SECONDS))
        if frame["type"] == "ping":
            websocket.send(json.dumps({"type": "pong"}))
            continue
        if frame["type"] == "conversation_started":
            conversation_id = frame["conversation_id"]
            continue
        events.append(frame)
        if frame["type"] == "response_complete":
            return events, conversation_id
        if frame["type"] == "error" and "detail" in frame:
            return events, conversation_id


def run_shopper(
    shopper: Shopper, *, app_url: str, websocket_url: str | None, results: Results
) -> None:
    try:
        if shopper.transport == "ws":
            assert websocket_url is not None
            run_websocket_shopper(shopper, websocket_url=websocket_url, results=results)
        else:
            run_http_shopper(shopper, app=urllib.parse.urlsplit(app_url), results=results)
    except (OSError, http.client.HTTPException, WebSocketException, ValueError) as error:
        results.problem(f"{shopper.transport}: {shopper.user_id}: {error!r}")


# Concurrent searches before the measured run, so that every gunicorn worker has loaded the
# embedder and opened its database connection (2 workers by default).
WARM_UP_HTTP_SHOPPERS = 8


def warm_up_shoppers(
    setups: list[TenantSetup], *, words: list[str], websocket: bool
) -> list[Shopper]:
    """Return shoppers of one search each that warm up every server process and tenant."""
    shoppers = [
        Shopper(
            user_id=f"warm-up-{number}",
            transport="json",
            key=setups[number % len(setups)].warm_up_key,
            texts=[f"знайди {words[0]}"],
        )
        for number in range(max(WARM_UP_HTTP_SHOPPERS, len(setups)))
    ]
    if websocket:
        shoppers += [
            Shopper(
                user_id="warm-up-socket",
                transport="ws",
                key=setup.warm_up_key,
                texts=[f"знайди {words[0]}"],
            )
            for setup in setups
        ]
    return shoppers


def assign_transports(shoppers: int, weights: dict[str, int]) -> list[str]:
    """Spread ``shoppers`` over the transports by weight, interleaved (smooth round robin)."""
    total = sum(weights.values())
    credit = dict.fromkeys(weights, 0)
    order = []
    for _ in range(shoppers):
        for name, weight in weights.items():
            credit[name] += weight
        chosen = max(credit, key=lambda name: credit[name])
        credit[chosen] -= total
        order.append(chosen)
    return order


def run_shoppers(
    shoppers: list[Shopper], *, app_url: str, websocket_url: str | None
) -> tuple[Results, float]:
    results = Results()
    threads = [
        threading.Thread(
            target=run_shopper,
            args=(shopper,),
            kwargs={"app_url": app_url, "websocket_url": websocket_url, "results": results},
        )
        for shopper in shoppers
    ]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results, time.monotonic() - started


# ---------------------------------------------------------------------------------------
# Report and checks


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return ordered[index]


def report(
    results: Results, *, seconds: float, shoppers: list[Shopper], cpu: dict[str, float]
) -> list[str]:
    lines = [
        f"run: {seconds:.1f} s",
        f"{'transport':<10}{'shoppers':>9}{'turns':>7}{'msg/s':>8}"
        f"{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}  rejections",
    ]
    per_transport = Counter(shopper.transport for shopper in shoppers)
    for transport in (*TRANSPORTS, "all"):
        if transport == "all":
            latencies = [value for values in results.latencies.values() for value in values]
            count = len(shoppers)
            rejections: Counter[str] = sum(results.rejections.values(), Counter())
        else:
            latencies = results.latencies.get(transport, [])
            count = per_transport[transport]
            rejections = results.rejections.get(transport, Counter())
        if not count:
            continue
        rate = len(latencies) / seconds if seconds else 0.0
        if latencies:
            timings = "".join(
                f"{percentile(latencies, fraction) * 1000:>9.0f}" for fraction in (0.5, 0.95, 0.99)
            )
        else:
            timings = f"{'-':>9}" * 3
        codes = ", ".join(f"{code} {number}" for code, number in sorted(rejections.items()))
        lines.append(
            f"{transport:<10}{count:>9}{len(latencies):>7}{rate:>8.1f}{timings}  {codes or '-'}"
        )
    lines.append(
        f"CPU seconds during the run (of {seconds * (os.cpu_count() or 1):.1f} available):"
    )
    named = sum(value for name, value in cpu.items() if name != "machine")
    for name, value in cpu.items():
        if name != "machine":
            lines.append(f"  {name:<24}{value:>7.1f}")
    lines.append(
        f"  {'rest of the machine':<24}{cpu['machine'] - named:>7.1f}  (PostgreSQL and others)"
    )
    return lines


def check_tokens(setups: list[TenantSetup], model_tokens: int | None) -> list[str]:
    from django.db.models import Sum

    from conversations.models import Conversation, TokenUsage

    failures = []
    recorded_total = 0
    for setup in setups:
        usage = TokenUsage.objects.filter(tenant_id=setup.tenant_id).aggregate(
            prompt=Sum("prompt_tokens"), completion=Sum("completion_tokens")
        )
        recorded = (usage["prompt"] or 0) + (usage["completion"] or 0)
        conversations = (
            Conversation.objects.filter(tenant_id=setup.tenant_id).aggregate(
                total=Sum("tokens_used")
            )["total"]
            or 0
        )
        recorded_total += recorded
        if recorded != conversations:
            failures.append(
                f"tenant {setup.slug}: token usage rows {recorded} != conversations' "
                f"tokens_used {conversations}"
            )
    if model_tokens is not None and model_tokens != recorded_total:
        failures.append(
            f"the scripted model served {model_tokens} tokens, the tenants recorded {recorded_total}"
        )
    return failures


def merchant_cart(
    merchant_url: str, secret: str, store_id: str, session_id: str
) -> dict[str, float]:
    from merchant.signature import SIGNATURE_HEADER, TIMESTAMP_HEADER, compute_signature

    timestamp = str(int(time.time()))
    query = urllib.parse.urlencode({"store_id": store_id, "session_id": session_id})
    request = urllib.request.Request(
        f"{merchant_url}/vizochok/cart?{query}",
        headers={
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: compute_signature(secret, timestamp, b""),
        },
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        items = json.load(response)["items"]
    return {item["sku"]: float(item["quantity"]) for item in items}


def check_conversations(
    setups: list[TenantSetup], merchant_url: str, secret: str
) -> tuple[list[str], str]:
    """Compare each conversation's cart with the merchant's; return failures and a summary."""
    from conversations.models import Conversation

    failures = []
    with_items = 0
    conversations = Conversation.objects.filter(
        tenant_id__in=[setup.tenant_id for setup in setups]
    ).order_by("pk")
    for conversation in conversations:
        ours = {
            item["sku"]: float(item["quantity"])
            for item in (conversation.cart or {}).get("items", [])
        }
        theirs = merchant_cart(merchant_url, secret, conversation.store_id, conversation.session_id)
        with_items += bool(theirs)
        if ours != theirs:
            failures.append(f"{conversation.public_id}: cart {ours} != the merchant's {theirs}")
        if conversation.turn_started_at is not None:
            failures.append(f"{conversation.public_id}: still busy (turn_started_at set)")
    summary = f"carts compared: {len(conversations)} conversations, {with_items} with items"
    return failures, summary


def model_stats(llm_url: str) -> dict[str, int]:
    with urllib.request.urlopen(f"{llm_url}/stats", timeout=10) as response:
        return dict(json.load(response))


# ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    run_id = uuid.uuid4().hex[:6]
    log_dir = Path(tempfile.mkdtemp(prefix="chat-load-"))
    processes = Processes(log_dir)
    exit_status = 1
    django_ready = False
    try:
        model_url = None
        if not args.app_url and args.assistant == "scripted":
            model_url = args.llm_url or start_model(processes, delay=args.llm_delay)
        llm_base_url = (args.llm_url or f"{model_url}/v1") if model_url else None
        env = server_environment(llm_base_url=llm_base_url)
        os.environ.update(env)
        # The script's own log lines (tenant and key creation, embedding) would hide the report.
        os.environ["LOG_LEVEL"] = "WARNING"
        import django

        django.setup()
        django_ready = True

        secret = os.environ.get("MERCHANT_WEBHOOK_SECRET") if args.merchant_url else None
        secret = secret or hashlib.sha256(secrets.token_bytes(32)).hexdigest()
        merchant_url = args.merchant_url or start_merchant(processes, env, secret)
        sys.stdout.write(f"logs: {log_dir}\npreparing {args.tenants} tenant(s)\n")
        sys.stdout.flush()
        setups, words = prepare_tenants(
            run_id=run_id,
            tenants=args.tenants,
            shoppers=args.shoppers,
            products=args.products,
            merchant_url=merchant_url,
            secret=secret,
        )
        app_url = args.app_url or start_app(processes, env)
        websocket_url = args.websocket_url
        if args.mix["ws"] and not websocket_url:
            websocket_url = start_websocket(processes, env)

        transports = assign_transports(args.shoppers, args.mix)
        warm_up = run_shoppers(
            warm_up_shoppers(setups, words=words, websocket=bool(args.mix["ws"])),
            app_url=app_url,
            websocket_url=websocket_url,
        )[0]
        shoppers = [
            Shopper(
                user_id=f"shopper-{number}",
                transport=transports[number],
                key=setups[number % args.tenants].shopper_keys[number // args.tenants],
                texts=shopper_texts(number=number, messages=args.messages, words=words),
            )
            for number in range(args.shoppers)
        ]
        assistant = "offline" if not llm_base_url and not args.app_url else "agent"
        sys.stdout.write(
            f"{args.shoppers} shoppers, {args.tenants} tenant(s), {args.messages} messages "
            f"each, assistant {assistant if not args.app_url else 'of the running app'}\n"
        )
        sys.stdout.flush()
        before = cpu_snapshot(processes)
        results, seconds = run_shoppers(shoppers, app_url=app_url, websocket_url=websocket_url)
        after = cpu_snapshot(processes)
        cpu = {name: after[name] - before[name] for name in before}
        sys.stdout.write("\n".join(report(results, seconds=seconds, shoppers=shoppers, cpu=cpu)))
        sys.stdout.write("\n")

        model_tokens = None
        if model_url and not args.llm_url:
            model_tokens = model_stats(model_url)["tokens"]
        failures = warm_up.problems + results.problems
        failures += check_tokens(setups, model_tokens)
        cart_failures, cart_summary = check_conversations(setups, merchant_url, secret)
        failures += cart_failures
        sys.stdout.write(f"{cart_summary}\n")
        if failures:
            sys.stdout.write(f"checks: {len(failures)} failed\n")
            for failure in failures[:50]:
                sys.stdout.write(f"  {failure}\n")
        else:
            sys.stdout.write("checks: all passed\n")
        exit_status = 1 if failures else 0
    finally:
        processes.stop()
        if django_ready and not args.keep_tenants:
            delete_run_tenants(run_id=run_id)
    return exit_status


if __name__ == "__main__":
    sys.exit(main())
