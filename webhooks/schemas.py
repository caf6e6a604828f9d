"""Typed parsing of merchant webhook responses.

Lists are parsed item by item: an invalid item is dropped (and reported to the caller for
logging) while the valid ones are kept, so one bad product never hides the others. A
``promo_price`` that is not a discount is left out (and reported too), and the item is
kept at its regular price.
"""

import math
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Any, Generic, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    PrivateAttr,
    StrictBool,
    StrictStr,
    StringConstraints,
    ValidationError,
    field_validator,
)

from vizochok.text import is_storable_text

# Merchant text goes into replies and into the LLM's context, so it is bounded: a longer
# promotion label is dropped (the product stays) and a longer cart reason is cut.
MAX_PROMO_LABEL_LENGTH = 40
MAX_REASON_LENGTH = 200

# Prices and quantities above this are taken as merchant errors, not goods: no shop sells a
# line for a billion, and larger values overflow the two-decimal money arithmetic.
MAX_AMOUNT = 1_000_000_000
# Cart quantities are rounded half up to 0.001 (a gram of goods sold by weight), so a
# quantity below 0.0005 becomes 0.
MIN_CART_QUANTITY = Decimal("0.001")
# Cart GET text limits, the same as those of catalog products.
MAX_CART_SKU_LENGTH = 200
MAX_CART_NAME_LENGTH = 500


def promo_is_discount(*, price: float, promo_price: float) -> bool:
    """Return whether ``promo_price`` is below ``price`` in cents, as replies show them.

    A promotion of 9.999 on a price of 10 would otherwise read "10.00 instead of 10.00".
    """
    return _cents(promo_price) < _cents(price)


def _not_a_discount(*, price: float, promo_price: float) -> str:
    return f"promo_price {promo_price} is not below price {price} once both are rounded to cents"


def _rounded_quantity(value: float) -> Decimal:
    return Decimal(str(value)).quantize(MIN_CART_QUANTITY, rounding=ROUND_HALF_UP)


def _cents(value: float) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def _check_storable(value: str | None) -> str | None:
    if value is not None and not is_storable_text(value):
        raise ValueError("must not contain NUL characters or unpaired surrogates")
    return value


def _finite_non_negative(value: Any) -> float:
    # bool is an int subclass in Python; a merchant sending `true` as a price is an error.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a number")
    try:
        number = float(value)
    except OverflowError:
        # A JSON integer beyond the float range, such as 10**400.
        raise ValueError(f"must be at most {MAX_AMOUNT}") from None
    if not math.isfinite(number) or number < 0:
        raise ValueError("must be a finite number of 0 or more")
    if number > MAX_AMOUNT:
        raise ValueError(f"must be at most {MAX_AMOUNT}")
    # JSON's -0.0 passes the sign check, and replies would show it as "-0.00".
    return 0.0 if number == 0 else number


class ProductItem(BaseModel):
    model_config = ConfigDict(extra="ignore")

    sku: StrictStr
    price: float
    in_stock: StrictBool
    promo_price: float | None = None
    promo_label: StrictStr | None = None

    _check_price = field_validator("price", mode="before")(_finite_non_negative)
    _check_sku = field_validator("sku")(_check_storable)

    @field_validator("promo_price", mode="before")
    @classmethod
    def _check_promo_price(cls, value: Any) -> float | None:
        return None if value is None else _finite_non_negative(value)

    @field_validator("promo_label")
    @classmethod
    def _drop_unusable_label(cls, value: str | None) -> str | None:
        if value is None or len(value) > MAX_PROMO_LABEL_LENGTH or not is_storable_text(value):
            return None
        return value

    # Why model_post_init left out promo_price and promo_label, or None when it did not.
    _ignored_promotion: str | None = PrivateAttr(default=None)

    @property
    def ignored_promotion(self) -> str | None:
        return self._ignored_promotion

    def model_post_init(self, context: Any) -> None:
        # Many shop systems repeat price in promo_price when there is no sale, so the product
        # is kept at its regular price. The label of such a promotion would mislead.
        if self.promo_price is not None and not promo_is_discount(
            price=self.price, promo_price=self.promo_price
        ):
            self._ignored_promotion = _not_a_discount(
                price=self.price, promo_price=self.promo_price
            )
            self.promo_price = None
            self.promo_label = None


class CartResponse(BaseModel):
    model_config = ConfigDict(extra="ignore")

    ok: StrictBool
    reason: StrictStr | None = None

    @field_validator("reason")
    @classmethod
    def _cut_long_reason(cls, value: str | None) -> str | None:
        # A reason that cannot be stored is left out, so the assistant reads "unknown".
        if value is None or not is_storable_text(value):
            return None
        return value[:MAX_REASON_LENGTH]


