"""The shopping tools as function-calling definitions, and a runner for a model's tool calls.

An LLM agent sends ``tool_definitions()`` with its chat request and passes each tool call
the model makes to ``tool_call``. The result has the JSON output for the model's tool
message and the events for the client. Invalid arguments produce an error output, not an
exception, so the model can correct its call.
"""

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from conversations.events import Event
from conversations.tools import DEFAULT_SEARCH_LIMIT, MAX_SEARCH_LIMIT, ShoppingTools

_SKU = {
    "type": "string",
    "description": "SKU of a product shown in this conversation or in the cart.",
}
_QUANTITY = {
    "type": "number",
    "exclusiveMinimum": 0,
    "description": "Quantity in the product's unit: pieces, or kilograms or litres for goods sold by weight or volume.",
}

# Definitions in the OpenAI chat completions "tools" format.
TOOL_DEFINITIONS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "search_products",
            "description": "Search the store's catalog. Returns only products in stock, with live prices and promotions.",
            "parameters": {
                "type": "object",
                "properties": {
                    "query": {"type": "string", "description": "What the shopper is looking for."},
                    "limit": {"type": "integer", "minimum": 1, "maximum": MAX_SEARCH_LIMIT},
                },
                "required": ["query"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "add_to_cart",
            "description": "Add a product to the shopper's cart; the quantity is added to any already there.",
            "parameters": {
                "type": "object",
                "properties": {"sku": _SKU, "quantity": _QUANTITY},
                "required": ["sku"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "remove_from_cart",
            "description": "Remove a product from the shopper's cart.",
            "parameters": {"type": "object", "properties": {"sku": _SKU}, "required": ["sku"]},
        },
    },
    {
        "type": "function",
        "function": {
            "name": "update_quantity",
            "description": "Set the quantity of a product in the cart to a new total.",
            "parameters": {
                "type": "object",
                "properties": {"sku": _SKU, "quantity": _QUANTITY},
                "required": ["sku", "quantity"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "clear_cart",
            "description": "Remove every product from the shopper's cart.",
            "parameters": {"type": "object", "properties": {}},
        },
    },
    {
        "type": "function",
        "function": {
            "name": "view_cart",
            "description": "Return the shopper's cart as the store last confirmed it.",
            "parameters": {"type": "object", "properties": {}},
        },
    },
]
TOOL_NAMES = frozenset(definition["function"]["name"] for definition in TOOL_DEFINITIONS)


@dataclass(frozen=True)
class ToolOutcome:
    """The JSON output for the model and the events for the client of one tool call."""

    output: dict[str, Any]
    events: list[Event] = field(default_factory=list)


class _InvalidArguments(ValueError):
    pass


def tool_definitions(*, disabled: Collection[str] = ()) -> list[dict[str, Any]]:
    """Return the definitions of the tools not listed in ``disabled`` (a tenant setting)."""
    return [item for item in TOOL_DEFINITIONS if item["function"]["name"] not in disabled]


def tool_call(
    tools: ShoppingTools,
    name: str,
    arguments: Mapping[str, Any],
    *,
    disabled: Collection[str] = (),
) -> ToolOutcome:
    """Run the tool ``name`` with a model's decoded JSON ``arguments``."""
    if name not in TOOL_NAMES or name in disabled:
        return _error("unknown_tool", f"There is no tool named {name!r}.")
    try:
        return _run(tools, name, arguments)
    except _InvalidArguments as error:
        return _error("invalid_arguments", str(error))


def _run(tools: ShoppingTools, name: str, arguments: Mapping[str, Any]) -> ToolOutcome:
    if name == "search_products":
        limit = arguments.get("limit", DEFAULT_SEARCH_LIMIT)
        if not isinstance(limit, int) or isinstance(limit, bool):
            raise _InvalidArguments("limit must be an integer.")
        search = tools.search_products(_text(arguments, "query"), limit)
        return ToolOutcome(output=search.to_tool_output(), events=search.events())
    if name == "view_cart":
        return ToolOutcome(output={"cart": tools.view_cart()})
    if name == "clear_cart":
        change = tools.clear_cart()
    elif name == "remove_from_cart":
        change = tools.remove_from_cart(_text(arguments, "sku"))
    elif name == "add_to_cart":
        change = tools.add_to_cart(_text(arguments, "sku"), _quantity(arguments, default=1))
    else:
        change = tools.update_quantity(_text(arguments, "sku"), _quantity(arguments))
    return ToolOutcome(output=change.to_tool_output(), events=change.events())


def _text(arguments: Mapping[str, Any], key: str) -> str:
    value = arguments.get(key)
    if not isinstance(value, str) or not value.strip():
        raise _InvalidArguments(f"{key} must be a non-empty string.")
    return value.strip()


def _quantity(arguments: Mapping[str, Any], *, default: float | None = None) -> float:
    value = arguments.get("quantity", default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _InvalidArguments("quantity must be a number.")
    return value


def _error(code: str, detail: str) -> ToolOutcome:
    return ToolOutcome(output={"error": code, "detail": detail})
