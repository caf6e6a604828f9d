"""Reply templates of the offline assistant in Ukrainian, English and Russian.

Prices are written without a currency because the tenant's currency is not configured
anywhere yet; Ukrainian and Russian use a decimal comma.
"""

import re
from collections.abc import Collection
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from conversations.assistants.intents import without_format_characters
from conversations.cart import (
    effective_price,
    line_amount,
    money_number,
    quantity_number,
    to_decimal,
)
from conversations.events import CartSnapshot
from conversations.language import ENGLISH, RUSSIAN, UKRAINIAN
from conversations.tools import MAX_CHANGE_QUANTITY, GuardReason, ShownProduct
from webhooks.dispatch import UNKNOWN_CART_REASON

TEMPLATES: dict[str, dict[str, str]] = {
    UKRAINIAN: {
        "search_found": "Ось що я знайшов за запитом «{query}»:",
        "found_under_price": "Ось що я знайшов за запитом «{query}» за ціною до {price}:",
        "found_cheapest": "Ось найдешевші товари за запитом «{query}»:",
        "listed_cheapest": "Ось товари з останнього списку, від найдешевшого:",
        "listed_under_price": "Ось товари з останнього списку за ціною до {price}:",
        "listed_over_price": "Ось товари з останнього списку за ціною від {price}:",
        "listed_in_price_range": "Ось товари з останнього списку за ціною від {min_price} до {max_price}:",
        "none_under_price": "Не знайшов таких товарів за ціною до {price}. Найдешевший — «{name}» за {cheapest}.",
        "found_over_price": "Ось що я знайшов за запитом «{query}» за ціною від {price}:",
        "found_in_price_range": "Ось що я знайшов за запитом «{query}» за ціною від {min_price} до {max_price}:",
        "none_over_price": "Не знайшов таких товарів за ціною від {price}. Найдорожчий — «{name}» за {priciest}.",
        "none_in_price_range": "Не знайшов таких товарів за ціною від {min_price} до {max_price}. Знайдені коштують від {cheapest} до {priciest}.",
        "search_hidden_one": "Ще {count} знайдений товар зараз відсутній, тому я його не показую.",
        "search_hidden_few": "Ще {count} знайдені товари зараз відсутні, тому я їх не показую.",
        "search_hidden_many": "Ще {count} знайдених товарів зараз відсутні, тому я їх не показую.",
        "search_hint": "Щоб додати товар, напишіть, наприклад, «додай перший» або «додай 2 шт другого».",
        "search_pick": "Який із них додати? Напишіть, наприклад, «додай перший».",
        "pick_to_add": "Який із них додати? Напишіть його номер.",
        "position_outside_prices": "Ця ціна поза межею, яку ви назвали, тому я нічого не додав.",
        "price_limits_conflict": "Товар не може коштувати водночас до {max_price} і від {min_price}. Напишіть одну межу ціни або діапазон, наприклад «від {max_price} до {min_price}».",
        "search_not_found": "За запитом «{query}» нічого не знайшлося. Спробуйте інші слова, наприклад назву товару або бренд.",
        "search_none_available": "За запитом «{query}» є товари в каталозі, але зараз жодного з них немає в наявності.",
        "products_unavailable": "На жаль, зараз не вдалося завантажити товари. Спробуйте, будь ласка, ще раз за хвилину.",
        "prices_temporarily_unavailable": "Ціни та наявність товарів тимчасово недоступні: магазин зараз не відповідає. Спробуйте, будь ласка, за хвилину.",
        "no_catalog_data": "Каталог магазину поки порожній, тож шукати в ньому ще нічого.",
        "product_line": "{position}. {name} — {price}",
        "product_line_promo": "{position}. {name} — {promo_price} замість {price} (акція{label})",
        "added": "Додав у кошик: {name}, {quantity}.",
        "added_promo": "Ціна за акцією: {promo_price} замість {price}{label}.",
        "cart_summary": "Позицій у кошику: {count}, сума: {total}.",
        "cart_summary_partial": "Позицій, доданих у цій розмові: {count}, їхня сума: {total}. Кошик із магазину не вдалося завантажити, тож загальна сума може бути більшою.",
        "cart_incomplete": "Не вдалося завантажити ваш кошик із магазину, тому тут лише зміни з цієї розмови, а сума може бути неповною.",
        "products_not_configured": "Магазин ще не підключив ціни та наявність товарів, тому я поки не можу їх показати.",
        "removed": "Прибрав з кошика: {name}.",
        "quantity_set": "Змінив кількість: {name} — тепер {quantity}.",
        "cleared": "Кошик очищено.",
        "cart_empty": "Ваш кошик порожній.",
        "cart_header": "У вашому кошику:",
        "cart_line": "{position}. {name} — {quantity} × {price} = {line_total}",
        "cart_total": "Разом: {total}.",
        # The help's first sentence, by what the tenant's enabled tools let the assistant do.
        "help": "Я допоможу знайти товари і зібрати кошик.",
        "help_search": "Я допоможу знайти товари.",
        "help_search_view": "Я допоможу знайти товари і покажу ваш кошик.",
        "help_cart": "Я допоможу змінити ваш кошик.",
        "help_view": "Я можу показати ваш кошик.",
        "help_none": "Вибачте, у цьому магазині я не можу шукати товари чи змінювати кошик у чаті.",
        "help_examples": "Напишіть, наприклад: {examples}.",
        "help_or": "або",
        # One example command per tool, for the help; a disabled tool's example is left out.
        "help_search_products": "«молоко»",
        "help_add_to_cart": "«додай другий»",
        "help_update_quantity": "«зміни кількість першого на 2»",
        "help_remove_from_cart": "«прибери молоко»",
        "help_view_cart": "«що в кошику?»",
        "help_clear_cart": "«очисти кошик»",
        "thanks": "Будь ласка! Чим ще можу допомогти?",
        "goodbye": "Дякую, що завітали! Гарного дня.",
        "undo_unsupported": "Я не можу скасувати зміну, але ви можете виправити кошик: напишіть, наприклад, «прибери молоко» або «зміни кількість першого на 2».",
        "negated": "Добре, кошик лишаю без змін.",
        "price_answer": "«{name}» коштує {price}{per_unit}.",
        "price_answer_promo": "«{name}» коштує {promo_price} замість {price}{per_unit} (акція{label}).",
        "per_unit": " за {unit}",
        "nothing_listed": "Я ще не показував товарів. Напишіть, що шукаєте, наприклад «молоко».",
        "position_missing": "В останньому списку немає позиції №{position}, у ньому позицій: {count}.",
        "position_range": "Напишіть номер від 1 до {count}.",
        "which_product": "Уточніть, будь ласка, який товар: назвіть його або вкажіть номер у списку.",
        "ambiguous": "Під «{fragment}» підходить кілька товарів:",
        "ambiguous_question": "Який саме? Напишіть номер або точнішу назву.",
        "not_in_cart_fragment": "У кошику немає товару «{fragment}».",
        "ask_quantity": "Скільки поставити для «{name}»? Напишіть, наприклад, «зроби 2».",
        "alternatives": "Ось схожі товари в наявності:",
        "no_alternatives": "Схожих товарів у наявності не знайшлося.",
        GuardReason.SKU_NOT_OFFERED: "Я можу змінювати кошик лише для товарів, які показав вам, або тих, що вже в кошику.",
        GuardReason.INVALID_QUANTITY: "Кількість має бути більшою за нуль.",
        GuardReason.QUANTITY_TOO_LARGE: "За один раз я можу замовити щонайбільше {max_quantity} «{name}».",
        "ask_amount_by_weight": "«{name}» продається на вагу ({unit}), а не упаковками чи штуками. Скільки {unit} {verb}? Напишіть, наприклад, «{command} 0,5 {unit}».",
        "ask_packs": "«{name}» продається упаковками по {pack}, а {requested} — це {packs} упаковки. Скільки упаковок {verb}? Напишіть, наприклад, «{command} {suggested}».",
        "ask_pieces": "«{name}» продається поштучно, і я не знаю, скільки штук становлять {requested}. Скільки штук {verb}? Напишіть, наприклад, «{command} 2 шт».",
        "ask_unit": "«{name}» продається в {unit}, тож {requested} я не можу перерахувати. Скільки {unit} {verb}?",
        # The verb and the example command of an amount question, by the requested change.
        "ask_verb_add": "додати",
        "ask_verb_remove": "прибрати",
        "ask_verb_set_quantity": "поставити",
        "ask_command_add": "додай",
        "ask_command_remove": "видали",
        "ask_command_set_quantity": "зроби",
        "packs_converted": "{requested} — це {quantity} по {pack}.",
        GuardReason.BELOW_MIN_QUANTITY: "Мінімальна кількість для «{name}» — {min_quantity}.",
        GuardReason.QUANTITY_STEP_MISMATCH: "«{name}» продається кратно {step}.",
        "out_of_stock": "На жаль, «{name}» закінчився.",
        "product_not_found": "Магазин не знайшов товар «{name}». Можу пошукати ще раз: напишіть, що шукаєте.",
        "quantity_exceeded": "У магазині немає стільки «{name}» ({quantity}). Спробуйте меншу кількість.",
        "not_in_cart": "«{name}» немає у вашому кошику.",
        "missing_sku": "Не вдалося змінити кошик через помилку в запиті до магазину. Спробуйте, будь ласка, пізніше.",
        "missing_params": "Не вдалося змінити кошик через помилку в запиті до магазину. Спробуйте, будь ласка, пізніше.",
        "webhook_timeout": "Магазин не відповів вчасно, тому кошик не змінився. Спробуйте, будь ласка, ще раз.",
        "webhook_error": "Не вдалося змінити кошик: магазин повернув помилку. Спробуйте, будь ласка, ще раз.",
        "webhook_not_configured": "Магазин ще не підключив кошик, тому я не можу його змінити.",
        "circuit_open": "Кошик магазину тимчасово недоступний, тому він не змінився. Спробуйте, будь ласка, за хвилину.",
        "limit_max": "На «{name}» діє обмеження: не більше {limit} {per}.",
        "limit_min": "На «{name}» діє обмеження: не менше {limit} {per}.",
        "declined_reason": "Магазин не прийняв зміну: {reason}.",
        "declined": "Магазин не прийняв зміну.",
        "per_customer": "на одного покупця",
        "per_order": "в одному замовленні",
        "per_day": "на день",
        # Replies to a command whose tool the tenant disabled, by tool name.
        "disabled_search_products": "Вибачте, у цьому магазині я не можу шукати товари в чаті.",
        "disabled_add_to_cart": "Вибачте, у цьому магазині я не можу додавати товари в кошик у чаті.",
        "disabled_remove_from_cart": "Вибачте, у цьому магазині я не можу прибирати товари з кошика в чаті.",
        "disabled_update_quantity": "Вибачте, у цьому магазині я не можу змінювати кількість товарів у кошику в чаті.",
        "disabled_clear_cart": "Вибачте, у цьому магазині я не можу очищати кошик у чаті.",
        "disabled_view_cart": "Вибачте, у цьому магазині я не можу показувати кошик у чаті.",
    },
    ENGLISH: {
        "search_found": "Here is what I found for “{query}”:",
        "found_under_price": "Here is what I found for “{query}” at up to {price}:",
        "found_cheapest": "Here are the cheapest products for “{query}”:",
        "listed_cheapest": "Here are the products of the last list, cheapest first:",
        "listed_under_price": "Here are the products of the last list at up to {price}:",
        "listed_over_price": "Here are the products of the last list at {price} or more:",
        "listed_in_price_range": "Here are the products of the last list at {min_price} to {max_price}:",
        "none_under_price": "I found no such products at up to {price}. The cheapest is “{name}” at {cheapest}.",
        "found_over_price": "Here is what I found for “{query}” at {price} or more:",
        "found_in_price_range": "Here is what I found for “{query}” at {min_price} to {max_price}:",
        "none_over_price": "I found no such products at {price} or more. The most expensive is “{name}” at {priciest}.",
        "none_in_price_range": "I found no such products at {min_price} to {max_price}. The ones I found cost {cheapest} to {priciest}.",
        "search_hidden_one": "{count} more matching product is out of stock right now, so I left it out.",
        "search_hidden_few": "{count} more matching products are out of stock right now, so I left them out.",
        "search_hidden_many": "{count} more matching products are out of stock right now, so I left them out.",
        "search_hint": "To add a product, say for example “add the first one” or “add 2 of the second”.",
        "search_pick": "Which one should I add? Say for example “add the first one”.",
        "pick_to_add": "Which one should I add? Give its number.",
        "position_outside_prices": "That price is outside the limit you gave, so I added nothing.",
        "price_limits_conflict": "A product cannot cost both up to {max_price} and {min_price} or more. Give one price limit or a range, such as “from {max_price} to {min_price}”.",
        "search_not_found": "I found nothing for “{query}”. Try other words, such as a product type or a brand.",
        "search_none_available": "The catalog has products for “{query}”, but none of them is in stock right now.",
        "products_unavailable": "Sorry, products could not be loaded right now. Please try again in a minute.",
        "prices_temporarily_unavailable": "Prices and stock are temporarily unavailable because the store is not responding. Please try again in a minute.",
        "no_catalog_data": "The store's catalog is empty for now, so there is nothing to search yet.",
        "product_line": "{position}. {name} — {price}",
        "product_line_promo": "{position}. {name} — {promo_price} instead of {price} (promotion{label})",
        "added": "Added to your cart: {name}, {quantity}.",
        "added_promo": "Promotional price: {promo_price} instead of {price}{label}.",
        "cart_summary": "Items in your cart: {count}, total: {total}.",
        "cart_summary_partial": "Items added in this chat: {count}, their total: {total}. Your cart could not be loaded from the store, so its full total may be higher.",
        "cart_incomplete": "Your cart could not be loaded from the store, so this shows only the changes made in this chat, and the total may be incomplete.",
        "products_not_configured": "The store has not connected product prices and stock yet, so I cannot show products for now.",
        "removed": "Removed from your cart: {name}.",
        "quantity_set": "Changed the quantity: {name} is now {quantity}.",
        "cleared": "Your cart is now empty.",
        "cart_empty": "Your cart is empty.",
        "cart_header": "In your cart:",
        "cart_line": "{position}. {name} — {quantity} × {price} = {line_total}",
        "cart_total": "Total: {total}.",
        "help": "I can find products and fill your cart.",
        "help_search": "I can find products for you.",
        "help_search_view": "I can find products and show your cart.",
        "help_cart": "I can change the products in your cart.",
        "help_view": "I can show your cart.",
        "help_none": "Sorry, this shop does not let me search for products or change your cart in this chat.",
        "help_examples": "Try for example: {examples}.",
        "help_or": "or",
        "help_search_products": "“milk”",
        "help_add_to_cart": "“add the second one”",
        "help_update_quantity": "“set the first to 2”",
        "help_remove_from_cart": "“remove milk”",
        "help_view_cart": "“what's in my cart?”",
        "help_clear_cart": "“clear the cart”",
        "thanks": "You're welcome! Anything else I can help with?",
        "goodbye": "Thanks for stopping by! Have a nice day.",
        "undo_unsupported": "I cannot undo a change, but you can correct your cart: say for example “remove milk” or “set the first to 2”.",
        "negated": "OK, I left your cart as it is.",
        "price_answer": "“{name}” costs {price}{per_unit}.",
        "price_answer_promo": "“{name}” costs {promo_price} instead of {price}{per_unit} (promotion{label}).",
        "per_unit": " per {unit}",
        "nothing_listed": "I haven't shown any products yet. Tell me what you are looking for, for example “milk”.",
        "position_missing": "The last list has no item number {position}; it has {count}.",
        "position_range": "Give a number from 1 to {count}.",
        "which_product": "Which product do you mean? Name it or give its number in the list.",
        "ambiguous": "Several products match “{fragment}”:",
        "ambiguous_question": "Which one? Give its number or a more exact name.",
        "not_in_cart_fragment": "There is no “{fragment}” in your cart.",
        "ask_quantity": "What quantity should I set for “{name}”? Say for example “make it 2”.",
        "alternatives": "Here are similar products in stock:",
        "no_alternatives": "I found no similar products in stock.",
        GuardReason.SKU_NOT_OFFERED: "I can only change the cart for products I have shown you or that are already in your cart.",
        GuardReason.INVALID_QUANTITY: "The quantity must be greater than zero.",
        GuardReason.QUANTITY_TOO_LARGE: "I can order at most {max_quantity} of “{name}” at a time.",
        "ask_amount_by_weight": "“{name}” is sold by {unit}, not in packs or pieces. How many {unit} should I {verb}? Say for example “{command} 0.5 {unit}”.",
        "ask_packs": "“{name}” comes in packs of {pack}, and {requested} is {packs} packs. How many packs should I {verb}? Say for example “{command} {suggested}”.",
        "ask_pieces": "“{name}” is sold by the piece, and I do not know how many pieces make {requested}. How many should I {verb}? Say for example “{command} 2 pcs”.",
        "ask_unit": "“{name}” is sold in {unit}, so I cannot convert {requested}. How many {unit} should I {verb}?",
        "ask_verb_add": "add",
        "ask_verb_remove": "remove",
        "ask_verb_set_quantity": "set it to",
        "ask_command_add": "add",
        "ask_command_remove": "remove",
        "ask_command_set_quantity": "make it",
        "packs_converted": "{requested} is {quantity} of {pack}.",
        GuardReason.BELOW_MIN_QUANTITY: "The minimum quantity of “{name}” is {min_quantity}.",
        GuardReason.QUANTITY_STEP_MISMATCH: "“{name}” is sold in steps of {step}.",
        "out_of_stock": "Sorry, “{name}” is out of stock.",
        "product_not_found": "The store could not find “{name}”. I can search again: tell me what you are looking for.",
        "quantity_exceeded": "The store does not have {quantity} of “{name}”. Try a smaller quantity.",
        "not_in_cart": "“{name}” is not in your cart.",
        "missing_sku": "The cart could not be changed because of an error in the request to the store. Please try again later.",
        "missing_params": "The cart could not be changed because of an error in the request to the store. Please try again later.",
        "webhook_timeout": "The store did not respond in time, so your cart was not changed. Please try again.",
        "webhook_error": "The cart could not be changed because the store returned an error. Please try again.",
        "webhook_not_configured": "This store has not connected its cart yet, so I cannot change it.",
        "circuit_open": "The store's cart is temporarily unavailable, so your cart was not changed. Please try again in a minute.",
        "limit_max": "There is a limit of {limit} {per} for “{name}”.",
        "limit_min": "There is a minimum of {limit} {per} for “{name}”.",
        "declined_reason": "The store declined the change: {reason}.",
        "declined": "The store declined the change.",
        "per_customer": "per customer",
        "per_order": "per order",
        "per_day": "per day",
        "disabled_search_products": "Sorry, this shop does not let me search for products in this chat.",
        "disabled_add_to_cart": "Sorry, this shop does not let me add products to your cart in this chat.",
        "disabled_remove_from_cart": "Sorry, this shop does not let me remove products from your cart in this chat.",
        "disabled_update_quantity": "Sorry, this shop does not let me change quantities in your cart in this chat.",
        "disabled_clear_cart": "Sorry, this shop does not let me clear your cart in this chat.",
        "disabled_view_cart": "Sorry, this shop does not let me show your cart in this chat.",
    },
    RUSSIAN: {
        "search_found": "Вот что я нашёл по запросу «{query}»:",
        "found_under_price": "Вот что я нашёл по запросу «{query}» по цене до {price}:",
        "found_cheapest": "Вот самые дешёвые товары по запросу «{query}»:",
        "listed_cheapest": "Вот товары из последнего списка, от самого дешёвого:",
        "listed_under_price": "Вот товары из последнего списка по цене до {price}:",
        "listed_over_price": "Вот товары из последнего списка по цене от {price}:",
        "listed_in_price_range": "Вот товары из последнего списка по цене от {min_price} до {max_price}:",
        "none_under_price": "Не нашёл таких товаров по цене до {price}. Самый дешёвый — «{name}» за {cheapest}.",
        "found_over_price": "Вот что я нашёл по запросу «{query}» по цене от {price}:",
        "found_in_price_range": "Вот что я нашёл по запросу «{query}» по цене от {min_price} до {max_price}:",
        "none_over_price": "Не нашёл таких товаров по цене от {price}. Самый дорогой — «{name}» за {priciest}.",
        "none_in_price_range": "Не нашёл таких товаров по цене от {min_price} до {max_price}. Найденные стоят от {cheapest} до {priciest}.",
        "search_hidden_one": "Ещё {count} найденный товар сейчас отсутствует, поэтому я его не показываю.",
        "search_hidden_few": "Ещё {count} найденных товара сейчас отсутствуют, поэтому я их не показываю.",
        "search_hidden_many": "Ещё {count} найденных товаров сейчас отсутствуют, поэтому я их не показываю.",
        "search_hint": "Чтобы добавить товар, напишите, например, «добавь первый» или «добавь 2 шт второго».",
        "search_pick": "Какой из них добавить? Напишите, например, «добавь первый».",
        "pick_to_add": "Какой из них добавить? Напишите его номер.",
        "position_outside_prices": "Эта цена вне границы, которую вы назвали, поэтому я ничего не добавил.",
        "price_limits_conflict": "Товар не может стоить одновременно до {max_price} и от {min_price}. Напишите одну границу цены или диапазон, например «от {max_price} до {min_price}».",
        "search_not_found": "По запросу «{query}» ничего не нашлось. Попробуйте другие слова, например название товара или бренд.",
        "search_none_available": "По запросу «{query}» в каталоге есть товары, но сейчас ни одного нет в наличии.",
        "products_unavailable": "К сожалению, сейчас не удалось загрузить товары. Попробуйте, пожалуйста, ещё раз через минуту.",
        "prices_temporarily_unavailable": "Цены и наличие товаров временно недоступны: магазин сейчас не отвечает. Попробуйте, пожалуйста, через минуту.",
        "no_catalog_data": "Каталог магазина пока пуст, искать в нём ещё нечего.",
        "product_line": "{position}. {name} — {price}",
        "product_line_promo": "{position}. {name} — {promo_price} вместо {price} (акция{label})",
        "added": "Добавил в корзину: {name}, {quantity}.",
        "added_promo": "Цена по акции: {promo_price} вместо {price}{label}.",
        "cart_summary": "Позиций в корзине: {count}, сумма: {total}.",
        "cart_summary_partial": "Позиций, добавленных в этом разговоре: {count}, их сумма: {total}. Корзину из магазина не удалось загрузить, поэтому общая сумма может быть больше.",
        "cart_incomplete": "Не удалось загрузить вашу корзину из магазина, поэтому здесь только изменения из этого разговора, а сумма может быть неполной.",
        "products_not_configured": "Магазин ещё не подключил цены и наличие товаров, поэтому я пока не могу их показать.",
        "removed": "Убрал из корзины: {name}.",
        "quantity_set": "Изменил количество: {name} — теперь {quantity}.",
        "cleared": "Корзина очищена.",
        "cart_empty": "Ваша корзина пуста.",
        "cart_header": "В вашей корзине:",
        "cart_line": "{position}. {name} — {quantity} × {price} = {line_total}",
        "cart_total": "Итого: {total}.",
        "help": "Я помогу найти товары и собрать корзину.",
        "help_search": "Я помогу найти товары.",
        "help_search_view": "Я помогу найти товары и покажу вашу корзину.",
        "help_cart": "Я помогу изменить вашу корзину.",
        "help_view": "Я могу показать вашу корзину.",
        "help_none": "Извините, в этом магазине я не могу искать товары или менять корзину в чате.",
        "help_examples": "Напишите, например: {examples}.",
        "help_or": "или",
        "help_search_products": "«молоко»",
        "help_add_to_cart": "«добавь второй»",
        "help_update_quantity": "«измени количество первого на 2»",
        "help_remove_from_cart": "«убери молоко»",
        "help_view_cart": "«что в корзине?»",
        "help_clear_cart": "«очисти корзину»",
        "thanks": "Пожалуйста! Чем ещё могу помочь?",
        "goodbye": "Спасибо, что зашли! Хорошего дня.",
        "undo_unsupported": "Я не могу отменить изменение, но вы можете исправить корзину: напишите, например, «убери молоко» или «измени количество первого на 2».",
        "negated": "Хорошо, корзину оставляю без изменений.",
        "price_answer": "«{name}» стоит {price}{per_unit}.",
        "price_answer_promo": "«{name}» стоит {promo_price} вместо {price}{per_unit} (акция{label}).",
        "per_unit": " за {unit}",
        "nothing_listed": "Я ещё не показывал товаров. Напишите, что ищете, например «молоко».",
        "position_missing": "В последнем списке нет позиции №{position}, в нём позиций: {count}.",
        "position_range": "Напишите номер от 1 до {count}.",
        "which_product": "Уточните, пожалуйста, какой товар: назовите его или укажите номер в списке.",
        "ambiguous": "Под «{fragment}» подходит несколько товаров:",
        "ambiguous_question": "Какой именно? Напишите номер или более точное название.",
        "not_in_cart_fragment": "В корзине нет товара «{fragment}».",
        "ask_quantity": "Сколько поставить для «{name}»? Напишите, например, «сделай 2».",
        "alternatives": "Вот похожие товары в наличии:",
        "no_alternatives": "Похожих товаров в наличии не нашлось.",
        GuardReason.SKU_NOT_OFFERED: "Я могу менять корзину только для товаров, которые показал вам, или тех, что уже в корзине.",
        GuardReason.INVALID_QUANTITY: "Количество должно быть больше нуля.",
        GuardReason.QUANTITY_TOO_LARGE: "За один раз я могу заказать не больше {max_quantity} «{name}».",
        "ask_amount_by_weight": "«{name}» продаётся на вес ({unit}), а не упаковками или штуками. Сколько {unit} {verb}? Напишите, например, «{command} 0,5 {unit}».",
        "ask_packs": "«{name}» продаётся упаковками по {pack}, а {requested} — это {packs} упаковки. Сколько упаковок {verb}? Напишите, например, «{command} {suggested}».",
        "ask_pieces": "«{name}» продаётся поштучно, и я не знаю, сколько штук составляют {requested}. Сколько штук {verb}? Напишите, например, «{command} 2 шт».",
        "ask_unit": "«{name}» продаётся в {unit}, поэтому {requested} я не могу пересчитать. Сколько {unit} {verb}?",
        "ask_verb_add": "добавить",
        "ask_verb_remove": "убрать",
        "ask_verb_set_quantity": "поставить",
        "ask_command_add": "добавь",
        "ask_command_remove": "убери",
        "ask_command_set_quantity": "сделай",
        "packs_converted": "{requested} — это {quantity} по {pack}.",
        GuardReason.BELOW_MIN_QUANTITY: "Минимальное количество для «{name}» — {min_quantity}.",
        GuardReason.QUANTITY_STEP_MISMATCH: "«{name}» продаётся кратно {step}.",
        "out_of_stock": "К сожалению, «{name}» закончился.",
        "product_not_found": "Магазин не нашёл товар «{name}». Могу поискать ещё раз: напишите, что ищете.",
        "quantity_exceeded": "В магазине нет столько «{name}» ({quantity}). Попробуйте меньшее количество.",
        "not_in_cart": "«{name}» нет в вашей корзине.",
        "missing_sku": "Не удалось изменить корзину из-за ошибки в запросе к магазину. Попробуйте, пожалуйста, позже.",
        "missing_params": "Не удалось изменить корзину из-за ошибки в запросе к магазину. Попробуйте, пожалуйста, позже.",
        "webhook_timeout": "Магазин не ответил вовремя, поэтому корзина не изменилась. Попробуйте, пожалуйста, ещё раз.",
        "webhook_error": "Не удалось изменить корзину: магазин вернул ошибку. Попробуйте, пожалуйста, ещё раз.",
        "webhook_not_configured": "Магазин ещё не подключил корзину, поэтому я не могу её изменить.",
        "circuit_open": "Корзина магазина временно недоступна, поэтому она не изменилась. Попробуйте, пожалуйста, через минуту.",
        "limit_max": "На «{name}» действует ограничение: не больше {limit} {per}.",
        "limit_min": "На «{name}» действует ограничение: не меньше {limit} {per}.",
        "declined_reason": "Магазин не принял изменение: {reason}.",
        "declined": "Магазин не принял изменение.",
        "per_customer": "на одного покупателя",
        "per_order": "в одном заказе",
        "per_day": "в день",
        "disabled_search_products": "Извините, в этом магазине я не могу искать товары в чате.",
        "disabled_add_to_cart": "Извините, в этом магазине я не могу добавлять товары в корзину в чате.",
        "disabled_remove_from_cart": "Извините, в этом магазине я не могу убирать товары из корзины в чате.",
        "disabled_update_quantity": "Извините, в этом магазине я не могу менять количество товаров в корзине в чате.",
        "disabled_clear_cart": "Извините, в этом магазине я не могу очищать корзину в чате.",
        "disabled_view_cart": "Извините, в этом магазине я не могу показывать корзину в чате.",
    },
}

