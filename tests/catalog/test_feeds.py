"""Importing YML and Google Merchant Center product feeds."""

from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from catalog import feeds
from catalog.feeds import FeedError, FeedFormat, feed_format_detect, read_yml_feed
from catalog.importing import ImportFileError, catalog_import
from catalog.models import Product
from tests.catalog.helpers import DATA_DIR

pytestmark = pytest.mark.django_db


def _import(*args: str) -> tuple[str, str]:
    stdout, stderr = StringIO(), StringIO()
    call_command("import_catalog", *args, "--no-embed", stdout=stdout, stderr=stderr)
    return stdout.getvalue(), stderr.getvalue()


def _products(tenant) -> dict[str, Product]:
    return {product.sku: product for product in Product.objects.filter(tenant=tenant)}


def test_import_yml_feed(tenant):
    stdout, stderr = _import(str(DATA_DIR / "feed-yml.xml"), "--tenant", "shop-a")

    assert stdout == (
        "Imported feed-yml.xml into tenant 'shop-a': 7 rows.\n"
        "Created: 2, updated: 0, unchanged: 0, rejected: 5.\n"
        "Embedding skipped (--no-embed): 2 products still need an embedding.\n"
    )
    assert stderr == (
        "Line 40: rejected. Offer 'no-name': name: This field is required.\n"
        "Line 44: rejected. Offer 'lost-category': categoryId: Category '77' is not in the "
        "feed's <categories>.\n"
        "Line 48: rejected. Offer 'orphan': categoryId: Category '8' has a parent that is not "
        "in the feed's <categories>, or its parents form a cycle.\n"
        "Line 52: rejected. Offer 'kettle-1': picture: Enter an absolute http:// or https:// "
        "URL.\n"
        "Line 59: rejected. Offer without id: id: This field is required.\n"
    )
    products = _products(tenant)
    assert sorted(products) == ["buckwheat-1", "milk-1"]
    milk = products["milk-1"]
    assert milk.name == "Молоко Галичина 2,5% 0,9 л"
    assert milk.brand == "Галичина"
    assert milk.category_path == "Молочні продукти > Молоко > Молоко ультрапастеризоване"
    assert milk.description == "<p>Молоко ультрапастеризоване.</p>"
    assert milk.country == "Україна"
    assert milk.barcode == "4820000000017"
    assert milk.image_url == "https://shop.example/img/milk-1.jpg"
    assert milk.attributes == {"Жирність": "2,5 %", "Об’єм": "0,9 л", "vendorCode": "GL-0925"}
    assert milk.volume == 900.0
    assert milk.weight is None
    assert milk.is_active is True
    buckwheat = products["buckwheat-1"]
    assert buckwheat.name == "Крупа гречана"
    assert buckwheat.category_path == "Бакалія"
    assert buckwheat.attributes == {"Вага": "1 кг", "Колір": "коричневий, зелений"}
    assert buckwheat.weight == 1000.0
    # available="false" keeps the product active: stock comes from the products webhook.
    assert buckwheat.is_active is True


def test_import_feed_reactivates_listed_product(tenant):
    _import(str(DATA_DIR / "feed-google-rss.xml"), "--tenant", "shop-a")
    Product.objects.filter(tenant=tenant, sku="kefir-1").update(is_active=False)

    _import(str(DATA_DIR / "feed-google-rss.xml"), "--tenant", "shop-a")

    assert Product.objects.get(tenant=tenant, sku="kefir-1").is_active is True


def test_import_yml_vendor_model_name(tenant, tmp_path):
    path = tmp_path / "feed.xml"
    path.write_text(
        '<yml_catalog><shop><offers><offer id="k-1" type="vendor.model">'
        "<typePrefix>Електрочайник</typePrefix><vendor>Bosch</vendor><model>TWK 3A011</model>"
        '<param name="Вага" unit="см">22</param><param name="Маса">1,2 kg</param>'
        "</offer></offers></shop></yml_catalog>",
        encoding="utf-8",
    )

    catalog_import(tenant=tenant, path=path, embed=False)

    kettle = Product.objects.get(tenant=tenant, sku="k-1")
    assert kettle.name == "Електрочайник Bosch TWK 3A011"
    assert kettle.brand == "Bosch"
    assert kettle.attributes == {"Вага": "22 см", "Маса": "1,2 kg", "model": "TWK 3A011"}
    # "см" is no unit of weight, so the next weight parameter is used.
    assert kettle.weight == 1200.0


