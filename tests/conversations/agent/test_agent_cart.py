"""Cart changes by the LLM agent: merchant rejections, failed webhooks and the tool guards."""

import logging

import pytest

from conversations.models import Message
from conversations.tool_calls import MAX_TOOL_CALLS_PER_TURN
from tests.conversations.agent.chat import types_of
from tests.conversations.agent.llm_server import call, reply, tool_calls
from tests.conversations.chat import cart_posts, reply_text, send
from tests.conversations.shop_data import (
    APPLES,
    MILK_GALYCHYNA,
    MILK_LACTEL,
    SESSION_ID,
    STORE_ID,
    show,
)
from tests.factories import ConversationFactory
from webhooks.models import WebhookDelivery

pytestmark = pytest.mark.django_db


def test_merchant_limit_is_explained(chat_client, shop, conversation, llm):
    show(conversation, MILK_GALYCHYNA)
    llm.add(
        tool_calls(call("add_to_cart", {"sku": "milk-002", "quantity": 5})),
        reply("На жаль, Галичину можна купити не більше 3 шт. в одні руки. Додати 3?"),
    )

    sent = send(chat_client, conversation, "Додай 5 Галичини")

    [result] = llm.requests[1].tool_results()
    assert result == {
        "ok": False,
        "cart": {"items": [], "total": 0.0},
        "reason": "max_3_per_customer",
        "reason_type": "merchant",
    }
    assert reply_text(sent) == (
        "На жаль, Галичину можна купити не більше 3 шт. в одні руки. Додати 3?"
    )
    assert "cart_changed" not in types_of(sent)
    assert [post["quantity"] for post in cart_posts(shop)] == [5]
    assert shop.store.cart_items(STORE_ID, SESSION_ID) == []
    conversation.refresh_from_db()
    assert conversation.cart == {"items": [], "total": 0.0}


def test_out_of_stock_leads_to_alternatives(chat_client, shop, conversation, llm):
    show(conversation, MILK_LACTEL)
    shop.store.stock_update("milk-001", in_stock=False, stock=0)
    llm.add(
        tool_calls(call("add_to_cart", {"sku": "milk-001"})),
        tool_calls(call("search_products", {"query": "молоко"})),
        reply("Lactel закінчилося, але є Галичина за акцією 42,00."),
    )

    sent = send(chat_client, conversation, "Додай Lactel")

    add_result, search_result = llm.requests[2].tool_results()
    assert add_result["reason"] == "out_of_stock"
    assert add_result["reason_type"] == "merchant"
    # The other in-stock milk; search no longer pads the list with bread and apples.
    assert [product["sku"] for product in search_result["products"]] == ["milk-002"]
    assert types_of(sent) == [
        "status",
        "status",
        "text_delta",
        "text_end",
        "product_cards",
        "response_complete",
    ]


def test_failed_cart_webhook_is_reported(
    chat_client, shop, conversation, llm, tenant, closed_port_url
):
    tenant.webhook_settings.cart_url = closed_port_url
    tenant.webhook_settings.save()
    show(conversation, MILK_LACTEL)
    llm.add(
        tool_calls(call("add_to_cart", {"sku": "milk-001"})),
        reply("Не вдалося змінити кошик: магазин тимчасово недоступний. Спробуйте ще раз."),
    )

    sent = send(chat_client, conversation, "Додай Lactel")

    [result] = llm.requests[1].tool_results()
    assert result["ok"] is False
    assert result["reason"] == "webhook_error"
    assert result["reason_type"] == "unavailable"
    assert reply_text(sent).startswith("Не вдалося змінити кошик")
    assert "cart_changed" not in types_of(sent)
    conversation.refresh_from_db()
    assert conversation.cart == {"items": [], "total": 0.0}


