"""Validation of one product as merchants send it (``ProductInput``).

The same schema serves the JSON API and the file importer, so every error names the field
it is about and states what is wrong in words a merchant can act on.
"""

import json
import math
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import URLValidator
from django.db.models import CharField
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)
from pydantic import (
    ValidationError as PydanticValidationError,
)

from catalog.models import Product
from vizochok.exceptions import InvalidInput
from vizochok.text import escape_unstorable_text


def _max_length(field_name: str) -> int:
    model_field = Product._meta.get_field(field_name)
    assert isinstance(model_field, CharField)
    assert model_field.max_length is not None
    return model_field.max_length


# Key of errors about the product as a whole, as in the API's error envelope.
NON_FIELD = "non_field"

RequiredText = Annotated[str, StringConstraints(min_length=1)]

# Decimal places and digits of Product.quantity_step and Product.min_quantity.
QUANTITY_MAX_DIGITS = 12
QUANTITY_DECIMAL_PLACES = 3

# Levels of objects and arrays in ``attributes``, counting the attributes object itself.
MAX_ATTRIBUTES_DEPTH = 32

_http_url_validator = URLValidator(schemes=["http", "https"])

# Unicode categories of characters that show nothing: control, format (such as U+200B, the
# zero-width space) and separators.
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp"})

# Fields whose JSON null means "not given", so the default applies.
_NULL_MEANS_DEFAULT = (
    "category_path",
    "brand",
    "description",
    "ingredients",
    "country",
    "unit",
    "image_url",
    "attributes",
    "barcode",
    "is_active",
)


