"""Response validation: invalid items are dropped one by one, broken responses fail."""

from __future__ import annotations

import json
import math

import pytest

from tests.webhooks.behaviours import json_reply, point_webhooks_at, raw_reply
from webhooks.calls import response_json
from webhooks.dispatch import (
    CartAction,
    FailureReason,
    LiveProduct,
    cart_change,
    cart_fetch,
    products_fetch,
)
from webhooks.models import WebhookDelivery
from webhooks.schemas import InvalidResponse, parse_cart, parse_cart_get, parse_products

VALID = {"sku": "a", "price": 10.5, "in_stock": True}


@pytest.mark.parametrize(
    ("_case", "item", "reason"),
    [
        ("missing sku", {"price": 1, "in_stock": True}, "sku: Field required"),
        ("missing price", {"sku": "a", "in_stock": True}, "price: Field required"),
        ("missing in_stock", {"sku": "a", "price": 1}, "in_stock: Field required"),
        ("sku not a string", {**VALID, "sku": 7}, "sku: Input should be a valid string"),
        ("price as string", {**VALID, "price": "10"}, "price: Value error, must be a number"),
        ("price as bool", {**VALID, "price": True}, "price: Value error, must be a number"),
        ("price NaN", {**VALID, "price": math.nan}, "finite number of 0 or more"),
        ("price infinite", {**VALID, "price": math.inf}, "finite number of 0 or more"),
        ("negative price", {**VALID, "price": -1}, "finite number of 0 or more"),
        ("price too large", {**VALID, "price": 1e308}, "must be at most 1000000000"),
        ("price beyond float range", {**VALID, "price": 10**400}, "must be at most 1000000000"),
        ("promo beyond float range", {**VALID, "promo_price": 10**400}, "must be at most"),
        (
            "in_stock as string",
            {**VALID, "in_stock": "true"},
            "in_stock: Input should be a valid boolean",
        ),
        ("in_stock as int", {**VALID, "in_stock": 1}, "in_stock: Input should be a valid boolean"),
        ("negative promo", {**VALID, "promo_price": -2}, "finite number of 0 or more"),
        (
            "promo label not a string",
            {**VALID, "promo_label": 19},
            "promo_label: Input should be a valid string",
        ),
        ("item not an object", "a", "Input should be a valid dictionary"),
    ],
)
def test_invalid_product_item_is_dropped(_case, item, reason):
    parsed = parse_products({"products": [item, {**VALID, "sku": "b"}]}, requested_skus=["a", "b"])

    assert [product.sku for product in parsed.items] == ["b"]
    assert len(parsed.dropped) == 1
    assert parsed.dropped[0].startswith("item 0: ")
    assert reason in parsed.dropped[0]


def test_unrequested_and_duplicate_skus_are_dropped_first_wins():
    parsed = parse_products(
        {
            "products": [
                {**VALID, "price": 1},
                {**VALID, "sku": "zzz"},
                {**VALID, "price": 2},
            ]
        },
        requested_skus=["a"],
    )

    assert [(product.sku, product.price) for product in parsed.items] == [("a", 1.0)]
    assert parsed.dropped == [
        "item 1: sku 'zzz' was not requested",
        "item 2: duplicate sku 'a'",
    ]


@pytest.mark.parametrize(
    ("promo_price", "reason"),
    [
        (10.5, "promo_price 10.5 is not below price 10.5 once both are rounded to cents"),
        (11, "promo_price 11.0 is not below price 10.5 once both are rounded to cents"),
        (10.499, "promo_price 10.499 is not below price 10.5 once both are rounded to cents"),
    ],
    ids=["equal", "above", "equal in cents"],
)
def test_non_discount_promotion_keeps_regular_price(promo_price, reason):
    item = {**VALID, "promo_price": promo_price, "promo_label": "-0%"}

    parsed = parse_products({"products": [item, {**VALID, "sku": "b"}]}, requested_skus=["a", "b"])

    kept = [(item.sku, item.price, item.promo_price, item.promo_label) for item in parsed.items]
    assert kept == [("a", 10.5, None, None), ("b", 10.5, None, None)]
    assert parsed.dropped == []
    assert parsed.ignored_promotions == [f"item 0: {reason}"]


def test_dropped_item_promotion_is_not_reported_as_ignored():
    parsed = parse_products(
        {
            "products": [
                {**VALID, "promo_price": 9},
                {**VALID, "promo_price": 10.5},
                {**VALID, "sku": "zzz", "promo_price": 10.5},
            ]
        },
        requested_skus=["a"],
    )

    assert [(item.sku, item.promo_price) for item in parsed.items] == [("a", 9.0)]
    assert parsed.dropped == ["item 1: duplicate sku 'a'", "item 2: sku 'zzz' was not requested"]
    assert parsed.ignored_promotions == []