def test_open_circuit_breaker_is_unavailable(
    chat_client, shop, conversation, llm, tenant, settings, closed_port_url
):
    settings.WEBHOOK_BREAKER_MIN_FAILURES = 1
    tenant.webhook_settings.cart_url = closed_port_url
    tenant.webhook_settings.save()
    show(conversation, MILK_LACTEL, MILK_GALYCHYNA)
    llm.add(
        tool_calls(
            call("add_to_cart", {"sku": "milk-001"}), call("add_to_cart", {"sku": "milk-002"})
        ),
        reply("Кошик тимчасово недоступний, спробуйте за хвилину."),
    )

    send(chat_client, conversation, "Додай обидва")

    failed, stopped = llm.requests[1].tool_results()
    assert failed["reason"] == "webhook_error"
    assert failed["reason_type"] == "unavailable"
    # The model gets webhook_error for every failed call other than a timeout, also for
    # one that the circuit breaker held.
    assert stopped["reason"] == "webhook_error"
    assert stopped["reason_type"] == "unavailable"
    assert WebhookDelivery.objects.filter(outcome=WebhookDelivery.Outcome.CIRCUIT_OPEN).count() == 1
    conversation.refresh_from_db()
    assert conversation.cart == {"items": [], "total": 0.0}


def test_identical_cart_calls_reach_the_merchant_once(chat_client, shop, conversation, llm):
    show(conversation, MILK_LACTEL)
    llm.add(
        tool_calls(
            call("add_to_cart", {"sku": "milk-001", "quantity": 1}),
            call("add_to_cart", {"sku": "milk-001"}),
        ),
        tool_calls(call("add_to_cart", {"sku": "milk-001", "quantity": 1.0})),
        reply("Додав одне молоко."),
    )

    sent = send(chat_client, conversation, "Додай Lactel")

    assert len(cart_posts(shop)) == 1
    assert shop.store.cart_items(STORE_ID, SESSION_ID)[0]["quantity"] == 1
    assert [event["type"] for event in sent].count("cart_changed") == 1
    first, second, third = llm.requests[2].tool_results()
    assert first["ok"] is True
    assert "duplicate" not in first
    assert second == {**first, "duplicate": True}
    assert third == {**first, "duplicate": True}
    conversation.refresh_from_db()
    assert conversation.cart["items"][0]["quantity"] == 1


def test_repeated_add_after_remove_runs_again(chat_client, shop, conversation, llm):
    show(conversation, MILK_LACTEL)
    llm.add(
        tool_calls(
            call("add_to_cart", {"sku": "milk-001"}),
            call("remove_from_cart", {"sku": "milk-001"}),
            call("add_to_cart", {"sku": "milk-001"}),
        ),
        reply("Готово."),
    )

    send(chat_client, conversation, "Додай, прибери і знову додай Lactel")

    assert [post["action"] for post in cart_posts(shop)] == ["add", "remove", "add"]
    assert shop.store.cart_items(STORE_ID, SESSION_ID)[0]["quantity"] == 1


def test_disabled_tool_is_not_offered_and_rejected(
    chat_client, shop, conversation, llm, assistant_settings
):
    assistant_settings.disabled_tools = ["clear_cart"]
    assistant_settings.save()
    shop.store.cart_seed(STORE_ID, SESSION_ID, [("milk-001", 1)])
    llm.add(
        tool_calls(call("clear_cart")),
        reply("Очистити кошик я не можу, але можу видалити окремі товари."),
    )

    sent = send(chat_client, conversation, "Очисти кошик")

    assert "clear_cart" not in llm.requests[0].tool_names
    assert len(llm.requests[0].tool_names) == 6
    [result] = llm.requests[1].tool_results()
    assert result == {"error": "unknown_tool", "detail": "There is no tool named 'clear_cart'."}
    assert reply_text(sent) == "Очистити кошик я не можу, але можу видалити окремі товари."
    assert cart_posts(shop) == []
    assert shop.store.cart_items(STORE_ID, SESSION_ID)[0]["sku"] == "milk-001"


def test_sku_never_shown_is_rejected_before_the_merchant(chat_client, shop, conversation, llm):
    llm.add(
        tool_calls(call("add_to_cart", {"sku": "bread-01"})),
        reply("Спершу знайду хліб."),
    )

    sent = send(chat_client, conversation, "Додай хліб")

    [result] = llm.requests[1].tool_results()
    assert result == {
        "ok": False,
        "cart": {"items": [], "total": 0.0},
        "reason": "sku_not_offered",
        "reason_type": "guard",
    }
    assert shop.requests == []
    assert "cart_changed" not in types_of(sent)


