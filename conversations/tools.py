"""The tools an assistant uses during a turn: catalog search and cart changes.

Both the offline assistant and the LLM agent call these and nothing else to reach the catalog
and the merchant, so the rules below hold whichever assistant answers:

- Search shows only products that the products webhook returned in stock, with its prices.
- A cart change names a SKU that this conversation showed or that is in its cart, and a
  quantity that the product allows. Otherwise it is rejected before any webhook call.
- The cart snapshot changes only after the merchant's cart webhook returned ``ok: true``,
  and it is written at once, so it matches the merchant even if the turn fails later.
- The cart GET webhook is sent at most once per conversation: with the first message that
  is processed while a cart GET URL is set, or with a later one when the circuit breaker
  held that call.
- When the merchant answers ``not_in_cart``, the snapshot is stale and loses that line.
"""

import logging
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass, field, fields
from decimal import Decimal
from enum import StrEnum
from functools import cached_property
from typing import Any

from django.utils import timezone

from catalog.models import Product
from catalog.search import MAX_QUERY_LENGTH, product_search
from conversations import events
from conversations.cart import (
    cart_empty,
    cart_find,
    cart_for_model,
    cart_from_lines,
    cart_item,
    cart_parse,
    cart_with_added,
    cart_with_quantity,
    cart_without,
    quantity_number,
    quantity_rounded,
    to_decimal,
)
from conversations.events import CartChangeAction, CartItem, CartSnapshot, Event, ProductCard
from conversations.leases import TurnLease
from conversations.models import Conversation
from tenants.models import Tenant, WebhookSettings
from webhooks.dispatch import (
    CartAction,
    CartResult,
    FailureReason,
    LiveProduct,
    cart_change,
    cart_fetch,
    products_fetch,
)

logger = logging.getLogger(__name__)

DEFAULT_SEARCH_LIMIT = 5
# Characters of a product's description or ingredients handed to a model.
DETAIL_TEXT_LIMIT = 1000
# The products webhook is meant for batches of 1 to 10 SKUs.
MAX_SEARCH_LIMIT = 10
# Products remembered for cart changes; the oldest are forgotten first.
SEEN_PRODUCTS_LIMIT = 100
# The largest quantity one cart change may ask for, in the product's unit (pieces or
# kilograms). A chat rarely orders more of one product, and a bigger number is more likely
# a typo or a prompt injection than a real order.
MAX_CHANGE_QUANTITY = Decimal(100)

# Keys of conversation.state that the tools own.
STATE_SHOWN = "shown"
STATE_SEEN = "seen"
# True once the conversation sent its one cart GET request, whatever its outcome.
STATE_CART_GET_SENT = "cart_get_sent"
# Failures of cart GET that sent no request: the circuit breaker held the call, or the URL
# was removed after the turn checked it. They do not use up the conversation's one request.
CART_GET_NOT_SENT = frozenset({FailureReason.CIRCUIT_OPEN, FailureReason.NOT_CONFIGURED})

# The merchant's reason for a change of a line that its cart does not have.
REASON_NOT_IN_CART = "not_in_cart"

CART_EVENT_ACTIONS = {
    CartAction.ADD: CartChangeAction.ITEM_SELECTED,
    CartAction.REMOVE: CartChangeAction.ITEM_REMOVED,
    CartAction.UPDATE_QUANTITY: CartChangeAction.QUANTITY_UPDATED,
    CartAction.CLEAR: CartChangeAction.CART_CLEARED,
}


class GuardReason(StrEnum):
    """Reasons the tools reject a cart change themselves, without calling the merchant."""

    SKU_NOT_OFFERED = "sku_not_offered"
    INVALID_QUANTITY = "invalid_quantity"
    QUANTITY_TOO_LARGE = "quantity_too_large"
    BELOW_MIN_QUANTITY = "below_min_quantity"
    QUANTITY_STEP_MISMATCH = "quantity_step_mismatch"


