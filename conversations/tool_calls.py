"""The shopping tools as function-calling definitions, and a runner for a model's tool calls.

An LLM agent sends ``tool_definitions()`` with its chat request and passes each tool call
the model makes to a ``ToolCallRunner`` (or to ``tool_call`` directly). The result has the
JSON output for the model's tool message and the events for the client. Invalid arguments
produce an error output, not an exception, so the model can correct its call.
"""

import json
import logging
import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from decimal import InvalidOperation
from typing import Any

from conversations.cart import cart_for_model, to_decimal
from conversations.events import CartSnapshot, Event
from conversations.tools import (
    DEFAULT_SEARCH_LIMIT,
    MAX_SEARCH_LIMIT,
    CartChangeResult,
    ShoppingTools,
)
from webhooks.dispatch import FailureReason

logger = logging.getLogger(__name__)

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
            "name": "get_product_details",
            "description": "Return the catalog details of a product shown in this conversation or in the cart: description, ingredients, country of origin, pack size, quantity rules, and the price the store returned when it was last shown.",
            "parameters": {"type": "object", "properties": {"sku": _SKU}, "required": ["sku"]},
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
            "description": (
                "Return the shopper's cart as the store confirmed it in this conversation. "
                "Changes made on the store's website after the conversation's start are not "
                "in it."
            ),
            "parameters": {"type": "object", "properties": {}},
        },
    },
]
TOOL_NAMES = frozenset(definition["function"]["name"] for definition in TOOL_DEFINITIONS)
CART_TOOL_NAMES = frozenset({"add_to_cart", "remove_from_cart", "update_quantity", "clear_cart"})

# Cart changes one turn may send to the merchant, in all and for one product. A model
# that repeats a change with other quantities (30 adds of one SKU in one completion) is
# stopped there. Duplicates, which are not sent again, do not count.
MAX_CART_CHANGES_PER_TURN = 20
MAX_CART_CHANGES_PER_PRODUCT = 3
# Searches one turn may run. Each costs a query embedding and a products webhook call, and
# a model that asked for 30 searches in one completion got 30 of each.
MAX_SEARCHES_PER_TURN = 10
SEARCH_TOOL_NAME = "search_products"
# Tool calls one turn may run, whatever the tool. Each call's result is stored with the reply
# and sent in every later model request of the turn, and in a test, 300 calls of
# get_product_details in one completion ran 300 queries and stored 300 results.
MAX_TOOL_CALLS_PER_TURN = 50

# Values of "reason_type" that ToolCallRunner adds to a rejected cart change.
REASON_TYPE_GUARD = "guard"
REASON_TYPE_MERCHANT = "merchant"
REASON_TYPE_UNAVAILABLE = "unavailable"
# Reasons of a failed webhook call rather than a merchant's answer. Prefixes cover failure
# reasons the dispatcher may add later, such as an open circuit breaker.
_CALL_FAILURE_PREFIXES = ("webhook_", "circuit_")
# Card fields that mean nothing to a model and only cost tokens.
_FIELDS_HIDDEN_FROM_MODEL = frozenset({"image_url"})
# Sent with a cart that may lack lines, because the store's cart could not be loaded.
CART_INCOMPLETE_NOTE = (
    "The store's cart could not be loaded, so this cart contains only the changes made in "
    "this conversation and its total may be too low. Do not present it as the whole cart."
)


@dataclass(frozen=True)
class ToolOutcome:
    """The JSON output for the model and the events for the client of one tool call.

    ``cart_change`` is the cart tool's result, when a cart tool ran.
    """

    output: dict[str, Any]
    events: list[Event] = field(default_factory=list)
    cart_change: CartChangeResult | None = None


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
    if name == SEARCH_TOOL_NAME:
        limit = arguments.get("limit", DEFAULT_SEARCH_LIMIT)
        if not isinstance(limit, int) or isinstance(limit, bool):
            raise _InvalidArguments("limit must be an integer.")
        search = tools.search_products(_text(arguments, "query"), limit)
        return ToolOutcome(output=search.to_tool_output(), events=search.events())
    if name == "view_cart":
        return ToolOutcome(output=cart_tool_output(tools, tools.view_cart()))
    if name == "get_product_details":
        return ToolOutcome(output=tools.product_details(_text(arguments, "sku")).to_tool_output())
    if name == "clear_cart":
        change = tools.clear_cart()
    elif name == "remove_from_cart":
        change = tools.remove_from_cart(_text(arguments, "sku"))
    elif name == "add_to_cart":
        change = tools.add_to_cart(_text(arguments, "sku"), _quantity(arguments, default=1))
    else:
        change = tools.update_quantity(_text(arguments, "sku"), _quantity(arguments))
    return ToolOutcome(output=change.to_tool_output(), events=change.events(), cart_change=change)