def test_import_yml_feed_in_windows_1251(tenant, tmp_path):
    path = tmp_path / "feed.xml"
    path.write_bytes(
        '<?xml version="1.0" encoding="windows-1251"?>\n'
        '<yml_catalog><shop><categories><category id="1">Олія</category></categories>'
        '<offers><offer id="oil-1"><categoryId>1</categoryId><name>Олія соняшникова Щедрий '
        "лан</name></offer></offers></shop></yml_catalog>".encode("cp1251")
    )

    catalog_import(tenant=tenant, path=path, embed=False)

    oil = Product.objects.get(tenant=tenant, sku="oil-1")
    assert oil.name == "Олія соняшникова Щедрий лан"
    assert oil.category_path == "Олія"


def test_import_yml_category_cycle(tenant, tmp_path):
    path = tmp_path / "feed.xml"
    path.write_text(
        '<yml_catalog><shop><categories><category id="1" parentId="2">А</category>'
        '<category id="2" parentId="1">Б</category></categories><offers>'
        '<offer id="x-1"><categoryId>1</categoryId><name>Ікс</name></offer>'
        '<offer id="y-1"><name>Ігрек</name></offer>'
        "</offers></shop></yml_catalog>",
        encoding="utf-8",
    )

    report = catalog_import(tenant=tenant, path=path, embed=False)

    assert [rejected.reason for rejected in report.rejected] == [
        "Offer 'x-1': categoryId: Category '1' has a parent that is not in the feed's "
        "<categories>, or its parents form a cycle."
    ]
    assert sorted(_products(tenant)) == ["y-1"]


def test_import_google_rss_feed(tenant):
    stdout, stderr = _import(str(DATA_DIR / "feed-google-rss.xml"), "--tenant", "shop-a")

    assert stdout == (
        "Imported feed-google-rss.xml into tenant 'shop-a': 3 rows.\n"
        "Created: 2, updated: 0, unchanged: 0, rejected: 1.\n"
        "Embedding skipped (--no-embed): 2 products still need an embedding.\n"
    )
    assert stderr == "Line 29: rejected. Item 'no-title': title: This field is required.\n"
    products = _products(tenant)
    assert sorted(products) == ["juice-1", "kefir-1"]
    kefir = products["kefir-1"]
    assert kefir.name == "Кефір Галичина 2,5% 0,9 кг"
    assert kefir.description == "Кефір із натурального молока."
    assert kefir.brand == "Галичина"
    assert kefir.barcode == "4820000000024"
    assert kefir.category_path == "Молочні продукти > Кефір"
    assert kefir.image_url == "https://shop.example/img/kefir-1.jpg"
    assert kefir.attributes == {
        "google_product_category": "Food, Beverages & Tobacco > Food Items > Dairy Products",
        "item_group_id": "kefir",
    }
    assert kefir.weight == 900.0
    # out_of_stock keeps the product active: stock comes from the products webhook.
    assert kefir.is_active is True
    juice = products["juice-1"]
    assert juice.name == "Сік Садочок яблучний 1 л"
    assert juice.description == "Сік прямого віджиму."
    assert juice.volume == 1000.0
    assert juice.attributes == {}


def test_import_google_atom_feed(tenant):
    report = catalog_import(tenant=tenant, path=DATA_DIR / "feed-google-atom.xml", embed=False)

    assert report.rows == 2
    assert report.created == 1
    assert [(rejected.line, rejected.reason) for rejected in report.rejected] == [
        (15, "Item 'water-1': g:image_link: Enter an absolute http:// or https:// URL.")
    ]
    bread = Product.objects.get(tenant=tenant, sku="bread-1")
    assert bread.name == "Хліб Київхліб Український 650 г"
    assert bread.description == "Житньо-пшеничний хліб."
    assert bread.brand == "Київхліб"
    assert bread.category_path == "Хліб і випічка > Хліб"
    assert bread.weight == 650.0


