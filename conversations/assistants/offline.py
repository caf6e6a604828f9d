"""The offline assistant: deterministic answers when no LLM endpoint is configured.

It parses each message with ``intents.parse_intent``, calls the shared tools and answers
from templates in the shopper's language. Between messages it remembers, under
``conversation.state["offline"]``, which products it listed last (so "the second one" works)
and which product it changed last (so "make it 5" works).

A command whose tool the tenant disabled (``AssistantSettings.disabled_tools``) is not run,
and the reply tells the shopper that this shop does not offer it in the chat.
"""

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal
from typing import Any

from conversations import events
from conversations.assistants.base import Turn
from conversations.assistants.intents import (
    COUNT_UNITS,
    MASS,
    MEASURE_UNITS,
    Intent,
    IntentKind,
    MeasureUnit,
    NameFragment,
    Ordinal,
    Quantity,
    Reference,
    fold_message,
    means_every_listed,
    measures,
    name_matches,
    names_product,
    names_quantity,
    number_only,
    parse_intent,
    ukrainian_from_latin,
)
from conversations.assistants.replies import Replies
from conversations.cart import cart_find, quantity_rounded, to_decimal
from conversations.events import Event, StatusCode
from conversations.language import UKRAINIAN
from conversations.tool_calls import SEARCH_TOOL_NAME
from conversations.tools import (
    DEFAULT_SEARCH_LIMIT,
    MAX_SEARCH_LIMIT,
    REASON_NOT_IN_CART,
    CartChangeResult,
    GuardReason,
    SearchOutcome,
    SearchResult,
    ShownProduct,
)
from tenants.models import AssistantSettings
from vizochok.exceptions import ErrorCode
from webhooks.dispatch import FailureReason

STATE_KEY = "offline"
# Reply templates for a failed products webhook, by failure; others get products_unavailable.
_PRODUCTS_FAILURE_KEYS = {
    FailureReason.CIRCUIT_OPEN.value: "prices_temporarily_unavailable",
    FailureReason.NOT_CONFIGURED.value: "products_not_configured",
}
LIST_SEARCH = "search"
LIST_CART = "cart"
# A weight or volume converts to packs without asking when it is this close to a whole
# number of packs (relative): 1 kg of 330 g packs is 3.03 packs, so 3.
PACK_TOLERANCE = Decimal("0.02")
# The tools of ``conversations.tool_calls`` that the commands of this assistant call. A tenant
# may disable each of them; get_product_details is not among them, because a price question
# is answered from the list shown last.
ADD_TOOL = "add_to_cart"
REMOVE_TOOL = "remove_from_cart"
UPDATE_TOOL = "update_quantity"
CLEAR_TOOL = "clear_cart"
VIEW_CART_TOOL = "view_cart"


@dataclass
class Memory:
    """What the offline assistant keeps between messages of one conversation."""

    # SKUs of the numbered list shown last, a search result or the cart.
    listed: list[str] = field(default_factory=list)
    listed_kind: str = LIST_SEARCH
    # The product changed last, the target of "make it 5" without a name.
    focus: str | None = None
    # The message of a command whose product name matched several products. ``listed``
    # then contains those products, and a reply that is only a position picks one of them.
    pending: str | None = None

    @classmethod
    def load(cls, state: dict[str, Any]) -> "Memory":
        data = state.get(STATE_KEY) or {}
        return cls(
            listed=list(data.get("listed", [])),
            listed_kind=data.get("listed_kind", LIST_SEARCH),
            focus=data.get("focus"),
            pending=data.get("pending"),
        )

    def store(self, state: dict[str, Any]) -> None:
        state[STATE_KEY] = {
            "listed": self.listed,
            "listed_kind": self.listed_kind,
            "focus": self.focus,
            "pending": self.pending,
        }