def cart_tool_output(tools: ShoppingTools, cart: CartSnapshot) -> dict[str, Any]:
    """Return the cart for a model, marked incomplete while the merchant's cart is unknown."""
    model_cart = cart_for_model(cart)
    if tools.cart_complete:
        return {"cart": model_cart}
    return {"cart": model_cart, "complete": False, "note": CART_INCOMPLETE_NOTE}


@dataclass
class ToolCallRunner:
    """Run the tool calls of one turn, so that identical cart calls reach the merchant once.

    Models sometimes repeat a call, for example as two parallel calls with the same
    arguments. A cart call with the same tool and arguments as an earlier call of the turn
    is not sent again: it gets the earlier output with ``"duplicate": true`` and no events.
    A later change of the same SKU (or any change after ``clear_cart``) ends the match, so
    "add, remove, add" still adds twice. Calls rejected by a guard are not remembered,
    because the same call may pass after a search has shown the product.

    Rejected cart changes get a ``reason_type``: ``guard`` (our own check, nothing was
    sent), ``merchant`` (the merchant's answer) or ``unavailable`` (the call failed).

    At most ``MAX_CART_CHANGES_PER_TURN`` changes, and ``MAX_CART_CHANGES_PER_PRODUCT`` of
    one SKU, are sent to the merchant in a turn. Later ones are not sent and get a
    ``too_many_cart_changes`` error output. Likewise, searches after the
    ``MAX_SEARCHES_PER_TURN``-th get a ``too_many_searches`` error output and do not run, and
    any call after the ``MAX_TOOL_CALLS_PER_TURN``-th gets ``too_many_tool_calls``.

    NOTE: nothing here checks that the shopper asked for a change. A model that follows
    instructions in product or merchant text can still clear the cart, or change lines of
    shown products, within these limits.
    """

    tools: ShoppingTools
    disabled: Collection[str] = ()
    _cart_calls: dict[tuple[str, ...], ToolOutcome] = field(default_factory=dict)
    # Cart changes sent to the merchant in this turn: in all, and per SKU.
    _changes_sent: int = 0
    _changes_by_sku: dict[str, int] = field(default_factory=dict)
    # Searches run in this turn; calls rejected for invalid arguments do not count.
    _searches_run: int = 0
    # Every tool call of this turn, those rejected by a limit included.
    _calls_received: int = 0

    def call(self, name: str, arguments: Mapping[str, Any]) -> ToolOutcome:
        self._calls_received += 1
        if self._calls_received > MAX_TOOL_CALLS_PER_TURN:
            self._log_limited("conversations.tools.call_limited", tool=name)
            return _error(
                "too_many_tool_calls",
                f"At most {MAX_TOOL_CALLS_PER_TURN} tool calls are run per message. Answer "
                "with the results so far and ask the shopper to continue in a new message.",
            )
        if name == SEARCH_TOOL_NAME and name not in self.disabled:
            return self._search(arguments)
        key = _cart_call_key(name, arguments) if name not in self.disabled else None
        earlier = self._cart_calls.get(key) if key is not None else None
        if earlier is not None:
            return ToolOutcome(output={**earlier.output, "duplicate": True})
        over_limit = self._change_limit_error(key)
        if over_limit is not None:
            self._log_limited(
                "conversations.tools.cart_change_limited",
                tool=name,
                sku=key[1] if key is not None and len(key) > 1 else None,
                changes_sent=self._changes_sent,
            )
            return over_limit
        outcome = tool_call(self.tools, name, arguments, disabled=self.disabled)
        change = outcome.cart_change
        if change is not None and not change.ok:
            outcome = ToolOutcome(
                output={**outcome.output, "reason_type": _reason_type(change)},
                events=outcome.events,
                cart_change=change,
            )
        if key is not None and change is not None and change.webhook_called:
            self._count_change(key)
            self._remember(key, outcome)
        return outcome

    def _search(self, arguments: Mapping[str, Any]) -> ToolOutcome:
        if self._searches_run >= MAX_SEARCHES_PER_TURN:
            self._log_limited("conversations.tools.search_limited", searches_run=self._searches_run)
            return _error(
                "too_many_searches",
                f"At most {MAX_SEARCHES_PER_TURN} searches are run per message. Answer with "
                "the results so far and ask the shopper to continue in a new message.",
            )
        outcome = tool_call(self.tools, SEARCH_TOOL_NAME, arguments, disabled=self.disabled)
        if "error" not in outcome.output:
            self._searches_run += 1
        return outcome

    def _log_limited(self, event: str, **fields: Any) -> None:
        """Log a tool call that a turn limit stopped, with the conversation's ids."""
        conversation = self.tools.conversation
        logger.info(
            event,
            extra={
                "tenant_id": conversation.tenant_id,
                "conversation_id": conversation.public_id,
                **fields,
            },
        )

    def _change_limit_error(self, key: tuple[str, ...] | None) -> ToolOutcome | None:
        """Return an error output when the cart change ``key`` would pass a turn limit."""
        if key is None:
            return None
        if self._changes_sent >= MAX_CART_CHANGES_PER_TURN:
            return _error(
                "too_many_cart_changes",
                f"At most {MAX_CART_CHANGES_PER_TURN} cart changes are sent per message. "
                "Tell the shopper what was done and ask them to continue in a new message.",
            )
        sku = key[1] if len(key) > 1 else None
        if sku is not None and self._changes_by_sku.get(sku, 0) >= MAX_CART_CHANGES_PER_PRODUCT:
            return _error(
                "too_many_cart_changes",
                f"At most {MAX_CART_CHANGES_PER_PRODUCT} changes of one product are sent per "
                "message. Tell the shopper the product's current quantity in the cart.",
            )
        return None

    def _count_change(self, key: tuple[str, ...]) -> None:
        self._changes_sent += 1
        if key[0] == "clear_cart":
            # An emptied cart starts every product again, as it ends duplicate matches.
            self._changes_by_sku.clear()
        else:
            self._changes_by_sku[key[1]] = self._changes_by_sku.get(key[1], 0) + 1

    def _remember(self, key: tuple[str, ...], outcome: ToolOutcome) -> None:
        if key[0] == "clear_cart":
            self._cart_calls.clear()
        else:
            sku = key[1]
            self._cart_calls = {
                earlier: result
                for earlier, result in self._cart_calls.items()
                if earlier[0] != "clear_cart" and (earlier[1] != sku or earlier == key)
            }
        self._cart_calls[key] = outcome


