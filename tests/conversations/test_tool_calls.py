import pytest

from conversations.tool_calls import TOOL_DEFINITIONS, tool_call, tool_definitions
from tests.conversations.chat import cart_posts
from tests.conversations.shop_data import MILK_LACTEL, show

pytestmark = pytest.mark.django_db


def test_definitions_leave_out_disabled_tools():
    names = [item["function"]["name"] for item in tool_definitions(disabled=["clear_cart"])]

    assert names == [
        "search_products",
        "get_product_details",
        "add_to_cart",
        "remove_from_cart",
        "update_quantity",
        "view_cart",
    ]
    assert len(TOOL_DEFINITIONS) == 7


def test_view_cart_description_promises_no_reload():
    [view_cart] = [item for item in TOOL_DEFINITIONS if item["function"]["name"] == "view_cart"]

    # view_cart calls no webhook, so the model must not tell the shopper the cart is current.
    assert view_cart["function"]["description"] == (
        "Return the shopper's cart as the store confirmed it in this conversation. "
        "Changes made on the store's website after the conversation's start are not in it."
    )


def test_add_call_returns_output_and_events(merchant, conversation, tools):
    show(conversation, MILK_LACTEL)

    outcome = tool_call(tools, "add_to_cart", {"sku": "milk-001", "quantity": 2})

    cart = {
        "items": [
            {
                "sku": "milk-001",
                "name": "Молоко Lactel 2.5%",
                "price": 45.9,
                "promo_price": None,
                "brand": "Lactel",
                "quantity": 2,
                "unit": "pcs",
            }
        ],
        "total": 91.8,
    }
    assert outcome.output == {"ok": True, "cart": cart}
    assert [event["type"] for event in outcome.events] == ["cart_changed"]
    assert tool_call(tools, "view_cart", {}).output == {"cart": cart}


def test_rejected_call_returns_the_reason(merchant, conversation, tools):
    outcome = tool_call(tools, "add_to_cart", {"sku": "bread-01"})

    assert outcome.output == {
        "ok": False,
        "cart": {"items": [], "total": 0.0},
        "reason": "sku_not_offered",
    }
    assert outcome.events == []


@pytest.mark.parametrize(
    ("_case", "name", "arguments", "output"),
    [
        (
            "unknown tool",
            "checkout",
            {},
            {"error": "unknown_tool", "detail": "There is no tool named 'checkout'."},
        ),
        (
            "disabled tool",
            "clear_cart",
            {},
            {"error": "unknown_tool", "detail": "There is no tool named 'clear_cart'."},
        ),
        (
            "missing sku",
            "add_to_cart",
            {"quantity": 1},
            {"error": "invalid_arguments", "detail": "sku must be a non-empty string."},
        ),
        (
            "text quantity",
            "add_to_cart",
            {"sku": "milk-001", "quantity": "2"},
            {"error": "invalid_arguments", "detail": "quantity must be a number."},
        ),
        (
            "quantity beyond float range",
            "add_to_cart",
            {"sku": "milk-001", "quantity": 10**400},
            {"error": "invalid_arguments", "detail": "quantity must be a number."},
        ),
        (
            "boolean quantity",
            "update_quantity",
            {"sku": "milk-001", "quantity": True},
            {"error": "invalid_arguments", "detail": "quantity must be a number."},
        ),
        (
            "missing quantity",
            "update_quantity",
            {"sku": "milk-001"},
            {"error": "invalid_arguments", "detail": "quantity must be a number."},
        ),
        (
            "blank query",
            "search_products",
            {"query": " "},
            {"error": "invalid_arguments", "detail": "query must be a non-empty string."},
        ),
        (
            "text limit",
            "search_products",
            {"query": "milk", "limit": "5"},
            {"error": "invalid_arguments", "detail": "limit must be an integer."},
        ),
    ],
)
def test_invalid_calls_return_an_error_and_call_nothing(
    merchant, conversation, tools, _case, name, arguments, output
):
    show(conversation, MILK_LACTEL)

    outcome = tool_call(tools, name, arguments, disabled=["clear_cart"])

    assert outcome.output == output
    assert outcome.events == []
    assert merchant.requests == []
    assert cart_posts(merchant) == []
