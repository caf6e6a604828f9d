from decimal import Decimal

import pytest

from catalog.schemas import (
    MAX_ATTRIBUTES_DEPTH,
    FieldError,
    InvalidProductInput,
    ProductInput,
    product_input_parse,
)
from vizochok.exceptions import InvalidInput

_CODE_DIGITS_LOST = (
    "Input is a number too large to keep every digit. Send it as a string or as a number "
    "without a fraction or exponent."
)


def test_product_input_defaults():
    product = product_input_parse({"sku": "milk-1", "name": "Молоко"})

    assert product == ProductInput(
        sku="milk-1",
        name="Молоко",
        category_path="",
        brand="",
        description="",
        ingredients="",
        country="",
        unit="pcs",
        quantity_step=None,
        min_quantity=None,
        weight=None,
        volume=None,
        image_url="",
        attributes={},
        barcode="",
        is_active=True,
    )


def test_product_input_all_fields():
    product = product_input_parse(
        {
            "sku": "cheese-1",
            "name": "Сир твердий Гауда 45%",
            "category_path": "Молочні продукти > Сири",
            "brand": "Комо",
            "description": "Витримка 2 місяці.",
            "ingredients": "Молоко, сіль, закваска.",
            "country": "Україна",
            "unit": "kg",
            "quantity_step": 0.1,
            "min_quantity": "0.2",
            "weight": 1000,
            "volume": 0,
            "image_url": "https://cdn.example.com/cheese.jpg",
            "attributes": {"fat": "45%", "sliced": False},
            "barcode": "4820000000017",
            "is_active": False,
        }
    )

    assert product.quantity_step == Decimal("0.1")
    assert product.min_quantity == Decimal("0.2")
    assert product.weight == 1000.0
    assert product.volume == 0.0
    assert product.attributes == {"fat": "45%", "sliced": False}
    assert product.is_active is False


def test_product_input_coerces_and_strips():
    product = product_input_parse(
        {"sku": 12345, "name": "  Хліб  ", "barcode": 4820000000017, "is_active": "no"}
    )

    assert product.sku == "12345"
    assert product.name == "Хліб"
    assert product.barcode == "4820000000017"
    assert product.is_active is False


def test_product_input_keeps_format_characters_in_text():
    # A zero-width joiner is part of the emoji 👨‍🍳, and U+200B is only one character of
    # the SKU.
    product = product_input_parse({"sku": "a\u200bb", "name": "👨\u200d🍳", "unit": "🍞"})

    assert product.sku == "a\u200bb"
    assert product.name == "👨\u200d🍳"
    assert product.unit == "🍞"


def test_product_input_whole_float_codes():
    product = product_input_parse({"sku": 12345.0, "name": "Хліб", "barcode": 4820000000017.0})
    fractional = product_input_parse({"sku": 1.5, "name": "Хліб", "barcode": -0.0})
    largest = product_input_parse({"sku": 9007199254740991.0, "name": "Хліб"})

    assert product.sku == "12345"
    assert product.barcode == "4820000000017"
    assert fractional.sku == "1.5"
    assert fractional.barcode == "0"
    assert largest.sku == "9007199254740991"


def test_product_input_large_integer_codes_exact():
    product = product_input_parse({"sku": 10000000000000001, "name": "Хліб", "barcode": 10**30 + 1})

    assert product.sku == "10000000000000001"
    assert product.barcode == "1000000000000000000000000000001"


def test_product_input_null_means_default():
    product = product_input_parse(
        {"sku": "a", "name": "b", "brand": None, "unit": None, "attributes": None}
    )

    assert product.brand == ""
    assert product.unit == "pcs"
    assert product.attributes == {}