UNIT_NAMES: dict[str, dict[str, str]] = {
    UKRAINIAN: {"pcs": "шт", "pack": "уп.", "kg": "кг", "g": "г", "l": "л", "ml": "мл"},
    ENGLISH: {"pcs": "pcs", "pack": "packs", "kg": "kg", "g": "g", "l": "l", "ml": "ml"},
    RUSSIAN: {"pcs": "шт", "pack": "уп.", "kg": "кг", "g": "г", "l": "л", "ml": "мл"},
}
# English count units after exactly 1 ("1 pc", "1 pack"); other amounts take UNIT_NAMES.
ENGLISH_SINGULAR_UNITS = {"pcs": "pc", "pack": "pack"}

# The tools whose example commands the help lists, in the order it lists them.
HELP_TOOLS = (
    "search_products",
    "add_to_cart",
    "update_quantity",
    "remove_from_cart",
    "view_cart",
    "clear_cart",
)

# The tools that change the cart. With all of them disabled, the help does not offer to fill it.
CART_CHANGE_TOOLS = ("add_to_cart", "update_quantity", "remove_from_cart", "clear_cart")


def _help_summary_key(disabled_tools: Collection[str]) -> str:
    """Return the key of the help's first sentence, which names what the enabled tools allow."""
    searches = "search_products" not in disabled_tools
    changes_cart = any(tool not in disabled_tools for tool in CART_CHANGE_TOOLS)
    shows_cart = "view_cart" not in disabled_tools
    if searches and changes_cart:
        return "help"
    if searches:
        return "help_search_view" if shows_cart else "help_search"
    if changes_cart:
        return "help_cart"
    return "help_view" if shows_cart else "help_none"


