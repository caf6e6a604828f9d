"""The scripted shopper conversation of the demo, played through the chat HTTP API."""

import hashlib
import hmac
import json
import re
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

# Each message exercises one feature: search with a promotion and a hidden out-of-stock
# product, add, change quantity, a search whose products have a per-customer limit, an
# add the merchant rejects, remove and show the cart.
SCRIPT = [
    "Привіт! Мені потрібне молоко",
    "Додай друге",
    "Зміни кількість на 2",
    "А покажи сир гауда",
    "Додай 5 штук першого",
    "Видали молоко",
    "Що в кошику?",
]

BOLD, DIM, GREEN, RED, RESET = "\033[1m", "\033[2m", "\033[32m", "\033[31m", "\033[0m"


def _request(method: str, url: str, public_key: str, body: dict[str, Any] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url,
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {public_key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def _money(value: float | None) -> str:
    """Format a price as the assistant's replies do: two decimals, halves rounded up."""
    if value is None:
        return ""
    return f"{Decimal(str(value)).quantize(Decimal('0.01'), rounding=ROUND_HALF_UP)} грн"


def _print_cards(items: list[dict[str, Any]]) -> None:
    for number, card in enumerate(items, start=1):
        price = _money(card["price"])
        if card.get("promo_price") is not None:
            label = card.get("promo_label") or "акція"
            price = (
                f"{GREEN}{_money(card['promo_price'])}{RESET} {DIM}замість {price}, {label}{RESET}"
            )
        print(f"      {number:>2}. {card['name']}  {DIM}[{card['sku']}]{RESET}  {price}")


def _print_cart(event: dict[str, Any]) -> None:
    print(f"    {BOLD}Кошик ({event.get('action', '')}):{RESET}")
    for item in event["items"]:
        price = item["promo_price"] if item.get("promo_price") is not None else item["price"]
        print(f"      - {item['name']} × {item['quantity']:g}  {_money(price)}")
    print(f"      Разом: {_money(event['total'])}")


# A numbered line of the reply text, such as "2. Молоко … — 41,90"; the product cards show
# the same products with their SKUs, so the demo prints the cards instead.
_LISTED_PRODUCT = re.compile(r"^\d+\. ")


def _stream(url: str, public_key: str, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Post a message asking for Server-Sent Events; yield each event as it arrives."""
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={
            "Authorization": f"Bearer {public_key}",
            "Content-Type": "application/json",
            "Accept": "text/event-stream",
        },
    )
    with urllib.request.urlopen(request, timeout=150) as response:
        for raw_line in response:
            line = raw_line.decode().rstrip("\n")
            if line.startswith("data: "):
                yield json.loads(line.removeprefix("data: "))


def print_streamed_reply(events: Iterator[dict[str, Any]]) -> list[dict[str, Any]]:
    """Print text deltas as they arrive; return every event for the cards and cart."""
    received: list[dict[str, Any]] = []
    text_started = False
    for event in events:
        received.append(event)
        if event["type"] == "text_delta":
            if not text_started:
                print(f"  {BOLD}Асистент:{RESET} ", end="")
                text_started = True
            print(event["delta"].replace("\n", "\n    "), end="", flush=True)
        elif event["type"] == "text_end" and text_started:
            print()
            text_started = False
    return received


def print_events(events: list[dict[str, Any]], *, text: bool = True) -> None:
    reply_text = "".join(
        event.get("delta", "") for event in events if event["type"] == "text_delta"
    )
    has_cards = any(event["type"] == "product_cards" for event in events)
    lines = [
        line
        for line in reply_text.splitlines()
        if line.strip() and not (has_cards and _LISTED_PRODUCT.match(line))
    ]
    for index, line in enumerate(lines if text else []):
        prefix = f"  {BOLD}Асистент:{RESET} " if index == 0 else "            "
        wrapped = textwrap.fill(line, width=100, subsequent_indent="            ")
        print(f"{prefix}{wrapped}")
    for event in events:
        if event["type"] == "product_cards":
            _print_cards(event["items"])
        elif event["type"] == "cart_changed":
            _print_cart(event)
        elif event["type"] == "error":
            reason = f" ({event['reason']})" if event.get("reason") else ""
            print(f"    {RED}error: {event['code']}{reason}{RESET}")


def exit_on_llm_failure(events: list[dict[str, Any]]) -> None:
    """Stop the demo when the LLM agent could not produce a reply.

    Such a failure, such as an unreachable endpoint or a rejected key or model, usually
    repeats for every scripted message, so the demo stops at the first one and names the
    settings to check.
    """
    for event in events:
        reason = event.get("reason") or ""
        if event["type"] == "error" and reason.startswith("llm_"):
            raise SystemExit(
                f"The LLM agent failed with {reason} (docs/agent.md); see .demo/app.log. "
                "Check OPENAI_BASE_URL, OPENAI_API_KEY and the models, or unset "
                "OPENAI_BASE_URL and OPENAI_API_KEY to use the offline assistant."
            )


def user_token_issue(*, secret: str, user_id: str, lifetime_seconds: int = 3600) -> str:
    """Issue a user token the way a merchant's backend does for its logged-in shopper.

    The token is "{expires_at}.{hex HMAC-SHA256 of '{user_id}.{expires_at}'}", keyed with
    the tenant's user token secret; it lets the widget's public key name this shopper.
    """
    expires_at = int(time.time()) + lifetime_seconds
    signature = hmac.new(
        secret.encode(), f"{user_id}.{expires_at}".encode(), hashlib.sha256
    ).hexdigest()
    return f"{expires_at}.{signature}"


def play_conversation(
    *,
    app_url: str,
    public_key: str,
    user_token_secret: str,
    store_id: str,
    user_id: str,
    stream: bool = True,
) -> None:
    """Create a conversation and send the scripted messages, printing each reply.

    The shopper is named with a user token, as a widget gets it from the merchant's
    backend. With ``stream``, replies are requested as Server-Sent Events and their text is
    printed as it arrives; otherwise each reply is one JSON response.
    """
    user_token = user_token_issue(secret=user_token_secret, user_id=user_id)
    conversation = _request(
        "POST",
        f"{app_url}/api/v1/conversations",
        public_key,
        {"store_id": store_id, "user_id": user_id, "user_token": user_token},
    )
    conversation_id = conversation["conversation_id"]
    print(f"\n{DIM}Conversation {conversation_id}, store {store_id}, shopper {user_id}.")
    print(
        "The shopper's cart at the merchant already holds a loaf of bread; the first message "
        f"loads it through the cart GET webhook.{RESET}"
    )
    for text in SCRIPT:
        print(f"\n  {BOLD}Покупець:{RESET} {text}")
        url = f"{app_url}/api/v1/conversations/{conversation_id}/messages"
        if stream:
            events = print_streamed_reply(_stream(url, public_key, {"text": text}))
            print_events(events, text=False)
        else:
            events = _request("POST", url, public_key, {"text": text})["events"]
            print_events(events)
        exit_on_llm_failure(events)
    final = _request("GET", f"{app_url}/api/v1/conversations/{conversation_id}", public_key)
    assistant = next(
        (m["metadata"].get("assistant") for m in final["messages"] if m["role"] == "assistant"),
        None,
    )
    print(f"\n{DIM}Answered by the {assistant} assistant.{RESET}")
