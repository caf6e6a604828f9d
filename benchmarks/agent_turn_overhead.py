"""Measure what one LLM agent turn costs besides the LLM and the merchant.

Runs shopper messages through the chat API in process (Django test client, all middleware,
DRF, the turn service, the agent, catalog search, PostgreSQL) against a scripted
OpenAI-compatible server and the reference merchant, both on 127.0.0.1 and both responding
without delay. For each turn it measures the wall time and subtracts the time spent inside LLM
calls (iterating a streamed completion, or a plain completion call) and inside webhook
calls (``WebhookCall.run``, which includes signing and writing the delivery row). The rest
is the overhead: HTTP handling, database reads and writes, prompt and history building,
tool dispatch, catalog search and event serialisation. Catalog search time (mostly the
query embedding) is also reported on its own.

Each conversation has four turns: search, add, change quantity, remove; each turn makes
two model calls. Usage::

    DATABASE_URL=postgres://... DJANGO_DEBUG=1 python benchmarks/agent_turn_overhead.py --conversations 50

It creates a throwaway tenant and deletes it at the end.
"""

import argparse
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vizochok.settings")
os.environ.setdefault("DJANGO_DEBUG", "1")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.test import Client  # noqa: E402

import catalog.search  # noqa: E402
import conversations.tools  # noqa: E402
import webhooks.dispatch  # noqa: E402
from catalog.schemas import ProductInput  # noqa: E402
from catalog.services import product_upsert_many, products_embed_pending  # noqa: E402
from conversations.llm import CompletionStream  # noqa: E402
from merchant.server import start_merchant  # noqa: E402
from tenants.models import ApiKey, Tenant  # noqa: E402
from tenants.services import (  # noqa: E402
    api_key_create,
    tenant_create,
    webhook_secret_set,
    webhook_settings_get_or_create,
)
from tests.conversations.agent.llm_server import call, reply, start_scripted_llm  # noqa: E402
from tests.conversations.agent.llm_server import tool_calls as tool_call_answer  # noqa: E402
from tests.conversations.shop_data import CATALOG, STOCK  # noqa: E402


class Clock:
    """Seconds spent inside instrumented calls since the last ``take``."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def take(self) -> float:
        seconds, self.seconds = self.seconds, 0.0
        return seconds

    def timed(self, function: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started

        return wrapper

    def timed_iteration(self, function: Callable[..., Iterator[Any]]) -> Callable[..., Any]:
        """Time only the work inside ``next()``, not what the consumer does between items."""

        def wrapper(*args: Any, **kwargs: Any) -> Iterator[Any]:
            iterator = function(*args, **kwargs)
            while True:
                started = time.perf_counter()
                try:
                    item = next(iterator)
                except StopIteration:
                    return
                finally:
                    self.seconds += time.perf_counter() - started
                yield item

        return wrapper


def instrument() -> tuple[Clock, Clock, Clock]:
    """Wrap the LLM stream, the webhook call and catalog search with clocks."""
    llm_clock, webhook_clock, search_clock = Clock(), Clock(), Clock()
    stream_iter = CompletionStream.__iter__
    CompletionStream.__iter__ = llm_clock.timed_iteration(stream_iter)  # type: ignore[method-assign]
    call_run = webhooks.dispatch.WebhookCall.run
    webhooks.dispatch.WebhookCall.run = webhook_clock.timed(call_run)  # type: ignore[method-assign]
    conversations.tools.product_search = search_clock.timed(catalog.search.product_search)
    return llm_clock, webhook_clock, search_clock


def prepare(merchant_url_holder: dict[str, Any]) -> tuple[Tenant, str]:
    tenant = tenant_create(name="Benchmark", slug=f"bench-{uuid.uuid4().hex[:8]}").tenant
    product_upsert_many(tenant=tenant, products=[ProductInput(**row) for row in CATALOG])
    products_embed_pending(tenant=tenant)
    webhook_settings = webhook_settings_get_or_create(tenant=tenant)
    secret = webhook_secret_set(webhook_settings=webhook_settings)
    merchant = start_merchant(secret=secret, stock=STOCK, catalog=CATALOG)
    merchant_url_holder["merchant"] = merchant
    webhook_settings.refresh_from_db()
    webhook_settings.products_url = merchant.products_url
    webhook_settings.cart_url = merchant.cart_url
    webhook_settings.save()
    key = api_key_create(tenant=tenant, kind=ApiKey.Kind.PUBLIC).raw_key
    return tenant, key


SCRIPT = [
    (
        "молоко",
        [tool_call_answer(call("search_products", {"query": "молоко"})), reply("Ось молоко.")],
    ),
    (
        "додай Галичину",
        [tool_call_answer(call("add_to_cart", {"sku": "milk-002"})), reply("Додав.")],
    ),
    (
        "зроби 2",
        [
            tool_call_answer(call("update_quantity", {"sku": "milk-002", "quantity": 2})),
            reply("Тепер 2."),
        ],
    ),
    (
        "видали",
        [tool_call_answer(call("remove_from_cart", {"sku": "milk-002"})), reply("Видалив.")],
    ),
]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return ordered[index]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conversations", type=int, default=50, help="Conversations of 4 turns.")
    args = parser.parse_args()

    settings.WEBHOOK_ALLOW_HTTP = True
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    llm_server = start_scripted_llm()
    settings.OPENAI_BASE_URL = llm_server.base_url
    settings.OPENAI_API_KEY = "benchmark"
    holder: dict[str, Any] = {}
    tenant, key = prepare(holder)
    llm_clock, webhook_clock, search_clock = instrument()
    client = Client(HTTP_HOST="127.0.0.1", HTTP_AUTHORIZATION=f"Bearer {key}")

    overheads: list[float] = []
    searches: list[float] = []
    try:
        for number in range(args.conversations):
            created = client.post(
                "/api/v1/conversations",
                {"store_id": "store-1", "user_id": f"bench-{number}"},
                content_type="application/json",
            ).json()
            url = f"/api/v1/conversations/{created['conversation_id']}/messages"
            for text, answers in SCRIPT:
                llm_server.add(*answers)
                for clock in (llm_clock, webhook_clock, search_clock):
                    clock.take()
                started = time.perf_counter()
                response = client.post(url, {"text": text}, content_type="application/json")
                wall = time.perf_counter() - started
                if response.status_code != 200 or response.json()["events"][-2]["type"] == "error":
                    raise SystemExit(f"Turn failed: {response.status_code} {response.content!r}")
                overheads.append((wall - llm_clock.take() - webhook_clock.take()) * 1000)
                searches.append(search_clock.take() * 1000)
    finally:
        tenant.delete()
        holder["merchant"].shutdown()
        llm_server.shutdown()

    # The first conversation warms caches up (model load, connection pools).
    measured = overheads[len(SCRIPT) :]
    search_times = searches[len(SCRIPT) :]
    without_search = [total - search for total, search in zip(measured, search_times, strict=True)]
    search_turns = [search for search in search_times if search > 0]
    report = [
        f"turns measured: {len(measured)} (the first conversation is a warm-up)",
        _line("overhead per turn", measured),
        _line("  without catalog search", without_search),
        _line("  catalog search, search turns only", search_turns),
    ]
    sys.stdout.write("\n".join(report) + "\n")


def _line(label: str, values: list[float]) -> str:
    return (
        f"{label}, ms: p50 {statistics.median(values):.1f}  "
        f"p95 {percentile(values, 0.95):.1f}  max {max(values):.1f}"
    )


if __name__ == "__main__":
    main()
