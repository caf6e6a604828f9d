"""Product feeds in XML: YML (yml_catalog) and Google Merchant Center (RSS 2.0 or Atom).

The feed is parsed by expat in chunks, and only one offer or item at a time is kept as an
element tree, so the number of offers does not decide the memory used. The parser rejects
entity declarations, which closes entity expansion attacks (billion laughs), and it never
reads an external DTD or entity, because parameter entity parsing is off and external
entity references raise. A DOCTYPE without entity declarations, such as YML's
``<!DOCTYPE yml_catalog SYSTEM "shops.dtd">``, is accepted and its DTD is not read.

Behind such a DOCTYPE, expat passes over a reference to an undeclared entity (``&nbsp;``)
without an error, because the unread DTD might declare it. In text, the reference becomes
the character that HTML names so, or stays as written.
NOTE: in an attribute value, such as an offer's id, expat drops the reference without
reporting it, so ``id="a&x;b"`` is read as ``ab``.
"""

import html.entities
import re
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from pathlib import Path
from typing import Any, BinaryIO
from xml.etree.ElementTree import Element, TreeBuilder
from xml.parsers import expat

from django.db.models import CharField

from catalog.models import Product

# Files larger than this are rejected before parsing. The limit leaves room for feeds of
# several hundred megabytes.
MAX_FEED_BYTES = 1024 * 1024 * 1024
# An offer or item larger than this is rejected, which bounds the memory one of them takes.
MAX_ITEM_BYTES = 1024 * 1024
_CHUNK_BYTES = 1024 * 1024


def _category_path_max_length() -> int:
    model_field = Product._meta.get_field("category_path")
    assert isinstance(model_field, CharField)
    assert model_field.max_length is not None
    return model_field.max_length


# The maximum length of a category path that a product can store.
MAX_CATEGORY_PATH_LENGTH = _category_path_max_length()

GOOGLE_NAMESPACE = "http://base.google.com/ns/1.0"
ATOM_NAMESPACE = "http://www.w3.org/2005/Atom"
_GOOGLE_PREFIX = f"{{{GOOGLE_NAMESPACE}}}"
_ATOM_PREFIX = f"{{{ATOM_NAMESPACE}}}"


class FeedFormat(StrEnum):
    YML = "yml"
    GOOGLE = "google"


_FORMAT_BY_ROOT = {
    "yml_catalog": FeedFormat.YML,
    "rss": FeedFormat.GOOGLE,
    f"{_ATOM_PREFIX}feed": FeedFormat.GOOGLE,
}
_ROOT_NAMES = {"yml_catalog": "<yml_catalog>", "rss": "<rss>", f"{_ATOM_PREFIX}feed": "Atom <feed>"}


class FeedError(ValueError):
    """The feed cannot be imported at all; the message states the reason."""


@dataclass(frozen=True)
class FeedItem:
    """One offer or item, mapped to product fields, or the reason it cannot be read."""

    line: int
    label: str
    data: dict[str, Any]
    error: str | None = None


# The feed field that each product field is read from, for error messages.
YML_FIELD_NAMES = {
    "sku": "id",
    "name": "name",
    "brand": "vendor",
    "description": "description",
    "category_path": "categoryId",
    "country": "country_of_origin",
    "barcode": "barcode",
    "image_url": "picture",
    "attributes": "param",
    "weight": "param",
    "volume": "param",
}
GOOGLE_FIELD_NAMES = {
    "sku": "g:id",
    "name": "title",
    "brand": "g:brand",
    "description": "description",
    "category_path": "g:product_type",
    "barcode": "g:gtin",
    "image_url": "g:image_link",
    "attributes": "g:*",
    "weight": "g:unit_pricing_measure",
    "volume": "g:unit_pricing_measure",
}

# Category paths are joined like the rest of the catalog's, e.g. "Молочні продукти > Молоко".
CATEGORY_SEPARATOR = " > "


# --- Parsing ----------------------------------------------------------------------------------