@pytest.mark.parametrize(
    ("file_name", "entity"),
    [
        ("feed-billion-laughs.xml", "lol"),
        ("feed-external-entity.xml", "secret"),
        ("feed-external-dtd.xml", "remote"),
    ],
)
def test_import_rejects_entity_declarations(tenant, file_name, entity):
    with pytest.raises(CommandError) as excinfo:
        _import(str(DATA_DIR / file_name), "--tenant", "shop-a")

    assert str(excinfo.value) == (
        f"The feed declares the entity {entity!r}. Entity declarations are rejected, because "
        "they can expand into huge text; remove the DTD's <!ENTITY> lines."
    )
    assert Product.objects.count() == 0


@pytest.mark.parametrize("file_format", ["yml", "google"])
def test_import_rejects_entity_declarations_with_format(tenant, file_format):
    path = DATA_DIR / (
        "feed-billion-laughs.xml" if file_format == "yml" else "feed-external-entity.xml"
    )

    with pytest.raises(CommandError, match="Entity declarations are rejected"):
        _import(str(path), "--tenant", "shop-a", "--format", file_format)

    assert Product.objects.count() == 0


def test_import_rejects_undeclared_entity(tenant, tmp_path):
    path = tmp_path / "feed.xml"
    path.write_text(
        '<yml_catalog><shop><offers><offer id="a-1"><name>&pwned;</name></offer>'
        "</offers></shop></yml_catalog>",
        encoding="utf-8",
    )

    with pytest.raises(ImportFileError) as excinfo:
        catalog_import(tenant=tenant, path=path, embed=False)

    assert excinfo.value.detail == (
        "The feed is not well-formed XML: undefined entity at line 1, column 50."
    )
    assert Product.objects.count() == 0


def test_import_html_entity_behind_external_dtd(tenant, tmp_path):
    path = tmp_path / "feed.xml"
    path.write_text(
        '<!DOCTYPE yml_catalog SYSTEM "shops.dtd">\n<yml_catalog><shop><offers>'
        '<offer id="a-1"><name>Молоко 1&nbsp;л &laquo;Ферма&raquo; &bogus;</name>'
        "<description><![CDATA[<p>Опис</p>]]>&amp;&nbsp;ще</description></offer>"
        '<offer id="b&x;2"><name>Кефір</name></offer></offers></shop></yml_catalog>',
        encoding="utf-8",
    )

    report = catalog_import(tenant=tenant, path=path, embed=False)

    assert report.rejected == []
    milk = Product.objects.get(tenant=tenant, sku="a-1")
    assert milk.name == "Молоко 1\xa0л «Ферма» &bogus;"
    assert milk.description == "<p>Опис</p>&\xa0ще"
    # expat drops the reference in an attribute value without reporting it.
    assert Product.objects.get(tenant=tenant, sku="b2").name == "Кефір"


def test_import_malformed_feed_writes_nothing(tenant, tmp_path, monkeypatch):
    monkeypatch.setattr(feeds, "_CHUNK_BYTES", 64)
    offers = "".join(f'<offer id="o-{n}"><name>Товар {n}</name></offer>' for n in range(20))
    path = tmp_path / "feed.xml"
    path.write_text(f"<yml_catalog><shop><offers>{offers}</shop>", encoding="utf-8")

    with pytest.raises(ImportFileError) as excinfo:
        catalog_import(tenant=tenant, path=path, embed=False)

    assert excinfo.value.detail == (
        "The feed is not well-formed XML: mismatched tag at line 1, column 930."
    )
    assert Product.objects.count() == 0


def test_feed_is_read_in_chunks(monkeypatch, tmp_path):
    monkeypatch.setattr(feeds, "_CHUNK_BYTES", 64)
    offers = "".join(f'<offer id="o-{n}"><name>Товар {n}</name></offer>' for n in range(20))
    path = tmp_path / "feed.xml"
    path.write_text(f"<yml_catalog><shop><offers>{offers}</shop>", encoding="utf-8")
    items = read_yml_feed(path=path)

    first = next(items)

    # The first offer is read before the parser reaches the broken end of the file.
    assert first.data == {"sku": "o-0", "name": "Товар 0"}
    with pytest.raises(FeedError):
        list(items)


