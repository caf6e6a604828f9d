import pytest
from django.db import connection

from catalog.text import (
    MAX_SEARCH_BODY_LENGTH,
    MAX_TRANSLITERATIONS,
    allowed_typos,
    build_search_body,
    build_search_title,
    build_tsquery,
    edit_distance,
    normalize_text,
    stem_english,
    stem_variants,
    tokenize,
    transliterate_latin,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("Молоко", "молок", id="lower_case_and_stem"),
        pytest.param("900мл", "900 мл", id="number_glued_to_unit"),
        pytest.param("2,5%", "2.5 %", id="decimal_comma_and_percent"),
        pytest.param("0,9кг", "0.9 кг", id="decimal_comma_glued_to_unit"),
        pytest.param("6х1,5л", "6 х 1.5 л", id="multipack"),
        pytest.param("Ёлка", "елк", id="yo_folded_to_ye"),
        pytest.param("м’ясо м'ясо мʼясо мясо", "мяс мяс мяс мяс", id="apostrophes_dropped"),
        pytest.param("«Кефір»,  (1%)!", "кефір 1 %", id="punctuation_removed"),
        pytest.param("Coca-Cola", "coca cola", id="hyphen_splits_words"),
        pytest.param("Président", "president", id="latin_accents_dropped"),
        pytest.param("Їжак ґудзик", "їжак ґудзик", id="ukrainian_letters_kept"),
        pytest.param("Моло\u0301ко сме\u0301тана", "молок сметан", id="stress_marks_dropped"),
        pytest.param("ке\u0300фір і\u0301й", "кефір ій", id="grave_stress_mark_dropped"),
        pytest.param("и\u0306огурт і\u0308жак", "йогурт їжак", id="breve_and_diaeresis_kept"),
        pytest.param("моло\u00adко", "молок", id="soft_hyphen_dropped"),
        pytest.param("мо\u200dло\u200cко\u2060", "молок", id="zero_width_joiners_dropped"),
        pytest.param("молоко\u200bкефір", "молок кефір", id="zero_width_space_splits"),
        pytest.param("мoлoкo", "молок", id="latin_look_alikes_in_cyrillic_word"),
        pytest.param("С1 10 шт", "с 1 10 шт", id="egg_grade"),
        pytest.param("", "", id="empty"),
        pytest.param("!!! ---", "", id="punctuation_only"),
    ],
)
def test_normalize_text(text, expected):
    assert normalize_text(text) == expected


@pytest.mark.parametrize(
    ("words", "stem"),
    [
        pytest.param("молоко молока молоком молоку", "молок", id="milk"),
        pytest.param("сир сиру сири сиром", "сир", id="cheese"),
        pytest.param("хліб хліба хлібом", "хліб", id="bread"),
        pytest.param("яйця яєць яйце яйцями", "яйц", id="eggs_uk"),
        pytest.param("яйца яиц", "яйц", id="eggs_ru"),
        pytest.param("гречка гречки гречкою гречку", "гречк", id="buckwheat"),
        pytest.param("кефір кефіру кефіром", "кефір", id="kefir"),
        pytest.param("масло масла маслом", "масл", id="butter"),
        pytest.param("олія олії олією", "олій", id="oil_iotated_ending"),
        pytest.param("чай чаю чаєм", "чай", id="tea_short_word"),
        pytest.param("сік соку соком", "сок", id="juice_vowel_alternation"),
        pytest.param("сіль солі", "сол", id="salt_vowel_alternation"),
        pytest.param("цукор цукру", "цукр", id="sugar_fleeting_vowel"),
        pytest.param("сирок сирки сирком", "сирк", id="curd_snack_fleeting_vowel"),
        pytest.param("огірок огірки", "огірк", id="cucumber_fleeting_vowel"),
        pytest.param("перець перцю", "перц", id="pepper_fleeting_vowel"),
        pytest.param("пшеничний пшенична пшеничне пшеничного", "пшеничн", id="adjective"),
        pytest.param("milk milks", "milk", id="english_plural_s"),
        pytest.param("egg eggs", "egg", id="english_eggs"),
        pytest.param("box boxes", "box", id="english_plural_es"),
    ],
)
def test_tokenize_inflected_forms_share_stem(words, stem):
    assert tokenize(words) == [stem] * len(words.split())


@pytest.mark.parametrize(
    "word",
    [
        pytest.param("київхліб", id="brand_without_ending"),
        pytest.param("lactel", id="latin_brand"),
        pytest.param("milka", id="latin_brand_ending_in_a"),
        pytest.param("сир", id="three_letters"),
        pytest.param("ром", id="ending_would_leave_one_letter"),
        pytest.param("урок", id="fleeting_rule_would_leave_three_letters"),
        pytest.param("glass", id="english_double_s"),
        pytest.param("hummus", id="english_us"),
        pytest.param("2.5", id="number"),
    ],
)
def test_tokenize_keeps_word(word):
    assert tokenize(word) == [word]


def test_build_search_title_skips_brand_already_in_name():
    title = build_search_title(name="Молоко Яготинське 2,6% 900 г", brand="Яготинське")

    assert title == "молок яготинськ 2.6 % 900 г"