def test_one_cent_promotion_is_kept():
    parsed = parse_products({"products": [{**VALID, "promo_price": 10.49}]}, requested_skus=["a"])

    assert [(item.sku, item.price, item.promo_price) for item in parsed.items] == [
        ("a", 10.5, 10.49)
    ]
    assert parsed.dropped == []


def test_negative_zero_amounts_read_as_zero():
    # Kept as -0.0, a promotion read "-0.00 instead of 10.00" in replies.
    payload = json.loads(
        '{"products": [{"sku": "a", "price": 10, "in_stock": true, "promo_price": -0.0},'
        ' {"sku": "b", "price": -0.0, "in_stock": true}]}'
    )

    parsed = parse_products(payload, requested_skus=["a", "b"])

    amounts = [(item.sku, item.price, item.promo_price) for item in parsed.items]
    assert amounts == [("a", 10.0, 0.0), ("b", 0.0, None)]
    assert [math.copysign(1, item.price) for item in parsed.items] == [1, 1]
    assert math.copysign(1, parsed.items[0].promo_price) == 1
    assert parsed.dropped == []


def test_cart_get_negative_zero_price():
    parsed = parse_cart_get(
        json.loads('{"items": [{"sku": "a", "name": "A", "price": -0.0, "quantity": 1}]}')
    )

    assert [(line.sku, line.price) for line in parsed.items] == [("a", 0.0)]
    assert math.copysign(1, parsed.items[0].price) == 1
    assert parsed.dropped == []


def test_valid_product_keeps_promotion_and_ignores_extra_fields():
    parsed = parse_products(
        {
            "products": [
                {**VALID, "promo_price": 9, "promo_label": "-14%", "currency": "UAH"},
            ]
        },
        requested_skus=["a"],
    )

    [item] = parsed.items
    assert (item.price, item.promo_price, item.promo_label) == (10.5, 9.0, "-14%")
    assert parsed.dropped == []


@pytest.mark.parametrize(
    ("_case", "payload"),
    [
        ("list", [VALID]),
        ("missing products", {"items": []}),
        ("products not a list", {"products": {"a": VALID}}),
        ("null", None),
    ],
)
def test_products_response_of_wrong_shape_is_invalid(_case, payload):
    with pytest.raises(InvalidResponse, match="'products' array"):
        parse_products(payload, requested_skus=["a"])


@pytest.mark.parametrize(
    ("_case", "payload"),
    [
        ("list", [{"ok": True}]),
        ("missing ok", {"reason": "x"}),
        ("ok as string", {"ok": "true"}),
        ("ok as int", {"ok": 1}),
        ("ok null", {"ok": None}),
        ("reason not a string", {"ok": False, "reason": 5}),
        ("string", "ok"),
    ],
)
def test_cart_response_must_be_object_with_boolean_ok(_case, payload):
    with pytest.raises(InvalidResponse):
        parse_cart(payload)


def test_cart_response_keeps_reason():
    assert parse_cart({"ok": False, "reason": "max_3_per_customer"}).reason == (
        "max_3_per_customer"
    )


@pytest.mark.parametrize(
    ("_case", "item"),
    [
        ("missing name", {"sku": "a", "price": 1, "quantity": 1}),
        ("zero quantity", {"sku": "a", "name": "A", "price": 1, "quantity": 0}),
        ("quantity rounding to 0", {"sku": "a", "name": "A", "price": 1, "quantity": 0.0004}),
        ("negative price", {"sku": "a", "name": "A", "price": -3, "quantity": 1}),
        ("quantity as string", {"sku": "a", "name": "A", "price": 1, "quantity": "2"}),
        ("quantity too large", {"sku": "a", "name": "A", "price": 1, "quantity": 1e12}),
        ("quantity beyond float range", {"sku": "a", "name": "A", "price": 1, "quantity": 10**400}),
        ("price beyond float range", {"sku": "a", "name": "A", "price": 10**400, "quantity": 1}),
        ("unit not a string", {"sku": "a", "name": "A", "price": 1, "quantity": 1, "unit": 3}),
        ("name with NUL", {"sku": "a", "name": "A\x00", "price": 1, "quantity": 1}),
        ("sku with unpaired surrogate", {"sku": "a\ud800", "name": "A", "price": 1, "quantity": 1}),
        ("unit with NUL", {"sku": "a", "name": "A", "price": 1, "quantity": 1, "unit": "k\x00g"}),
        (
            "brand with unpaired surrogate",
            {"sku": "a", "name": "A", "price": 1, "quantity": 1, "brand": "\udc00"},
        ),
    ],
)
def test_invalid_cart_get_item_is_dropped(_case, item):
    parsed = parse_cart_get(
        {"items": [item, {"sku": "b", "name": "B", "price": 2, "quantity": 1.5, "unit": "kg"}]}
    )

    assert [(line.sku, line.quantity, line.unit) for line in parsed.items] == [("b", 1.5, "kg")]
    assert len(parsed.dropped) == 1