class ProductInput(BaseModel):
    """One product of a catalog upload; ``sku`` is unique per tenant."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        str_strip_whitespace=True,
        # Merchants' systems often send SKUs and barcodes as JSON numbers.
        coerce_numbers_to_str=True,
    )

    sku: RequiredText = Field(max_length=_max_length("sku"))
    name: RequiredText = Field(max_length=_max_length("name"))
    category_path: str = Field(default="", max_length=_max_length("category_path"))
    brand: str = Field(default="", max_length=_max_length("brand"))
    description: str = ""
    ingredients: str = ""
    country: str = Field(default="", max_length=_max_length("country"))
    unit: RequiredText = Field(default="pcs", max_length=_max_length("unit"))
    quantity_step: Decimal | None = Field(
        default=None,
        gt=0,
        max_digits=QUANTITY_MAX_DIGITS,
        decimal_places=QUANTITY_DECIMAL_PLACES,
    )
    min_quantity: Decimal | None = Field(
        default=None,
        ge=0,
        max_digits=QUANTITY_MAX_DIGITS,
        decimal_places=QUANTITY_DECIMAL_PLACES,
    )
    weight: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    volume: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    image_url: str = Field(default="", max_length=_max_length("image_url"))
    attributes: dict[str, Any] = Field(default_factory=dict)
    barcode: str = Field(default="", max_length=_max_length("barcode"))
    is_active: bool = True

    @field_validator(*_NULL_MEANS_DEFAULT, mode="before")
    @classmethod
    def _null_to_default(cls, value: Any, info: Any) -> Any:
        if value is None:
            field = cls.model_fields[info.field_name]
            return field.get_default(call_default_factory=True)
        return value

    # A JSON number beyond the float range, such as 1e400, parses as infinity, and an import
    # file may contain NaN. coerce_numbers_to_str would store either in a text field as "inf"
    # or "nan". sku and barcode reject them in _check_code_number.
    @field_validator(
        "name", "category_path", "brand", "description", "ingredients", "country", "unit",
        "image_url", "quantity_step", "min_quantity", mode="before",
    )  # fmt: skip
    @classmethod
    def _reject_non_finite(cls, value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("Input should be a finite number")
        return value

    @field_validator("sku", "barcode", mode="before")
    @classmethod
    def _check_code_number(cls, value: Any) -> Any:
        return _normalize_code_number(value)

    # Pydantic reads true and false as 1.0 and 0.0 for a float field, and a weight of
    # true is a client bug rather than a measurement.
    @field_validator("weight", "volume", mode="before")
    @classmethod
    def _reject_boolean(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("Input should be a number, not a boolean")
        return value

    @field_validator(
        "sku", "name", "category_path", "brand", "description", "ingredients", "country",
        "unit", "image_url", "barcode",
    )  # fmt: skip
    @classmethod
    def _reject_nul(cls, value: str) -> str:
        # PostgreSQL text columns cannot store NUL characters.
        if "\x00" in value:
            raise ValueError("Text must not contain NUL (\\u0000) characters")
        return value

    # Stripping removes whitespace only, so a name of a zero-width space (U+200B) or of
    # control characters would be stored, and shown, as a blank.
    @field_validator("sku", "name", "unit")
    @classmethod
    def _reject_invisible(cls, value: str) -> str:
        if all(unicodedata.category(character) in _INVISIBLE_CATEGORIES for character in value):
            raise ValueError("This field must not be empty or contain only invisible characters")
        return value

    @field_validator("image_url")
    @classmethod
    def _check_image_url(cls, value: str) -> str:
        if not value:
            return value
        try:
            _http_url_validator(value)
        except DjangoValidationError:
            raise ValueError("Enter an absolute http:// or https:// URL") from None
        return value

    @field_validator("attributes")
    @classmethod
    def _check_attributes(cls, value: dict[str, Any]) -> dict[str, Any]:
        problem = _attributes_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    def content_fields(self) -> dict[str, str]:
        """Return the fields that are embedded; a change to any of them re-embeds."""
        return {
            "name": self.name,
            "description": self.description,
            "ingredients": self.ingredients,
            "brand": self.brand,
            "category_path": self.category_path,
            "country": self.country,
        }


# The smallest magnitude from which a float cannot hold every integer: 2**53 + 1 parses as
# 2**53, so the digits of a larger code sent as a float may already be lost.
_FLOAT_EXACT_INTEGER_LIMIT = 2**53


def _normalize_code_number(value: Any) -> Any:
    """Return a SKU or barcode sent as a float with a zero fraction as an int.

    Exporters that keep a code column as floats send ``4820000000017.0``; pandas does so
    when the column has empty cells. Stored as "4820000000017.0", it would name another SKU
    than ``4820000000017`` and match no barcode search. Other values are returned unchanged.
    ``ValueError`` is raised for infinity and NaN, which would be stored as "inf" and "nan",
    and for a float of magnitude 2**53 or more, such as ``10000000000000001.0``, which
    parses as ``1e16`` and would name the product of another code.
    """
    if not isinstance(value, float):
        return value
    if not math.isfinite(value):
        raise ValueError("Input should be a finite number")
    if abs(value) >= _FLOAT_EXACT_INTEGER_LIMIT:
        raise ValueError(
            "Input is a number too large to keep every digit. Send it as a string or as a "
            "number without a fraction or exponent"
        )
    return int(value) if value.is_integer() else value


def _text_problem(text: str) -> str | None:
    if "\x00" in text:
        return "Keys and values must not contain NUL (\\u0000) characters"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "Keys and values must not contain unpaired surrogates such as \\ud800"
    return None


def _attributes_problem(attributes: dict[str, Any]) -> str | None:
    """Return why PostgreSQL's jsonb cannot store ``attributes``, or None when it can.

    jsonb rejects NUL characters, unpaired surrogates, NaN and infinities (JSON numbers
    beyond the float range parse as infinity). The walk uses an explicit stack, because
    recursion would overflow Python's stack on deeply nested input.
    """
    stack: list[tuple[Any, int]] = [(attributes, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            problem = _text_problem(value)
            if problem is not None:
                return problem
        elif isinstance(value, float) and not math.isfinite(value):
            return "Numbers must be finite, not NaN or Infinity"
        elif isinstance(value, Mapping | list | tuple):
            if depth > MAX_ATTRIBUTES_DEPTH:
                return f"Must not be nested more than {MAX_ATTRIBUTES_DEPTH} levels deep"
            items = [*value.keys(), *value.values()] if isinstance(value, Mapping) else value
            stack.extend((item, depth + 1) for item in items)
    return None


@dataclass(frozen=True)
class FieldError:
    """One problem with one field; ``field`` is a dotted path such as ``attributes.size``."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class InvalidProductInput(InvalidInput):
    """A product failed validation; ``errors`` lists every problem found."""

    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = errors
        fields: dict[str, list[str]] = {}
        for error in errors:
            fields.setdefault(error.field, []).append(error.message)
        super().__init__("The product is invalid.", fields=fields)


