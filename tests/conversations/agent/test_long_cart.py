"""A merchant cart of hundreds of lines: kept whole, cut for the model."""

from collections.abc import Iterator

import pytest

from conversations.cart import MAX_MODEL_CART_LINES
from conversations.models import Conversation
from merchant.server import MerchantServer, start_merchant
from tests.conversations.agent.llm_server import call, reply, tool_calls
from tests.conversations.chat import send
from tests.conversations.shop_data import CATALOG, SESSION_ID, STOCK, STORE_ID

pytestmark = pytest.mark.django_db

CART_LINES = 300
# milk-001 comes after the lines that are sent to the model.
MILK_POSITION = 200


def tea_sku(number: int) -> str:
    return f"tea-{number:03d}"


@pytest.fixture
def long_cart_shop(tenant, catalog, local_webhooks) -> Iterator[MerchantServer]:
    """The reference merchant with a 300-line cart of the conversation's shopper."""
    stock = {
        **STOCK,
        **{
            tea_sku(number): {"price": 20.0 + number, "in_stock": True, "stock": 10}
            for number in range(CART_LINES - 1)
        },
    }
    teas = [(tea_sku(number), 1) for number in range(CART_LINES - 1)]
    seed = [*teas[:MILK_POSITION], ("milk-001", 1), *teas[MILK_POSITION:]]
    server = start_merchant(
        secret=tenant.webhook_settings.secret,
        stock=stock,
        catalog=CATALOG,
        seed_carts={(STORE_ID, SESSION_ID): seed},
    )
    webhook_settings = tenant.webhook_settings
    webhook_settings.products_url = server.products_url
    webhook_settings.cart_url = server.cart_url
    webhook_settings.cart_get_url = server.cart_get_url
    webhook_settings.save()
    yield server
    server.shutdown()


def test_long_cart_is_cut_for_the_model(chat_client, long_cart_shop, conversation, llm):
    merchant_skus = [item["sku"] for item in long_cart_shop.store.cart_items(STORE_ID, SESSION_ID)]
    llm.add(tool_calls(call("add_to_cart", {"sku": "milk-001"})), reply("Додав ще одне молоко."))

    sent = send(chat_client, conversation, "додай ще одне молоко Lactel")

    stored = Conversation.objects.get(pk=conversation.pk).cart
    assert len(merchant_skus) == CART_LINES
    assert [item["sku"] for item in stored["items"]] == merchant_skus
    assert stored["items"][MILK_POSITION]["quantity"] == 2
    [changed] = [event for event in sent if event["type"] == "cart_changed"]
    assert len(changed["items"]) == CART_LINES

    [at_start] = llm.requests[0].tool_results()
    start_cart = at_start["cart"]
    assert set(at_start) == {"cart"}
    assert [item["sku"] for item in start_cart["items"]] == merchant_skus[:MAX_MODEL_CART_LINES]
    assert start_cart["line_count"] == CART_LINES
    assert start_cart["lines_not_listed"] == CART_LINES - MAX_MODEL_CART_LINES
    assert start_cart["total"] == round(stored["total"] - 45.9, 2)
    assert start_cart["note"].startswith("This cart lists only 50 of its 300 lines")

    added = llm.requests[1].tool_results()[-1]
    added_skus = [item["sku"] for item in added["cart"]["items"]]
    assert added["ok"] is True
    assert added_skus == [*merchant_skus[:MAX_MODEL_CART_LINES], "milk-001"]
    assert added["cart"]["items"][-1]["quantity"] == 2
    assert added["cart"]["lines_not_listed"] == CART_LINES - MAX_MODEL_CART_LINES - 1
    assert added["cart"]["total"] == stored["total"]


def test_view_cart_of_long_cart_is_cut(chat_client, long_cart_shop, conversation, llm):
    llm.add(tool_calls(call("view_cart")), reply("У кошику 300 позицій."))

    send(chat_client, conversation, "що в кошику?")

    viewed = llm.requests[1].tool_results()[-1]
    assert set(viewed) == {"cart"}
    assert len(viewed["cart"]["items"]) == MAX_MODEL_CART_LINES
    assert viewed["cart"]["line_count"] == CART_LINES
    assert viewed["cart"]["lines_not_listed"] == CART_LINES - MAX_MODEL_CART_LINES
    assert len(Conversation.objects.get(pk=conversation.pk).cart["items"]) == CART_LINES


def test_view_cart_sends_no_second_cart_get(chat_client, long_cart_shop, conversation, llm):
    llm.add(reply("Вітаю!"))
    send(chat_client, conversation, "привіт")
    llm.add(tool_calls(call("view_cart")), reply("У кошику 300 позицій."))

    send(chat_client, conversation, "що в кошику?")

    # Cart GET is sent once per conversation, with its first message.
    cart_gets = [request for request in long_cart_shop.requests if request.method == "GET"]
    assert len(cart_gets) == 1
    viewed = llm.requests[2].tool_results()[-1]
    assert viewed["cart"]["line_count"] == CART_LINES