# Reasons with a template of their own: the guards' reasons, the reasons the webhook contract
# suggests to merchants, and this service's reasons for a failed webhook call.
EXPLAINED_REASONS = frozenset(
    {
        *(reason.value for reason in GuardReason),
        "out_of_stock",
        "product_not_found",
        "quantity_exceeded",
        "not_in_cart",
        "missing_sku",
        "missing_params",
        "webhook_timeout",
        "webhook_error",
        "webhook_not_configured",
        "circuit_open",
    }
)

# Merchant reasons such as "max_3_per_customer" or "min_2_per_order".
_LIMIT_REASON = re.compile(
    r"^(?P<kind>max|min)_(?P<limit>\d+(?:[._]\d+)?)"
    r"(?:_per_(?P<per>customer|person|user|client|order|cart|day))?$"
)
_PER_KEYS = {
    "customer": "per_customer",
    "person": "per_customer",
    "user": "per_customer",
    "client": "per_customer",
    "order": "per_order",
    "cart": "per_order",
    "day": "per_day",
}


@dataclass(frozen=True)
class Replies:
    """Templated sentences and number formats in one language."""

    language: str

    def counted(self, key: str, count: int, **params: Any) -> str:
        """Return the template ``key`` in the plural form that ``count`` needs."""
        return self.text(f"{key}_{plural_form(count, self.language)}", count=count, **params)

    def text(self, key: str, **params: Any) -> str:
        """Return the template ``key`` filled with ``params``.

        Quoted words, such as a query or a product name, lose their format characters, so
        that a bidi override in them cannot reverse the rest of the reply in the widget.
        """
        templates = TEMPLATES.get(self.language, TEMPLATES[UKRAINIAN])
        visible = {
            name: without_format_characters(value) if isinstance(value, str) else value
            for name, value in params.items()
        }
        return templates[key].format(**visible)

    def help(self, *, disabled_tools: Collection[str] = ()) -> str:
        """Return the help with an example command for each tool not in ``disabled_tools``."""
        summary = self.text(_help_summary_key(disabled_tools))
        examples = [self.text(f"help_{tool}") for tool in HELP_TOOLS if tool not in disabled_tools]
        if not examples:
            return summary
        listed = examples[0]
        if len(examples) > 1:
            listed = f"{', '.join(examples[:-1])} {self.text('help_or')} {examples[-1]}"
        return f"{summary} {self.text('help_examples', examples=listed)}"

    def price(self, value: float | Decimal) -> str:
        text = f"{money_number(to_decimal(value)):.2f}"
        return text if self.language == ENGLISH else text.replace(".", ",")

    def amount(self, value: float | Decimal) -> str:
        number = quantity_number(to_decimal(value))
        text = str(number)
        return text if self.language == ENGLISH else text.replace(".", ",")

    def quantity(self, value: float | Decimal, unit: str) -> str:
        """Format an amount with its unit name: "2 шт", "0,5 кг", "1 pc", "2 pcs"."""
        amount = self.amount(value)
        if self.language == ENGLISH and amount == "1" and unit in ENGLISH_SINGULAR_UNITS:
            return f"{amount} {ENGLISH_SINGULAR_UNITS[unit]}"
        return f"{amount} {self.unit(unit)}"

    def unit(self, unit: str) -> str:
        return UNIT_NAMES.get(self.language, UNIT_NAMES[UKRAINIAN]).get(unit, unit)

    def product_line(self, position: int, product: ShownProduct) -> str:
        if product.promo_price is None:
            return self.text(
                "product_line",
                position=position,
                name=product.name,
                price=self.price(product.price),
            )
        return self.text(
            "product_line_promo",
            position=position,
            name=product.name,
            promo_price=self.price(product.promo_price),
            price=self.price(product.price),
            label=f" {product.promo_label}" if product.promo_label else "",
        )

    def price_line(self, product: ShownProduct) -> str:
        """Format the reply to "скільки коштує другий?", per unit for goods sold by weight or volume."""
        per_unit = ""
        if product.unit != "pcs":
            per_unit = self.text("per_unit", unit=self.unit(product.unit))
        if product.promo_price is None:
            return self.text(
                "price_answer",
                name=product.name,
                price=self.price(product.price),
                per_unit=per_unit,
            )
        return self.text(
            "price_answer_promo",
            name=product.name,
            promo_price=self.price(product.promo_price),
            price=self.price(product.price),
            per_unit=per_unit,
            label=f" {product.promo_label}" if product.promo_label else "",
        )

    def product_list(self, products: list[ShownProduct]) -> list[str]:
        return [self.product_line(index, product) for index, product in enumerate(products, 1)]

    def promo_note(self, product: ShownProduct) -> str | None:
        if product.promo_price is None:
            return None
        return self.text(
            "added_promo",
            promo_price=self.price(product.promo_price),
            price=self.price(product.price),
            label=f" ({product.promo_label})" if product.promo_label else "",
        )

    def cart_lines(self, cart: CartSnapshot) -> list[str]:
        if not cart["items"]:
            return [self.text("cart_empty")]
        lines = [self.text("cart_header")]
        for position, item in enumerate(cart["items"], 1):
            unit_price = effective_price(item)
            lines.append(
                self.text(
                    "cart_line",
                    position=position,
                    name=item["name"],
                    quantity=self.quantity(item["quantity"], item.get("unit") or "pcs"),
                    price=self.price(unit_price),
                    line_total=self.price(line_amount(item)),
                )
            )
        lines.append(self.text("cart_total", total=self.price(cart["total"])))
        return lines

    def cart_summary(self, cart: CartSnapshot, *, complete: bool = True) -> str:
        """Return the line count and total; ``complete`` is false while the cart is unknown."""
        key = "cart_summary" if complete else "cart_summary_partial"
        return self.text(key, count=len(cart["items"]), total=self.price(cart["total"]))

    def rejection(self, reason: str | None, *, product: ShownProduct | None, quantity: str) -> str:
        """Explain why the merchant or a guard rejected a cart change."""
        name = product.name if product else ""
        if reason is None or reason == UNKNOWN_CART_REASON:
            return self.text("declined")
        if reason in EXPLAINED_REASONS:
            return self.text(
                reason,
                name=name,
                quantity=quantity,
                min_quantity=self._rule_amount(product, product.min_quantity if product else None),
                step=self._rule_amount(product, product.step if product else None),
                max_quantity=self._rule_amount(product, MAX_CHANGE_QUANTITY),
            )
        match = _LIMIT_REASON.match(reason)
        if match is not None:
            per_key = _PER_KEYS.get(match.group("per") or "customer", "per_customer")
            return self.text(
                f"limit_{match.group('kind')}",
                name=name,
                limit=self.amount(to_decimal(match.group("limit").replace("_", "."))),
                per=self.text(per_key),
            )
        return self.text("declined_reason", reason=reason.replace("_", " ").strip())

    def _rule_amount(self, product: ShownProduct | None, value: float | Decimal | None) -> str:
        if product is None or value is None:
            return ""
        return self.quantity(value, product.unit)


def plural_form(count: int, language: str) -> str:
    """Return "one", "few" or "many": the noun form a count takes in ``language``.

    Ukrainian and Russian use the "one" form for 1, 21, 31…, "few" for 2–4, 22–24…, and
    "many" for the rest, 11–14 included; English has "one" for 1 and "many" otherwise.
    """
    if language == ENGLISH:
        return "one" if count == 1 else "many"
    if count % 10 == 1 and count % 100 != 11:
        return "one"
    if 2 <= count % 10 <= 4 and not 12 <= count % 100 <= 14:
        return "few"
    return "many"