# Clearer wording for pydantic's messages where its own is vague for merchants.
_MESSAGES = {
    "missing": "This field is required.",
    "extra_forbidden": "Unknown field.",
    "string_too_short": "This field must not be empty.",
    "dict_type": "Must be a JSON object.",
}


# Characters of a field path kept in an error message. The path of an unknown field or of
# an attributes key is the client's key, and a job stores its messages, so a 4 MB key would
# otherwise make a 4 MB message.
MAX_FIELD_PATH_CHARACTERS = 100


def _field_errors(exc: PydanticValidationError) -> list[FieldError]:
    errors = []
    for error in exc.errors(include_url=False):
        path = ".".join(str(part) for part in error["loc"])
        if len(path) > MAX_FIELD_PATH_CHARACTERS:
            path = path[:MAX_FIELD_PATH_CHARACTERS] + "…"
        # The client's key may contain NUL or a surrogate that the job's errors column and
        # the response could not store.
        field = escape_unstorable_text(path) or NON_FIELD
        message = _MESSAGES.get(error["type"])
        if message is None:
            message = error["msg"].removeprefix("Value error, ")
            message = message[0].upper() + message[1:]
            if not message.endswith("."):
                message += "."
        errors.append(FieldError(field=field, message=message))
    return errors


def product_input_parse(data: Any) -> ProductInput:
    """Validate one product as merchants send it; raise ``InvalidProductInput`` if invalid."""
    if not isinstance(data, Mapping):
        raise InvalidProductInput(
            [FieldError(field=NON_FIELD, message="Each product must be a JSON object.")]
        )
    try:
        return ProductInput.model_validate(dict(data))
    except PydanticValidationError as exc:
        raise InvalidProductInput(_field_errors(exc)) from None


@dataclass(frozen=True)
class ParsedProducts:
    """The valid products of an upload, one per SKU, and a message per problem found."""

    products: list[ProductInput]
    errors: list[str]


def invalid_product_sku(*, data: Any, errors: Sequence[FieldError]) -> str | None:
    """Return the SKU of an invalid product as it would be stored, or None when it has none.

    A product has no SKU here when ``errors`` include one about the ``sku`` field itself.
    """
    if not isinstance(data, Mapping) or any(error.field == "sku" for error in errors):
        return None
    sku = data.get("sku")
    if isinstance(sku, bool) or not isinstance(sku, str | int | float):
        return None
    return str(_normalize_code_number(sku)).strip()


def _product_label(index: int, sku: str | None) -> str:
    if sku is None:
        return f"products[{index}]"
    return f"products[{index}] (SKU {json.dumps(sku, ensure_ascii=False)})"


def _ignored_message(*, earlier: int, later: int, sku: str) -> str:
    return (
        f"{_product_label(earlier, sku)}: Ignored, because products[{later}] has the same "
        "SKU; the last occurrence wins."
    )


def product_inputs_parse(items: Sequence[Any]) -> ParsedProducts:
    """Validate every item of an upload on its own; invalid items never block valid ones.

    Each problem becomes one message naming the item's index, its SKU when it has a valid
    one, and the field, e.g. ``products[3] (SKU "milk-1"): weight: Input should be greater
    than or equal to 0.`` When a SKU occurs more than once, its last occurrence wins and each
    earlier one is reported as ignored. An invalid last occurrence wins too, so no product of
    that SKU is written.
    """
    by_sku: dict[str, tuple[int, ProductInput]] = {}
    errors: list[str] = []
    for index, data in enumerate(items):
        try:
            product = product_input_parse(data)
        except InvalidProductInput as exc:
            sku = invalid_product_sku(data=data, errors=exc.errors)
            if sku is not None and sku in by_sku:
                earlier_index, _ = by_sku.pop(sku)
                errors.append(_ignored_message(earlier=earlier_index, later=index, sku=sku))
            label = _product_label(index, sku)
            errors.extend(
                f"{label}: {error.message}" if error.field == NON_FIELD else f"{label}: {error}"
                for error in exc.errors
            )
            continue
        earlier = by_sku.get(product.sku)
        if earlier is not None:
            errors.append(_ignored_message(earlier=earlier[0], later=index, sku=product.sku))
        by_sku[product.sku] = (index, product)
    return ParsedProducts(products=[product for _, product in by_sku.values()], errors=errors)