class CartGetItem(BaseModel):
    model_config = ConfigDict(extra="ignore")

    # The same limits as catalog products: longer values are merchant errors. Both are
    # checked once stripped, in _strip_sku and _strip_name.
    sku: StrictStr
    name: StrictStr
    price: float
    quantity: float
    unit: Annotated[StrictStr, StringConstraints(max_length=20)] = "pcs"
    promo_price: float | None = None
    brand: Annotated[StrictStr, StringConstraints(max_length=200)] | None = None

    # Why model_post_init left out promo_price, or None when it did not.
    _ignored_promotion: str | None = PrivateAttr(default=None)

    @property
    def ignored_promotion(self) -> str | None:
        return self._ignored_promotion

    _check_price = field_validator("price", mode="before")(_finite_non_negative)
    _check_text = field_validator("sku", "name", "unit", "brand")(_check_storable)

    @field_validator("sku")
    @classmethod
    def _strip_sku(cls, value: str) -> str:
        # Catalog imports store SKUs stripped, and the agent's tools strip the SKU they get,
        # so a line kept with spaces could never be found or removed.
        sku = value.strip()
        if not sku:
            raise ValueError("must not be empty or only whitespace")
        if len(sku) > MAX_CART_SKU_LENGTH:
            raise ValueError(f"must be at most {MAX_CART_SKU_LENGTH} characters")
        return sku

    @field_validator("name")
    @classmethod
    def _strip_name(cls, value: str) -> str:
        name = value.strip()
        if len(name) > MAX_CART_NAME_LENGTH:
            raise ValueError(f"must be at most {MAX_CART_NAME_LENGTH} characters")
        return name

    @field_validator("quantity", mode="before")
    @classmethod
    def _check_quantity(cls, value: Any) -> float:
        number = _finite_non_negative(value)
        if number <= 0:
            raise ValueError("must be greater than 0")
        if _rounded_quantity(number) == 0:
            # The snapshot counts quantities to the gram, so the line would read "0 pcs".
            raise ValueError(
                f"must be at least {MIN_CART_QUANTITY} once rounded to 3 decimal places"
            )
        return number

    @field_validator("promo_price", mode="before")
    @classmethod
    def _check_promo_price(cls, value: Any) -> float | None:
        return None if value is None else _finite_non_negative(value)

    def model_post_init(self, context: Any) -> None:
        # A blank name would show the shopper an unnamed line, and the line is in their
        # cart, so it is shown by its SKU rather than dropped.
        if not self.name:
            self.name = self.sku
        # The line is kept at its regular price, as a product whose promotion is not a
        # discount is.
        if self.promo_price is not None and not promo_is_discount(
            price=self.price, promo_price=self.promo_price
        ):
            self._ignored_promotion = _not_a_discount(
                price=self.price, promo_price=self.promo_price
            )
            self.promo_price = None


T = TypeVar("T")


@dataclass
class ParsedList(Generic[T]):
    items: list[T] = field(default_factory=list)
    # One message per dropped item, such as "item 3: price: must be a number".
    dropped: list[str] = field(default_factory=list)
    # One message per kept item whose promo_price was left out because it is not a
    # discount, such as "item 2: promo_price 52.0 is not below price 52.0 once both are
    # rounded to cents".
    ignored_promotions: list[str] = field(default_factory=list)


class InvalidResponse(Exception):
    """The response as a whole does not have the contract's shape."""


def _items_of(payload: Any, key: str) -> list[Any]:
    if not isinstance(payload, dict) or not isinstance(payload.get(key), list):
        raise InvalidResponse(f"expected a JSON object with a {key!r} array")
    return payload[key]


def _describe(error: ValidationError | ValueError) -> str:
    if isinstance(error, ValidationError):
        first = error.errors()[0]
        location = ".".join(str(part) for part in first["loc"]) or "item"
        return f"{location}: {first['msg']}"
    return str(error)


def parse_products(payload: Any, *, requested_skus: list[str]) -> ParsedList[ProductItem]:
    """Parse a products response, keeping valid items for requested SKUs, first one wins."""
    parsed: ParsedList[ProductItem] = ParsedList()
    requested = set(requested_skus)
    seen: set[str] = set()
    for index, raw_item in enumerate(_items_of(payload, "products")):
        try:
            item = ProductItem.model_validate(raw_item)
        except (ValidationError, ValueError) as error:
            parsed.dropped.append(f"item {index}: {_describe(error)}")
            continue
        if item.sku not in requested:
            parsed.dropped.append(f"item {index}: sku {item.sku!r} was not requested")
        elif item.sku in seen:
            parsed.dropped.append(f"item {index}: duplicate sku {item.sku!r}")
        else:
            seen.add(item.sku)
            parsed.items.append(item)
            if item.ignored_promotion is not None:
                parsed.ignored_promotions.append(f"item {index}: {item.ignored_promotion}")
    return parsed


def parse_cart(payload: Any) -> CartResponse:
    try:
        return CartResponse.model_validate(payload)
    except ValidationError as error:
        raise InvalidResponse(_describe(error)) from error


def parse_cart_get(payload: Any) -> ParsedList[CartGetItem]:
    """Parse a cart GET response, keeping the first valid line of each SKU.

    The cart webhook names a line by its SKU, so a cart has at most one line per SKU.
    """
    parsed: ParsedList[CartGetItem] = ParsedList()
    seen: set[str] = set()
    for index, raw_item in enumerate(_items_of(payload, "items")):
        try:
            item = CartGetItem.model_validate(raw_item)
        except (ValidationError, ValueError) as error:
            parsed.dropped.append(f"item {index}: {_describe(error)}")
            continue
        if item.sku in seen:
            parsed.dropped.append(f"item {index}: duplicate sku {item.sku!r}")
            continue
        seen.add(item.sku)
        parsed.items.append(item)
        if item.ignored_promotion is not None:
            parsed.ignored_promotions.append(f"item {index}: {item.ignored_promotion}")
    return parsed
