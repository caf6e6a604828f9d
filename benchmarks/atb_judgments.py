"""Write the team-authored judgments of the ATB demo catalog to benchmarks/data.

Usage, from the repository root::

    python benchmarks/atb_judgments.py [--catalog demo/data/atb-catalog.jsonl]
        [--out benchmarks/data/atb-judgments.csv]

Each query below comes with grading rules written by the Vizochok team from the product
names and categories, without looking at any search result. A rule is (grade, category
pattern, name pattern); a product gets the highest grade of the rules it satisfies and 0
otherwise. Grades: 3 = what the query asks for, 2 = the right kind of product that misses
a detail of the query, 1 = related, 0 = irrelevant. Every product of the catalog is
judged for every query, so products missing from the file are judged irrelevant.

A query without rules is one the shop sells nothing for; the file lists it with an empty
docid, and the evaluation reports how many results it returns.
"""

import argparse
import csv
import json
import re
from pathlib import Path

Rule = tuple[int, str | None, str | None]

MILK = (3, r"> Молоко$", None)
KEFIR = (3, r"> Кефір$", None)
SOUR_CREAM = (3, r"> Сметана$", None)
BUTTER = (3, r"> Масло вершкове$", None)
MARGARINE_RELATED = (1, r"> Маргарин$", None)
HARD_CHEESE = (3, r"> Сир твердий$", None)
SOFT_CHEESE = (3, r"> Сир м'який$", None)
BREAD = (3, r"^Хліб і випічка", None)
BUCKWHEAT = (3, r"> Гречана крупа$", None)
RICE = (3, r"> Рисова крупа$", None)
SUGAR = (3, r"> Цукор$", None)
SALT = (3, r"> Сіль$", None)
OIL = (3, r"> Олія соняшникова$", None)
EGGS = (3, r"^Яйця$", None)
SAUSAGE = (3, r"^Ковбаси та м'ясні делікатеси > Ковбаса", None)
POTATO = (3, r"> Картопля$", None)
APPLES = (3, None, r"^Яблуко")
TEA = (3, r"> Чай$", None)
COFFEE = (3, r"> Кава мелена$", None)
CANDY = (3, r"> Цукерки$", None)
FLOUR = (3, r"> Борошно", None)
POULTRY = (3, r"> Птиця$", None)
CHICKEN_OFFAL = (2, r"> Субпродукти$", r"курчат")
PORK = (3, r"> Свинина$", None)
CUCUMBERS = (3, r"> Огірки$", None)
PICKLED_CUCUMBERS = (2, r"> Квашені овочі$", r"^Огірки")
ONION = (3, r"> Цибуля$", None)
FISH = (3, r"^Риба і морепродукти", None)
GREEN_TEA = [(3, r"> Чай$", r"зелений|green"), (2, r"> Чай$", r"зелен"), (1, r"> Чай$", None)]
BLACK_TEA = [(3, r"> Чай$", r"чорн|black"), (1, r"> Чай$", None)]
SAUSAGE_ALL = [SAUSAGE, (2, r"^Ковбаси", r"^Ковбаски")]

