"""Stock of the reference merchant and the matching catalog rows for conversation tests."""

from conversations.models import Conversation
from conversations.tools import STATE_SEEN, STATE_SHOWN, ShownProduct

STORE_ID = "store-1"
SESSION_ID = "user-123"

STOCK = {
    "milk-001": {"price": 45.9, "in_stock": True, "stock": 25},
    "milk-002": {
        "price": 52.0,
        "in_stock": True,
        "stock": 10,
        "promo_price": 42.0,
        "promo_label": "-19%",
        "max_per_customer": 3,
    },
    "milk-003": {"price": 38.5, "in_stock": False, "stock": 0},
    "bread-01": {"price": 32.0, "in_stock": True, "stock": 5},
    "apple-kg": {"price": 14.95, "in_stock": True, "stock": 5},
}

# The same stock from a shop system that repeats the price in promo_price when there is no
# sale (milk-002) or sends a promotion above the price (milk-001). Neither is a discount.
STOCK_WITHOUT_DISCOUNTS = {
    **STOCK,
    "milk-001": {**STOCK["milk-001"], "promo_price": 49.9, "promo_label": "SALE"},
    "milk-002": {**STOCK["milk-002"], "promo_price": 52.0},
}

# Catalog rows as a merchant uploads them; the reference merchant reads name, unit and
# min_quantity from the same rows.
CATALOG = [
    {
        "sku": "milk-001",
        "name": "Молоко Lactel 2.5%",
        "brand": "Lactel",
        "category_path": "Молочні продукти > Молоко",
    },
    {
        "sku": "milk-002",
        "name": "Молоко Галичина 3.2%",
        "brand": "Галичина",
        "category_path": "Молочні продукти > Молоко",
    },
    {
        "sku": "milk-003",
        "name": "Молоко Яготинське 2.6%",
        "brand": "Яготинське",
        "category_path": "Молочні продукти > Молоко",
    },
    {
        "sku": "bread-01",
        "name": "Хліб Київхліб білий",
        "brand": "Київхліб",
        "category_path": "Хліб і випічка",
    },
    {
        "sku": "apple-kg",
        "name": "Яблуко Гала",
        "category_path": "Фрукти",
        "unit": "kg",
        "quantity_step": 0.1,
        "min_quantity": 0.3,
    },
]

# The same products as a search would have shown them, with the merchant's live prices.
MILK_LACTEL = ShownProduct(sku="milk-001", name="Молоко Lactel 2.5%", price=45.9, brand="Lactel")
MILK_GALYCHYNA = ShownProduct(
    sku="milk-002",
    name="Молоко Галичина 3.2%",
    price=52.0,
    promo_price=42.0,
    promo_label="-19%",
    brand="Галичина",
)
BREAD = ShownProduct(sku="bread-01", name="Хліб Київхліб білий", price=32.0, brand="Київхліб")
MILK_SOLD_OUT = ShownProduct(sku="milk-003", name="Молоко Яготинське 2.6%", price=38.5)
APPLES = ShownProduct(
    sku="apple-kg", name="Яблуко Гала", price=14.95, unit="kg", min_quantity=0.3, quantity_step=0.1
)


def show(conversation: Conversation, *products: ShownProduct) -> None:
    """Record ``products`` as shown, as a search in this conversation would."""
    conversation.state[STATE_SHOWN] = [product.to_state() for product in products]
    conversation.state[STATE_SEEN] = {product.sku: product.to_state() for product in products}
    conversation.save()
