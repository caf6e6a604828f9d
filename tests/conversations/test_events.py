from decimal import Decimal

from conversations import events
from conversations.cart import cart_empty, cart_item, cart_snapshot
from conversations.events import CartChangeAction, StatusCode
from conversations.tools import CartChangeResult, SearchOutcome, SearchResult, ShownProduct
from webhooks.dispatch import CartAction

MILK = ShownProduct(
    sku="milk-002",
    name="Молоко Галичина 3.2%",
    price=52.0,
    promo_price=42.0,
    promo_label="-19%",
    brand="Галичина",
    category_path="Молочні > Молоко",
)


def test_simple_events():
    assert events.status(StatusCode.SEARCHING) == {"type": "status", "code": "searching"}
    assert events.text_delta("Привіт") == {"type": "text_delta", "delta": "Привіт"}
    assert events.text_end() == {"type": "text_end"}
    assert events.response_complete() == {"type": "response_complete"}
    assert events.error("agent_busy") == {"type": "error", "code": "agent_busy"}
    assert events.error("internal_error", error_id="abc") == {
        "type": "error",
        "code": "internal_error",
        "error_id": "abc",
    }
    assert events.named_event("item_selected", sku="milk-002") == {
        "type": "event",
        "event": "item_selected",
        "sku": "milk-002",
    }


def test_text_events_send_the_whole_text_once():
    assert events.text_events("Готово.") == [
        {"type": "text_delta", "delta": "Готово."},
        {"type": "text_end"},
    ]


def test_search_result_events_are_product_cards():
    result = SearchResult(query="молоко", outcome=SearchOutcome.FOUND, products=[MILK])

    assert result.events() == [
        {
            "type": "product_cards",
            "items": [
                {
                    "sku": "milk-002",
                    "name": "Молоко Галичина 3.2%",
                    "brand": "Галичина",
                    "price": 52.0,
                    "promo_price": 42.0,
                    "promo_label": "-19%",
                    "unit": "pcs",
                    "image_url": None,
                    "category_path": "Молочні > Молоко",
                }
            ],
        }
    ]


def test_failed_search_has_no_events():
    result = SearchResult(query="молоко", outcome=SearchOutcome.PRODUCTS_UNAVAILABLE)

    assert result.events() == []
    assert result.to_tool_output() == {
        "outcome": "products_unavailable",
        "products": [],
        "unavailable_count": 0,
    }


def test_confirmed_add_becomes_item_selected():
    cart = cart_snapshot([MILK.cart_item(Decimal(2))])
    result = CartChangeResult(
        action=CartAction.ADD, ok=True, cart=cart, product=MILK, quantity=Decimal(2)
    )

    assert result.events() == [
        {
            "type": "cart_changed",
            "action": "item_selected",
            "sku": "milk-002",
            "name": "Молоко Галичина 3.2%",
            "quantity": 2,
            "price": 52.0,
            "items": [
                {
                    "sku": "milk-002",
                    "name": "Молоко Галичина 3.2%",
                    "price": 52.0,
                    "promo_price": 42.0,
                    "brand": "Галичина",
                    "quantity": 2,
                    "unit": "pcs",
                }
            ],
            "total": 84.0,
        }
    ]


def test_confirmed_removal_and_update_and_clear():
    cart = cart_snapshot([cart_item(sku="bread-01", name="Хліб", price=32.0, quantity=Decimal(1))])
    removed = CartChangeResult(action=CartAction.REMOVE, ok=True, cart=cart, product=MILK)
    updated = CartChangeResult(
        action=CartAction.UPDATE_QUANTITY, ok=True, cart=cart, product=MILK, quantity=Decimal(3)
    )
    cleared = CartChangeResult(action=CartAction.CLEAR, ok=True, cart=cart_empty())

    assert removed.events()[0]["action"] == "item_removed"
    assert "quantity" not in removed.events()[0]
    assert "price" not in removed.events()[0]
    assert updated.events()[0]["action"] == "quantity_updated"
    assert updated.events()[0]["quantity"] == 3
    assert cleared.events() == [
        {"type": "cart_changed", "action": "cart_cleared", "items": [], "total": 0.0}
    ]


def test_rejected_change_has_no_events():
    result = CartChangeResult(
        action=CartAction.ADD, ok=False, cart=cart_empty(), reason="out_of_stock", product=MILK
    )

    assert result.events() == []
    assert result.to_tool_output() == {
        "ok": False,
        "cart": {"items": [], "total": 0.0},
        "reason": "out_of_stock",
    }


def test_cart_change_actions_match_the_widget_contract():
    assert [action.value for action in CartChangeAction] == [
        "item_selected",
        "item_removed",
        "quantity_updated",
        "cart_cleared",
    ]