def _nested(depth: int) -> dict:
    """Return an attributes object with ``depth`` levels: objects, each in an array."""
    value: dict = {}
    for _ in range((depth - 1) // 2):
        value = {"inner": [value]}
    return {"inner": value} if depth % 2 == 0 else value


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(
            {},
            [
                FieldError("sku", "This field is required."),
                FieldError("name", "This field is required."),
            ],
            id="missing_required",
        ),
        pytest.param(
            {"sku": "  ", "name": "x"},
            [FieldError("sku", "This field must not be empty.")],
            id="blank_sku",
        ),
        pytest.param(
            {"sku": "a" * 201, "name": "x"},
            [FieldError("sku", "String should have at most 200 characters.")],
            id="sku_too_long",
        ),
        pytest.param(
            {"sku": "a", "name": "x", "weight": -1},
            [FieldError("weight", "Input should be greater than or equal to 0.")],
            id="negative_weight",
        ),
        pytest.param(
            {"sku": "a", "name": "x", "volume": "abc"},
            [
                FieldError(
                    "volume", "Input should be a valid number, unable to parse string as a number."
                )
            ],
            id="volume_not_a_number",
        ),
        pytest.param(
            {"sku": "a", "name": "x", "weight": True},
            [FieldError("weight", "Input should be a number, not a boolean.")],
            id="weight_boolean",
        ),
        pytest.param(
            {"sku": "a", "name": "x", "volume": False},
            [FieldError("volume", "Input should be a number, not a boolean.")],
            id="volume_boolean",
        ),
        pytest.param(
            {"sku": "a", "name": "x", "weight": float("nan")},
            [FieldError("weight", "Input should be a finite number.")],
            id="weight_nan",
        ),
        pytest.param(
            {"sku": "\u200b", "name": "\x01\u200d\ufeff", "unit": "\u2060"},
            [
                FieldError(
                    field, "This field must not be empty or contain only invisible characters."
                )
                for field in ("sku", "name", "unit")
            ],
            id="invisible_required_text",
        ),
        pytest.param(
            {"sku": "a", "name": "x", "k" * 4_000_000: 1},
            [FieldError("k" * 100 + "…", "Unknown field.")],
            id="unknown_field_name_too_long",
        ),
        pytest.param(
            {"sku": "a", "name": "x", "\x00" + "k" * 200: 1},
            [FieldError("\\u0000" + "k" * 99 + "…", "Unknown field.")],
            id="unknown_field_name_too_long_with_nul",
        ),
        pytest.param(
            {"sku": "a", "name": float("inf")},
            [FieldError("name", "Input should be a finite number.")],
            id="name_infinite",
        ),
        pytest.param(
            {"sku": "a", "name": "x", "brand": float("-inf"), "description": float("nan")},
            [
                FieldError("brand", "Input should be a finite number."),
                FieldError("description", "Input should be a finite number."),
            ],
            id="text_fields_not_finite",
        ),
        pytest.param(
            {"sku": float("inf"), "name": "x"},
            [FieldError("sku", "Input should be a finite number.")],
            id="sku_infinite",
        ),
        pytest.param(
            {"sku": "a", "name": "x", "barcode": float("-inf")},
            [FieldError("barcode", "Input should be a finite number.")],
            id="barcode_infinite",
        ),
        pytest.param(
            # Parses as 1e16, so it would be stored as the SKU "10000000000000000".
            {"sku": 10000000000000001.0, "name": "x"},
            [FieldError("sku", _CODE_DIGITS_LOST)],
            id="sku_float_digits_lost",
        ),
        pytest.param(
            {"sku": "a", "name": "x", "barcode": -(2.0**53)},
            [FieldError("barcode", _CODE_DIGITS_LOST)],
            id="barcode_float_two_to_53",
        ),
        pytest.param(
            {"sku": "a", "name": "x", "barcode": 1e20},
            [FieldError("barcode", _CODE_DIGITS_LOST)],
            id="barcode_float_exponent",
        ),
        pytest.param(
            {"sku": "a", "name": "x", "quantity_step": 0},
            [FieldError("quantity_step", "Input should be greater than 0.")],
            id="zero_quantity_step",
        ),
        pytest.param(
            {"sku": "a", "name": "x", "quantity_step": "0.0001"},
            [
                FieldError(
                    "quantity_step", "Decimal input should have no more than 3 decimal places."
                )
            ],
            id="quantity_step_too_precise",
        ),
        pytest.param(
            {"sku": "a", "name": "x", "attributes": ["red"]},
            [FieldError("attributes", "Must be a JSON object.")],
            id="attributes_not_object",
        ),
        pytest.param(
            {"sku": "a", "name": "x", "image_url": "ftp://example.com/a.jpg"},
            [FieldError("image_url", "Enter an absolute http:// or https:// URL.")],
            id="image_url_ftp",
        ),
        pytest.param(
            {"sku": "a", "name": "x", "image_url": "/images/a.jpg"},
            [FieldError("image_url", "Enter an absolute http:// or https:// URL.")],
            id="image_url_relative",
        ),
        pytest.param(
            {"sku": "a", "name": "x", "is_active": "maybe"},
            [
                FieldError(
                    "is_active", "Input should be a valid boolean, unable to interpret input."
                )
            ],
            id="is_active_not_boolean",
        ),
        pytest.param(
            {"sku": "a", "name": "x", "brand": "Bad\x00Brand"},
            [FieldError("brand", "Text must not contain NUL (\\u0000) characters.")],
            id="nul_in_text",
        ),
        pytest.param(
            {"sku": "a", "name": "x", "attributes": {"size": ["L\x00"]}},
            [
                FieldError(
                    "attributes", "Keys and values must not contain NUL (\\u0000) characters."
                )
            ],
            id="nul_in_attributes",
        ),
        pytest.param(
            {"sku": "a", "name": "x", "attributes": {"sizes": [{"\x00": "L"}]}},
            [
                FieldError(
                    "attributes", "Keys and values must not contain NUL (\\u0000) characters."
                )
            ],
            id="nul_in_nested_attribute_key",
        ),
        pytest.param(
            {"sku": "a", "name": "x", "attributes": {"size": ["L\ud800"]}},
            [
                FieldError(
                    "attributes",
                    "Keys and values must not contain unpaired surrogates such as \\ud800.",
                )
            ],
            id="surrogate_in_attributes",
        ),
        pytest.param(
            {"sku": "a", "name": "x", "attributes": {"pack": {"\udfff": 1}}},
            [
                FieldError(
                    "attributes",
                    "Keys and values must not contain unpaired surrogates such as \\ud800.",
                )
            ],
            id="surrogate_in_nested_attribute_key",
        ),
        pytest.param(
            {"sku": "a", "name": "x", "attributes": {"fat": [2.5, float("inf")]}},
            [FieldError("attributes", "Numbers must be finite, not NaN or Infinity.")],
            id="infinite_attribute",
        ),
        pytest.param(
            {"sku": "a", "name": "x", "attributes": {"fat": float("nan")}},
            [FieldError("attributes", "Numbers must be finite, not NaN or Infinity.")],
            id="nan_attribute",
        ),
        pytest.param(
            {"sku": "a", "name": "x", "attributes": _nested(MAX_ATTRIBUTES_DEPTH + 1)},
            [FieldError("attributes", "Must not be nested more than 32 levels deep.")],
            id="attributes_too_deep",
        ),
        pytest.param(
            {"sku": "a", "name": "x", "attributes": _nested(900)},
            [FieldError("attributes", "Must not be nested more than 32 levels deep.")],
            id="attributes_deeper_than_recursion_limit",
        ),
        pytest.param(
            {"sku": "a", "name": "x", "price": 45.9},
            [FieldError("price", "Unknown field.")],
            id="unknown_field",
        ),
        pytest.param(
            ["sku", "name"],
            [FieldError("non_field", "Each product must be a JSON object.")],
            id="not_an_object",
        ),
    ],
)
def test_product_input_parse_rejects(data, expected):
    with pytest.raises(InvalidProductInput) as exc_info:
        product_input_parse(data)

    assert exc_info.value.errors == expected


def test_product_input_accepts_deepest_attributes():
    attributes = _nested(MAX_ATTRIBUTES_DEPTH)

    product = product_input_parse({"sku": "a", "name": "x", "attributes": attributes})

    assert product.attributes == attributes


def test_invalid_product_input_renders_as_api_field_errors():
    with pytest.raises(InvalidProductInput) as exc_info:
        product_input_parse({"name": "x", "weight": -1})

    error = exc_info.value
    assert isinstance(error, InvalidInput)
    assert error.detail == "The product is invalid."
    assert error.extra == {
        "fields": {
            "sku": ["This field is required."],
            "weight": ["Input should be greater than or equal to 0."],
        }
    }