# --- through the dispatcher ---------------------------------------------------------------

pytest_db = pytest.mark.django_db


@pytest_db
@pytest.mark.parametrize(
    ("_case", "content_type", "body"),
    [
        ("text/html", "text/html; charset=utf-8", b'{"products": []}'),
        ("text/plain", "text/plain", b'{"products": []}'),
        ("missing", None, b'{"products": []}'),
        ("json-ish vendor type", "application/vnd.api+json", b'{"products": []}'),
        ("not json", "application/json", b"products: none"),
        ("not utf-8", "application/json", b'{"products": ["\xff"]}'),
        ("utf-16", "application/json", '{"products": []}'.encode("utf-16")),
        ("encoded surrogate", "application/json", b'{"products": [], "x": "\xed\xa0\x80"}'),
        (
            "NaN constant",
            "application/json",
            b'{"products": [{"sku": "a", "price": NaN, "in_stock": true}]}',
        ),
        ("Infinity constant", "application/json", b'{"products": [], "x": Infinity}'),
    ],
)
def test_non_json_response_fails_the_call(
    tenant, local_webhooks, start_server, _case, content_type, body
):
    server = start_server(raw_reply(200, body, content_type))
    point_webhooks_at(tenant, server)

    result = products_fetch(tenant=tenant, skus=["a"], store_id="store-1")

    assert result.failure == FailureReason.ERROR
    assert result.available == {}
    record = WebhookDelivery.objects.get(tenant=tenant)
    assert record.outcome == "invalid_response"
    assert record.error_code in ("wrong_content_type", "invalid_json")
    assert len(server.log.requests) == 1


@pytest_db
def test_json_with_charset_is_accepted(tenant, local_webhooks, start_server):
    server = start_server(json_reply(200, {"products": [VALID]}, "application/json; charset=utf-8"))
    point_webhooks_at(tenant, server)

    result = products_fetch(tenant=tenant, skus=["a"], store_id="store-1")

    assert result.available == {"a": LiveProduct(sku="a", price=10.5, in_stock=True)}


@pytest_db
def test_byte_order_mark_is_accepted(tenant, local_webhooks, start_server):
    body = b"\xef\xbb\xbf" + json.dumps({"products": [VALID]}).encode()
    server = start_server(raw_reply(200, body))
    point_webhooks_at(tenant, server)

    result = products_fetch(tenant=tenant, skus=["a"], store_id="store-1")

    assert result.available == {"a": LiveProduct(sku="a", price=10.5, in_stock=True)}


@pytest_db
def test_products_schema_error_is_recorded(tenant, local_webhooks, start_server):
    server = start_server(json_reply(200, {"items": []}))
    point_webhooks_at(tenant, server)

    result = products_fetch(tenant=tenant, skus=["a"], store_id="store-1")

    assert result.failure == FailureReason.ERROR
    record = WebhookDelivery.objects.get(tenant=tenant)
    assert (record.outcome, record.error_code, record.status_code) == (
        "invalid_response",
        "invalid_schema",
        200,
    )


@pytest_db
def test_cart_ok_false_without_reason_reads_unknown(tenant, local_webhooks, start_server):
    server = start_server(json_reply(200, {"ok": False}))
    point_webhooks_at(tenant, server)

    result = cart_change(
        tenant=tenant, action=CartAction.CLEAR, store_id="store-1", session_id="shopper-1"
    )

    assert result.ok is False
    assert result.reason == "unknown"


@pytest_db
def test_cart_get_keeps_valid_lines(tenant, local_webhooks, start_server):
    server = start_server(
        json_reply(
            200,
            {
                "items": [
                    {"sku": "a", "name": "A", "price": 1, "quantity": 2},
                    {"sku": "b", "name": "B", "price": "free", "quantity": 1},
                ]
            },
        )
    )
    point_webhooks_at(tenant, server)

    result = cart_fetch(tenant=tenant, store_id="store-1", session_id="shopper-1")

    assert result.ok
    assert [(line.sku, line.quantity) for line in result.lines] == [("a", 2.0)]