class OfflineAssistant:
    name = "offline"

    def respond(self, turn: Turn) -> Iterator[Event]:
        # The stored shopper message keeps the text as sent; only the parsing and the words
        # quoted back in the reply use the folded text.
        turn.text = fold_message(turn.text)
        ukrainian = ukrainian_from_latin(turn.text)
        if ukrainian is not None:
            # "dodaj druhyi" is Ukrainian in Latin letters, so it is parsed as "додай другий"
            # and the reply is in Ukrainian, which the next message without letters keeps.
            # The stored shopper message keeps the text as sent.
            turn.text = ukrainian
            turn.language = UKRAINIAN
        intent = parse_intent(turn.text)
        memory = Memory.load(turn.conversation.state)
        disabled_tools = _disabled_tools(turn)
        pending_text, memory.pending = memory.pending, None
        if pending_text is None:
            yield from self._run_intent(turn, memory, intent, disabled_tools=disabled_tools)
        else:
            yield from self._answer_pending(
                turn, memory, intent, pending_text=pending_text, disabled_tools=disabled_tools
            )
        memory.store(turn.conversation.state)

    def _answer_pending(
        self,
        turn: Turn,
        memory: Memory,
        intent: Intent,
        *,
        pending_text: str,
        disabled_tools: frozenset[str],
    ) -> Iterator[Event]:
        """Reply to a message that follows a "which one?" question about ``pending_text``."""
        pending = parse_intent(pending_text)
        reply = _OfflineReply(
            turn=turn,
            memory=memory,
            replies=Replies(turn.language),
            action=pending.kind,
            disabled_tools=disabled_tools,
        )
        position = intent.reference if intent.position_only else None
        if isinstance(position, Ordinal):
            # "другий" after "Який саме?" carries out the command that asked, with its
            # amount: after "прибери мед" it removes the second honey instead of adding it.
            turn.metadata["intent"] = pending.kind.value
            yield from reply.run_choice(position, pending, pending_text=pending_text)
            return
        if pending.kind == IntentKind.REMOVE and means_every_listed(turn.text):
            # "обидва" or "all" after "прибери молоко" → "Який саме?" removes every match.
            turn.metadata["intent"] = pending.kind.value
            yield from reply.run_remove_each()
            return
        if number_only(turn.text):
            # "0", "-1" or "2,5" cannot answer "Який саме?": the question stays open, and
            # the number is not searched for.
            turn.metadata["intent"] = pending.kind.value
            yield from reply.run_wrong_position(pending_text=pending_text)
            return
        if intent.kind == IntentKind.SEARCH:
            # "Напишіть номер або точнішу назву": "Lactel" or "1,5 л" may name a product of
            # the list. A reply that names none of them is a search, and so is one that names
            # all of them ("молоко" again, "milk"), because asking again would not narrow it.
            named, listed_count = reply.listed_named(turn.text)
            if named and len(named) < listed_count:
                turn.metadata["intent"] = pending.kind.value
                yield from reply.run_named_choice(
                    named, pending, fragment=intent.query, pending_text=pending_text
                )
                return
        yield from self._run_intent(turn, memory, intent, disabled_tools=disabled_tools)

    def _run_intent(
        self, turn: Turn, memory: Memory, intent: Intent, *, disabled_tools: frozenset[str]
    ) -> Iterator[Event]:
        turn.metadata["intent"] = intent.kind.value
        reply = _OfflineReply(
            turn=turn,
            memory=memory,
            replies=Replies(turn.language),
            action=intent.kind,
            measures=measures(turn.text),
            disabled_tools=disabled_tools,
        )
        yield from reply.run(intent)


def _disabled_tools(turn: Turn) -> frozenset[str]:
    """Return the tools that the conversation's tenant disabled in its AI settings."""
    names = (
        AssistantSettings.objects.filter(tenant_id=turn.conversation.tenant_id)
        .values_list("disabled_tools", flat=True)
        .first()
    )
    return frozenset(names or ())