class _RootFound(Exception):
    def __init__(self, tag: str) -> None:
        self.tag = tag


def _tag(name: str) -> str:
    # expat joins a namespace URI and a local name with the separator given to ParserCreate;
    # this returns ElementTree's "{uri}local" form.
    uri, separator, local = name.rpartition(" ")
    return f"{{{uri}}}{local}" if separator else name


def _reject_entity_declaration(entity_name: str, *args: Any) -> None:
    raise FeedError(
        f"The feed declares the entity {entity_name!r}. Entity declarations are rejected, "
        "because they can expand into huge text; remove the DTD's <!ENTITY> lines."
    )


def _reject_external_entity(*args: Any) -> int:
    raise FeedError("The feed refers to an external entity, which is never read.")


def _secure_parser() -> Any:
    parser = expat.ParserCreate(namespace_separator=" ")
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.EntityDeclHandler = _reject_entity_declaration
    parser.ExternalEntityRefHandler = _reject_external_entity
    parser.buffer_text = True
    return parser


class _ItemCollector:
    """Builds an element tree for each element whose tag is in ``item_tags``.

    Elements outside those are not kept. Once an element is larger than ``MAX_ITEM_BYTES``,
    nothing more of it is kept, and it is returned as built so far (its id usually comes
    first) and marked oversized.
    """

    def __init__(self, parser: Any, item_tags: frozenset[str]) -> None:
        self.parser = parser
        self.item_tags = item_tags
        self.done: list[tuple[int, Element, bool]] = []
        self.root: str | None = None
        self._builder: TreeBuilder | None = None
        self._item_tag = ""
        # For each open element of the item, whether it was passed to the builder.
        self._open: list[bool] = []
        self._start_line = 0
        self._start_byte = 0
        self._oversized = False
        parser.StartElementHandler = self.start
        parser.EndElementHandler = self.end
        parser.CharacterDataHandler = self.data
        parser.SkippedEntityHandler = self.skipped_entity

    def _keeping(self) -> bool:
        if self.parser.CurrentByteIndex - self._start_byte > MAX_ITEM_BYTES:
            self._oversized = True
        return not self._oversized

    def start(self, name: str, attributes: dict[str, str]) -> None:
        tag = _tag(name)
        if self.root is None:
            self.root = tag
        if self._builder is None:
            if tag not in self.item_tags:
                return
            self._item_tag = tag
            self._builder = TreeBuilder()
            self._start_line = self.parser.CurrentLineNumber
            self._start_byte = self.parser.CurrentByteIndex
            self._oversized = False
        elif tag == self._item_tag:
            # Its content would be read as part of the outer element, and it would be lost.
            local_name = tag.rpartition("}")[2]
            raise FeedError(
                f"The <{local_name}> at line {self.parser.CurrentLineNumber} is inside the "
                f"<{local_name}> of line {self._start_line}; they cannot be nested."
            )
        keep = self._keeping()
        self._open.append(keep)
        if keep:
            self._builder.start(tag, {_tag(key): value for key, value in attributes.items()})

    def end(self, name: str) -> None:
        if self._builder is None:
            return
        if self._open.pop():
            self._builder.end(_tag(name))
        if not self._open:
            self.done.append((self._start_line, self._builder.close(), self._oversized))
            self._builder = None

    def data(self, text: str) -> None:
        if self._builder is not None and self._keeping():
            self._builder.data(text)

    def skipped_entity(self, name: str, is_parameter_entity: bool) -> None:
        # Behind a DOCTYPE that names an external DTD, which is never read, expat skips a
        # reference to an entity that nothing declares. Exporters mean HTML's entities, so
        # the reference becomes HTML's character (&nbsp; a no-break space), or stays as text.
        if not is_parameter_entity:
            self.data(html.entities.html5.get(f"{name};", f"&{name};"))


