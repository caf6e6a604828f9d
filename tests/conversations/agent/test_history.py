"""The chat history the agent resends: stored turns repaired and bounded."""

from conversations.assistants.base import HistoryEntry
from conversations.assistants.history import completed_transcript, history_messages
from conversations.assistants.prompts import INTERRUPTED_REPLY_NOTE

CART_CALLS = {
    "role": "assistant",
    "content": None,
    "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "view_cart", "arguments": "{}"}},
        {"id": "call_2", "type": "function", "function": {"name": "view_cart", "arguments": "{}"}},
    ],
}
CART_RESULT = {"role": "tool", "tool_call_id": "call_1", "content": '{"cart":{}}'}


def test_complete_transcript_is_unchanged():
    answer = {"role": "assistant", "content": "Ось."}
    transcript = [CART_CALLS, CART_RESULT, {**CART_RESULT, "tool_call_id": "call_2"}, answer]

    assert completed_transcript(transcript) == transcript


def test_missing_results_and_answer_are_filled_in():
    repaired = completed_transcript([CART_CALLS, CART_RESULT])

    assert [message["role"] for message in repaired] == ["assistant", "tool", "tool", "assistant"]
    assert repaired[2]["tool_call_id"] == "call_2"
    assert '"not_run"' in repaired[2]["content"]
    assert repaired[3] == {"role": "assistant", "content": INTERRUPTED_REPLY_NOTE}


def test_result_without_its_call_is_dropped():
    stray = {"role": "tool", "tool_call_id": "call_9", "content": "{}"}

    repaired = completed_transcript([stray, {"role": "assistant", "content": "Так."}])

    assert repaired == [{"role": "assistant", "content": "Так."}]


def test_other_assistants_replies_become_text():
    history = [
        HistoryEntry(role="user", text="молоко"),
        HistoryEntry(role="assistant", text="Ось що я знайшов."),
        HistoryEntry(role="user", text="дякую"),
        HistoryEntry(role="assistant", text=""),
    ]

    assert history_messages(history, max_chars=10_000) == [
        {"role": "user", "content": "молоко"},
        {"role": "assistant", "content": "Ось що я знайшов."},
        {"role": "user", "content": "дякую"},
        {"role": "assistant", "content": "(No text reply.)"},
    ]


def test_oldest_exchanges_are_dropped_beyond_the_budget():
    history = []
    for number in range(5):
        history.append(HistoryEntry(role="user", text=f"питання {number} " + "х" * 50))
        history.append(HistoryEntry(role="assistant", text=f"відповідь {number} " + "у" * 50))

    kept = history_messages(history, max_chars=600)

    assert [message["content"][:9] for message in kept] == [
        "питання 2",
        "відповідь",
        "питання 3",
        "відповідь",
        "питання 4",
        "відповідь",
    ]
    assert kept[0]["role"] == "user"


def test_reply_without_its_question_is_left_out():
    history = [
        HistoryEntry(role="assistant", text="кінець старої відповіді"),
        HistoryEntry(role="user", text="молоко"),
    ]

    assert history_messages(history, max_chars=10_000) == [{"role": "user", "content": "молоко"}]