@pytest_db
def test_price_beyond_float_range_drops_only_its_item(tenant, local_webhooks, start_server):
    # json.dumps writes 10**400 as an integer literal, as a merchant's JSON library may.
    body = {"products": [{**VALID, "price": 10**400}, {**VALID, "sku": "b"}]}
    server = start_server(raw_reply(200, json.dumps(body).encode()))
    point_webhooks_at(tenant, server)

    result = products_fetch(tenant=tenant, skus=["a", "b"], store_id="store-1")

    assert result.failure is None
    assert result.available == {"b": LiveProduct(sku="b", price=10.5, in_stock=True)}
    record = WebhookDelivery.objects.get(tenant=tenant)
    assert (record.outcome, record.status_code) == ("success", 200)


def test_long_promotion_label_is_dropped_but_the_product_kept():
    parsed = parse_products(
        {"products": [{**VALID, "promo_price": 9, "promo_label": "x" * 41}]},
        requested_skus=["a"],
    )

    assert [(item.sku, item.promo_price, item.promo_label) for item in parsed.items] == [
        ("a", 9.0, None)
    ]


@pytest.mark.parametrize("label", ["-19%\x00", "-19%\ud800"], ids=["NUL", "unpaired surrogate"])
def test_unstorable_promotion_label_is_dropped(label):
    # PostgreSQL stores neither NUL characters nor unpaired surrogates.
    parsed = parse_products(
        {"products": [{**VALID, "promo_price": 9, "promo_label": label}]},
        requested_skus=["a"],
    )

    assert [(item.sku, item.promo_price, item.promo_label) for item in parsed.items] == [
        ("a", 9.0, None)
    ]
    assert parsed.dropped == []


@pytest.mark.parametrize("sku", ["a\x00", "a\ud800"], ids=["NUL", "unpaired surrogate"])
def test_unstorable_product_sku_is_dropped(sku):
    parsed = parse_products({"products": [{**VALID, "sku": sku}]}, requested_skus=["a", sku])

    assert parsed.items == []
    assert len(parsed.dropped) == 1


@pytest.mark.parametrize(
    "reason", ["sold\x00out", "sold\udfffout"], ids=["NUL", "unpaired surrogate"]
)
def test_unstorable_cart_reason_reads_unknown(reason):
    response = parse_cart({"ok": False, "reason": reason})

    assert response.ok is False
    assert response.reason is None


def test_long_cart_reason_is_cut():
    response = parse_cart({"ok": False, "reason": "r" * 200_000})

    assert response.reason == "r" * 200


def test_cart_get_duplicate_sku_first_wins():
    parsed = parse_cart_get(
        {
            "items": [
                {"sku": "a", "name": "A", "price": 1, "quantity": 1},
                {"sku": "b", "name": "B", "price": 2, "quantity": 1},
                {"sku": "a", "name": "A again", "price": 3, "quantity": 2},
            ]
        }
    )

    assert [(line.sku, line.name, line.quantity) for line in parsed.items] == [
        ("a", "A", 1.0),
        ("b", "B", 1.0),
    ]
    assert parsed.dropped == ["item 2: duplicate sku 'a'"]


def test_cart_get_item_with_null_brand_is_kept():
    parsed = parse_cart_get(
        {"items": [{"sku": "a", "name": "A", "price": 1, "quantity": 1, "brand": None}]}
    )

    assert [(line.sku, line.brand) for line in parsed.items] == [("a", None)]
    assert parsed.dropped == []


def test_cart_get_item_with_an_overlong_name_is_dropped():
    parsed = parse_cart_get({"items": [{"sku": "a", "name": "n" * 501, "price": 1, "quantity": 1}]})

    assert parsed.items == []
    assert len(parsed.dropped) == 1


@pytest.mark.parametrize("promo_price", [1.0, 1.5, 0.999])
def test_cart_get_ignores_non_discount_promo(promo_price):
    parsed = parse_cart_get(
        {
            "items": [
                {"sku": "a", "name": "A", "price": 1, "quantity": 2, "promo_price": promo_price}
            ]
        }
    )

    assert [(line.sku, line.price, line.promo_price) for line in parsed.items] == [("a", 1.0, None)]
    assert parsed.dropped == []
    assert parsed.ignored_promotions == [
        f"item 0: promo_price {promo_price} is not below price 1.0 once both are rounded to cents"
    ]


def test_cart_get_promo_price_below_price_is_kept():
    parsed = parse_cart_get(
        {"items": [{"sku": "a", "name": "A", "price": 1, "quantity": 2, "promo_price": 0.5}]}
    )

    assert [(line.sku, line.price, line.promo_price) for line in parsed.items] == [("a", 1.0, 0.5)]
    assert parsed.ignored_promotions == []