def test_import_rejects_feed_over_size_limit(tenant, monkeypatch):
    monkeypatch.setattr(feeds, "MAX_FEED_BYTES", 1000)
    path = DATA_DIR / "feed-yml.xml"

    with pytest.raises(ImportFileError) as excinfo:
        catalog_import(tenant=tenant, path=path, file_format=None, embed=False)

    assert excinfo.value.detail == (
        f"feed-yml.xml is {path.stat().st_size} bytes, more than the limit of 1000 bytes for "
        "a feed; split the feed or import it as JSON Lines."
    )
    assert Product.objects.count() == 0


def test_import_rejects_offer_over_size_limit(tenant, tmp_path, monkeypatch):
    monkeypatch.setattr(feeds, "MAX_ITEM_BYTES", 200)
    path = tmp_path / "feed.xml"
    path.write_text(
        '<yml_catalog><shop><offers><offer id="big-1"><name>Великий</name>'
        f"<description>{'опис ' * 100}</description></offer>"
        '<offer id="small-1"><name>Малий</name></offer></offers></shop></yml_catalog>',
        encoding="utf-8",
    )

    report = catalog_import(tenant=tenant, path=path, embed=False)

    assert [rejected.reason for rejected in report.rejected] == [
        "Offer 'big-1': The offer is larger than 200 bytes."
    ]
    assert sorted(_products(tenant)) == ["small-1"]


def test_import_format_must_match_root(tenant):
    with pytest.raises(CommandError) as excinfo:
        _import(str(DATA_DIR / "feed-google-rss.xml"), "--tenant", "shop-a", "--format", "yml")

    assert str(excinfo.value) == "The root element is <rss>, not <yml_catalog>; check --format."
    assert Product.objects.count() == 0


def test_import_xml_of_unknown_root(tenant, tmp_path):
    path = tmp_path / "products.xml"
    path.write_text("<products><product/></products>", encoding="utf-8")

    with pytest.raises(CommandError) as excinfo:
        _import(str(path), "--tenant", "shop-a")

    assert str(excinfo.value) == (
        "Cannot tell the feed format from the root element <products>; expected "
        "<yml_catalog> (YML), <rss> or Atom <feed> (Google Merchant Center)."
    )


def test_import_feed_rejects_field_map(tenant):
    with pytest.raises(CommandError) as excinfo:
        _import(str(DATA_DIR / "feed-yml.xml"), "--tenant", "shop-a", "--map", "name=title")

    assert str(excinfo.value) == (
        "--map applies to CSV, JSON and JSON Lines files; a feed's fields are mapped as "
        "docs/catalog.md describes."
    )
    assert Product.objects.count() == 0


def test_import_feed_without_offers(tenant, tmp_path):
    path = tmp_path / "feed.xml"
    path.write_text("<yml_catalog><shop><offers/></shop></yml_catalog>", encoding="utf-8")

    with pytest.raises(ImportFileError) as excinfo:
        catalog_import(tenant=tenant, path=path, embed=False)

    assert excinfo.value.detail == (
        "feed.xml contains no products; expected at least one row or product object."
    )


def test_import_missing_feed(tenant, tmp_path):
    path = tmp_path / "missing.xml"

    with pytest.raises(ImportFileError) as excinfo:
        catalog_import(tenant=tenant, path=path, file_format=None, embed=False)

    assert excinfo.value.detail == f"File not found: {path}."


@pytest.mark.parametrize(
    ("file_name", "expected"),
    [
        ("feed-yml.xml", FeedFormat.YML),
        ("feed-google-rss.xml", FeedFormat.GOOGLE),
        ("feed-google-atom.xml", FeedFormat.GOOGLE),
    ],
)
def test_feed_format_detect(file_name: str, expected: FeedFormat):
    assert feed_format_detect(path=Path(DATA_DIR / file_name)) == expected


def _yml(categories: str, offers: str) -> str:
    return (
        f"<yml_catalog><shop><categories>{categories}</categories><offers>{offers}</offers>"
        "</shop></yml_catalog>"
    )