class SearchOutcome(StrEnum):
    FOUND = "found"
    NOT_FOUND = "not_found"
    # The catalog matched, but the merchant reported none of the matches in stock.
    NONE_AVAILABLE = "none_available"
    # The products webhook failed, so no product can be shown.
    PRODUCTS_UNAVAILABLE = "products_unavailable"
    NO_CATALOG_DATA = "no_catalog_data"


@dataclass(frozen=True)
class ShownProduct:
    """A catalog product with the live price the products webhook returned for it."""

    sku: str
    name: str
    price: float
    promo_price: float | None = None
    promo_label: str | None = None
    brand: str | None = None
    unit: str = "pcs"
    image_url: str | None = None
    category_path: str | None = None
    min_quantity: float | None = None
    quantity_step: float | None = None
    # Pack size from the catalog: grams and millilitres.
    weight: float | None = None
    volume: float | None = None

    @classmethod
    def from_catalog(cls, product: Product, live: LiveProduct) -> "ShownProduct":
        return cls(
            sku=product.sku,
            name=product.name,
            price=live.price,
            promo_price=live.promo_price,
            promo_label=live.promo_label or None,
            brand=product.brand or None,
            unit=product.unit or "pcs",
            image_url=product.image_url or None,
            category_path=product.category_path or None,
            min_quantity=_optional_float(product.min_quantity),
            quantity_step=_optional_float(product.quantity_step),
            weight=product.weight,
            volume=product.volume,
        )

    @classmethod
    def from_cart_item(cls, item: CartItem, product: Product | None) -> "ShownProduct":
        """Describe a cart line that was never shown, with the catalog's quantity rules."""
        return cls(
            sku=item["sku"],
            name=item["name"],
            price=item["price"],
            promo_price=item.get("promo_price"),
            brand=item.get("brand"),
            unit=item.get("unit") or "pcs",
            min_quantity=_optional_float(product.min_quantity) if product else None,
            quantity_step=_optional_float(product.quantity_step) if product else None,
            weight=product.weight if product else None,
            volume=product.volume if product else None,
        )

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> "ShownProduct":
        names = {item.name for item in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in names})

    def to_state(self) -> dict[str, Any]:
        return asdict(self)

    def card(self) -> ProductCard:
        return {
            "sku": self.sku,
            "name": self.name,
            "brand": self.brand,
            "price": self.price,
            "promo_price": self.promo_price,
            "promo_label": self.promo_label,
            "unit": self.unit,
            "image_url": self.image_url,
            "category_path": self.category_path,
        }

    def cart_item(self, quantity: Decimal | float | int) -> CartItem:
        return cart_item(
            sku=self.sku,
            name=self.name,
            price=self.price,
            quantity=quantity,
            unit=self.unit,
            promo_price=self.promo_price,
            brand=self.brand,
        )

    @property
    def step(self) -> Decimal | None:
        """The quantity increment: ``quantity_step``, or 1 for pieces when none is set."""
        if self.quantity_step:
            return to_decimal(self.quantity_step)
        return Decimal(1) if self.unit == "pcs" else None


def quantity_problem(product: ShownProduct, quantity: Decimal) -> GuardReason | None:
    """Return why ``quantity`` of ``product`` cannot be ordered, or None when it can."""
    if quantity.is_nan() or quantity <= 0:
        return GuardReason.INVALID_QUANTITY
    if quantity > MAX_CHANGE_QUANTITY:
        return GuardReason.QUANTITY_TOO_LARGE
    if quantity_rounded(quantity) == 0:
        # The webhook receives the quantity rounded to 3 decimal places, which makes this 0.
        return GuardReason.INVALID_QUANTITY
    if product.min_quantity is not None and quantity < to_decimal(product.min_quantity):
        return GuardReason.BELOW_MIN_QUANTITY
    step = product.step
    if step is not None and step > 0 and quantity % step != 0:
        return GuardReason.QUANTITY_STEP_MISMATCH
    return None