def test_cart_get_quantity_rounding_to_gram():
    parsed = parse_cart_get(
        {
            "items": [
                {"sku": "a", "name": "A", "price": 1, "quantity": 0.0004, "unit": "kg"},
                {"sku": "b", "name": "B", "price": 2, "quantity": 0.0005, "unit": "kg"},
            ]
        }
    )

    assert [(line.sku, line.quantity) for line in parsed.items] == [("b", 0.0005)]
    assert parsed.dropped == [
        "item 0: quantity: Value error, must be at least 0.001 once rounded to 3 decimal places"
    ]


@pytest.mark.parametrize("sku", [" bread-01", "bread-01 ", "\tbread-01\n"])
def test_cart_get_sku_spaces_are_stripped(sku):
    # The agent's tools strip the SKU they get, so a spaced SKU could never be removed.
    parsed = parse_cart_get({"items": [{"sku": sku, "name": "Хліб", "price": 32, "quantity": 1}]})

    assert [line.sku for line in parsed.items] == ["bread-01"]
    assert parsed.dropped == []


def test_cart_get_spaced_duplicate_sku_is_dropped():
    parsed = parse_cart_get(
        {
            "items": [
                {"sku": "a", "name": "A", "price": 1, "quantity": 1},
                {"sku": " a ", "name": "A again", "price": 3, "quantity": 2},
            ]
        }
    )

    assert [(line.sku, line.name, line.quantity) for line in parsed.items] == [("a", "A", 1.0)]
    assert parsed.dropped == ["item 1: duplicate sku 'a'"]


def test_cart_get_blank_sku_is_dropped():
    parsed = parse_cart_get(
        {
            "items": [
                {"sku": "   ", "name": "A", "price": 1, "quantity": 1},
                {"sku": "b", "name": "B", "price": 2, "quantity": 1},
            ]
        }
    )

    assert [line.sku for line in parsed.items] == ["b"]
    assert parsed.dropped == ["item 0: sku: Value error, must not be empty or only whitespace"]


@pytest.mark.parametrize("name", ["", "   ", "\t\n"])
def test_cart_get_blank_name_reads_the_sku(name):
    parsed = parse_cart_get(
        {"items": [{"sku": "bread-01", "name": name, "price": 32, "quantity": 1}]}
    )

    assert [(line.sku, line.name) for line in parsed.items] == [("bread-01", "bread-01")]
    assert parsed.dropped == []


def test_cart_get_name_spaces_are_stripped():
    parsed = parse_cart_get(
        {"items": [{"sku": "bread-01", "name": "  Хліб  ", "price": 32, "quantity": 1}]}
    )

    assert [line.name for line in parsed.items] == ["Хліб"]


def test_cart_get_lengths_count_stripped_text():
    parsed = parse_cart_get(
        {
            "items": [
                {"sku": f" {'a' * 200} ", "name": f" {'n' * 500} ", "price": 1, "quantity": 1},
                {"sku": "b" * 201, "name": "B", "price": 1, "quantity": 1},
                {"sku": "c", "name": "n" * 501, "price": 1, "quantity": 1},
            ]
        }
    )

    assert [(line.sku, line.name) for line in parsed.items] == [("a" * 200, "n" * 500)]
    assert parsed.dropped == [
        "item 1: sku: Value error, must be at most 200 characters",
        "item 2: name: Value error, must be at most 500 characters",
    ]


@pytest.mark.parametrize(
    "body",
    [
        b'{"ok": false, "ok": true}',
        b'{"products": [{"sku": "a", "sku": "b", "price": 1, "in_stock": true}]}',
        b'{"items": [], "x": {"y": 1, "y": 1}}',
    ],
    ids=["top level", "in a list item", "same value twice"],
)
def test_response_json_rejects_repeated_names(body):
    with pytest.raises(ValueError, match="appears more than once in one object"):
        response_json(body)


def test_response_json_allows_names_across_objects():
    body = b'{"products": [{"sku": "a", "price": 1}, {"sku": "b", "price": 2}]}'

    assert response_json(body) == {"products": [{"sku": "a", "price": 1}, {"sku": "b", "price": 2}]}


def test_response_json_shortens_quoted_name():
    name = "n" * 5000
    body = f'{{"{name}": 1, "{name}": 2}}'.encode()

    with pytest.raises(ValueError, match="appears more than once") as raised:
        response_json(body)

    assert str(raised.value) == f"the name {'n' * 100!r} appears more than once in one object"