def test_quantity_rules_are_checked_before_the_merchant(chat_client, shop, conversation, llm):
    show(conversation, APPLES)
    llm.add(
        tool_calls(call("add_to_cart", {"sku": "apple-kg", "quantity": 0.25})),
        reply("Мінімум 0,3 кг яблук."),
    )

    send(chat_client, conversation, "Додай 250 г яблук")

    [result] = llm.requests[1].tool_results()
    assert result["reason"] == "below_min_quantity"
    assert result["reason_type"] == "guard"
    assert cart_posts(shop) == []


def test_invalid_arguments_go_back_to_the_model(chat_client, shop, conversation, llm):
    show(conversation, MILK_LACTEL)
    llm.add(
        tool_calls(call("add_to_cart", {"sku": "milk-001", "quantity": "two"})),
        tool_calls(call("add_to_cart", {"sku": "milk-001", "quantity": 2})),
        reply("Додав 2 шт."),
    )

    send(chat_client, conversation, "Додай два Lactel")

    [first] = llm.requests[1].tool_results()
    assert first == {"error": "invalid_arguments", "detail": "quantity must be a number."}
    assert [post["quantity"] for post in cart_posts(shop)] == [2]
    assert Message.objects.get(role="assistant").metadata["tool_rounds"] == 2


def test_changes_of_one_product_are_limited(chat_client, shop, conversation, llm, caplog):
    caplog.set_level("INFO", logger="conversations.tool_calls")
    show(conversation, MILK_LACTEL)
    llm.add(
        tool_calls(
            *[
                call("add_to_cart", {"sku": "milk-001", "quantity": amount})
                for amount in range(1, 6)
            ]
        ),
        reply("Додав молоко."),
    )

    sent = send(chat_client, conversation, "Додай Lactel")

    assert [post["quantity"] for post in cart_posts(shop)] == [1, 2, 3]
    assert shop.store.cart_items(STORE_ID, SESSION_ID)[0]["quantity"] == 6
    results = llm.requests[1].tool_results()
    assert [result.get("ok") for result in results[:3]] == [True, True, True]
    assert [result.get("error") for result in results[3:]] == [
        "too_many_cart_changes",
        "too_many_cart_changes",
    ]
    assert results[3]["detail"].startswith("At most 3 changes of one product are sent")
    assert [event["type"] for event in sent].count("cart_changed") == 3
    limited = [
        record
        for record in caplog.records
        if record.msg == "conversations.tools.cart_change_limited"
    ]
    assert [(record.tool, record.sku, record.changes_sent) for record in limited] == [
        ("add_to_cart", "milk-001", 3),
        ("add_to_cart", "milk-001", 3),
    ]
    assert {record.conversation_id for record in limited} == {conversation.public_id}


def test_cart_changes_per_message_are_limited(chat_client, shop, conversation, llm, monkeypatch):
    monkeypatch.setattr("conversations.tool_calls.MAX_CART_CHANGES_PER_TURN", 2)
    show(conversation, MILK_LACTEL, MILK_GALYCHYNA, APPLES)
    llm.add(
        tool_calls(
            call("add_to_cart", {"sku": "milk-001"}),
            call("add_to_cart", {"sku": "milk-002"}),
            call("add_to_cart", {"sku": APPLES.sku, "quantity": 1}),
        ),
        reply("Додав два товари."),
    )

    send(chat_client, conversation, "Додай усе")

    assert [post["sku"] for post in cart_posts(shop)] == ["milk-001", "milk-002"]
    results = llm.requests[1].tool_results()
    assert results[2] == {
        "error": "too_many_cart_changes",
        "detail": "At most 2 cart changes are sent per message. Tell the shopper what was"
        " done and ask them to continue in a new message.",
    }
    assert sorted(item["sku"] for item in shop.store.cart_items(STORE_ID, SESSION_ID)) == [
        "milk-001",
        "milk-002",
    ]


