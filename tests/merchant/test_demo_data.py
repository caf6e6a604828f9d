"""The committed demo data and the rules of demo/build_data.py."""

from __future__ import annotations

import csv
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

from merchant.store import load_catalog, load_stock

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = REPOSITORY_ROOT / "demo" / "data"


def load_build_module() -> ModuleType:
    path = REPOSITORY_ROOT / "demo" / "build_data.py"
    spec = importlib.util.spec_from_file_location("demo_build_data", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses look the module up by name while the module body runs.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


build_data = load_build_module()


@pytest.fixture(scope="module")
def catalog() -> list[dict]:
    lines = (DATA_DIR / "atb-catalog.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


@pytest.fixture(scope="module")
def stock() -> dict[str, dict]:
    return json.loads((DATA_DIR / "atb-stock.json").read_text(encoding="utf-8"))


def test_catalog_skus_sequential_and_priced(catalog: list[dict], stock: dict) -> None:
    skus = [product["sku"] for product in catalog]

    assert len(skus) == 507
    assert skus == [f"atb-{number:04d}" for number in range(1, 508)]
    assert set(stock) == set(skus)


def test_committed_files_load_in_merchant() -> None:
    assert len(load_stock(DATA_DIR / "atb-stock.json")) == 507
    assert len(load_catalog(DATA_DIR / "atb-catalog.jsonl")) == 507


def test_catalog_fields_consistent(catalog: list[dict]) -> None:
    allowed = {
        "sku", "name", "category_path", "brand", "description", "ingredients", "country",
        "unit", "quantity_step", "min_quantity", "weight", "volume", "image_url",
        "attributes", "barcode", "is_active",
    }  # fmt: skip
    for product in catalog:
        assert set(product) <= allowed, product["sku"]
        assert product["name"][0].isupper() or not product["name"][0].isalpha(), product["sku"]
        assert product["unit"] in {"pcs", "kg"}, product["sku"]
        if product["unit"] == "kg":
            assert product["quantity_step"] == 0.1, product["sku"]
            assert "weight" not in product, product["sku"]


def test_stock_shares_in_target_ranges(stock: dict) -> None:
    total = len(stock)
    out_of_stock = [item for item in stock.values() if not item["in_stock"]]
    promotions = [item for item in stock.values() if "promo_price" in item]
    limited = [item for item in stock.values() if "max_per_customer" in item]

    assert 0.03 <= len(out_of_stock) / total <= 0.08
    assert 0.05 <= len(promotions) / total <= 0.15
    assert 5 <= len(limited) <= 10
    assert all(item["stock"] == 0 for item in out_of_stock)


def test_promotions_cheaper_than_price(stock: dict) -> None:
    for sku, item in stock.items():
        if "promo_price" in item:
            discount = round((1 - item["promo_price"] / item["price"]) * 100)
            assert item["promo_price"] < item["price"], sku
            assert item["promo_label"] == f"-{discount}%", sku


def test_milk_shows_every_state(catalog: list[dict], stock: dict) -> None:
    milk = [p["sku"] for p in catalog if p["attributes"]["prod_group"] == "молоко"]

    in_stock_regular = [s for s in milk if stock[s]["in_stock"] and "promo_price" not in stock[s]]
    on_promotion = [s for s in milk if stock[s]["in_stock"] and "promo_price" in stock[s]]
    out_of_stock = [s for s in milk if not stock[s]["in_stock"]]
    assert len(in_stock_regular) >= 3
    assert len(on_promotion) >= 1
    assert len(out_of_stock) >= 1


HEADER = ["", "date", "retailer", "web.cat.name", "prod.group", "desc", "price", "metric.weight", "metric.un", "price.per.m.u"]  # fmt: skip
DATES = ["2023-09-07", "2023-09-14", "2023-09-21"]


# One entry per sample product: section, group, source name, pack size, pack unit, and the
# price on each of DATES (None when the product was not observed on that date).
SAMPLE_PRODUCTS = [
    # 25% below its earlier maximum on the last date: a promotion.
    ("398-moloko", "молоко", "молоко 0,9 кг тест 2,5%", "0.9", "kg", [40.0, 38.0, 30.0]),
    # The milk that the demo rule marks out of stock.
    ("398-moloko", "молоко", "молоко 0,9 кг молокія 3,2%", "0.9", "kg", [37.3, 37.3, 37.3]),
    # Listed on the second-to-last date, missing on the last one: out of stock.
    ("331-khlib", "хліб пшеничний", "хліб 400г agrola тест", "400", "g", [25.5, 25.5, None]),
    # Last seen on the first date only: in stock at that price.
    ("312-tsukor", "цукор", "цукор 1 кг", "1", "kg", [34.4, None, None]),
    # Loose fruit with a seasonal price drop: sold by weight, no promotion.
    ("288-frukti-yagodi", "фрукти, ягоди свіжі", "мандарини", "1", "kg", [80.0, 60.0, 40.0]),
    # A multipack whose source size is one item.
    ("402-siri-m-yaki", "сир м'який", "сир м'який 3х75г president камамбер", "75", "g", [None, None, 139.7]),
    # A 50% drop, which gets a per-customer limit of 2.
    ("425-kovbasa-varena", "ковбасні вироби", "ковбаса 300 г ковбасний ряд/розумний вибір куряча вар", "300", "g", [60.0, 60.0, 30.0]),
    # Latin "o" letters inside Cyrillic words.
    ("433-siri-tverdi", "сир твердий", "сир твердий 160г свoя лінія гoлландський 45%", "160", "g", [None, None, 58.9]),
    # Two rows on one date: the first one counts.
    ("289-ovochi", "цибуля", "цибуля ріпчаста", "1", "kg", [None, None, 11.95]),
    ("289-ovochi", "цибуля", "цибуля ріпчаста", "1", "kg", [None, None, 16.69]),
]  # fmt: skip


def row(
    date: str, section: str, group: str, name: str, price: float, weight: str, unit: str
) -> list:
    return ["0", date, "atb", section, group, name, str(price), weight, unit, str(price)]


def sample_rows() -> list[list]:
    rows = []
    for section, group, name, weight, unit, prices in SAMPLE_PRODUCTS:
        for date, price in zip(DATES, prices, strict=True):
            if price is not None:
                rows.append(row(date, section, group, name, price, weight, unit))
    return rows


@pytest.fixture
def built(tmp_path: Path) -> tuple[dict[str, dict], dict[str, dict], Path]:
    csv_path = tmp_path / "sample.csv"
    with csv_path.open("w", encoding="utf-8", newline="") as csv_file:
        writer = csv.writer(csv_file)
        writer.writerow(HEADER)
        writer.writerows(sample_rows())

    out_dir = tmp_path / "out"
    assert build_data.main([str(csv_path), "--out-dir", str(out_dir)]) == 0

    lines = (out_dir / "atb-catalog.jsonl").read_text(encoding="utf-8").splitlines()
    by_name = {json.loads(line)["name"]: json.loads(line) for line in lines}
    stock = json.loads((out_dir / "atb-stock.json").read_text(encoding="utf-8"))
    return by_name, stock, csv_path


def test_build_promotion(built: tuple) -> None:
    catalog, stock, _ = built

    entry = stock[catalog["Молоко 0,9 кг тест 2,5%"]["sku"]]

    assert entry == {
        "price": 40.0,
        "in_stock": True,
        "stock": entry["stock"],
        "promo_price": 30.0,
        "promo_label": "-25%",
    }
    assert 3 <= entry["stock"] <= 40


def test_build_demo_milk_out_of_stock(built: tuple) -> None:
    catalog, stock, _ = built

    entry = stock[catalog["Молоко 0,9 кг молокія 3,2%"]["sku"]]

    assert entry == {"price": 37.3, "in_stock": False, "stock": 0}


def test_build_stock_gap_out_of_stock(built: tuple) -> None:
    catalog, stock, _ = built

    entry = stock[catalog["Хліб 400г agrola тест"]["sku"]]

    assert entry == {"price": 25.5, "in_stock": False, "stock": 0}


def test_build_long_gone_product_in_stock(built: tuple) -> None:
    catalog, stock, _ = built

    entry = stock[catalog["Цукор 1 кг"]["sku"]]

    assert entry["in_stock"] is True
    assert entry["price"] == 34.4
    assert catalog["Цукор 1 кг"]["unit"] == "pcs"
    assert catalog["Цукор 1 кг"]["weight"] == 1000


def test_build_loose_fruit_by_weight(built: tuple) -> None:
    catalog, stock, _ = built
    product = catalog["Мандарини"]

    assert product["unit"] == "kg"
    assert product["quantity_step"] == 0.1
    assert product["min_quantity"] == 0.1
    assert "weight" not in product
    assert product["description"] == "Фрукти, ягоди свіжі. Продається на вагу, ціна за 1 кг."
    assert stock[product["sku"]]["price"] == 40.0
    assert "promo_price" not in stock[product["sku"]]


def test_build_multipack_weight(built: tuple) -> None:
    catalog, _, _ = built

    product = catalog["Сир м'який 3х75г president камамбер"]

    assert product["weight"] == 225
    assert product["brand"] == "President"


def test_build_deep_discount_limited(built: tuple) -> None:
    catalog, stock, _ = built
    product = catalog["Ковбаса 300 г ковбасний ряд/розумний вибір куряча вар"]

    assert product["brand"] == "Ковбасний ряд"
    assert product["category_path"] == "Ковбаси та м'ясні делікатеси > Ковбаса варена"
    assert stock[product["sku"]]["max_per_customer"] == 2
    assert stock[product["sku"]]["promo_label"] == "-50%"


def test_build_fixes_mixed_script_words(built: tuple) -> None:
    catalog, _, _ = built

    product = catalog["Сир твердий 160г своя лінія голландський 45%"]

    assert product["brand"] == "Своя лінія"
    assert product["category_path"] == "Сири > Сири тверді > Сир твердий"


def test_build_first_row_of_a_date_wins(built: tuple) -> None:
    catalog, stock, _ = built

    assert stock[catalog["Цибуля ріпчаста"]["sku"]]["price"] == 11.95


def test_build_skus_sorted_by_section_then_name(built: tuple) -> None:
    catalog, _, _ = built

    skus = {product["name"]: product["sku"] for product in catalog.values()}

    assert skus["Мандарини"] == "atb-0001"
    assert skus["Молоко 0,9 кг молокія 3,2%"] < skus["Молоко 0,9 кг тест 2,5%"]


def test_build_output_deterministic(built: tuple, tmp_path: Path) -> None:
    _, _, csv_path = built
    first, second = tmp_path / "first", tmp_path / "second"

    build_data.main([str(csv_path), "--out-dir", str(first)])
    build_data.main([str(csv_path), "--out-dir", str(second)])

    for name in ("atb-catalog.jsonl", "atb-stock.json"):
        assert (first / name).read_bytes() == (second / name).read_bytes()


def test_build_unknown_section_rejected(tmp_path: Path) -> None:
    csv_path = tmp_path / "sample.csv"
    with csv_path.open("w", encoding="utf-8", newline="") as csv_file:
        writer = csv.writer(csv_file)
        writer.writerow(HEADER)
        writer.writerow(row(DATES[0], "999-new", "молоко", "молоко", 1.0, "1", "kg"))

    with pytest.raises(ValueError, match="999-new"):
        build_data.read_products(csv_path)