def _open(path: Path) -> BinaryIO:
    size = path.stat().st_size
    if size > MAX_FEED_BYTES:
        raise FeedError(
            f"{path.name} is {size} bytes, more than the limit of {MAX_FEED_BYTES} bytes for "
            "a feed; split the feed or import it as JSON Lines."
        )
    return path.open("rb")


_ENDED_EARLY = frozenset(
    {
        expat.errors.codes[expat.errors.XML_ERROR_NO_ELEMENTS],
        expat.errors.codes[expat.errors.XML_ERROR_UNCLOSED_TOKEN],
        expat.errors.codes[expat.errors.XML_ERROR_UNCLOSED_CDATA_SECTION],
        expat.errors.codes[expat.errors.XML_ERROR_PARTIAL_CHAR],
    }
)
_INVALID_TOKEN = expat.errors.codes[expat.errors.XML_ERROR_INVALID_TOKEN]


def _parse_error(exc: expat.ExpatError, *, at_end: bool) -> FeedError:
    """Return the error for ``exc``, which the end of the file raised when ``at_end`` is true."""
    where = f"at line {exc.lineno}, column {exc.offset + 1}"
    if at_end and exc.code in _ENDED_EARLY:
        return FeedError(
            f"The feed ends {where} before its root element is closed; the file may be cut "
            "off. Download or export it again."
        )
    message = f"The feed is not well-formed XML: {expat.ErrorString(exc.code)} {where}."
    if exc.code == _INVALID_TOKEN:
        # expat raises this for bytes that its encoding cannot decode, too.
        message += (
            " The cause may also be a character that XML does not allow, such as NUL, or a "
            "byte that is invalid in the feed's encoding: UTF-8 unless the XML declaration "
            'names another, such as <?xml version="1.0" encoding="windows-1251"?>.'
        )
    return FeedError(message)


def _parse(parser: Any, chunk: bytes) -> None:
    """Feed ``chunk`` to ``parser``; an empty chunk ends the document."""
    try:
        parser.Parse(chunk, not chunk)
    except expat.ExpatError as exc:
        raise _parse_error(exc, at_end=not chunk) from None
    except FeedError:
        # The handlers raise it, and it is a ValueError too.
        raise
    except ValueError as exc:
        # pyexpat decodes single-byte encodings, UTF-8 and UTF-16 only, and raises
        # ValueError("multi-byte encodings are not supported") for the others.
        raise FeedError(
            f"The feed's encoding cannot be read ({exc}); save the feed as UTF-8 or windows-1251."
        ) from None


def feed_format_detect(*, path: Path) -> FeedFormat:
    """Return the feed format that the root element of the XML file at ``path`` names."""
    parser = _secure_parser()

    def root_found(name: str, attributes: dict[str, str]) -> None:
        raise _RootFound(_tag(name))

    parser.StartElementHandler = root_found
    root: str | None = None
    with _open(path) as stream:
        try:
            while chunk := stream.read(64 * 1024):
                _parse(parser, chunk)
            _parse(parser, b"")
        except _RootFound as found:
            root = found.tag
    if root is None or root not in _FORMAT_BY_ROOT:
        raise FeedError(
            f"Cannot tell the feed format from the root element <{root}>; expected "
            "<yml_catalog> (YML), <rss> or Atom <feed> (Google Merchant Center)."
        )
    return _FORMAT_BY_ROOT[root]


def _elements(
    *, path: Path, item_tags: frozenset[str], expected_roots: frozenset[str]
) -> Iterator[tuple[int, Element, bool]]:
    """Yield each element of ``item_tags`` as the file is read.

    Each comes with the line it starts on and whether it is larger than ``MAX_ITEM_BYTES``.

    NOTE: expat keeps a whole start tag in memory until the tag ends. One tag with a 100 MB
    attribute outside any offer took 310 MB, so a file at the size limit could take about
    three times its size (an estimate).
    """
    parser = _secure_parser()
    collector = _ItemCollector(parser, item_tags)
    with _open(path) as stream:
        while True:
            chunk = stream.read(_CHUNK_BYTES)
            _parse(parser, chunk)
            if collector.root is not None and collector.root not in expected_roots:
                names = " or ".join(sorted(_ROOT_NAMES[root] for root in expected_roots))
                raise FeedError(
                    f"The root element is <{collector.root}>, not {names}; check --format."
                )
            yield from collector.done
            collector.done.clear()
            if not chunk:
                return