@dataclass(frozen=True)
class SearchResult:
    query: str
    outcome: SearchOutcome
    products: list[ShownProduct] = field(default_factory=list)
    # Matches the merchant reported as out of stock or did not return, so not shown.
    unavailable_count: int = 0
    # Why the products webhook failed, for PRODUCTS_UNAVAILABLE.
    failure: str | None = None

    def events(self) -> list[Event]:
        if not self.products:
            return []
        return [events.product_cards([product.card() for product in self.products])]

    def to_tool_output(self) -> dict[str, Any]:
        """Return the result as JSON for a model's tool message."""
        return {
            "outcome": self.outcome.value,
            "products": [product.card() for product in self.products],
            "unavailable_count": self.unavailable_count,
            **({"failure": self.failure} if self.failure else {}),
        }


@dataclass(frozen=True)
class CartChangeResult:
    """Outcome of one cart change.

    ``reason`` is the merchant's reason, webhook_timeout/webhook_error when the call itself
    failed, or a ``GuardReason`` when ``webhook_called`` is false.
    """

    action: CartAction
    ok: bool
    cart: CartSnapshot
    reason: str | None = None
    product: ShownProduct | None = None
    quantity: Decimal | None = None
    webhook_called: bool = True

    def events(self) -> list[Event]:
        if not self.ok:
            return []
        product = self.product
        return [
            events.cart_changed(
                action=CART_EVENT_ACTIONS[self.action],
                cart=self.cart,
                sku=product.sku if product else None,
                name=product.name if product else None,
                quantity=quantity_number(self.quantity) if self.quantity is not None else None,
                price=product.price if product and self.action == CartAction.ADD else None,
            )
        ]

    def to_tool_output(self) -> dict[str, Any]:
        keep_sku = self.product.sku if self.product is not None else None
        output: dict[str, Any] = {
            "ok": self.ok,
            "cart": cart_for_model(self.cart, keep_sku=keep_sku),
        }
        if self.reason == FailureReason.CIRCUIT_OPEN:
            # The webhook contract gives the model webhook_timeout for a timed-out call and
            # webhook_error for any other failed one, and a held call is one of those.
            output["reason"] = FailureReason.ERROR.value
        elif self.reason is not None:
            output["reason"] = self.reason
        return output


@dataclass(frozen=True)
class ProductDetailsResult:
    """Catalog details of a shown or cart product, with the price last seen for it.

    ``product`` is None when the SKU was neither shown in this conversation nor is in its
    cart; ``catalog`` is None when the catalog no longer has the SKU.
    """

    sku: str
    product: ShownProduct | None
    catalog: Product | None = None

    def to_tool_output(self) -> dict[str, Any]:
        if self.product is None:
            return {"ok": False, "sku": self.sku, "reason": GuardReason.SKU_NOT_OFFERED.value}
        product = self.product
        output: dict[str, Any] = {
            "ok": True,
            "sku": product.sku,
            "name": product.name,
            "brand": product.brand,
            "price": product.price,
            "promo_price": product.promo_price,
            "promo_label": product.promo_label,
            "unit": product.unit,
            "min_quantity": product.min_quantity,
            "quantity_step": product.quantity_step,
        }
        catalog = self.catalog
        if catalog is not None:
            output.update(
                category_path=catalog.category_path or None,
                description=_clipped(catalog.description),
                ingredients=_clipped(catalog.ingredients),
                country=catalog.country or None,
                weight_grams=catalog.weight,
                volume_ml=catalog.volume,
                barcode=catalog.barcode or None,
                attributes=catalog.attributes or None,
            )
        return output


