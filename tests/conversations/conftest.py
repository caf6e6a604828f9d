"""Fixtures for conversation tests: a conversation, its lease, tools, merchant and chat socket."""

import socket
from collections.abc import Iterator

import pytest
from django.db import connection

from catalog.schemas import ProductInput
from catalog.services import product_upsert_many, products_embed_pending
from conversations.leases import TurnLease, turn_lease_acquire
from conversations.models import Conversation
from conversations.tools import ShoppingTools
from merchant.server import MerchantServer, start_merchant
from tests.conversations.shop_data import (
    CATALOG,
    SESSION_ID,
    STOCK,
    STOCK_WITHOUT_DISCOUNTS,
    STORE_ID,
)
from tests.conversations.websocket_client import RunningServer, running_server
from tests.factories import ConversationFactory


@pytest.fixture
def conversation(tenant) -> Conversation:
    return ConversationFactory(tenant=tenant, store_id=STORE_ID, session_id=SESSION_ID)


@pytest.fixture
def lease(conversation) -> TurnLease:
    lease = turn_lease_acquire(conversation=conversation)
    assert lease is not None
    return lease


@pytest.fixture
def tools(conversation, lease) -> ShoppingTools:
    return ShoppingTools(conversation=conversation, lease=lease)


@pytest.fixture
def catalog(tenant) -> None:
    """Tenant A's catalog from ``shop_data.CATALOG``, uploaded and embedded so search finds it."""
    product_upsert_many(tenant=tenant, products=[ProductInput(**row) for row in CATALOG])
    products_embed_pending(tenant=tenant)


@pytest.fixture
def local_webhooks(settings) -> None:
    """Let webhook calls reach plain-HTTP servers on 127.0.0.1, without retry delays."""
    settings.WEBHOOK_ALLOW_HTTP = True
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.1/32"]
    settings.WEBHOOK_RETRY_DELAY_SECONDS = 0


@pytest.fixture
def merchant(tenant, local_webhooks) -> Iterator[MerchantServer]:
    """The reference merchant on 127.0.0.1, configured as tenant A's products and cart webhooks.

    The cart GET webhook is left unset; tests that load a cart set ``cart_get_url``.
    """
    webhook_settings = tenant.webhook_settings
    server = start_merchant(secret=webhook_settings.secret, stock=STOCK, catalog=CATALOG)
    webhook_settings.products_url = server.products_url
    webhook_settings.cart_url = server.cart_url
    webhook_settings.save()
    yield server
    server.shutdown()


@pytest.fixture
def merchant_without_discounts(tenant, local_webhooks) -> Iterator[MerchantServer]:
    """The reference merchant of ``merchant``, with promotions that are not discounts."""
    webhook_settings = tenant.webhook_settings
    server = start_merchant(
        secret=webhook_settings.secret, stock=STOCK_WITHOUT_DISCOUNTS, catalog=CATALOG
    )
    webhook_settings.products_url = server.products_url
    webhook_settings.cart_url = server.cart_url
    webhook_settings.save()
    yield server
    server.shutdown()


@pytest.fixture
def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens, so a connection to it is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/vizochok/cart"


@pytest.fixture
def ws_server(monkeypatch) -> Iterator[RunningServer]:
    # Worker threads then close their connections after each task, so none stays open
    # when the test database is flushed or dropped.
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 0)
    with running_server() as running:
        yield running


@pytest.fixture
def ws_url(ws_server) -> str:
    """Return the chat URL of a running uvicorn."""
    return ws_server.url
