"""Build the demo catalog and the merchant's stock file from ATB weekly price observations.

Usage: python demo/build_data.py PATH_TO_CSV [--out-dir DIR]

The input is `ua-foodset-prices-Sep-Oct-2023.csv` from the GitHub repository
myku3in/ua-market-basket (MIT licence, copyright 2023 myku3in): prices of 507 products of the
ATB supermarket chain, observed weekly on up to 7 dates in September and October 2023.
The output is deterministic: running the script again on the same CSV writes identical bytes.
demo/data/README.md describes the files and the rules used to derive them.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_OUT_DIR = Path(__file__).resolve().parent / "data"
CATALOG_FILE = "atb-catalog.jsonl"
STOCK_FILE = "atb-stock.json"

# Hand-written Ukrainian titles for the ATB catalogue section slugs in `web.cat.name`.
# A title may have several levels, joined with " > ".
SECTION_TITLES = {
    "286-kava-kakao": "Чай і кава > Кава, какао",
    "288-frukti-yagodi": "Овочі та фрукти > Фрукти, ягоди",
    "289-ovochi": "Овочі та фрукти > Овочі",
    "305-pripravi-ta-marinadi": "Бакалія > Приправи та маринади",
    "312-tsukor": "Бакалія > Цукор",
    "316-kislomolochni-napoi": "Молочні продукти > Кисломолочні напої",
    "318-chay": "Чай і кава > Чай",
    "321-tsukerki": "Кондитерські вироби > Цукерки",
    "323-riba-ta-moreprodukti": "Риба і морепродукти",
    "329-smetana": "Молочні продукти > Сметана",
    "331-khlib": "Хліб і випічка > Хліб",
    "341-boroshno": "Бакалія > Борошно",
    "344-m-yaso-okholodzhene": "М'ясо > М'ясо охолоджене",
    "348-makaronni-virobi": "Бакалія > Макаронні вироби",
    "381-yaytsya-kuryachi-perepelini": "Яйця",
    "395-krupi": "Бакалія > Крупи",
    "398-moloko": "Молочні продукти > Молоко",
    "402-siri-m-yaki": "Сири > Сири м'які",
    "403-kovbasa-sirov-yalena-sirokopchena": (
        "Ковбаси та м'ясні делікатеси > Ковбаса сиров'ялена, сирокопчена"
    ),
    "408-inshi-m-yasni-virobi": "Ковбаси та м'ясні делікатеси > Інші м'ясні вироби",
    "414-maslo-i-margarin": "Молочні продукти > Масло і маргарин",
    "419-subprodukti": "М'ясо > Субпродукти",
    "425-kovbasa-varena": "Ковбаси та м'ясні делікатеси > Ковбаса варена",
    "428-kovbasa-vareno-kopchena-napivkopchena": (
        "Ковбаси та м'ясні делікатеси > Ковбаса варено-копчена, напівкопчена"
    ),
    "433-siri-tverdi": "Сири > Сири тверді",
    "442-riba-solona": "Риба і морепродукти > Риба солона",
    "446-gorikhi-sukhofrukti": "Бакалія > Горіхи, сухофрукти",
    "468-solinnya-salati": "Консервація > Соління, салати",
    "olia-ta-ocet": "Бакалія > Олія та оцет",
}

# Consumer-basket groups that are broader than the section they sit in, so they are not
# appended to the category path ("Ковбаса варена > Ковбасні вироби" would read backwards).
BROAD_GROUPS = frozenset({"ковбасні вироби", "кондитерські вироби"})

# Fresh fruit and vegetables follow the season, so a price drop there is not a promotion.
SEASONAL_SECTIONS = frozenset({"288-frukti-yagodi", "289-ovochi"})

# Brands that occur in the product names, as (pattern, display name). A pattern matches whole
# words of the normalised lower-case name. When several brands match, the leftmost one wins,
# so "м'ясна лавка/своя лінія" gives "М'ясна лавка". Names such as "чемпіон" (also an apple
# variety) or "україна" (also a country) are left out because they are not reliable brands.
BRANDS = (
    ("своя лінія", "Своя лінія"),
    ("розумний вибір", "Розумний вибір"),
    ("м'ясна лавка", "М'ясна лавка"),
    ("ковбасний ряд", "Ковбасний ряд"),
    ("de luxe foods & goods", "De Luxe Foods & Goods"),
    ("de luxe f&g", "De Luxe Foods & Goods"),
    ("хуторок", "Хуторок"),
    ("хмельницьк-млин", "Хмельницьк-Млин"),
    ("яготинське", "Яготинське"),
    ("яготинський", "Яготинське"),
    ("яготинська", "Яготинське"),
    ("галичина", "Галичина"),
    ("молокія", "Молокія"),
    ("простонаше", "Простонаше"),
    ("простоквашино", "Простоквашино"),
    ("злагода", "Злагода"),
    ("ферма", "Ферма"),
    ("фермерські традиції", "Фермерські традиції"),
    ("щоденний збір", "Щоденний збір"),
    ("president", "President"),
    ("комо", "Комо"),
    ("білоцерківське", "Білоцерківське"),
    ("дари карпат", "Дари Карпат"),
    ("звенигора", "Звенигора"),
    ("пирятин", "Пирятин"),
    ("золотий резерв", "Золотий резерв"),
    ("карпатська легенда", "Карпатська легенда"),
    ("dziugas", "Dziugas"),
    ("lazur", "Lazur"),
    ("steffel", "Steffel"),
    ("premialle", "Premialle"),
    ("запорізький", "Запорізький"),
    ("ambassador", "Ambassador"),
    ("кава зі львова", "Кава зі Львова"),
    ("fort", "Fort"),
    ("jacobs", "Jacobs"),
    ("чорна карта", "Чорна карта"),
    ("mala czarna", "Mala Czarna"),
    ("reeva", "Reeva"),
    ("kamis", "Kamis"),
    ("кухарек", "Кухарек"),
    ("iris", "Iris"),
    ("pripravka", "Приправка"),
    ("приправка", "Приправка"),
    ("любисток", "Любисток"),
    ("idelia", "Idelia"),
    ("emekci tuz", "Emekci Tuz"),
    ("tuncer tuz", "Tuncer Tuz"),
    ("sherlock secrets", "Sherlock Secrets"),
    ("sherlock sekrets", "Sherlock Secrets"),
    ("мономах", "Мономах"),
    ("minutka", "Minutka"),
    ("tea moments", "Tea Moments"),
    ("loyd", "Loyd"),
    ("lovare", "Lovare"),
    ("tryppilian sun", "Tryppilian Sun"),
    ("тет", "ТЕТ"),
    ("batik", "Batik"),
    ("edems", "Edems"),
    ("за динамо", "За Динамо"),
    ("rodzinna", "Rodzinna"),
    ("рошен", "Рошен"),
    ("vale", "Vale"),
    ("авк", "АВК"),
    ("жако", "Жако"),
    ("житомирські ласощі", "Житомирські ласощі"),
    ("золотий запас", "Золотий запас"),
    ("конті", "Конті"),
    ("лукас", "Лукас"),
    ("тузя", "Тузя"),
    ("norven", "Norven"),
    ("master fish", "Master Fish"),
    ("veladis", "Veladis"),
    ("водний світ", "Водний світ"),
    ("kramline", "Kramline"),
    ("agrola", "Agrola"),
    ("кристинопіль", "Кристинопіль"),
    ("теремно", "Теремно"),
    ("агробізнес", "Агробізнес"),
    ("чебатурочка", "Чебатурочка"),
    ("наша ряба", "Наша Ряба"),
    ("глобино", "Глобино"),
    ("епікур", "Епікур"),
    ("добров", "Добров"),
    ("maestro", "Maestro"),
    ("costa brava", "Costa Brava"),
    ("тая", "Тая"),
    ("ярка", "Ярка"),
    ("квочка", "Квочка"),
    ("ясенсвіт", "Ясенсвіт"),
    ("trapeza", "Trapeza"),
    ("attuale", "Attuale"),
    ("аттуаль", "Attuale"),
    ("круп'яний двір", "Круп'яний двір"),
    ("almond", "Almond"),
    ("santa vita", "Santa Vita"),
    ("pepo", "Pepo"),
    ("activita", "Activita"),
    ("щедрий дар", "Щедрий дар"),
    ("bunge", "Bunge"),
    ("стожар", "Стожар"),
    ("майола", "Майола"),
    ("олейна", "Олейна"),
    ("чумак", "Чумак"),
    ("денко", "Денко"),
)

# Countries named in the product names themselves.
COUNTRIES = (
    ("польща", "Польща"),
    ("польша", "Польща"),
    ("литва", "Литва"),
    ("україна", "Україна"),
    ("азербайджан", "Азербайджан"),
    ("узбецька", "Узбекистан"),
)

# Promotion: the latest price is at least this fraction below the highest earlier price.
PROMO_MIN_DISCOUNT = 0.14
# The deepest promotions are limited per customer: max 2 from this discount, otherwise max 3.
LIMIT_MIN_DISCOUNT = 0.30
STRICT_LIMIT_MIN_DISCOUNT = 0.40

# The source has no stock gap among the milk products, but the demo needs one out-of-stock
# milk to show that unavailable products are hidden. This one product is marked by hand.
DEMO_OUT_OF_STOCK_NAMES = frozenset({"молоко 0,9 кг молокія 3,2%"})

STOCK_MIN = 3
STOCK_MAX = 40

# Latin letters that look like Cyrillic ones, and the reverse. Used only inside words that mix
# both scripts, such as "свoя" with a Latin "o", which would otherwise never match a search.
LATIN_TO_CYRILLIC = str.maketrans("aceiopxykmthbACEIOPXYKMTHB", "асеіорхукмтнвАСЕІОРХУКМТНВ")
CYRILLIC_TO_LATIN = str.maketrans("асеіорхукАСЕІОРХУК", "aceiopxykACEIOPXYK")
# Misspellings that the homoglyph tables cannot repair.
SPELLING_FIXES = {"моnомах": "мономах"}

WORD_RE = re.compile(r"[^\W\d_]+")
CYRILLIC_RE = re.compile(r"[\u0400-\u04ff]")
LATIN_RE = re.compile(r"[A-Za-z]")
# An explicit pack size in a name, such as "0,9 кг", "450г", "400 гр", "0,5л" or "10 шт".
# The lookahead keeps "1 гат" (first grade) from counting as "1 г".
PACK_SIZE_RE = re.compile(r"\d+(?:[.,]\d+)?\s*(?:кг|гр|г|мл|л|шт)(?![^\W\d_])")
# A multipack such as "3х75г": the source column contains the size of one item only.
MULTIPACK_RE = re.compile(r"(\d+)\s*[хx]\s*(\d+(?:[.,]\d+)?)\s*г(?![^\W\d_])")
PIECES_RE = re.compile(r"(\d+)\s*шт")


@dataclass
class Product:
    """One distinct product (`desc`) with its price on each observation date."""

    source_name: str
    section: str
    group: str
    metric_weight: str
    metric_unit: str
    prices: dict[str, float] = field(default_factory=dict)


def read_products(csv_path: Path) -> dict[str, Product]:
    """Read the CSV into products keyed by their source name.

    When a product has two rows on one date, the first row in the file is used.
    """
    products: dict[str, Product] = {}
    with csv_path.open(encoding="utf-8", newline="") as csv_file:
        for row in csv.DictReader(csv_file):
            name = row["desc"]
            product = products.get(name)
            if product is None:
                product = Product(
                    source_name=name,
                    section=row["web.cat.name"],
                    group=row["prod.group"],
                    metric_weight=row["metric.weight"],
                    metric_unit=row["metric.un"],
                )
                products[name] = product
            product.prices.setdefault(row["date"], float(row["price"]))

    unknown_sections = {product.section for product in products.values()} - SECTION_TITLES.keys()
    if unknown_sections:
        raise ValueError(
            f"No section title for {sorted(unknown_sections)}. Add them to SECTION_TITLES."
        )
    return products


def fix_mixed_script(word: str) -> str:
    """Rewrite a word that mixes Cyrillic and Latin letters in its majority script."""
    word = SPELLING_FIXES.get(word, word)
    cyrillic_count = len(CYRILLIC_RE.findall(word))
    latin_count = len(LATIN_RE.findall(word))
    if not cyrillic_count or not latin_count:
        return word
    if latin_count > cyrillic_count:
        return word.translate(CYRILLIC_TO_LATIN)
    return word.translate(LATIN_TO_CYRILLIC)


def normalise_name(source_name: str) -> str:
    """Clean a source name: one script per word, plain apostrophes and single spaces."""
    name = source_name.replace("\u2019", "'").replace("`", "'")
    name = WORD_RE.sub(lambda match: fix_mixed_script(match.group()), name)
    return " ".join(name.split())


def capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]


def find_brand(name: str) -> str | None:
    """Return the display name of the leftmost known brand in a normalised name."""
    lowered = name.lower()
    best: tuple[int, str] | None = None
    for pattern, display_name in BRANDS:
        match = re.search(rf"(?<![^\W_]){re.escape(pattern)}(?![^\W_])", lowered)
        if match and (best is None or match.start() < best[0]):
            best = (match.start(), display_name)
    return best[1] if best else None


def find_country(name: str) -> str | None:
    lowered = name.lower()
    for word, country in COUNTRIES:
        if re.search(rf"(?<![^\W_]){word}(?![^\W_])", lowered):
            return country
    return None


def is_sold_by_weight(product: Product) -> bool:
    """Return True for loose goods priced per kilogram and False for packaged goods.

    The source gives loose goods a pack size of 1 kg that does not appear in the name.
    """
    if product.metric_unit != "kg" or float(product.metric_weight) != 1:
        return False
    return not PACK_SIZE_RE.search(product.source_name)


def pack_size(product: Product) -> tuple[str, int] | None:
    """Return the pack size as ("weight", grams) or ("volume", millilitres), if known."""
    unit = product.metric_unit
    if unit not in {"g", "kg", "l"}:
        return None
    amount = float(product.metric_weight)
    if unit == "g":
        multipack = MULTIPACK_RE.search(product.source_name)
        if multipack and float(multipack.group(2).replace(",", ".")) == amount:
            amount *= int(multipack.group(1))
        return ("weight", round(amount))
    if unit == "kg":
        return ("weight", round(amount * 1000))
    return ("volume", round(amount * 1000))


def format_amount(amount: int, small_unit: str, large_unit: str) -> str:
    """Format grams or millilitres, switching to kg or l from 1000, with a decimal comma."""
    if amount < 1000:
        return f"{amount} {small_unit}"
    return f"{amount / 1000:g} {large_unit}".replace(".", ",")


def category_path(product: Product) -> str:
    """Join the section title and the consumer-basket group unless the group adds nothing."""
    levels = SECTION_TITLES[product.section].split(" > ")
    group = product.group.lower()
    if group not in BROAD_GROUPS and group not in {level.lower() for level in levels}:
        levels.append(capitalise(product.group))
    return " > ".join(levels)


def build_catalog_entry(sku: str, product: Product) -> dict[str, object]:
    """Build one ProductInput object with only the fields the source supports."""
    name = normalise_name(product.source_name)
    entry: dict[str, object] = {
        "sku": sku,
        "name": capitalise(name),
        "category_path": category_path(product),
    }
    brand = find_brand(name)
    if brand:
        entry["brand"] = brand

    description = [capitalise(product.group) + "."]
    size = pack_size(product)
    pieces = PIECES_RE.search(name)
    if is_sold_by_weight(product):
        description.append("Продається на вагу, ціна за 1 кг.")
    elif size and size[0] == "weight":
        description.append(f"Упаковка {format_amount(size[1], 'г', 'кг')}.")
    elif size:
        description.append(f"Упаковка {format_amount(size[1], 'мл', 'л')}.")
    elif pieces:
        description.append(f"Упаковка {pieces.group(1)} шт.")
    entry["description"] = " ".join(description)

    country = find_country(name)
    if country:
        entry["country"] = country

    if is_sold_by_weight(product):
        entry.update({"unit": "kg", "quantity_step": 0.1, "min_quantity": 0.1})
    else:
        entry.update({"unit": "pcs", "quantity_step": 1, "min_quantity": 1})
        if size:
            entry[size[0]] = size[1]

    entry["attributes"] = {"prod_group": product.group, "atb_section": product.section}
    entry["is_active"] = True
    return entry


def stock_quantity(sku: str) -> int:
    """Derive a stable stock level from the SKU, so reruns give the same numbers."""
    digest = hashlib.sha256(sku.encode("utf-8")).digest()
    return STOCK_MIN + int.from_bytes(digest[:4], "big") % (STOCK_MAX - STOCK_MIN + 1)


def build_stock_entry(sku: str, product: Product, dates: list[str]) -> dict[str, object]:
    """Derive price, promotion, stock and the per-customer limit from the price history."""
    last_date, previous_date = dates[-1], dates[-2]
    observed = sorted(product.prices)
    latest_price = product.prices[observed[-1]]

    # Listed on the previous collection date but missing on the last one: a stock gap.
    missing_now = last_date not in product.prices and previous_date in product.prices
    if missing_now or product.source_name in DEMO_OUT_OF_STOCK_NAMES:
        return {"price": latest_price, "in_stock": False, "stock": 0}

    entry: dict[str, object] = {
        "price": latest_price,
        "in_stock": True,
        "stock": stock_quantity(sku),
    }
    earlier_prices = [product.prices[date] for date in observed[:-1]]
    seasonal = product.section in SEASONAL_SECTIONS
    if observed[-1] != last_date or not earlier_prices or seasonal:
        return entry

    regular_price = max(earlier_prices)
    discount = 1 - latest_price / regular_price
    if discount < PROMO_MIN_DISCOUNT:
        return entry

    entry.update(
        {
            "price": regular_price,
            "promo_price": latest_price,
            "promo_label": f"-{round(discount * 100)}%",
        }
    )
    if discount >= STRICT_LIMIT_MIN_DISCOUNT:
        entry["max_per_customer"] = 2
    elif discount >= LIMIT_MIN_DISCOUNT:
        entry["max_per_customer"] = 3
    return entry


def assign_skus(products: Iterable[Product]) -> list[tuple[str, Product]]:
    """Number products as atb-0001, atb-0002, ... sorted by section slug and source name."""
    ordered = sorted(products, key=lambda product: (product.section, product.source_name))
    return [(f"atb-{index:04d}", product) for index, product in enumerate(ordered, start=1)]


def write_outputs(products: dict[str, Product], out_dir: Path) -> tuple[Path, Path]:
    dates = sorted({date for product in products.values() for date in product.prices})
    if len(dates) < 2:
        raise ValueError("The CSV needs observations on at least two dates")

    numbered = assign_skus(products.values())
    catalog_lines = [
        json.dumps(build_catalog_entry(sku, product), ensure_ascii=False) + "\n"
        for sku, product in numbered
    ]
    stock = {sku: build_stock_entry(sku, product, dates) for sku, product in numbered}

    out_dir.mkdir(parents=True, exist_ok=True)
    catalog_path = out_dir / CATALOG_FILE
    stock_path = out_dir / STOCK_FILE
    catalog_path.write_text("".join(catalog_lines), encoding="utf-8", newline="\n")
    stock_path.write_text(
        json.dumps(stock, ensure_ascii=False, indent=1) + "\n", encoding="utf-8", newline="\n"
    )
    return catalog_path, stock_path


def summarise(catalog_path: Path, stock_path: Path) -> str:
    stock = json.loads(stock_path.read_text(encoding="utf-8"))
    out_of_stock = sum(1 for item in stock.values() if not item["in_stock"])
    promotions = sum(1 for item in stock.values() if "promo_price" in item)
    limited = sum(1 for item in stock.values() if "max_per_customer" in item)
    return (
        f"Wrote {len(stock)} products to {catalog_path} and {stock_path}: "
        f"{out_of_stock} out of stock, {promotions} on promotion, "
        f"{limited} with a per-customer limit"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv_path", type=Path, help="path to ua-foodset-prices-Sep-Oct-2023.csv")
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=DEFAULT_OUT_DIR,
        help="directory for the output files (default: demo/data next to this script)",
    )
    args = parser.parse_args(argv)

    if not args.csv_path.is_file():
        parser.error(f"CSV file not found: {args.csv_path}")
    products = read_products(args.csv_path)
    catalog_path, stock_path = write_outputs(products, args.out_dir)
    print(summarise(catalog_path, stock_path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
