from decimal import Decimal

from conversations.cart import (
    MAX_MODEL_CART_LINES,
    cart_for_model,
    cart_from_lines,
    cart_item,
    cart_parse,
    cart_snapshot,
    cart_total,
    cart_with_added,
    cart_with_quantity,
    cart_without,
    line_amount,
    quantity_number,
)
from webhooks.dispatch import CartLine


def milk(quantity: str = "1") -> dict:
    return cart_item(
        sku="milk-002",
        name="Молоко Галичина 3.2%",
        price=52.0,
        promo_price=42.0,
        brand="Галичина",
        quantity=Decimal(quantity),
    )


def bread(quantity: str = "1") -> dict:
    return cart_item(sku="bread-01", name="Хліб", price=32.0, quantity=Decimal(quantity))


def test_cart_item_has_every_field():
    assert milk("2") == {
        "sku": "milk-002",
        "name": "Молоко Галичина 3.2%",
        "price": 52.0,
        "promo_price": 42.0,
        "brand": "Галичина",
        "quantity": 2,
        "unit": "pcs",
    }


def test_total_uses_promo_price_when_set():
    assert cart_total([milk("2"), bread("1")]) == 116.0


def test_total_rounds_half_up_to_cents():
    apples = cart_item(
        sku="apple-kg", name="Яблуко", price=14.95, quantity=Decimal("0.3"), unit="kg"
    )

    # 14.95 × 0.3 = 4.485, which binary floats would round down to 4.48.
    assert cart_total([apples]) == 4.49


def test_total_is_the_sum_of_rounded_lines():
    bananas = cart_item(sku="banana", name="Банан", price=49.89, quantity=Decimal("1.5"), unit="kg")
    tomatoes = cart_item(
        sku="tomato", name="Томати", price=29.89, quantity=Decimal("0.5"), unit="kg"
    )

    # The lines are 74.835 → 74.84 and 14.945 → 14.95. Their exact sum, 89.78, would differ
    # by a cent from the sum of the amounts the shopper sees.
    assert line_amount(bananas) == Decimal("74.84")
    assert line_amount(tomatoes) == Decimal("14.95")
    assert cart_total([bananas, tomatoes]) == 89.79


def test_total_of_weight_goods_avoids_float_error():
    cheese = cart_item(sku="cheese", name="Сир", price=0.1, quantity=Decimal("3"))

    assert cart_total([cheese]) == 0.3


def test_added_item_is_appended():
    cart = cart_snapshot([bread()])

    updated = cart_with_added(cart, milk("2"))

    assert updated == {"items": [bread(), milk("2")], "total": 116.0}


def test_added_item_merges_quantity_and_takes_new_prices():
    cart = cart_snapshot([milk("1")])
    repriced = {**milk("2"), "price": 50.0, "promo_price": None}

    updated = cart_with_added(cart, repriced)

    assert updated["items"] == [{**repriced, "quantity": 3}]
    assert updated["total"] == 150.0


def test_added_weight_goods_sum_exactly():
    apples = cart_item(
        sku="apple-kg", name="Яблуко", price=10.0, quantity=Decimal("0.1"), unit="kg"
    )
    more = cart_item(sku="apple-kg", name="Яблуко", price=10.0, quantity=Decimal("0.2"), unit="kg")

    updated = cart_with_added(cart_snapshot([apples]), more)

    assert updated["items"][0]["quantity"] == 0.3
    assert updated["total"] == 3.0


def test_removed_item_leaves_the_others():
    cart = cart_snapshot([milk(), bread()])

    assert cart_without(cart, "milk-002") == {"items": [bread()], "total": 32.0}


def test_removing_an_absent_item_changes_nothing():
    cart = cart_snapshot([bread()])

    assert cart_without(cart, "milk-002") == cart


def test_quantity_update_sets_the_absolute_quantity():
    cart = cart_snapshot([milk("1"), bread("1")])

    updated = cart_with_quantity(cart, sku="milk-002", quantity=Decimal("3"))

    assert updated == {"items": [milk("3"), bread("1")], "total": 158.0}


def test_quantity_update_appends_fallback_line():
    cart = cart_snapshot([bread()])

    updated = cart_with_quantity(cart, sku="milk-002", quantity=Decimal("2"), fallback=milk("1"))

    assert updated == {"items": [bread(), milk("2")], "total": 116.0}


def test_quantity_update_without_line_or_fallback_changes_nothing():
    cart = cart_snapshot([bread()])

    assert cart_with_quantity(cart, sku="milk-002", quantity=Decimal("2")) == cart


def test_cart_from_lines_keeps_units_and_computes_total():
    lines = [
        CartLine(sku="bread-01", name="Хліб", price=32.0, quantity=1),
        CartLine(sku="apple-kg", name="Яблуко", price=14.95, quantity=0.5, unit="kg"),
    ]

    cart = cart_from_lines(lines)

    assert cart == {
        "items": [
            {
                "sku": "bread-01",
                "name": "Хліб",
                "price": 32.0,
                "promo_price": None,
                "brand": None,
                "quantity": 1,
                "unit": "pcs",
            },
            {
                "sku": "apple-kg",
                "name": "Яблуко",
                "price": 14.95,
                "promo_price": None,
                "brand": None,
                "quantity": 0.5,
                "unit": "kg",
            },
        ],
        "total": 39.48,
    }


def test_cart_parse_tolerates_empty_rows():
    assert cart_parse({}) == {"items": [], "total": 0.0}
    assert cart_parse(None) == {"items": [], "total": 0.0}


def test_quantity_number_writes_whole_numbers_as_integers():
    assert quantity_number(Decimal("2.000")) == 2
    assert isinstance(quantity_number(Decimal("2.000")), int)
    assert quantity_number(Decimal("0.5")) == 0.5
    assert quantity_number(Decimal("0.0004")) == 0


def numbered_cart(lines: int) -> dict:
    return cart_snapshot(
        cart_item(sku=f"sku-{number}", name=f"Товар {number}", price=10.0, quantity=1)
        for number in range(lines)
    )


def test_cart_for_model_keeps_short_cart():
    cart = numbered_cart(MAX_MODEL_CART_LINES)

    assert cart_for_model(cart) == cart


def test_cart_for_model_cuts_long_cart():
    cart = numbered_cart(MAX_MODEL_CART_LINES + 1)

    seen = cart_for_model(cart)

    assert seen["items"] == cart["items"][:MAX_MODEL_CART_LINES]
    assert seen["total"] == 510.0
    assert seen["line_count"] == MAX_MODEL_CART_LINES + 1
    assert seen["lines_not_listed"] == 1
    assert seen["note"] == (
        "This cart lists only 50 of its 51 lines, to keep the message short. Its total covers "
        "every line. To find or change a line that is not listed, search for the product by "
        "name."
    )
    assert len(cart["items"]) == MAX_MODEL_CART_LINES + 1


def test_cart_for_model_keeps_changed_line():
    cart = numbered_cart(MAX_MODEL_CART_LINES + 10)

    late = cart_for_model(cart, keep_sku="sku-55")
    early = cart_for_model(cart, keep_sku="sku-3")
    missing = cart_for_model(cart, keep_sku="sku-999")

    assert [item["sku"] for item in late["items"][-2:]] == ["sku-49", "sku-55"]
    assert late["lines_not_listed"] == 9
    assert early["items"] == cart["items"][:MAX_MODEL_CART_LINES]
    assert early["lines_not_listed"] == 10
    assert missing["lines_not_listed"] == 10