def test_build_search_title_appends_brand():
    title = build_search_title(name="Масло вершкове 82%", brand="Président")

    assert title == "масл вершков 82 % president"


def test_build_search_body_joins_non_empty_parts():
    body = build_search_body(
        category_path="Молочні продукти > Молоко",
        description="",
        ingredients="Молоко коров'яче.",
        country="Україна",
    )

    assert body == "молочн продукт молок молок коровяч україн"


def test_search_body_cut_after_whole_word():
    description = " ".join(f"слово{number}" for number in range(30_000))

    body = build_search_body(category_path="", description=description, ingredients="", country="")

    full_body = normalize_text(description)
    assert len(full_body) > MAX_SEARCH_BODY_LENGTH
    assert len(body) <= MAX_SEARCH_BODY_LENGTH
    assert full_body.startswith(body + " ")
    assert len(body) > MAX_SEARCH_BODY_LENGTH - len("слово29999")


@pytest.mark.django_db
def test_longest_search_body_fits_tsvector():
    # One-letter words of 4-byte letters cost as many tsvector bytes per character as any text.
    description = " ".join(chr(0x20000 + number) for number in range(60_000))
    body = build_search_body(category_path="", description=description, ingredients="", country="")

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_column_size(to_tsvector('simple', %s))", [body])
        (size,) = cursor.fetchone()

    assert len(body) == MAX_SEARCH_BODY_LENGTH - 1
    assert size <= 700_000


@pytest.mark.parametrize(
    ("text", "match", "expected"),
    [
        pytest.param("молоко", "all", "'молок':*", id="prefix_on_stem"),
        pytest.param(
            "молоко яготинське", "all", "'молок' & 'яготинськ':*", id="and_with_prefix_last"
        ),
        pytest.param(
            "молоко яготинське", "any", "'молок' | 'яготинськ':*", id="or_with_prefix_last"
        ),
        pytest.param("молок", "all", "('молк':* | 'молок':*)", id="half_typed_word"),
        pytest.param("молоко 2,5%", "all", "'молок' & '2.5'", id="number_last_no_prefix"),
        pytest.param("молоко молока", "all", "'молок':*", id="duplicate_terms"),
        pytest.param("сир x", "all", "'сир' & 'x'", id="one_letter_last_no_prefix"),
        pytest.param("% !!", "all", "", id="no_terms"),
    ],
)
def test_build_tsquery(text, match, expected):
    assert build_tsquery(text, match=match) == expected


def test_build_tsquery_without_prefix():
    assert build_tsquery("кефір галичина", prefix_last=False) == "'кефір' & 'галичин'"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "text",
    [
        pytest.param("a' & b | !c:* (", id="tsquery_operators"),
        pytest.param("'; DROP TABLE catalog_product; --", id="sql_injection"),
        pytest.param("\\' \\\\ ''", id="backslashes_and_quotes"),
        pytest.param("<-> <2> !!! ::: ***", id="phrase_operators"),
        pytest.param("молоко:A & сир:*B", id="weights_and_prefixes"),
        pytest.param("👍 молоко", id="emoji"),
    ],
)
def test_build_tsquery_output_is_valid_tsquery(text):
    tsquery = build_tsquery(text, match="any")

    with connection.cursor() as cursor:
        cursor.execute("SELECT to_tsquery('simple', %s)::text", [tsquery])
        parsed = cursor.fetchone()[0]

    assert parsed == tsquery


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("moloko", "молоко"),
        ("kefir", "кефір"),
        ("hlib", "хліб"),
        ("olia", "олія"),
        ("smetana", "сметана"),
        ("yaytsya", "яйця"),
    ],
)
def test_transliterate_latin_reading(word, expected):
    assert expected in transliterate_latin(word)


def test_transliterate_latin_limits():
    assert transliterate_latin("ml") == []
    assert transliterate_latin("молоко") == []
    assert len(transliterate_latin("liniia")) == MAX_TRANSLITERATIONS


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("молоці", ["молоц", "молок"]),
        ("кефір", ["кефір"]),
        ("hlib", ["hlib", "хліб", "хлиб", "хлйб", "гліб", "глиб", "глйб"]),
    ],
)
def test_stem_variants(word, expected):
    assert stem_variants(word) == expected


@pytest.mark.parametrize(
    ("first", "second", "limit", "expected"),
    [
        ("малок", "молок", 2, 1),
        ("кефр", "кефір", 2, 1),
        ("молко", "молок", 2, 1),
        ("ковбс", "ковбас", 2, 1),
        ("пив", "питн", 2, 2),
        ("шин", "шинков", 1, 2),
        ("абв", "абв", 1, 0),
    ],
)
def test_edit_distance(first, second, limit, expected):
    assert edit_distance(first, second, limit=limit) == expected


@pytest.mark.parametrize(
    ("word_stem", "expected"), [("пив", 0), ("молок", 1), ("сметанков", 2), ("2.5", 0)]
)
def test_allowed_typos(word_stem, expected):
    assert allowed_typos(word_stem) == expected


@pytest.mark.parametrize(
    ("word", "expected"),
    [("batteries", "battery"), ("tomatoes", "tomato"), ("watches", "watch"), ("glass", "glass")],
)
def test_stem_english_plurals(word, expected):
    assert stem_english(word) == expected