QUERIES: list[tuple[str, str, list[Rule]]] = [
    # Ukrainian.
    ("молоко", "uk", [MILK]),
    ("молоко 2,5%", "uk", [(3, r"> Молоко$", r"2,5 ?%"), (2, r"> Молоко$", None)]),
    ("кефір 1%", "uk", [(3, r"> Кефір$", r"(?<![\d,])1 ?%"), (2, r"> Кефір$", None)]),
    ("сметана 20%", "uk", [(3, r"> Сметана$", r"20 ?%"), (2, r"> Сметана$", None)]),
    ("масло вершкове", "uk", [BUTTER, MARGARINE_RELATED]),
    ("сир твердий", "uk", [HARD_CHEESE, (1, r"> Сир м'який$", None)]),
    ("бринза", "uk", [(3, None, r"бринза"), (1, r"> Сир м'який$", None)]),
    (
        "хліб житній",
        "uk",
        [(3, r"> Хліб житній$", None), (2, r"> Хліб", r"ж/пш|бородинськ"), (1, r"> Хліб", None)],
    ),
    ("гречка", "uk", [BUCKWHEAT]),
    ("рис", "uk", [RICE]),
    ("цукор", "uk", [SUGAR]),
    ("сіль", "uk", [SALT]),
    ("олія соняшникова", "uk", [OIL]),
    ("яйця", "uk", [EGGS]),
    ("ковбаса варена", "uk", [(3, r"> Ковбаса варена$", None), (1, r"^Ковбаси", None)]),
    ("картопля", "uk", [POTATO]),
    ("яблука", "uk", [APPLES]),
    ("чай зелений", "uk", GREEN_TEA),
    ("кава мелена", "uk", [COFFEE]),
    ("цукерки", "uk", [CANDY]),
    ("борошно", "uk", [FLOUR]),
    ("куряче філе", "uk", [(3, r"> Птиця$", r"^Філе"), (1, r"> Птиця$", None)]),
    ("свинина", "uk", [PORK]),
    ("оселедець", "uk", [(3, r"> Оселедеці$", None), (1, r"^Риба", None)]),
    ("помідори", "uk", [(3, r"> Помідори$", None)]),
    ("цибуля", "uk", [ONION]),
    ("огірки", "uk", [CUCUMBERS, PICKLED_CUCUMBERS]),
    ("банани", "uk", [(3, r"свіжі$", r"^Банан"), (1, None, r"^Банани сушені")]),
    ("сухофрукти", "uk", [(3, r"> Сухофрукти$", None)]),
    ("сметана president", "uk", [(3, r"> Сметана$", r"president"), (1, r"> Сметана$", None)]),
    ("яготинське молоко", "uk", [(3, r"> Молоко$", r"яготинськ"), (1, r"> Молоко$", None)]),
    ("кава jacobs", "uk", [(3, r"> Кава мелена$", r"jacobs"), (1, r"> Кава мелена$", None)]),
    ("молоко 2 кг", "uk", [(3, r"> Молоко$", r"\b2 кг"), (1, r"> Молоко$", None)]),
    # Ukrainian with typos.
    ("малоко", "uk-typo", [MILK]),
    ("кефiр", "uk-typo", [KEFIR]),
    ("ковбса", "uk-typo", [SAUSAGE]),
    ("олiя", "uk-typo", [OIL]),
    ("картопдя", "uk-typo", [POTATO]),
    ("сметанна", "uk-typo", [SOUR_CREAM]),
    ("цукерьки", "uk-typo", [CANDY]),
    # Russian.
    ("хлеб", "ru", [BREAD]),
    ("сыр", "ru", [HARD_CHEESE, SOFT_CHEESE]),
    ("яйца", "ru", [EGGS]),
    ("колбаса", "ru", SAUSAGE_ALL),
    ("сахар", "ru", [SUGAR]),
    ("курица", "ru", [POULTRY, CHICKEN_OFFAL]),
    ("подсолнечное масло", "ru", [OIL]),
    ("огурцы", "ru", [CUCUMBERS, PICKLED_CUCUMBERS]),
    ("мука", "ru", [FLOUR]),
    ("картошка", "ru", [POTATO]),
    ("лук", "ru", [ONION]),
    ("сметана 15%", "ru", [(3, r"> Сметана$", r"15 ?%"), (2, r"> Сметана$", None)]),
    ("рыба", "ru", [FISH]),
    ("чай черный", "ru", BLACK_TEA),
    ("сливочное масло", "ru", [BUTTER, MARGARINE_RELATED]),
    # English.
    ("milk", "en", [MILK]),
    ("cheese", "en", [HARD_CHEESE, SOFT_CHEESE]),
    ("eggs", "en", [EGGS]),
    ("bread", "en", [BREAD]),
    ("butter", "en", [BUTTER, MARGARINE_RELATED]),
    ("buckwheat", "en", [BUCKWHEAT]),
    ("rice", "en", [RICE]),
    ("sugar", "en", [SUGAR]),
    ("coffee", "en", [COFFEE]),
    ("chicken", "en", [POULTRY, CHICKEN_OFFAL]),
    ("apples", "en", [APPLES]),
    ("sour cream", "en", [SOUR_CREAM]),
    ("sunflower oil", "en", [OIL]),
    ("green tea", "en", GREEN_TEA),
    ("potatoes", "en", [POTATO]),
    ("sausage", "en", SAUSAGE_ALL),
    # Ukrainian and Russian words typed in Latin letters.
    ("moloko", "translit", [MILK]),
    ("kefir", "translit", [KEFIR]),
    ("hlib", "translit", [BREAD]),
    ("smetana", "translit", [SOUR_CREAM]),
    ("grechka", "translit", [BUCKWHEAT]),
    ("kovbasa", "translit", [SAUSAGE]),
    ("syr", "translit", [HARD_CHEESE, SOFT_CHEESE]),
    ("olia", "translit", [OIL]),
    ("tsukor", "translit", [SUGAR]),
    # Things the shop does not sell.
    ("iphone", "none", []),
    ("пиво", "none", []),
    ("памперси", "none", []),
    ("сік", "none", []),
    ("корм для котів", "none", []),
    ("шампунь", "none", []),
    ("beer", "none", []),
    ("juice", "none", []),
    ("зимние шины", "none", []),
]


def product_grade(product: dict[str, str], rules: list[Rule]) -> int:
    """Return the highest grade among the rules that ``product`` satisfies, or 0."""
    grade = 0
    for rule_grade, category_pattern, name_pattern in rules:
        if category_pattern and not re.search(category_pattern, product["category_path"]):
            continue
        if name_pattern and not re.search(name_pattern, product["name"], re.IGNORECASE):
            continue
        grade = max(grade, rule_grade)
    return grade


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--catalog", type=Path, default=Path("demo/data/atb-catalog.jsonl"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/data/atb-judgments.csv"))
    args = parser.parse_args()

    with args.catalog.open(encoding="utf-8") as file:
        products = [json.loads(line) for line in file if line.strip()]
    with args.out.open("w", encoding="utf-8", newline="") as file:
        file.write(
            "# Team-authored relevance judgments for demo/data/atb-catalog.jsonl, written by\n"
            "# benchmarks/atb_judgments.py. Products not listed for a query are irrelevant.\n"
        )
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow(["query", "docid", "rating", "group"])
        for query, group, rules in QUERIES:
            graded = [(product["sku"], product_grade(product, rules)) for product in products]
            positive = [(sku, grade) for sku, grade in graded if grade > 0]
            if rules and not any(grade >= 2 for _, grade in positive):
                raise SystemExit(f"Query {query!r} has rules but no product graded 2 or 3.")
            for sku, grade in positive:
                writer.writerow([query, sku, grade, group])
            if not positive:
                writer.writerow([query, "", "", group])


if __name__ == "__main__":
    main()