# --- Field mapping ----------------------------------------------------------------------------


def _text(element: Element | None) -> str:
    return "".join(element.itertext()).strip() if element is not None else ""


def _first_text(item: Element, *tags: str) -> str:
    for tag in tags:
        text = _text(item.find(tag))
        if text:
            return text
    return ""


_GRAMS_PER_UNIT = {"мг": "0.001", "mg": "0.001", "г": "1", "гр": "1", "g": "1", "кг": "1000"}
_GRAMS_PER_UNIT["kg"] = "1000"
_MILLILITRES_PER_UNIT = {"мл": "1", "ml": "1", "cl": "10", "л": "1000", "l": "1000"}
_WEIGHT_PARAMS = frozenset(
    {"вага", "вага нетто", "маса", "маса нетто", "вес", "вес нетто", "масса", "масса нетто"}
    | {"weight", "net weight"}
)
_VOLUME_PARAMS = frozenset(
    {"об'єм", "обсяг", "ємність", "об'єм нетто", "объем", "объём", "объем нетто", "volume"}
)
# Apostrophes that Ukrainian text uses in "об'єм".
_APOSTROPHES = str.maketrans({"’": "'", "ʼ": "'", "`": "'"})
_QUANTITY = re.compile(r"(\d+(?:[.,]\d+)?)\s*([^\W\d_]+)?\.?")


def _quantity(value: str, unit: str) -> tuple[Decimal, str] | None:
    """Return the number and the unit of ``"0,5"`` with unit ``"л"``, or of ``"500 г"``."""
    match = _QUANTITY.fullmatch(value.strip())
    if match is None:
        return None
    number, written_unit = match.groups()
    unit = (unit or written_unit or "").strip().rstrip(".").casefold()
    try:
        return Decimal(number.replace(",", ".")), unit
    except InvalidOperation:
        return None


def _measure_fields(quantity: tuple[Decimal, str] | None, *, kind: str | None) -> dict[str, float]:
    """Return ``weight`` in grams or ``volume`` in millilitres, when the unit is clear.

    ``kind`` limits the result to ``"weight"`` or ``"volume"``, which the parameter's name
    selects.
    """
    if quantity is None:
        return {}
    number, unit = quantity
    if unit in _GRAMS_PER_UNIT and kind in (None, "weight"):
        return {"weight": float(number * Decimal(_GRAMS_PER_UNIT[unit]))}
    if unit in _MILLILITRES_PER_UNIT and kind in (None, "volume"):
        return {"volume": float(number * Decimal(_MILLILITRES_PER_UNIT[unit]))}
    return {}