def test_import_yml_deep_category_chain(tenant, tmp_path):
    # Each category's parent is the one before it. Building every path from scratch took
    # time and memory quadratic in the depth.
    depth = 100_000
    categories = "".join(
        f'<category id="{n}" parentId="{n - 1 if n > 1 else ""}">К{n}</category>'
        for n in range(1, depth + 1)
    )
    offers = (
        '<offer id="shallow"><name>Мілко</name><categoryId>3</categoryId></offer>'
        f'<offer id="deep"><name>Глибоко</name><categoryId>{depth}</categoryId></offer>'
    )
    path = tmp_path / "feed.xml"
    path.write_text(_yml(categories, offers), encoding="utf-8")

    report = catalog_import(tenant=tenant, path=path, embed=False)

    assert [(rejected.line, rejected.reason) for rejected in report.rejected] == [
        (
            1,
            f"Offer 'deep': categoryId: The path of category '{depth}' is longer than 500 "
            "characters.",
        )
    ]
    assert Product.objects.get(tenant=tenant, sku="shallow").category_path == "К1 > К2 > К3"
    assert sorted(_products(tenant)) == ["shallow"]


def test_deep_chain_between_offers_stops_walk(tmp_path):
    # Every category comes after an offer, which clears the paths built so far, so each
    # offer walks up again. The walk stops at the path limit, so the deepest offers are
    # rejected after about 200 steps rather than walking all 20,000 levels.
    depth = 20_000
    pairs = "".join(
        f'<category id="{n}" parentId="{n - 1 if n > 1 else ""}">К{n}</category>'
        f'<offer id="o{n}"><name>Товар</name><categoryId>{n}</categoryId></offer>'
        for n in range(1, depth + 1)
    )
    path = tmp_path / "feed.xml"
    path.write_text(f"<yml_catalog><shop><offers>{pairs}</offers></shop></yml_catalog>")

    items = list(read_yml_feed(path=path))

    assert len(items) == depth
    assert items[1].data["category_path"] == "К1 > К2"
    kept = [item for item in items if item.error is None]
    assert all(len(item.data["category_path"]) <= 500 for item in kept)
    assert items[-1].error == (
        f"categoryId: The path of category '{depth}' is longer than 500 characters."
    )


def test_import_yml_category_path_at_length_limit(tenant, tmp_path):
    categories = (
        f'<category id="1">{"а" * 250}</category>'
        f'<category id="2" parentId="1">{"б" * 247}</category>'
        f'<category id="3" parentId="2">{"в" * 248}</category>'
    )
    offers = (
        '<offer id="fits"><name>Товар</name><categoryId>2</categoryId></offer>'
        '<offer id="too-long"><name>Товар</name><categoryId>3</categoryId></offer>'
    )
    path = tmp_path / "feed.xml"
    path.write_text(_yml(categories, offers), encoding="utf-8")

    report = catalog_import(tenant=tenant, path=path, embed=False)

    assert [rejected.reason for rejected in report.rejected] == [
        "Offer 'too-long': categoryId: The path of category '3' is longer than 500 characters."
    ]
    assert Product.objects.get(tenant=tenant, sku="fits").category_path == (
        f"{'а' * 250} > {'б' * 247}"
    )


def test_import_cut_off_feed_writes_nothing(tenant, tmp_path):
    path = tmp_path / "feed.xml"
    path.write_text(
        '<yml_catalog><shop><offers><offer id="a-1"><name>Молоко</name></offer>\n<offer id="a-2">'
        "<name>Кефі",
        encoding="utf-8",
    )

    with pytest.raises(ImportFileError) as excinfo:
        catalog_import(tenant=tenant, path=path, embed=False)

    assert excinfo.value.detail == (
        "The feed ends at line 2, column 27 before its root element is closed; the file may be "
        "cut off. Download or export it again."
    )
    assert Product.objects.count() == 0


@pytest.mark.parametrize("encoding", ["Shift_JIS", "UTF-7"])
def test_import_feed_in_multibyte_encoding(tenant, tmp_path, encoding):
    path = tmp_path / "feed.xml"
    path.write_text(
        f'<?xml version="1.0" encoding="{encoding}"?>\n'
        + _yml("", '<offer id="a-1"><name>Milk</name></offer>'),
        encoding="ascii",
    )

    with pytest.raises(CommandError) as excinfo:
        _import(str(path), "--tenant", "shop-a")

    assert str(excinfo.value) == (
        "The feed's encoding cannot be read (multi-byte encodings are not supported); save "
        "the feed as UTF-8 or windows-1251."
    )
    assert Product.objects.count() == 0


