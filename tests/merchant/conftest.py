from __future__ import annotations

from collections.abc import Iterator

import pytest

from merchant.server import MerchantServer, start_merchant
from tests.merchant.client import MerchantClient
from tests.merchant.sample_data import CATALOG, SECRET, STOCK


@pytest.fixture
def merchant() -> Iterator[MerchantServer]:
    server = start_merchant(secret=SECRET, stock=STOCK, catalog=CATALOG, host="127.0.0.1", port=0)
    yield server
    server.shutdown()


@pytest.fixture
def client(merchant: MerchantServer) -> MerchantClient:
    return MerchantClient(merchant.url, SECRET)