class _CategoryPaths:
    """The category path of each category id, built from the feed's ``<categories>``.

    A path is built when an offer first names its category, and then kept, so each category is
    walked once, however deep the tree. A path longer than ``MAX_CATEGORY_PATH_LENGTH``
    is not built, because the product could not store it.
    """

    def __init__(self, categories: dict[str, tuple[str, str]]) -> None:
        self.categories = categories
        # The path of a category, or None when it is too long.
        self._paths: dict[str, str | None] = {}
        # Categories whose parents are missing from the feed or form a cycle.
        self._broken: set[str] = set()

    def forget(self) -> None:
        """Drop the paths built so far, after a change to the categories."""
        self._paths.clear()
        self._broken.clear()

    def path(self, category_id: str) -> tuple[str | None, str | None]:
        """Return the path of ``category_id``, or None and the reason it has none."""
        if category_id not in self.categories:
            return None, f"categoryId: Category {category_id!r} is not in the feed's <categories>."
        if category_id not in self._paths and category_id not in self._broken:
            self._resolve(category_id)
        if category_id in self._broken:
            return None, (
                f"categoryId: Category {category_id!r} has a parent that is not in the feed's "
                "<categories>, or its parents form a cycle."
            )
        path = self._paths[category_id]
        if path is None:
            return None, (
                f"categoryId: The path of category {category_id!r} is longer than "
                f"{MAX_CATEGORY_PATH_LENGTH} characters."
            )
        return path, None

    def _resolve(self, category_id: str) -> None:
        # Walk up to the top category, or to a category already resolved, then build the
        # paths on the way back down. A loop, not recursion, because a tree may be as deep
        # as the feed has categories. The walk stops once the names met are longer than a
        # path may be, so a deep chain costs each offer a bounded number of steps even when
        # categories listed between offers clear the paths built so far.
        chain: list[str] = []
        on_chain: set[str] = set()
        names_length = -len(CATEGORY_SEPARATOR)
        current = category_id
        while current and current not in self._paths:
            if current in self._broken or current in on_chain or current not in self.categories:
                self._broken.update(chain)
                return
            names_length += len(CATEGORY_SEPARATOR) + len(self.categories[current][0])
            if names_length > MAX_CATEGORY_PATH_LENGTH:
                self._paths[category_id] = None
                return
            chain.append(current)
            on_chain.add(current)
            current = self.categories[current][1]
        parent_path = self._paths[current] if current else ""
        for child in reversed(chain):
            name = self.categories[child][0]
            if parent_path is not None:
                parent_path = f"{parent_path}{CATEGORY_SEPARATOR}{name}" if parent_path else name
                if len(parent_path) > MAX_CATEGORY_PATH_LENGTH:
                    parent_path = None
            self._paths[child] = parent_path


def _yml_params(offer: Element) -> tuple[dict[str, str], dict[str, float]]:
    attributes: dict[str, str] = {}
    measures: dict[str, float] = {}
    for param in offer.iterfind("param"):
        name = param.get("name", "").strip()
        value = _text(param)
        if not name or not value:
            continue
        unit = param.get("unit", "").strip()
        value_with_unit = f"{value} {unit}" if unit else value
        if name in attributes:
            value_with_unit = f"{attributes[name]}, {value_with_unit}"
        attributes[name] = value_with_unit
        key = name.casefold().translate(_APOSTROPHES)
        kind = None
        if key in _WEIGHT_PARAMS:
            kind = "weight"
        elif key in _VOLUME_PARAMS:
            kind = "volume"
        if kind is not None and kind not in measures:
            measures.update(_measure_fields(_quantity(value, unit), kind=kind))
    return attributes, measures


def _yml_offer(
    line: int,
    offer: Element,
    *,
    oversized: bool,
    paths: _CategoryPaths,
) -> FeedItem:
    offer_id = offer.get("id", "").strip()
    label = f"Offer {offer_id!r}" if offer_id else "Offer without id"
    if oversized:
        return FeedItem(line, label, {}, f"The offer is larger than {MAX_ITEM_BYTES} bytes.")
    # Prom.ua feeds carry the Ukrainian name and description in name_ua and description_ua.
    name = _first_text(offer, "name_ua", "name")
    if not name and _text(offer.find("model")):
        # An offer of type "vendor.model" names the product by its parts.
        parts = (_text(offer.find(tag)) for tag in ("typePrefix", "vendor", "model"))
        name = " ".join(part for part in parts if part)
    data: dict[str, Any] = {}
    optional = {
        "sku": offer_id,
        "name": name,
        "brand": _text(offer.find("vendor")),
        "description": _first_text(offer, "description_ua", "description"),
        "country": _text(offer.find("country_of_origin")),
        "barcode": _text(offer.find("barcode")),
        "image_url": _text(offer.find("picture")),
    }
    data.update((key, value) for key, value in optional.items() if value)

    category_id = _text(offer.find("categoryId"))
    if category_id:
        path, problem = paths.path(category_id)
        if path is None:
            return FeedItem(line, label, data, problem)
        data["category_path"] = path

    attributes, measures = _yml_params(offer)
    for key in ("vendorCode", "model"):
        value = _text(offer.find(key))
        if value:
            attributes[key] = value
    if offer.get("group_id"):
        attributes["group_id"] = offer.get("group_id", "")
    if attributes:
        data["attributes"] = attributes
    data.update(measures)
    return FeedItem(line, label, data)