@dataclass
class _OfflineReply:
    """One answer: status events while tools run, then the text, then cards and cart events."""

    turn: Turn
    memory: Memory
    replies: Replies
    # The change the shopper requested: a question about the amount names it.
    action: IntentKind
    lines: list[str] = field(default_factory=list)
    # How the shopper's weight or volume became packs; shown after a confirmed change.
    conversion_note: str | None = None
    extra_events: list[Event] = field(default_factory=list)
    # The product the shopper picked from a "which one?" list; every reference resolves to it.
    chosen: ShownProduct | None = None
    # The weights and volumes of the command, which pick among products that match a name.
    measures: tuple[Quantity, ...] = ()
    # The tenant's disabled tools. A command that needs one of them is not run.
    disabled_tools: frozenset[str] = frozenset()

    def run(self, intent: Intent) -> Iterator[Event]:
        handlers = {
            IntentKind.SEARCH: self._search,
            IntentKind.ADD: self._add,
            IntentKind.REMOVE: self._remove,
            IntentKind.SET_QUANTITY: self._set_quantity,
            IntentKind.CLEAR_CART: self._clear,
            IntentKind.SHOW_CART: self._show_cart,
            IntentKind.HELP: self._help,
            IntentKind.THANKS: self._thanks,
            IntentKind.GOODBYE: self._goodbye,
            IntentKind.UNDO: self._undo,
            IntentKind.NEGATED: self._negated,
            IntentKind.PRICE: self._price,
        }
        yield from handlers[intent.kind](intent)
        yield from events.text_events("\n".join(self.lines))
        yield from self.extra_events

    def run_choice(
        self, position: Ordinal, pending: Intent, *, pending_text: str
    ) -> Iterator[Event]:
        """Carry out ``pending`` on the product at ``position`` of the "which one?" list.

        A position outside the list keeps the question open, so the next position answers it.
        """
        self.chosen = self._by_position(position.position)
        if self.chosen is None:
            self.memory.pending = pending_text
            yield from events.text_events("\n".join(self.lines))
            return
        yield from self.run(pending)

    def run_remove_each(self) -> Iterator[Event]:
        """Remove every product of the "which one?" list."""
        yield from self._remove_each(self._listed_products())
        yield from events.text_events("\n".join(self.lines))
        yield from self.extra_events

    def run_wrong_position(self, *, pending_text: str) -> Iterator[Event]:
        """Answer a number that is no position in the "which one?" list; keep the question."""
        listed = self._listed_products()
        if listed:
            self.lines.append(self.replies.text("position_range", count=len(listed)))
        else:
            self.lines.append(self.replies.text("nothing_listed"))
        self.memory.pending = pending_text
        yield from events.text_events("\n".join(self.lines))

    def listed_named(self, text: str) -> tuple[list[ShownProduct], int]:
        """Return the products of the last list that the reply ``text`` names, and its length."""
        listed = self._listed_products()
        return [product for product in listed if names_product(text, product.name)], len(listed)

    def run_named_choice(
        self, named: list[ShownProduct], pending: Intent, *, fragment: str, pending_text: str
    ) -> Iterator[Event]:
        """Carry out ``pending`` on the one product of ``named``, or ask again among them."""
        if len(named) == 1:
            self.chosen = named[0]
            yield from self.run(pending)
            return
        self._ask_which(fragment, named)
        self.memory.pending = pending_text
        yield from events.text_events("\n".join(self.lines))

    # Intents

    def _search(self, intent: Intent) -> Iterator[Event]:
        if self._prices_conflict(intent):
            return
        if not intent.query:
            # "какое самое дешевое?" sorts the list shown last.
            self._show_by_price(self._listed_products(), intent, query="")
            return
        if self._tool_disabled(SEARCH_TOOL_NAME):
            return
        if intent.cheapest or intent.max_price is not None or intent.min_price is not None:
            yield events.status(StatusCode.SEARCHING)
            result = self.turn.tools.search_products(intent.query, limit=MAX_SEARCH_LIMIT)
            if result.outcome != SearchOutcome.FOUND:
                self._show_search(result, hint_key="search_hint")
                return
            # The deeper results may stray from the query, so the names that fit come first.
            products = _matching(intent.query, result.products) or result.products
            self._show_by_price(products, intent, query=intent.query)
            return
        yield events.status(StatusCode.SEARCHING)
        result = self.turn.tools.search_products(intent.query)
        self._show_search(result, hint_key="search_hint")

    def _add(self, intent: Intent) -> Iterator[Event]:
        if self._tool_disabled(ADD_TOOL):
            return
        by_price = intent.cheapest or intent.max_price is not None or intent.min_price is not None
        if by_price and self.chosen is None and not isinstance(intent.reference, Ordinal):
            yield from self._add_by_price(intent)
            return
        if by_price and self.chosen is None and self._prices_conflict(intent):
            return
        product = self._resolve(intent.reference, prefer_cart=False)
        if product is None:
            if isinstance(intent.reference, NameFragment) and not self.lines:
                yield from self._search_and_add(intent.reference.text, intent.quantity)
            return
        if by_price and self.chosen is None and not _within_prices(product, intent):
            # "додай другий до 40 грн" names a product by its position, and its price is outside
            # the limits, so nothing is added.
            self.lines.append(self.replies.price_line(product))
            self.lines.append(self.replies.text("position_outside_prices"))
            return
        yield from self._add_product(product, intent.quantity, limits=intent if by_price else None)

    def _add_by_price(self, intent: Intent) -> Iterator[Event]:
        """Add a product within the price limits of "додай молоко до 40 грн", or the cheapest.

        The products are those of a search for the name, as for a search with the same
        limits, or the list shown last when the command names none. A request for the
        cheapest adds the cheapest of them, and so does a limit that one product fits. When
        several fit, they are listed and the shopper picks one: a reply that is only a
        position adds it with the command's amount. A product is added without asking only
        when its name contains the command's words.
        """
        if self._prices_conflict(intent):
            return
        reference = intent.reference
        if isinstance(reference, NameFragment):
            if self._tool_disabled(SEARCH_TOOL_NAME):
                return
            yield events.status(StatusCode.SEARCHING)
            result = self.turn.tools.search_products(reference.text, limit=MAX_SEARCH_LIMIT)
            if result.outcome != SearchOutcome.FOUND:
                self._show_search(result, hint_key="search_pick")
                return
            named = _matching(reference.text, result.products)
            products = named or result.products
            query = reference.text
        else:
            products = self._listed_products()
            named = products
            query = ""
        fitting = self._priced_within_limits(products, intent)
        if not fitting:
            return
        self._remember_list(fitting)
        self.extra_events.append(events.product_cards([product.card() for product in fitting]))
        if named and (intent.cheapest or len(fitting) == 1):
            yield from self._add_product(fitting[0], intent.quantity, limits=intent)
            return
        self.lines.append(self._price_list_header(intent, query=query))
        self.lines.extend(self.replies.product_list(fitting))
        self.lines.append(self.replies.text("pick_to_add"))
        self.memory.pending = self.turn.text

    def _remove(self, intent: Intent) -> Iterator[Event]:
        # A removal of a whole line calls remove_from_cart. One with an amount calls
        # update_quantity, or remove_from_cart when nothing remains, so it is rejected before
        # the product is looked up only when both are disabled.
        needs_remove = intent.quantity is None or UPDATE_TOOL in self.disabled_tools
        if needs_remove and self._tool_disabled(REMOVE_TOOL):
            return
        reference = intent.reference
        if intent.every and isinstance(reference, NameFragment) and intent.quantity is None:
            matches = _matching(reference.text, self._cart_products())
            if len(matches) > 1 and self.chosen is None:
                yield from self._remove_each(_stating(matches, self.measures))
                return
        product = self._resolve(intent.reference, prefer_cart=True)
        if product is None:
            return
        quantity = _removed_amount(intent, product)
        if quantity is not None:
            yield from self._remove_amount(product, intent.reference, quantity)
            return
        if self._tool_disabled(REMOVE_TOOL):
            return
        yield events.status(StatusCode.UPDATING_CART)
        result = self.turn.tools.remove_from_cart(product.sku)
        if result.ok:
            self.lines.append(self.replies.text("removed", name=product.name))
            self.memory.focus = None
        yield from self._report(result, product)

    def _remove_each(self, products: list[ShownProduct]) -> Iterator[Event]:
        """Remove each of ``products`` with its own webhook call; sum up the cart once."""
        if self._tool_disabled(REMOVE_TOOL):
            return
        yield events.status(StatusCode.UPDATING_CART)
        confirmed: CartChangeResult | None = None
        for product in products:
            result = self.turn.tools.remove_from_cart(product.sku)
            if not result.ok:
                yield from self._report(result, product)
                continue
            self.lines.append(self.replies.text("removed", name=product.name))
            self.extra_events.extend(result.events())
            confirmed = result
        if confirmed is None:
            return
        self.memory.focus = None
        cart = self.turn.tools.view_cart()
        if cart["items"]:
            complete = self.turn.tools.cart_complete
            self.lines.append(self.replies.cart_summary(cart, complete=complete))

    def _remove_amount(
        self, product: ShownProduct, reference: Reference | None, quantity: Quantity
    ) -> Iterator[Event]:
        """Take an amount off a cart line ("видали 2 шт першого"), not the whole line.

        The line gets the quantity that remains, and is removed when none remains.
        """
        amount = self._amount(quantity, product)
        if amount is None:
            return
        item = cart_find(self.turn.tools.view_cart(), product.sku)
        if item is None:
            self.lines.append(
                self.replies.rejection(REASON_NOT_IN_CART, product=product, quantity="")
            )
            return
        # Quantities are sent rounded to 3 decimal places, so an amount that rounds to 0
        # would change nothing, and a rest that rounds to 0 is nothing left.
        if not amount.is_finite() or amount <= 0 or quantity_rounded(amount) == 0:
            reason = GuardReason.INVALID_QUANTITY
            self.lines.append(self.replies.rejection(reason, product=product, quantity=""))
            return
        remaining = to_decimal(item["quantity"]) - amount
        if quantity_rounded(remaining) <= 0:
            yield from self._remove(Intent(kind=IntentKind.REMOVE, reference=reference))
            return
        change = Intent(IntentKind.SET_QUANTITY, reference=reference, quantity=Quantity(remaining))
        yield from self._set_quantity(change)

    def _set_quantity(self, intent: Intent) -> Iterator[Event]:
        # A new quantity of 0 removes the line with remove_from_cart, which _remove checks.
        removes = intent.quantity is not None and intent.quantity.value == 0
        if not removes and self._tool_disabled(UPDATE_TOOL):
            return
        product = self._resolve(intent.reference, prefer_cart=True)
        if product is None:
            return
        if intent.quantity is None:
            self.lines.append(self.replies.text("ask_quantity", name=product.name))
            self.memory.focus = product.sku
            return
        amount = self._amount(intent.quantity, product)
        if amount is None:
            return
        if amount == 0:
            yield from self._remove(Intent(kind=IntentKind.REMOVE, reference=intent.reference))
            return
        yield events.status(StatusCode.UPDATING_CART)
        result = self.turn.tools.update_quantity(product.sku, amount)
        if result.ok:
            quantity = self.replies.quantity(amount, product.unit)
            self.lines.append(
                self.replies.text("quantity_set", name=product.name, quantity=quantity)
            )
            if self.conversion_note:
                self.lines.append(self.conversion_note)
            self.memory.focus = product.sku
        yield from self._report(result, product)

    def _clear(self, intent: Intent) -> Iterator[Event]:
        if self._tool_disabled(CLEAR_TOOL):
            return
        yield events.status(StatusCode.UPDATING_CART)
        result = self.turn.tools.clear_cart()
        if result.ok:
            self.lines.append(self.replies.text("cleared"))
            self.memory.focus = None
            if self.memory.listed_kind == LIST_CART:
                self.memory.listed = []
        yield from self._report(result, None)

    def _show_cart(self, intent: Intent) -> Iterator[Event]:
        if self._tool_disabled(VIEW_CART_TOOL):
            return
        cart = self.turn.tools.view_cart()
        if not self.turn.tools.cart_complete:
            self.lines.append(self.replies.text("cart_incomplete"))
        self.lines.extend(self.replies.cart_lines(cart))
        self._remember_cart_list(cart)
        yield from ()

    def _help(self, intent: Intent) -> Iterator[Event]:
        self.lines.append(self.replies.help(disabled_tools=self.disabled_tools))
        yield from ()

    def _thanks(self, intent: Intent) -> Iterator[Event]:
        self.lines.append(self.replies.text("thanks"))
        yield from ()

    def _goodbye(self, intent: Intent) -> Iterator[Event]:
        self.lines.append(self.replies.text("goodbye"))
        yield from ()

    def _undo(self, intent: Intent) -> Iterator[Event]:
        """Explain that changes cannot be taken back, and list the cart to correct it by."""
        # NOTE: the conversation keeps no earlier cart state, so "скасуй" cannot restore one.
        self.lines.append(self.replies.text("undo_unsupported"))
        if VIEW_CART_TOOL not in self.disabled_tools:
            yield from self._show_cart(intent)

    def _negated(self, intent: Intent) -> Iterator[Event]:
        self.lines.append(self.replies.text("negated"))
        yield from ()

    def _price(self, intent: Intent) -> Iterator[Event]:
        """State the price of a listed product, as the products webhook last returned it."""
        product = self._resolve(intent.reference, prefer_cart=False)
        if product is not None:
            self.lines.append(self.replies.price_line(product))
        yield from ()

    # Steps

    def _add_product(
        self, product: ShownProduct, quantity: Quantity | None, *, limits: Intent | None = None
    ) -> Iterator[Event]:
        """Add ``product`` to the cart and report the result.

        An add by price or by the cheapest passes its intent as ``limits``, so that the
        similar products shown for an out-of-stock product keep to its limits.
        """
        amount = self._amount(quantity, product)
        if amount is None:
            return
        yield events.status(StatusCode.UPDATING_CART)
        result = self.turn.tools.add_to_cart(product.sku, amount)
        if result.ok:
            self.lines.append(
                self.replies.text(
                    "added", name=product.name, quantity=self.replies.quantity(amount, product.unit)
                )
            )
            if self.conversion_note:
                self.lines.append(self.conversion_note)
            promo_note = self.replies.promo_note(product)
            if promo_note:
                self.lines.append(promo_note)
            self.memory.focus = product.sku
        yield from self._report(result, product, limits=limits)

    def _search_and_add(self, fragment: str, quantity: Quantity | None) -> Iterator[Event]:
        """Search for a product named in "add milk"; add the top match if its name fits.

        A weight or volume in the command picks the first fitting match whose name states
        it: "додай молоко 2,5% 900 г" adds the 0.9 kg milk even when a 0.84 kg one ranks
        first. The other matches are shown as cards, so the shopper sees what else there is
        and can swap the product with "remove …" and "add the second one".
        """
        if self._tool_disabled(SEARCH_TOOL_NAME):
            return
        yield events.status(StatusCode.SEARCHING)
        result = self.turn.tools.search_products(fragment)
        if result.outcome != SearchOutcome.FOUND or not name_matches(
            fragment, result.products[0].name
        ):
            self._show_search(result, hint_key="search_pick")
            return
        self._remember_list(result.products)
        self.extra_events.extend(result.events())
        product = _stating(_matching(fragment, result.products), self.measures)[0]
        yield from self._add_product(product, quantity)

    def _report(
        self,
        result: CartChangeResult,
        product: ShownProduct | None,
        *,
        limits: Intent | None = None,
    ) -> Iterator[Event]:
        """Add the cart summary and event of a confirmed change, or explain the rejection.

        ``limits`` is the intent of an add by price, as for ``_add_product``.
        """
        if result.ok:
            if result.cart["items"]:
                complete = self.turn.tools.cart_complete
                self.lines.append(self.replies.cart_summary(result.cart, complete=complete))
            self.extra_events.extend(result.events())
            return
        quantity = (
            self.replies.quantity(result.quantity, product.unit)
            if product is not None and result.quantity is not None and result.quantity.is_finite()
            else ""
        )
        self.lines.append(self.replies.rejection(result.reason, product=product, quantity=quantity))
        if result.reason == "out_of_stock" and product is not None:
            yield from self._show_alternatives(product, limits=limits)

    def _remember_cart_list(self, cart: Mapping[str, Any]) -> None:
        """Make positions refer to the cart just shown, unless it was empty.

        An empty cart shows no numbered list, so "the first one" still means the first
        product of a search listed before it. A cart listed before it is gone.
        """
        if cart["items"]:
            self.memory.listed = [item["sku"] for item in cart["items"]]
            self.memory.listed_kind = LIST_CART
        elif self.memory.listed_kind == LIST_CART:
            self.memory.listed = []

    def _show_alternatives(
        self, product: ShownProduct, *, limits: Intent | None = None
    ) -> Iterator[Event]:
        """Show the products in stock that are like the out-of-stock ``product``.

        With the ``limits`` of an add by price, the search goes as deep as a search by price
        does and keeps the products within them, sorted by price for the cheapest.
        """
        # Without search, the reply states only that the product is out of stock.
        if SEARCH_TOOL_NAME in self.disabled_tools:
            return
        yield events.status(StatusCode.SEARCHING)
        result = self.turn.tools.search_products(
            product.name,
            exclude_skus=[product.sku],
            limit=DEFAULT_SEARCH_LIMIT if limits is None else MAX_SEARCH_LIMIT,
        )
        if result.outcome != SearchOutcome.FOUND:
            self.lines.append(self.replies.text("no_alternatives"))
            return
        if limits is None:
            self.lines.append(self.replies.text("alternatives"))
            self.lines.extend(self.replies.product_list(result.products))
            self._remember_list(result.products)
            self.extra_events.extend(result.events())
            return
        fitting = self._priced_within_limits(result.products, limits)
        if not fitting:
            return
        self.lines.append(self.replies.text("alternatives"))
        self.lines.extend(self.replies.product_list(fitting))
        self._remember_list(fitting)
        self.extra_events.append(events.product_cards([product.card() for product in fitting]))

    def _show_search(self, result: SearchResult, *, hint_key: str) -> None:
        if result.outcome == SearchOutcome.FOUND:
            self.lines.append(self.replies.text("search_found", query=result.query))
            self.lines.extend(self.replies.product_list(result.products))
            if result.unavailable_count:
                self.lines.append(self.replies.counted("search_hidden", result.unavailable_count))
            self.lines.append(self.replies.text(hint_key))
            self._remember_list(result.products)
            self.extra_events.extend(result.events())
            return
        if result.outcome == SearchOutcome.NOT_FOUND:
            self.lines.append(self.replies.text("search_not_found", query=result.query))
        elif result.outcome == SearchOutcome.NONE_AVAILABLE:
            self.lines.append(self.replies.text("search_none_available", query=result.query))
        elif result.outcome == SearchOutcome.PRODUCTS_UNAVAILABLE:
            self.lines.append(
                self.replies.text(
                    _PRODUCTS_FAILURE_KEYS.get(result.failure or "", "products_unavailable")
                )
            )
        else:
            self.lines.append(self.replies.text("no_catalog_data"))
            self.extra_events.append(events.error(ErrorCode.NO_CATALOG_DATA))

    def _show_by_price(self, products: list[ShownProduct], intent: Intent, *, query: str) -> None:
        """List ``products`` within the intent's price limits, the cheapest first if asked."""
        fitting = self._priced_within_limits(products, intent)
        if not fitting:
            return
        self.lines.append(self._price_list_header(intent, query=query))
        self.lines.extend(self.replies.product_list(fitting))
        self.lines.append(self.replies.text("search_hint"))
        self._remember_list(fitting)
        self.extra_events.append(events.product_cards([product.card() for product in fitting]))

    def _priced_within_limits(
        self, products: list[ShownProduct], intent: Intent
    ) -> list[ShownProduct]:
        """Return the products within the intent's price limits, at most a search's worth.

        They are sorted by price when the intent requests the cheapest. When there are
        no products or none fits, the reply that explains it is added and the list is empty.
        """
        if not products:
            self.lines.append(self.replies.text("nothing_listed"))
            return []
        # NOTE: goods sold by weight are priced per kilogram, so they compare by that price.
        fitting = [product for product in products if _within_prices(product, intent)]
        if not fitting:
            self.lines.append(self._none_within_prices(products, intent))
            return []
        if intent.cheapest:
            fitting = sorted(fitting, key=_current_price)
        return fitting[:DEFAULT_SEARCH_LIMIT]

    def _prices_conflict(self, intent: Intent) -> bool:
        """Tell whether the floor is above the ceiling, and add the reply that explains it."""
        if intent.min_price is None or intent.max_price is None:
            return False
        if intent.min_price <= intent.max_price:
            return False
        price = self.replies.price
        self.lines.append(
            self.replies.text(
                "price_limits_conflict",
                min_price=price(intent.min_price),
                max_price=price(intent.max_price),
            )
        )
        return True

    def _price_list_header(self, intent: Intent, *, query: str) -> str:
        """Return the line above a list by price, which names the query when there is one.

        Without a query the line states that the list shown last was filtered.
        """
        price = self.replies.price
        source = "found" if query else "listed"
        if intent.min_price is not None and intent.max_price is not None:
            return self.replies.text(
                f"{source}_in_price_range",
                query=query,
                min_price=price(intent.min_price),
                max_price=price(intent.max_price),
            )
        if intent.max_price is not None:
            return self.replies.text(
                f"{source}_under_price", query=query, price=price(intent.max_price)
            )
        if intent.min_price is not None:
            return self.replies.text(
                f"{source}_over_price", query=query, price=price(intent.min_price)
            )
        if query:
            return self.replies.text("found_cheapest", query=query)
        return self.replies.text("listed_cheapest")

    def _none_within_prices(self, products: list[ShownProduct], intent: Intent) -> str:
        """Return the reply for products of which none is within the intent's price limits."""
        price = self.replies.price
        cheapest = min(products, key=_current_price)
        priciest = max(products, key=_current_price)
        if intent.min_price is not None and intent.max_price is not None:
            return self.replies.text(
                "none_in_price_range",
                min_price=price(intent.min_price),
                max_price=price(intent.max_price),
                cheapest=price(_current_price(cheapest)),
                priciest=price(_current_price(priciest)),
            )
        if intent.min_price is not None:
            return self.replies.text(
                "none_over_price",
                price=price(intent.min_price),
                name=priciest.name,
                priciest=price(_current_price(priciest)),
            )
        return self.replies.text(
            "none_under_price",
            price=price(intent.max_price or 0),
            name=cheapest.name,
            cheapest=price(_current_price(cheapest)),
        )

    def _remember_list(self, products: list[ShownProduct]) -> None:
        self.memory.listed = [product.sku for product in products]
        self.memory.listed_kind = LIST_SEARCH
        self.memory.focus = products[0].sku if len(products) == 1 else None

    def _tool_disabled(self, tool: str) -> bool:
        """Tell whether the tenant disabled ``tool``, and add the shopper's reply when it did."""
        if tool not in self.disabled_tools:
            return False
        line = self.replies.text(f"disabled_{tool}")
        if line not in self.lines:
            self.lines.append(line)
        return True

    # References

    def _resolve(self, reference: Reference | None, *, prefer_cart: bool) -> ShownProduct | None:
        """Find the product ``reference`` means; otherwise add a line that says what is unclear.

        A name that matches nothing adds no line when ``prefer_cart`` is false, because the
        caller then searches the catalog for it.
        """
        if self.chosen is not None:
            return self.chosen
        if isinstance(reference, Ordinal):
            return self._by_position(reference.position)
        if isinstance(reference, NameFragment):
            return self._by_name(reference.text, prefer_cart=prefer_cart)
        return self._implicit(prefer_cart=prefer_cart)

    def _listed_products(self) -> list[ShownProduct]:
        prefer_cart = self.memory.listed_kind == LIST_CART
        products = (
            self.turn.tools.product_offered(sku, prefer_cart=prefer_cart)
            for sku in self.memory.listed
        )
        return [product for product in products if product is not None]

    def _by_position(self, position: int) -> ShownProduct | None:
        listed = self._listed_products()
        if not listed:
            self.lines.append(self.replies.text("nothing_listed"))
            return None
        index = len(listed) - 1 if position == -1 else position - 1
        if not 0 <= index < len(listed):
            self.lines.append(
                self.replies.text("position_missing", position=position, count=len(listed))
            )
            return None
        return listed[index]

    def _by_name(self, fragment: str, *, prefer_cart: bool) -> ShownProduct | None:
        cart = self._cart_products()
        shown = self._listed_products() + self.turn.tools.shown_products()
        pools = [cart, shown] if prefer_cart else [shown, cart]
        for pool in pools:
            matches = _matching(fragment, pool)
            if len(matches) > 1:
                matches = _stating(matches, self.measures)
            if len(matches) == 1:
                return matches[0]
            if matches:
                self._ask_which(fragment, matches)
                return None
        if prefer_cart:
            self.lines.append(self.replies.text("not_in_cart_fragment", fragment=fragment))
        return None

    def _implicit(self, *, prefer_cart: bool) -> ShownProduct | None:
        if self.memory.focus:
            product = self.turn.tools.product_offered(self.memory.focus, prefer_cart=prefer_cart)
            if product is not None:
                return product
        listed = self._listed_products()
        if len(listed) == 1:
            return listed[0]
        cart = self._cart_products()
        if prefer_cart and len(cart) == 1:
            return cart[0]
        self.lines.append(self.replies.text("which_product"))
        return None

    def _ask_which(self, fragment: str, matches: list[ShownProduct]) -> None:
        self.lines.append(self.replies.text("ambiguous", fragment=fragment))
        self.lines.extend(self.replies.product_list(matches))
        self.lines.append(self.replies.text("ambiguous_question"))
        self.memory.listed = [product.sku for product in matches]
        self.memory.listed_kind = LIST_SEARCH
        self.memory.pending = self.turn.text

    def _cart_products(self) -> list[ShownProduct]:
        skus = [item["sku"] for item in self.turn.tools.view_cart()["items"]]
        products = (self.turn.tools.product_offered(sku, prefer_cart=True) for sku in skus)
        return [product for product in products if product is not None]

    # Quantities

    def _amount(self, quantity: Quantity | None, product: ShownProduct) -> Decimal | None:
        """Convert the shopper's amount to the product's unit, or pick the smallest order.

        Return None, with a question added to the reply, when the amount cannot be converted
        without guessing. The tools' guards then never see it, and no webhook is called.
        A sign, a zero or a huge value passes through, so that the guards reject it.
        """
        if quantity is None:
            return _default_amount(product)
        value, unit = quantity.value, quantity.unit
        if unit is None or not value.is_finite() or value <= 0:
            return value
        if unit in COUNT_UNITS:
            if product.unit in MEASURE_UNITS:
                self._ask("ask_amount_by_weight", product, unit=self.replies.unit(product.unit))
                return None
            return value
        requested = MEASURE_UNITS.get(unit)
        sold_in = MEASURE_UNITS.get(product.unit)
        if requested is None:
            return value
        if sold_in is not None:
            if requested.dimension != sold_in.dimension:
                self._ask_unit(product, quantity)
                return None
            return value * requested.base_factor / sold_in.base_factor
        return self._packs(product, quantity, requested)

    def _packs(
        self, product: ShownProduct, quantity: Quantity, requested: MeasureUnit
    ) -> Decimal | None:
        """Convert a weight or volume of packaged goods to a whole number of packs, or ask."""
        pack_size = product.weight if requested.dimension == MASS else product.volume
        requested_text = self.replies.quantity(quantity.value, quantity.unit or "")
        if not pack_size or pack_size <= 0:
            self._ask("ask_pieces", product, requested=requested_text)
            return None
        pack = to_decimal(pack_size)
        packs = quantity.value * requested.base_factor / pack
        whole = packs.to_integral_value(rounding=ROUND_HALF_UP)
        if whole >= 1 and abs(packs - whole) <= whole * PACK_TOLERANCE:
            self.conversion_note = self.replies.text(
                "packs_converted",
                requested=requested_text,
                quantity=self.replies.quantity(whole, "pcs"),
                pack=self.replies.quantity(pack, requested.base_unit),
            )
            return whole
        self._ask(
            "ask_packs",
            product,
            pack=self.replies.quantity(pack, requested.base_unit),
            requested=requested_text,
            packs=self.replies.amount(packs.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)),
            suggested=self.replies.quantity(max(1, int(whole)), "pcs"),
        )
        return None

    def _ask_unit(self, product: ShownProduct, quantity: Quantity) -> None:
        self._ask(
            "ask_unit",
            product,
            unit=self.replies.unit(product.unit),
            requested=self.replies.quantity(quantity.value, quantity.unit or ""),
        )

    def _ask(self, key: str, product: ShownProduct, **params: object) -> None:
        """Ask the shopper to restate an amount; the next "add 3" applies to ``product``.

        The question names the requested change, so that a removal suggests "видали 2 шт"
        and not an add.
        """
        verb = self.replies.text(f"ask_verb_{self.action.value}")
        command = self.replies.text(f"ask_command_{self.action.value}")
        self.lines.append(
            self.replies.text(key, name=product.name, verb=verb, command=command, **params)
        )
        self.memory.focus = product.sku