@dataclass
class ShoppingTools:
    """Tools bound to one conversation for the duration of one turn under ``lease``."""

    conversation: Conversation
    lease: TurnLease

    @property
    def tenant(self) -> Tenant:
        return self.conversation.tenant

    @property
    def cart(self) -> CartSnapshot:
        return cart_parse(self.conversation.cart)

    def search_products(
        self, query: str, limit: int = DEFAULT_SEARCH_LIMIT, exclude_skus: Collection[str] = ()
    ) -> SearchResult:
        """Search the catalog, then show only what one products webhook call has in stock.

        The search reads the first ``MAX_QUERY_LENGTH`` characters of ``query``, so the result
        names only those, and a reply that quotes the query does not repeat a long message.
        """
        query = query.strip()[:MAX_QUERY_LENGTH].rstrip()
        limit = max(1, min(limit, MAX_SEARCH_LIMIT))
        hits = product_search(tenant=self.tenant, query=query, limit=limit + len(exclude_skus))
        products = [hit.product for hit in hits if hit.product.sku not in exclude_skus][:limit]
        if not products:
            return self._search_logged(SearchResult(query=query, outcome=self._empty_outcome()))

        live = products_fetch(
            tenant=self.tenant,
            skus=[product.sku for product in products],
            store_id=self.conversation.store_id,
        )
        if not live.ok:
            result = SearchResult(
                query=query, outcome=SearchOutcome.PRODUCTS_UNAVAILABLE, failure=live.failure
            )
            return self._search_logged(result, failure=live.failure)

        shown = [
            ShownProduct.from_catalog(product, live.available[product.sku])
            for product in products
            if product.sku in live.available and live.available[product.sku].in_stock
        ]
        unavailable_count = len(products) - len(shown)
        if not shown:
            return self._search_logged(
                SearchResult(
                    query=query,
                    outcome=SearchOutcome.NONE_AVAILABLE,
                    unavailable_count=unavailable_count,
                )
            )
        self._remember_shown(shown)
        return self._search_logged(
            SearchResult(
                query=query,
                outcome=SearchOutcome.FOUND,
                products=shown,
                unavailable_count=unavailable_count,
            )
        )

    def add_to_cart(self, sku: str, quantity: float | Decimal = 1) -> CartChangeResult:
        """Ask the merchant to add ``quantity`` of ``sku`` at the price last seen."""
        amount = to_decimal(quantity)
        checked = self._checked(CartAction.ADD, sku, amount, prefer_cart=False)
        if isinstance(checked, CartChangeResult):
            return checked
        result = self._send(
            CartAction.ADD,
            sku=checked.sku,
            name=checked.name,
            quantity=quantity_number(amount),
            price=checked.price,
        )
        added = checked.cart_item(amount)
        return self._apply(
            result, CartAction.ADD, checked, amount, lambda cart: cart_with_added(cart, added)
        )

    def remove_from_cart(self, sku: str) -> CartChangeResult:
        checked = self._checked(CartAction.REMOVE, sku, None, prefer_cart=True)
        if isinstance(checked, CartChangeResult):
            return checked
        result = self._send(CartAction.REMOVE, sku=checked.sku)
        return self._apply(
            result, CartAction.REMOVE, checked, None, lambda cart: cart_without(cart, checked.sku)
        )

    def update_quantity(self, sku: str, quantity: float | Decimal) -> CartChangeResult:
        """Ask the merchant to set the quantity of ``sku`` to ``quantity`` (absolute)."""
        amount = to_decimal(quantity)
        checked = self._checked(CartAction.UPDATE_QUANTITY, sku, amount, prefer_cart=True)
        if isinstance(checked, CartChangeResult):
            return checked
        result = self._send(
            CartAction.UPDATE_QUANTITY, sku=checked.sku, quantity=quantity_number(amount)
        )
        fallback = checked.cart_item(amount)

        def change(cart: CartSnapshot) -> CartSnapshot:
            return cart_with_quantity(cart, sku=checked.sku, quantity=amount, fallback=fallback)

        return self._apply(result, CartAction.UPDATE_QUANTITY, checked, amount, change)

    def clear_cart(self) -> CartChangeResult:
        result = self._send(CartAction.CLEAR)
        return self._apply(result, CartAction.CLEAR, None, None, lambda cart: cart_empty())

    def product_details(self, sku: str) -> ProductDetailsResult:
        """Return the catalog details of ``sku`` if it was shown or is in the cart.

        The price is the one the products webhook returned when the product was last shown,
        or the cart's price for a cart line that was never shown; no webhook is called.
        """
        product = self.product_offered(sku, prefer_cart=False)
        if product is None:
            return ProductDetailsResult(sku=sku, product=None)
        return ProductDetailsResult(
            sku=sku, product=product, catalog=self._catalog_product(product.sku)
        )

    def view_cart(self) -> CartSnapshot:
        """Return the cart as the merchant last confirmed it; no webhook is called."""
        return self.cart

    @cached_property
    def cart_get_configured(self) -> bool:
        return WebhookSettings.objects.filter(tenant=self.tenant).exclude(cart_get_url="").exists()

    @property
    def cart_complete(self) -> bool:
        """Tell whether the snapshot can stand for the merchant's whole cart.

        False while cart GET is configured but its one request failed: the snapshot then
        contains only the changes made in this conversation, and its total may be short.
        """
        return not self.cart_get_configured or self.conversation.cart_loaded_at is not None

    @property
    def cart_get_sent(self) -> bool:
        """Tell whether this conversation already sent its one cart GET request.

        A conversation whose cart was loaded before the state key existed counts as sent.
        """
        conversation = self.conversation
        return bool(conversation.state.get(STATE_CART_GET_SENT)) or (
            conversation.cart_loaded_at is not None
        )

    def cart_load(self) -> bool:
        """Replace the snapshot with the merchant's cart from cart GET; return whether it did.

        Merchants get cart GET once per conversation, with its first message, or with the
        first one after ``cart_get_url`` was set. Return False without a webhook call when
        cart GET is not configured or this conversation sent it already. A failure is logged
        and leaves the snapshot as it was, and the conversation goes on without the
        merchant's cart. A call that sent no request (``CART_GET_NOT_SENT``) is tried again
        with the next message.
        """
        if self.cart_get_sent or not self.cart_get_configured:
            return False
        # Saved before the call, so that a call that fails or never returns is not repeated.
        # NOTE: when the database fails after this save and before the request goes out
        # (the circuit breaker reads it first), the mark stays and the cart is never loaded.
        self.conversation.state[STATE_CART_GET_SENT] = True
        self.lease.save(self.conversation, ["state"])
        result = cart_fetch(
            tenant=self.tenant,
            store_id=self.conversation.store_id,
            session_id=self.conversation.session_id,
        )
        log_fields = {"tenant_id": self.tenant.pk, "conversation_id": self.conversation.public_id}
        if not result.ok:
            logger.warning(
                "conversations.cart.load_failed", extra={**log_fields, "failure": result.failure}
            )
            if result.failure in CART_GET_NOT_SENT:
                # No request reached the merchant, so the next message tries again.
                self.conversation.state.pop(STATE_CART_GET_SENT, None)
                self.lease.save(self.conversation, ["state"])
            return False
        self.conversation.cart = cart_from_lines(result.lines)
        self.conversation.cart_loaded_at = timezone.now()
        self.lease.save(self.conversation, ["cart", "cart_loaded_at"])
        logger.info("conversations.cart.loaded", extra={**log_fields, "lines": len(result.lines)})
        return True

    def shown_products(self) -> list[ShownProduct]:
        """Return the products of the last successful search, in the order shown."""
        return [
            ShownProduct.from_state(data) for data in self.conversation.state.get(STATE_SHOWN, [])
        ]

    def product_offered(self, sku: str, *, prefer_cart: bool) -> ShownProduct | None:
        """Return ``sku`` if this conversation showed it or the cart contains it, else None.

        A shown product carries the live price; a cart line carries the merchant's cart
        data, which is preferred for removals and quantity changes.
        """
        seen = self.conversation.state.get(STATE_SEEN, {}).get(sku)
        item = cart_find(self.cart, sku)
        if item is not None and (prefer_cart or seen is None):
            return ShownProduct.from_cart_item(item, self._catalog_product(sku))
        return ShownProduct.from_state(seen) if seen is not None else None

    def _empty_outcome(self) -> SearchOutcome:
        has_products = Product.objects.filter(tenant=self.tenant, is_active=True).exists()
        return SearchOutcome.NOT_FOUND if has_products else SearchOutcome.NO_CATALOG_DATA

    def _search_logged(self, result: SearchResult, failure: str | None = None) -> SearchResult:
        logger.info(
            "conversations.tools.search",
            extra={
                "tenant_id": self.tenant.pk,
                "conversation_id": self.conversation.public_id,
                "outcome": result.outcome.value,
                "shown": len(result.products),
                "failure": failure,
            },
        )
        return result

    def _remember_shown(self, shown: list[ShownProduct]) -> None:
        state = self.conversation.state
        seen: dict[str, Any] = dict(state.get(STATE_SEEN, {}))
        for product in shown:
            seen.pop(product.sku, None)
            seen[product.sku] = product.to_state()
        while len(seen) > SEEN_PRODUCTS_LIMIT:
            seen.pop(next(iter(seen)))
        state[STATE_SHOWN] = [product.to_state() for product in shown]
        state[STATE_SEEN] = seen
        self.lease.save(self.conversation, ["state"])

    def _catalog_product(self, sku: str) -> Product | None:
        return Product.objects.filter(tenant=self.tenant, sku=sku).first()

    def _checked(
        self, action: CartAction, sku: str, quantity: Decimal | None, *, prefer_cart: bool
    ) -> "ShownProduct | CartChangeResult":
        """Return the product a change is about, or the rejection when a guard fails."""
        product = self.product_offered(sku, prefer_cart=prefer_cart)
        reason: GuardReason | None = None
        if product is None:
            reason = GuardReason.SKU_NOT_OFFERED
        elif quantity is not None:
            reason = quantity_problem(product, quantity)
        if product is not None and reason is None:
            return product
        logger.info(
            "conversations.tools.cart_change_rejected",
            extra={
                "tenant_id": self.tenant.pk,
                "conversation_id": self.conversation.public_id,
                "action": action.value,
                "sku": sku,
                "reason": reason,
            },
        )
        return CartChangeResult(
            action=action,
            ok=False,
            cart=self.cart,
            reason=reason,
            product=product,
            quantity=quantity,
            webhook_called=False,
        )

    def _send(self, action: CartAction, **fields: Any) -> CartResult:
        return cart_change(
            tenant=self.tenant,
            action=action,
            store_id=self.conversation.store_id,
            session_id=self.conversation.session_id,
            **fields,
        )

    def _apply(
        self,
        result: CartResult,
        action: CartAction,
        product: ShownProduct | None,
        quantity: Decimal | None,
        change: Callable[[CartSnapshot], CartSnapshot],
    ) -> CartChangeResult:
        """Replay a confirmed change on the snapshot and save it; leave it as is otherwise."""
        if result.ok:
            self.conversation.cart = change(self.cart)
            self.lease.save(self.conversation, ["cart"])
        logger.info(
            "conversations.tools.cart_changed"
            if result.ok
            else "conversations.tools.cart_declined",
            extra={
                "tenant_id": self.tenant.pk,
                "conversation_id": self.conversation.public_id,
                "action": action.value,
                "sku": product.sku if product else None,
                "reason": result.reason,
            },
        )
        if result.reason == REASON_NOT_IN_CART and product is not None:
            self._cart_drop_stale_line(product.sku)
        return CartChangeResult(
            action=action,
            ok=result.ok,
            cart=self.cart,
            reason=None if result.ok else result.reason,
            product=product,
            quantity=quantity,
        )

    def _cart_drop_stale_line(self, sku: str) -> None:
        """Drop ``sku`` from the snapshot after the merchant reported it not in its cart."""
        if cart_find(self.cart, sku) is not None:
            self.conversation.cart = cart_without(self.cart, sku)
            self.lease.save(self.conversation, ["cart"])


def _optional_float(value: Decimal | float | None) -> float | None:
    return None if value is None else float(value)


def _clipped(text: str) -> str | None:
    if not text:
        return None
    return text if len(text) <= DETAIL_TEXT_LIMIT else f"{text[:DETAIL_TEXT_LIMIT]}…"