def read_yml_feed(*, path: Path) -> Iterator[FeedItem]:
    """Read the offers of a YML feed. Categories must come before the offers, as YML orders
    them; an offer whose category is unknown at that point is rejected."""
    categories: dict[str, tuple[str, str]] = {}
    paths = _CategoryPaths(categories)
    for line, element, oversized in _elements(
        path=path,
        item_tags=frozenset({"category", "offer"}),
        expected_roots=frozenset({"yml_catalog"}),
    ):
        if element.tag == "category":
            category_id = element.get("id", "").strip()
            if category_id:
                categories[category_id] = (_text(element), element.get("parentId", "").strip())
                # A category listed after offers may change the paths built so far.
                paths.forget()
            continue
        yield _yml_offer(line, element, oversized=oversized, paths=paths)


_GOOGLE_ATTRIBUTES = (
    "google_product_category",
    "item_group_id",
    "mpn",
    "color",
    "size",
    "material",
    "pattern",
    "gender",
    "age_group",
)


def _google_item(line: int, item: Element, *, oversized: bool) -> FeedItem:
    # Exporters write some g: names in other cases (g:ID, g:Brand). Google's names are all
    # lower case, so no two of them differ only in case, and each is read in any case.
    for child in item:
        if child.tag.startswith(_GOOGLE_PREFIX):
            child.tag = _GOOGLE_PREFIX + child.tag.removeprefix(_GOOGLE_PREFIX).lower()

    item_id = _text(item.find(f"{_GOOGLE_PREFIX}id"))
    label = f"Item {item_id!r}" if item_id else "Item without g:id"
    if oversized:
        return FeedItem(line, label, {}, f"The item is larger than {MAX_ITEM_BYTES} bytes.")
    data: dict[str, Any] = {}
    optional = {
        "sku": item_id,
        "name": _first_text(item, f"{_GOOGLE_PREFIX}title", "title", f"{_ATOM_PREFIX}title"),
        "description": _first_text(
            item,
            f"{_GOOGLE_PREFIX}description",
            "description",
            f"{_ATOM_PREFIX}summary",
            f"{_ATOM_PREFIX}content",
        ),
        "brand": _text(item.find(f"{_GOOGLE_PREFIX}brand")),
        "barcode": _text(item.find(f"{_GOOGLE_PREFIX}gtin")),
        "category_path": _text(item.find(f"{_GOOGLE_PREFIX}product_type")),
        "image_url": _text(item.find(f"{_GOOGLE_PREFIX}image_link")),
    }
    data.update((key, value) for key, value in optional.items() if value)
    attributes = {key: _text(item.find(f"{_GOOGLE_PREFIX}{key}")) for key in _GOOGLE_ATTRIBUTES}
    attributes = {key: value for key, value in attributes.items() if value}
    if attributes:
        data["attributes"] = attributes
    measure = _text(item.find(f"{_GOOGLE_PREFIX}unit_pricing_measure"))
    if measure:
        data.update(_measure_fields(_quantity(measure, ""), kind=None))
    return FeedItem(line, label, data)


def read_google_feed(*, path: Path) -> Iterator[FeedItem]:
    """Read the items of a Google Merchant Center feed in RSS 2.0 or Atom."""
    for line, element, oversized in _elements(
        path=path,
        item_tags=frozenset({"item", f"{_ATOM_PREFIX}entry"}),
        expected_roots=frozenset({"rss", f"{_ATOM_PREFIX}feed"}),
    ):
        yield _google_item(line, element, oversized=oversized)