def _removed_amount(intent: Intent, product: ShownProduct) -> Quantity | None:
    """Return the amount that a removal takes off, or None to remove the whole line.

    A weight or volume that the named product's own name states is part of the name:
    "видали Сир Комо 250 г" removes the line, and "видали 1 шт Сир Комо 250 г" takes 1
    pack off it, not 250 g. The amount of "зменш Сир Комо на 250 г" is the change, so it
    takes 250 g off.
    """
    quantity = intent.quantity
    if quantity is None or not isinstance(intent.reference, NameFragment):
        return quantity
    if intent.packs is not None:
        count, size = intent.packs
        return count if names_quantity(product.name, size) else quantity
    if intent.by_amount:
        return quantity
    return None if names_quantity(product.name, quantity) else quantity


def _within_prices(product: ShownProduct, intent: Intent) -> bool:
    current = Decimal(str(_current_price(product)))
    if intent.max_price is not None and current > intent.max_price:
        return False
    return intent.min_price is None or current >= intent.min_price


def _current_price(product: ShownProduct) -> float:
    """Return the price the shopper pays now: the promotional price when there is one."""
    return product.promo_price if product.promo_price is not None else product.price


def _matching(fragment: str, products: list[ShownProduct]) -> list[ShownProduct]:
    """Return the products whose names contain the words of ``fragment``, each once."""
    return _unique(product for product in products if name_matches(fragment, product.name))


def _stating(products: list[ShownProduct], measures: tuple[Quantity, ...]) -> list[ShownProduct]:
    """Return the products whose names state one of ``measures``, or all when none does.

    "видали воду 1.5 л" means "Вода Моршинська 1.5 л", not the 0.5 l bottle of that water.
    """
    stating = [
        product
        for product in products
        if any(names_quantity(product.name, measure) for measure in measures)
    ]
    return stating or products


def _default_amount(product: ShownProduct) -> Decimal:
    """Return 1, raised to the minimum quantity and rounded up to the quantity step."""
    amount = max(Decimal(1), to_decimal(product.min_quantity or 0))
    step = product.step
    if step is not None and step > 0 and amount % step != 0:
        amount = (amount / step).to_integral_value(rounding=ROUND_CEILING) * step
    return amount


def _unique(products: Iterator[ShownProduct] | list[ShownProduct]) -> list[ShownProduct]:
    by_sku: dict[str, ShownProduct] = {}
    for product in products:
        by_sku.setdefault(product.sku, product)
    return list(by_sku.values())