@pytest.mark.parametrize(
    "name",
    [
        "Молоко".encode("cp1251"),  # windows-1251 without an XML declaration
        b"Mi\x00lk",
    ],
)
def test_import_feed_with_invalid_bytes(tenant, tmp_path, name):
    path = tmp_path / "feed.xml"
    path.write_bytes(
        b'<yml_catalog><shop><offers><offer id="a-1"><name>'
        + name
        + b"</name></offer></offers></shop></yml_catalog>"
    )

    with pytest.raises(ImportFileError) as excinfo:
        catalog_import(tenant=tenant, path=path, embed=False)

    column = 52 if name.startswith(b"Mi") else 50
    assert excinfo.value.detail == (
        f"The feed is not well-formed XML: not well-formed (invalid token) at line 1, column "
        f"{column}. The cause may also be a character that XML does not allow, such as NUL, or "
        "a byte that is invalid in the feed's encoding: UTF-8 unless the XML declaration names "
        'another, such as <?xml version="1.0" encoding="windows-1251"?>.'
    )
    assert Product.objects.count() == 0


@pytest.mark.parametrize(
    ("feed", "tag", "line"),
    [
        (
            _yml(
                "",
                '<offer id="outer"><name>Зовнішній</name>\n'
                '<offer id="inner"><name>Внутрішній</name></offer></offer>',
            ),
            "offer",
            1,
        ),
        (
            _yml('<category id="1">Молочні\n<category id="2">Молоко</category></category>', ""),
            "category",
            1,
        ),
    ],
)
def test_import_nested_items_writes_nothing(tenant, tmp_path, feed, tag, line):
    path = tmp_path / "feed.xml"
    path.write_text(feed, encoding="utf-8")

    with pytest.raises(ImportFileError) as excinfo:
        catalog_import(tenant=tenant, path=path, embed=False)

    assert excinfo.value.detail == (
        f"The <{tag}> at line 2 is inside the <{tag}> of line {line}; they cannot be nested."
    )
    assert Product.objects.count() == 0


def test_import_google_names_in_any_case(tenant, tmp_path):
    path = tmp_path / "feed.xml"
    path.write_text(
        '<rss version="2.0" xmlns:g="http://base.google.com/ns/1.0"><channel><item>'
        "<g:ID>a-1</g:ID><title>Молоко</title><g:Brand>Галичина</g:Brand>"
        "<g:GTIN>4820000000017</g:GTIN><g:Product_Type>Молочні &gt; Молоко</g:Product_Type>"
        "<g:unit_pricing_MEASURE>900 ml</g:unit_pricing_MEASURE>"
        "</item></channel></rss>",
        encoding="utf-8",
    )

    report = catalog_import(tenant=tenant, path=path, embed=False)

    assert report.rejected == []
    milk = Product.objects.get(tenant=tenant, sku="a-1")
    assert (milk.name, milk.brand, milk.barcode, milk.category_path, milk.volume) == (
        "Молоко",
        "Галичина",
        "4820000000017",
        "Молочні > Молоко",
        900.0,
    )


def test_import_offer_with_deeply_nested_extra(tenant, tmp_path):
    depth = 100_000
    offers = f'<offer id="a-1"><name>Молоко</name><x>{"<a>" * depth}{"</a>" * depth}</x></offer>'
    path = tmp_path / "feed.xml"
    path.write_text(_yml("", offers), encoding="utf-8")

    report = catalog_import(tenant=tenant, path=path, embed=False)

    assert report.rejected == []
    assert Product.objects.get(tenant=tenant, sku="a-1").name == "Молоко"


def test_import_ignores_processing_instructions_and_xinclude(tenant, tmp_path):
    offers = (
        '<offer id="a-1"><name>Мо<?php echo 1; ?>локо</name>'
        '<description xmlns:xi="http://www.w3.org/2001/XInclude">Опис'
        '<xi:include href="file:///etc/passwd" parse="text"/></description></offer>'
    )
    path = tmp_path / "feed.xml"
    path.write_text(f'<?xml-stylesheet href="a.xsl"?>{_yml("", offers)}', encoding="utf-8")

    catalog_import(tenant=tenant, path=path, embed=False)

    milk = Product.objects.get(tenant=tenant, sku="a-1")
    assert (milk.name, milk.description) == ("Молоко", "Опис")