def tool_result_content(output: Mapping[str, Any]) -> str:
    """Return a tool output as the compact JSON of a model's tool message.

    Null fields and fields a model has no use for are left out. Product and merchant text
    stays inside JSON strings, which the system prompt declares to be data.
    """
    return json.dumps(_compacted(output), ensure_ascii=False, separators=(",", ":"))


def _compacted(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {
            key: _compacted(item)
            for key, item in value.items()
            if item is not None and key not in _FIELDS_HIDDEN_FROM_MODEL
        }
    if isinstance(value, list):
        return [_compacted(item) for item in value]
    return value


def _reason_type(change: CartChangeResult) -> str:
    if not change.webhook_called:
        return REASON_TYPE_GUARD
    reason = change.reason or ""
    failures = {failure.value for failure in FailureReason}
    if reason in failures or reason.startswith(_CALL_FAILURE_PREFIXES):
        return REASON_TYPE_UNAVAILABLE
    return REASON_TYPE_MERCHANT


def _cart_call_key(name: str, arguments: Mapping[str, Any]) -> tuple[str, ...] | None:
    """Return what makes two cart calls identical, or None for other tools and bad arguments."""
    if name not in CART_TOOL_NAMES:
        return None
    if name == "clear_cart":
        return (name,)
    sku = arguments.get("sku")
    if not isinstance(sku, str) or not sku.strip():
        return None
    if name == "remove_from_cart":
        return (name, sku.strip())
    quantity = arguments.get("quantity", 1 if name == "add_to_cart" else None)
    if isinstance(quantity, bool) or not isinstance(quantity, int | float):
        return None
    try:
        amount = to_decimal(quantity).normalize()
    except InvalidOperation:
        return None
    if not amount.is_finite():
        return None
    return (name, sku.strip(), str(amount))


def _text(arguments: Mapping[str, Any], key: str) -> str:
    value = arguments.get(key)
    if not isinstance(value, str) or not value.strip():
        raise _InvalidArguments(f"{key} must be a non-empty string.")
    return value.strip()


def _quantity(arguments: Mapping[str, Any], *, default: float | None = None) -> float:
    value = arguments.get("quantity", default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _InvalidArguments("quantity must be a number.")
    try:
        finite = math.isfinite(value)
    except OverflowError:
        # An integer beyond the float range, such as 10**400.
        finite = False
    if not finite:
        raise _InvalidArguments("quantity must be a number.")
    return value


def _error(code: str, detail: str) -> ToolOutcome:
    return ToolOutcome(output={"error": code, "detail": detail})
