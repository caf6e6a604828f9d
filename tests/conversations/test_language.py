import pytest

from conversations.language import detect_language


@pytest.mark.parametrize(
    ("text", "fallback", "expected"),
    [
        ("покажи кефір", "en", "uk"),
        ("додай другий", "ru", "uk"),
        ("I need milk", "uk", "en"),
        ("добавь второй", "uk", "ru"),
        ("что в корзине?", "uk", "ru"),
        ("молоко", "ru", "ru"),
        ("молоко", "uk", "uk"),
        ("молоко", "en", "uk"),
        ("2", "en", "en"),
        ("#2", "uk", "uk"),
        ("молоко Lactel", "en", "uk"),
        ("додай lactel", "en", "uk"),
        ("додай Lactel milk", "en", "uk"),
        ("I need молоко", "uk", "en"),
        ("add milk", "ru", "en"),
        ("Здравствуйте", "uk", "ru"),
        ("какое самое дешевое?", "uk", "ru"),
        ("свежая рыба", "uk", "ru"),
        ("другие сыры", "uk", "ru"),
        ("есть молоко?", "uk", "ru"),
        ("треба молоко", "ru", "uk"),
        ("найдешевше масло", "ru", "uk"),
        ("молоко пастеризоване", "ru", "ru"),
        ("молоко пастеризоване", "uk", "uk"),
        ("сир твердий", "uk", "uk"),
        ("Add «Молоко 0,87 кг молокія казкове 2,5%»", "uk", "en"),
        ("Добавь «Молоко 0,87 кг молокія казкове 2,5%»", "uk", "ru"),
        ("Додай «Молоко 0,87 кг молокія казкове 2,5%»", "ru", "uk"),
        ('Add "Сир твердий"', "uk", "en"),
        ("Add “Молоко «Ферма» 1 л”", "uk", "en"),
        ("«молоко пастеризоване»", "ru", "ru"),
        ("«сир»", "en", "uk"),
    ],
)
def test_detect_language(text, fallback, expected):
    assert detect_language(text, fallback=fallback) == expected