def test_clear_cart_starts_the_product_count_again(chat_client, shop, conversation, llm):
    show(conversation, MILK_LACTEL)
    llm.add(
        tool_calls(
            call("add_to_cart", {"sku": "milk-001", "quantity": 1}),
            call("remove_from_cart", {"sku": "milk-001"}),
            call("add_to_cart", {"sku": "milk-001", "quantity": 2}),
            call("clear_cart"),
            call("add_to_cart", {"sku": "milk-001", "quantity": 3}),
        ),
        reply("Готово."),
    )

    send(chat_client, conversation, "Додай молоко")

    assert [post["action"] for post in cart_posts(shop)] == [
        "add",
        "remove",
        "add",
        "clear",
        "add",
    ]
    assert "error" not in llm.requests[1].tool_results()[4]
    assert shop.store.cart_items(STORE_ID, SESSION_ID)[0]["quantity"] == 3


def test_tool_calls_per_message_are_limited(chat_client, shop, conversation, llm, caplog):
    show(conversation, MILK_LACTEL)
    details = call("get_product_details", {"sku": "milk-001"})
    add = call("add_to_cart", {"sku": "milk-001"})
    llm.add(
        tool_calls(*[details] * MAX_TOOL_CALLS_PER_TURN, add, details),
        reply("Ось деталі."),
    )

    with caplog.at_level(logging.INFO, logger="conversations.tool_calls"):
        sent = send(chat_client, conversation, "Розкажи про молоко")

    results = llm.requests[1].tool_results()
    assert len(results) == MAX_TOOL_CALLS_PER_TURN + 2
    assert all(result["ok"] is True for result in results[:MAX_TOOL_CALLS_PER_TURN])
    limited = {
        "error": "too_many_tool_calls",
        "detail": f"At most {MAX_TOOL_CALLS_PER_TURN} tool calls are run per message. Answer"
        " with the results so far and ask the shopper to continue in a new message.",
    }
    assert results[MAX_TOOL_CALLS_PER_TURN:] == [limited, limited]
    assert cart_posts(shop) == []
    assert "cart_changed" not in [event["type"] for event in sent]
    conversation.refresh_from_db()
    assert conversation.cart == {"items": [], "total": 0.0}
    limited_logs = [r for r in caplog.records if r.msg == "conversations.tools.call_limited"]
    assert [record.tool for record in limited_logs] == ["add_to_cart", "get_product_details"]


def test_sku_shown_elsewhere_is_rejected(
    chat_client, shop, conversation, llm, tenant, other_tenant
):
    # The other tenant's conversation and another conversation of this shop showed it.
    show(ConversationFactory(tenant=other_tenant, store_id=STORE_ID), APPLES)
    show(ConversationFactory(tenant=tenant, store_id=STORE_ID), APPLES)
    llm.add(
        tool_calls(
            call("add_to_cart", {"sku": APPLES.sku, "conversation_id": "conv_other"}),
            call("get_product_details", {"sku": APPLES.sku}),
        ),
        reply("Спершу знайду яблука."),
    )

    sent = send(chat_client, conversation, "Додай яблука")

    added, details = llm.requests[1].tool_results()
    assert added["reason"] == "sku_not_offered"
    assert added["reason_type"] == "guard"
    assert details == {"ok": False, "sku": APPLES.sku, "reason": "sku_not_offered"}
    assert shop.requests == []
    assert "cart_changed" not in types_of(sent)
    conversation.refresh_from_db()
    assert conversation.cart == {"items": [], "total": 0.0}


def test_cart_claim_without_a_call_changes_nothing(chat_client, shop, conversation, llm):
    show(conversation, MILK_GALYCHYNA)
    llm.add(reply("Додав Галичину в кошик, до сплати 42 грн."))

    sent = send(chat_client, conversation, "Додай Галичину")

    assert types_of(sent) == ["text_delta", "text_end", "response_complete"]
    assert reply_text(sent) == "Додав Галичину в кошик, до сплати 42 грн."
    assert cart_posts(shop) == []
    assert shop.store.cart_items(STORE_ID, SESSION_ID) == []
    conversation.refresh_from_db()
    assert conversation.cart == {"items": [], "total": 0.0}
    assert "failure" not in Message.objects.get(role="assistant").metadata
