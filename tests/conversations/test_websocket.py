"""The WebSocket chat endpoint over real sockets: uvicorn on 127.0.0.1 and the websockets client.

The server runs in a thread of the test process (see ``websocket_client``). Its writes must be
visible to the test, hence ``transaction=True``.
"""

import contextlib
import json
import logging
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from ipaddress import ip_address

import pytest
from cryptography.fernet import Fernet
from django.db import OperationalError, connection
from django.utils import timezone
from websockets.datastructures import Headers, HeadersLike

import conversations.services
from conversations import events
from conversations.assistants import Turn
from conversations.identity import network_limit_key
from conversations.leases import turn_lease_acquire
from conversations.models import Conversation, Message, OpenSocket, UserDailyUsage
from conversations.services import MAX_MESSAGE_BYTES
from conversations.tools import ShoppingTools
from conversations.websocket import (
    SOCKET_EXPIRY,
    HeartbeatResult,
    SocketLimitReached,
    open_socket_record,
    open_sockets_heartbeat,
    session_conversation_get,
)
from tenants.models import ApiKey, AssistantSettings, Tenant
from tenants.services import user_token_secret_set
from tests.conversations.chat import send
from tests.conversations.shop_data import STORE_ID
from tests.conversations.websocket_client import (
    assert_open,
    authenticate,
    close_code,
    open_socket,
    receive,
    reply_events,
    running_server,
    send_frame,
)
from tests.database import connection_to_closed_port, database_at_closed_port
from tests.factories import ConversationFactory

pytestmark = pytest.mark.django_db(transaction=True)


def cart_gets(merchant) -> list:
    return [request for request in merchant.requests if request.method == "GET"]


# Authentication


def test_auth_ok_names_assistant(ws_url, public_key):
    with open_socket(ws_url) as ws:
        assert authenticate(ws, public_key.raw_key) == {"type": "auth_ok", "assistant": "offline"}
        assert_open(ws)


def test_auth_timeout_closes_4001(ws_url, settings):
    settings.WEBSOCKET_AUTH_TIMEOUT_SECONDS = 0.2
    with open_socket(ws_url) as ws:
        assert receive(ws) == {
            "type": "error",
            "code": "not_authenticated",
            "detail": "No auth message within 0.2 seconds of connecting.",
        }
        assert close_code(ws) == 4001


def test_bad_token_closes_4001(ws_url, public_key):
    with open_socket(ws_url) as ws:
        assert authenticate(ws, "pk_live_unknown") == {
            "type": "error",
            "code": "authentication_failed",
            "detail": "Invalid or revoked API key.",
        }
        assert close_code(ws) == 4001


def test_first_frame_not_auth_closes(ws_url):
    with open_socket(ws_url) as ws:
        send_frame(ws, {"type": "message", "text": "молоко"})
        assert receive(ws)["code"] == "not_authenticated"
        assert close_code(ws) == 4001
    assert Conversation.objects.count() == 0


def test_user_id_needs_user_token(ws_url, public_key):
    with open_socket(ws_url) as ws:
        rejection = authenticate(ws, public_key.raw_key, store_id="store-1", user_id="user-1")
        assert rejection["code"] == "invalid_json"
        assert list(rejection["fields"]) == ["user_token"]
        assert close_code(ws) == 4001


def test_rejected_user_token_closes_4001(ws_url, public_key):
    with open_socket(ws_url) as ws:
        rejection = authenticate(
            ws, public_key.raw_key, user_id="user-1", user_token=f"1.{'0' * 64}"
        )
        assert rejection["code"] == "permission_denied"
        assert rejection["reason"] == "user_token_secret_not_set"
        assert close_code(ws) == 4001


def test_undecryptable_token_secret_closes_1011(ws_url, tenant, public_key, settings):
    user_token_secret_set(tenant=tenant)
    settings.VIZOCHOK_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    user_token = f"{int(time.time()) + 600}.{'0' * 64}"

    with open_socket(ws_url) as ws:
        rejection = authenticate(
            ws, public_key.raw_key, store_id=STORE_ID, user_id="user-1", user_token=user_token
        )
        assert close_code(ws) == 1011

    assert rejection == {
        "type": "error",
        "code": "secret_undecryptable",
        "detail": "A stored secret cannot be decrypted with the configured keys.",
    }
    assert OpenSocket.objects.count() == 0
    assert Conversation.objects.count() == 0


def test_invalid_first_frame_closes_4001(ws_url):
    with open_socket(ws_url) as ws:
        ws.send("{not json")
        assert receive(ws) == {
            "type": "error",
            "code": "invalid_json",
            "detail": "The message is not valid JSON.",
        }
        assert close_code(ws) == 4001


def test_origin_not_allowed_closes_4003(ws_url, tenant, public_key):
    tenant.widget_allowed_origins = ["https://shop.example"]
    tenant.save(update_fields=["widget_allowed_origins"])

    with open_socket(ws_url, origin="https://copycat.example") as ws:
        rejection = authenticate(ws, public_key.raw_key)
        assert rejection["code"] == "permission_denied"
        assert rejection["reason"] == "origin_not_allowed"
        assert close_code(ws) == 4003
    with open_socket(ws_url, origin="https://shop.example") as ws:
        assert authenticate(ws, public_key.raw_key)["type"] == "auth_ok"


def wait_counted_out(key) -> None:
    deadline = time.monotonic() + 5
    while OpenSocket.objects.filter(api_key_id=key.api_key.pk).exists():
        assert time.monotonic() < deadline, "the server did not count the socket out"
        time.sleep(0.01)


def revoke(key) -> None:
    ApiKey.objects.filter(pk=key.api_key.pk).update(revoked_at=timezone.now())


def deactivate(key) -> None:
    Tenant.objects.filter(pk=key.api_key.tenant_id).update(is_active=False)


def drop_chat_scope(key) -> None:
    ApiKey.objects.filter(pk=key.api_key.pk).update(scopes=[ApiKey.Scope.CATALOG])


def allow_other_origin(key) -> None:
    Tenant.objects.filter(pk=key.api_key.tenant_id).update(
        widget_allowed_origins=["https://other.example"]
    )


@pytest.mark.parametrize(
    ("change", "code", "close"),
    [
        (revoke, "authentication_failed", 4001),
        (deactivate, "authentication_failed", 4001),
        (drop_chat_scope, "permission_denied", 4003),
        (allow_other_origin, "permission_denied", 4003),
    ],
)
def test_key_checked_again_per_message(ws_url, public_key, change, code, close):
    existing = ConversationFactory(tenant=public_key.api_key.tenant)
    with open_socket(ws_url, origin="https://shop.example") as ws:
        authenticate(ws, public_key.raw_key, store_id=STORE_ID)
        change(public_key)
        send_frame(ws, {"type": "message", "text": "молоко", "conversation_id": existing.public_id})
        rejection = receive(ws)
        assert rejection["type"] == "error"
        assert rejection["code"] == code
        assert close_code(ws) == close
    assert Conversation.objects.count() == 1
    assert Message.objects.count() == 0
    wait_counted_out(public_key)


def test_revoked_key_starts_no_conversation(ws_url, public_key):
    with open_socket(ws_url) as ws:
        authenticate(ws, public_key.raw_key, store_id=STORE_ID)
        revoke(public_key)
        send_frame(ws, {"type": "message", "text": "молоко"})
        assert receive(ws) == {
            "type": "error",
            "code": "authentication_failed",
            "detail": "Invalid or revoked API key.",
        }
        assert close_code(ws) == 4001
    assert Conversation.objects.count() == 0


def test_fourth_socket_per_key_closes_4029(ws_url, public_key, secret_key):
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(open_socket(ws_url)) for _ in range(3)]
        for ws in sockets:
            assert authenticate(ws, public_key.raw_key)["type"] == "auth_ok"
        with open_socket(ws_url) as fourth:
            send_frame(fourth, {"type": "auth", "token": public_key.raw_key})
            assert close_code(fourth) == 4029
        # Another key of the tenant has sockets of its own.
        with open_socket(ws_url) as other_key:
            assert authenticate(other_key, secret_key.raw_key)["type"] == "auth_ok"
        sockets.pop().close()
        # The server counts the closed socket out once it has seen the close frame.
        deadline = time.monotonic() + 5
        while True:
            with open_socket(ws_url) as replacement:
                if authenticate(replacement, public_key.raw_key).get("type") == "auth_ok":
                    break
            assert time.monotonic() < deadline, "the closed socket was never counted out"
            time.sleep(0.05)


def test_socket_limit_is_per_tenant_key(ws_url, public_key, other_public_key):
    with contextlib.ExitStack() as stack:
        for _ in range(3):
            ws = stack.enter_context(open_socket(ws_url))
            assert authenticate(ws, public_key.raw_key)["type"] == "auth_ok"
        with open_socket(ws_url) as theirs:
            assert authenticate(theirs, other_public_key.raw_key) == {
                "type": "auth_ok",
                "assistant": "offline",
            }
            assert OpenSocket.objects.filter(api_key_id=other_public_key.api_key.pk).count() == 1
        assert OpenSocket.objects.filter(api_key_id=public_key.api_key.pk).count() == 3
    wait_counted_out(public_key)
    wait_counted_out(other_public_key)


def test_socket_limit_spans_processes(ws_url, public_key):
    with contextlib.ExitStack() as stack:
        second = stack.enter_context(running_server())
        for url in (ws_url, ws_url, second.url):
            ws = stack.enter_context(open_socket(url))
            assert authenticate(ws, public_key.raw_key)["type"] == "auth_ok"
        with open_socket(second.url) as fourth:
            send_frame(fourth, {"type": "auth", "token": public_key.raw_key})
            assert close_code(fourth) == 4029
        assert OpenSocket.objects.filter(api_key_id=public_key.api_key.pk).count() == 3
        tenants = set(OpenSocket.objects.values_list("tenant_id", flat=True))
        assert tenants == {public_key.api_key.tenant_id}
    wait_counted_out(public_key)


def test_stopped_process_sockets_expire(ws_url, public_key):
    stale = timezone.now() - SOCKET_EXPIRY - timedelta(seconds=1)
    for _ in range(3):
        OpenSocket.objects.create(
            tenant=public_key.api_key.tenant, api_key=public_key.api_key, heartbeat_at=stale
        )
    with open_socket(ws_url) as ws:
        assert authenticate(ws, public_key.raw_key)["type"] == "auth_ok"
        rows = OpenSocket.objects.filter(api_key_id=public_key.api_key.pk)
        assert rows.count() == 1
        assert rows.get().heartbeat_at > stale


def test_other_process_sockets_count(ws_url, public_key):
    for _ in range(3):
        OpenSocket.objects.create(
            tenant=public_key.api_key.tenant,
            api_key=public_key.api_key,
            heartbeat_at=timezone.now(),
        )
    with open_socket(ws_url) as ws:
        send_frame(ws, {"type": "auth", "token": public_key.raw_key})
        assert close_code(ws) == 4029
    assert OpenSocket.objects.filter(api_key_id=public_key.api_key.pk).count() == 3


def test_heartbeat_refreshes_open_socket(ws_url, public_key, monkeypatch):
    monkeypatch.setattr("conversations.websocket.SOCKET_HEARTBEAT_SECONDS", 0.05)
    with open_socket(ws_url) as ws:
        authenticate(ws, public_key.raw_key)
        row = OpenSocket.objects.get(api_key_id=public_key.api_key.pk)
        old = timezone.now() - timedelta(hours=1)
        OpenSocket.objects.filter(pk=row.pk).update(heartbeat_at=old)
        deadline = time.monotonic() + 5
        while OpenSocket.objects.get(pk=row.pk).heartbeat_at == old:
            assert time.monotonic() < deadline, "the heartbeat did not refresh the row"
            time.sleep(0.02)
    wait_counted_out(public_key)


def test_heartbeat_restores_expired_row(public_key):
    api_key = public_key.api_key
    first = open_socket_record(api_key=api_key, limit=2)
    # Heartbeats failed for longer than SOCKET_EXPIRY, as while the database was down.
    stale = timezone.now() - SOCKET_EXPIRY - timedelta(seconds=1)
    OpenSocket.objects.filter(pk=first).update(heartbeat_at=stale)
    second = open_socket_record(api_key=api_key, limit=2)

    rows_before = set(OpenSocket.objects.values_list("pk", flat=True))
    result = open_sockets_heartbeat(sockets={first: api_key, second: api_key}, limit=2)

    assert rows_before == {second}
    assert result == HeartbeatResult(restored=1, over_limit=())
    row = OpenSocket.objects.get(pk=first)
    assert row.tenant_id == api_key.tenant_id
    assert row.api_key_id == api_key.pk
    assert row.heartbeat_at > stale
    with pytest.raises(SocketLimitReached):
        open_socket_record(api_key=api_key, limit=2)
    assert OpenSocket.objects.count() == 2


def test_heartbeat_skips_deleted_tenant_rows(public_key, other_public_key):
    api_key = public_key.api_key
    other_key = other_public_key.api_key
    kept = open_socket_record(api_key=api_key, limit=2)
    gone = open_socket_record(api_key=other_key, limit=2)
    OpenSocket.objects.filter(pk=kept).delete()
    # Deleting a tenant in the admin deletes its keys and their rows while sockets stay open.
    other_key.tenant.delete()

    result = open_sockets_heartbeat(sockets={kept: api_key, gone: other_key}, limit=2)

    assert result == HeartbeatResult(restored=1, over_limit=())
    assert list(OpenSocket.objects.values_list("pk", "api_key_id")) == [(kept, api_key.pk)]
    assert not ApiKey.objects.filter(pk=other_key.pk).exists()


def test_heartbeat_of_present_rows_restores_none(public_key):
    api_key = public_key.api_key
    socket_id = open_socket_record(api_key=api_key, limit=3)

    result = open_sockets_heartbeat(sockets={socket_id: api_key}, limit=3)

    assert result == HeartbeatResult()
    assert list(OpenSocket.objects.values_list("pk", flat=True)) == [socket_id]


def test_heartbeat_skips_closed_socket_rows(public_key):
    api_key = public_key.api_key
    closed = open_socket_record(api_key=api_key, limit=3)
    still_open = open_socket_record(api_key=api_key, limit=3)
    # A close deleted both rows after the heartbeat read its sockets, and one is still open.
    OpenSocket.objects.all().delete()

    result = open_sockets_heartbeat(
        sockets={closed: api_key, still_open: api_key},
        limit=3,
        still_open=lambda socket_id: socket_id == still_open,
    )

    assert result == HeartbeatResult(restored=1)
    assert list(OpenSocket.objects.values_list("pk", flat=True)) == [still_open]


def expire_rows(*socket_ids: int) -> None:
    """Age rows past SOCKET_EXPIRY, as heartbeats that failed for that long leave them."""
    stale = timezone.now() - SOCKET_EXPIRY - timedelta(seconds=1)
    OpenSocket.objects.filter(pk__in=socket_ids).update(heartbeat_at=stale)


def test_heartbeat_restore_counts_against_limit(public_key):
    api_key = public_key.api_key
    first = open_socket_record(api_key=api_key, limit=2)
    second = open_socket_record(api_key=api_key, limit=2)
    expire_rows(first, second)
    # Another process opens a socket meanwhile, which deletes both expired rows.
    newer = open_socket_record(api_key=api_key, limit=2)

    result = open_sockets_heartbeat(sockets={second: api_key, first: api_key}, limit=2)

    assert result == HeartbeatResult(restored=1, over_limit=(second,))
    assert set(OpenSocket.objects.values_list("pk", flat=True)) == {first, newer}


def test_heartbeat_restore_at_limit_writes_none(public_key):
    api_key = public_key.api_key
    first = open_socket_record(api_key=api_key, limit=1)
    expire_rows(first)
    newer = open_socket_record(api_key=api_key, limit=1)

    result = open_sockets_heartbeat(sockets={first: api_key}, limit=1)

    assert result == HeartbeatResult(restored=0, over_limit=(first,))
    assert list(OpenSocket.objects.values_list("pk", flat=True)) == [newer]


def test_heartbeat_restore_without_limit(public_key):
    api_key = public_key.api_key
    first = open_socket_record(api_key=api_key, limit=0)
    second = open_socket_record(api_key=api_key, limit=0)
    expire_rows(first, second)
    newer = open_socket_record(api_key=api_key, limit=0)

    result = open_sockets_heartbeat(sockets={first: api_key, second: api_key}, limit=0)

    assert result == HeartbeatResult(restored=2, over_limit=())
    assert set(OpenSocket.objects.values_list("pk", flat=True)) == {first, second, newer}


def wait_logged(caplog, name: str, count: int = 1) -> None:
    deadline = time.monotonic() + 10
    while len(logged_events(caplog, name)) < count:
        assert time.monotonic() < deadline, f"{name} was not logged {count} times within 10 s"
        time.sleep(0.02)


def test_outage_restore_closes_socket_over_limit(ws_url, public_key, settings, monkeypatch, caplog):
    settings.WEBSOCKET_MAX_SOCKETS_PER_KEY = 2
    monkeypatch.setattr("conversations.websocket.SOCKET_HEARTBEAT_SECONDS", 0.05)
    outage = threading.Event()

    def heartbeat_in_outage(**kwargs):
        # The heartbeat's worker thread connects anew each time, so it meets the cut.
        if not outage.is_set():
            return open_sockets_heartbeat(**kwargs)
        with database_at_closed_port():
            return open_sockets_heartbeat(**kwargs)

    monkeypatch.setattr("conversations.websocket.open_sockets_heartbeat", heartbeat_in_outage)
    caplog.set_level("INFO")
    api_key = public_key.api_key

    with open_socket(ws_url) as first, open_socket(ws_url) as second:
        assert authenticate(first, public_key.raw_key)["type"] == "auth_ok"
        assert authenticate(second, public_key.raw_key)["type"] == "auth_ok"
        first_row, second_row = OpenSocket.objects.order_by("pk").values_list("pk", flat=True)
        outage.set()
        wait_logged(caplog, "conversations.websocket.heartbeat_failed")
        # The test thread keeps the connection it opened before the cut. Rows that 30 s of
        # failed heartbeats leave expired are deleted by a socket that another process opens.
        expire_rows(first_row, second_row)
        newer = open_socket_record(api_key=api_key, limit=2)
        outage.clear()
        wait_logged(caplog, "conversations.websocket.socket_rows_restored")

        assert close_code(second) == 4029
        assert_open(first)
        rows = set(OpenSocket.objects.filter(api_key=api_key).values_list("pk", flat=True))
        assert rows == {first_row, newer}

    restored = logged_events(caplog, "conversations.websocket.socket_rows_restored")
    closed = logged_events(caplog, "conversations.websocket.over_limit_closed")
    assert len(restored) == 1
    assert restored[0].restored == 1
    assert restored[0].over_limit == 1
    assert len(closed) == 1
    assert closed[0].socket_id == second_row
    assert closed[0].tenant_id == api_key.tenant_id
    assert logged_events(caplog, "conversations.websocket.over_limit_close_failed") == []
    OpenSocket.objects.filter(pk=newer).delete()
    wait_counted_out(public_key)


def test_outage_heartbeat_failures_logged_sparsely(ws_url, public_key, monkeypatch, caplog):
    monkeypatch.setattr("conversations.websocket.SOCKET_HEARTBEAT_SECONDS", 0.02)
    failing_heartbeats = 13
    calls: list[int] = []

    def heartbeat_in_outage(**kwargs):
        calls.append(1)
        if len(calls) > failing_heartbeats:
            return open_sockets_heartbeat(**kwargs)
        with database_at_closed_port():
            return open_sockets_heartbeat(**kwargs)

    monkeypatch.setattr("conversations.websocket.open_sockets_heartbeat", heartbeat_in_outage)
    caplog.set_level("INFO")

    with open_socket(ws_url) as ws:
        assert authenticate(ws, public_key.raw_key)["type"] == "auth_ok"
        wait_logged(caplog, "conversations.websocket.heartbeat_recovered")

    failed = logged_events(caplog, "conversations.websocket.heartbeat_failed")
    recovered = logged_events(caplog, "conversations.websocket.heartbeat_recovered")
    # The 1st, 6th and 12th of 13 failed heartbeats are logged, not each one.
    assert [record.failures for record in failed] == [1, 6, 12]
    assert len(recovered) == 1
    assert recovered[0].failures == failing_heartbeats
    assert recovered[0].sockets == 1
    wait_counted_out(public_key)


def test_concurrent_opens_respect_limit(public_key):
    outcomes: list[str] = []

    def open_one() -> None:
        try:
            open_socket_record(api_key=public_key.api_key, limit=3)
            outcomes.append("opened")
        except SocketLimitReached:
            outcomes.append("rejected")
        finally:
            connection.close()

    threads = [threading.Thread(target=open_one) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert sorted(outcomes) == ["opened"] * 3 + ["rejected"] * 7
    assert OpenSocket.objects.filter(api_key_id=public_key.api_key.pk).count() == 3


def failure_raise(**kwargs):
    raise RuntimeError("unexpected failure")


def query_timeout_raise(**kwargs):
    # A query error on a working connection, as for a statement timeout.
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    raise OperationalError("canceling statement due to statement timeout")


def logged_events(caplog, name: str) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.getMessage() == name]


def logged_errors(caplog) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.levelno >= logging.ERROR]


DATABASE_DOWN_FRAME = {
    "type": "error",
    "detail": "The service cannot reach its database. Retry in a moment.",
    "code": "database_unavailable",
    "retry_after": 5,
}


@pytest.mark.parametrize("failing", [failure_raise, query_timeout_raise])
@pytest.mark.parametrize("step", ["socket_authenticate", "open_socket_record"])
def test_auth_failure_closes_1011(ws_url, public_key, monkeypatch, caplog, step, failing):
    monkeypatch.setattr(f"conversations.consumers.{step}", failing)
    caplog.set_level("ERROR")

    with open_socket(ws_url) as ws:
        frame = authenticate(ws, public_key.raw_key, store_id=STORE_ID)
        assert close_code(ws) == 1011

    failures = logged_events(caplog, "conversations.websocket.auth_failed")
    assert frame == {"type": "error", "code": "internal_error", "error_id": frame["error_id"]}
    assert len(frame["error_id"]) == 32
    assert len(failures) == 1
    assert logged_errors(caplog) == failures
    assert failures[0].error_id == frame["error_id"]
    assert failures[0].exc_info[0] in (RuntimeError, OperationalError)
    assert OpenSocket.objects.count() == 0
    assert Conversation.objects.count() == 0


def test_auth_database_down_closes_1013(ws_url, public_key, caplog):
    caplog.set_level("ERROR")

    with database_at_closed_port() as port, open_socket(ws_url) as ws:
        frame = authenticate(ws, public_key.raw_key, store_id=STORE_ID)
        assert close_code(ws) == 1013

    failures = logged_events(caplog, "conversations.websocket.auth_failed")
    assert frame == DATABASE_DOWN_FRAME
    assert len(failures) == 1
    assert logged_errors(caplog) == failures
    assert failures[0].code == "database_unavailable"
    assert failures[0].error_type == "OperationalError"
    assert f'"127.0.0.1", port {port} failed' in failures[0].error
    assert failures[0].exc_info is None
    assert OpenSocket.objects.count() == 0
    assert Conversation.objects.count() == 0


def test_socket_record_database_down_closes_1013(ws_url, public_key, monkeypatch, caplog):
    def open_socket_record_database_down(**kwargs):
        with database_at_closed_port():
            return open_socket_record(**kwargs)

    monkeypatch.setattr(
        "conversations.consumers.open_socket_record", open_socket_record_database_down
    )
    caplog.set_level("ERROR")

    with open_socket(ws_url) as ws:
        frame = authenticate(ws, public_key.raw_key, store_id=STORE_ID)
        assert close_code(ws) == 1013

    failures = logged_events(caplog, "conversations.websocket.auth_failed")
    assert frame == DATABASE_DOWN_FRAME
    assert len(failures) == 1
    assert logged_errors(caplog) == failures
    assert failures[0].tenant_id == public_key.api_key.tenant_id
    assert failures[0].code == "database_unavailable"
    assert OpenSocket.objects.count() == 0


def test_restore_failure_keeps_socket(ws_url, public_key, monkeypatch, caplog):
    conversation = ConversationFactory(tenant=public_key.api_key.tenant)
    monkeypatch.setattr("conversations.consumers.session_conversation_get", failure_raise)
    caplog.set_level("ERROR")

    with open_socket(ws_url) as ws:
        auth = authenticate(ws, public_key.raw_key, conversation_id=conversation.public_id)
        frame = receive(ws)
        assert_open(ws)

    failures = logged_events(caplog, "conversations.websocket.restore_failed")
    assert auth == {"type": "auth_ok", "assistant": "offline"}
    assert frame == {"type": "error", "code": "internal_error", "error_id": frame["error_id"]}
    assert len(failures) == 1
    assert logged_errors(caplog) == failures
    assert failures[0].error_id == frame["error_id"]
    assert failures[0].tenant_id == public_key.api_key.tenant_id


def test_restore_database_down_keeps_socket(ws_url, public_key, monkeypatch, caplog):
    conversation = ConversationFactory(tenant=public_key.api_key.tenant)

    def session_conversation_get_database_down(**kwargs):
        with database_at_closed_port():
            return session_conversation_get(**kwargs)

    monkeypatch.setattr(
        "conversations.consumers.session_conversation_get",
        session_conversation_get_database_down,
    )
    caplog.set_level("ERROR")

    with open_socket(ws_url) as ws:
        auth = authenticate(ws, public_key.raw_key, conversation_id=conversation.public_id)
        frame = receive(ws)
        assert_open(ws)

    failures = logged_events(caplog, "conversations.websocket.restore_failed")
    assert auth == {"type": "auth_ok", "assistant": "offline"}
    assert frame == DATABASE_DOWN_FRAME
    assert len(failures) == 1
    assert logged_errors(caplog) == failures
    assert failures[0].code == "database_unavailable"
    assert failures[0].tenant_id == public_key.api_key.tenant_id


def test_message_database_down_keeps_socket(ws_url, public_key, caplog):
    caplog.set_level("ERROR")

    with open_socket(ws_url) as ws:
        auth = authenticate(ws, public_key.raw_key, store_id=STORE_ID)
        with database_at_closed_port() as port:
            send_frame(ws, {"type": "message", "text": "молоко"})
            frame = receive(ws)
            assert_open(ws)
        send_frame(ws, {"type": "message", "text": "молоко"})
        later = reply_events(ws)

    failures = logged_events(caplog, "conversations.websocket.turn_failed")
    assert auth == {"type": "auth_ok", "assistant": "offline"}
    assert frame == DATABASE_DOWN_FRAME
    assert len(failures) == 1
    assert logged_errors(caplog) == failures
    assert failures[0].code == "database_unavailable"
    assert f'"127.0.0.1", port {port} failed' in failures[0].error
    assert failures[0].tenant_id == public_key.api_key.tenant_id
    assert later[0]["type"] == "conversation_started"
    assert later[-1] == {"type": "response_complete"}
    assert Conversation.objects.count() == 1
    assert Message.objects.filter(role=Message.Role.USER).count() == 1


# Frames


@contextlib.contextmanager
def database_lost_at_search(monkeypatch) -> Iterator[None]:
    """Lose the database connection when the offline assistant starts a product search.

    The worker thread's connection is closed and every new one goes to a closed port of
    127.0.0.1 until the block ends.
    """
    saved = {key: connection.settings_dict[key] for key in ("HOST", "PORT")}
    search_products = ShoppingTools.search_products

    def search_products_database_lost(self, *args, **kwargs):
        connection_to_closed_port()
        return search_products(self, *args, **kwargs)

    monkeypatch.setattr(ShoppingTools, "search_products", search_products_database_lost)
    try:
        yield
    finally:
        monkeypatch.setattr(ShoppingTools, "search_products", search_products)
        connection.close()
        connection.settings_dict.update(saved)


def test_reply_database_lost_retry_gets_reply(ws_url, public_key, monkeypatch, caplog):
    caplog.set_level("INFO")

    with open_socket(ws_url) as ws:
        authenticate(ws, public_key.raw_key, store_id=STORE_ID)
        with database_lost_at_search(monkeypatch):
            send_frame(ws, {"type": "message", "text": "молоко"})
            started = receive(ws)
            frames = [receive(ws) for _ in range(3)]
        conversation_id = started["conversation_id"]
        send_frame(ws, {"type": "message", "text": "молоко", "conversation_id": conversation_id})
        later = reply_events(ws)

    conversation = Conversation.objects.get(public_id=conversation_id)
    assert started["type"] == "conversation_started"
    assert frames[0] == {"type": "status", "code": "searching"}
    assert frames[1]["code"] == "internal_error"
    assert frames[2] == DATABASE_DOWN_FRAME
    assert [frame.get("code") for frame in later if frame["type"] == "error"] == ["no_catalog_data"]
    assert later[-1] == {"type": "response_complete"}
    assert len(logged_events(caplog, "conversations.websocket.lease_released_late")) == 1
    assert logged_events(caplog, "conversations.turn.busy") == []
    assert conversation.turn_started_at is None
    assert conversation.messages.filter(role=Message.Role.USER).count() == 2
    assert conversation.messages.filter(role=Message.Role.ASSISTANT).count() == 2


def lease_log_lines(caplog) -> list[str]:
    """Return the turn and socket log lines in order, without those of auth and close.

    The server logs the close after the client has left, so that line may come too late.
    """
    names = ("conversations.websocket.", "conversations.turn.")
    left_out = ("conversations.websocket.authenticated", "conversations.websocket.closed")
    return [
        record.getMessage()
        for record in caplog.records
        if record.getMessage().startswith(names) and record.getMessage() not in left_out
    ]


def test_lease_taken_over_logs_no_late_release(ws_url, public_key, monkeypatch, caplog):
    caplog.set_level("INFO")

    with open_socket(ws_url) as ws:
        authenticate(ws, public_key.raw_key, store_id=STORE_ID)
        with database_lost_at_search(monkeypatch):
            send_frame(ws, {"type": "message", "text": "молоко"})
            started = receive(ws)
            frames = [receive(ws) for _ in range(3)]
        conversation_id = started["conversation_id"]
        # The lease expired, and a request of another socket took the conversation over
        # and finished its turn, so the socket's late release matches no row.
        Conversation.objects.filter(public_id=conversation_id).update(turn_started_at=None)
        send_frame(ws, {"type": "message", "text": "молоко", "conversation_id": conversation_id})
        later = reply_events(ws)

    assert frames[2] == DATABASE_DOWN_FRAME
    assert later[-1] == {"type": "response_complete"}
    assert lease_log_lines(caplog) == [
        "conversations.turn.failed",
        "conversations.turn.lease_release_failed",
        "conversations.websocket.turn_failed",
        "conversations.turn.abandoned_closed",
        "conversations.turn.completed",
    ]


def test_lease_released_late_log_lines(ws_url, public_key, monkeypatch, caplog):
    caplog.set_level("INFO")

    with open_socket(ws_url) as ws:
        authenticate(ws, public_key.raw_key, store_id=STORE_ID)
        with database_lost_at_search(monkeypatch):
            send_frame(ws, {"type": "message", "text": "молоко"})
            started = receive(ws)
            [receive(ws) for _ in range(3)]
        conversation_id = started["conversation_id"]
        send_frame(ws, {"type": "message", "text": "молоко", "conversation_id": conversation_id})
        reply_events(ws)

    assert lease_log_lines(caplog) == [
        "conversations.turn.failed",
        "conversations.turn.lease_release_failed",
        "conversations.websocket.turn_failed",
        "conversations.websocket.lease_released_late",
        "conversations.turn.abandoned_closed",
        "conversations.turn.completed",
    ]


def send_with_database_lost_in(ws_url, public_key, monkeypatch, target, conversation):
    """Send a message while ``target`` of conversations.services loses the database once.

    Then send it again with the database back. Return the arguments of the lost call, the
    frame of the first message and the events of the second.
    """
    original = getattr(conversations.services, target)
    calls = []

    def database_lost(**kwargs):
        calls.append(kwargs)
        connection_to_closed_port()
        return original(**kwargs)

    saved = {key: connection.settings_dict[key] for key in ("HOST", "PORT")}
    with open_socket(ws_url) as ws:
        authenticate(ws, public_key.raw_key, conversation_id=conversation.public_id)
        receive(ws)
        monkeypatch.setattr(conversations.services, target, database_lost)
        message = {"type": "message", "text": "молоко", "conversation_id": conversation.public_id}
        try:
            send_frame(ws, message)
            frame = receive(ws)
        finally:
            monkeypatch.setattr(conversations.services, target, original)
            connection.close()
            connection.settings_dict.update(saved)
        send_frame(ws, message)
        later = reply_events(ws)
    return calls, frame, later


def test_lease_never_taken_logs_no_late_release(ws_url, public_key, monkeypatch, caplog):
    conversation = ConversationFactory(tenant=public_key.api_key.tenant)
    caplog.set_level("INFO")

    _, frame, later = send_with_database_lost_in(
        ws_url, public_key, monkeypatch, "turn_lease_acquire", conversation
    )

    conversation.refresh_from_db()
    assert frame == DATABASE_DOWN_FRAME
    assert later[-1] == {"type": "response_complete"}
    assert lease_log_lines(caplog) == [
        "conversations.websocket.turn_failed",
        "conversations.turn.completed",
    ]
    assert conversation.turn_started_at is None
    assert conversation.messages.filter(role=Message.Role.USER).count() == 1


def test_start_database_lost_retry_gets_reply(ws_url, public_key, monkeypatch, caplog):
    conversation = ConversationFactory(tenant=public_key.api_key.tenant)
    caplog.set_level("INFO")

    counted, frame, later = send_with_database_lost_in(
        ws_url, public_key, monkeypatch, "message_limits_take", conversation
    )

    conversation.refresh_from_db()
    assert len(counted) == 1
    assert frame == DATABASE_DOWN_FRAME
    assert len(logged_events(caplog, "conversations.turn.lease_release_failed")) == 1
    assert len(logged_events(caplog, "conversations.websocket.lease_released_late")) == 1
    assert logged_events(caplog, "conversations.turn.busy") == []
    assert [frame.get("code") for frame in later if frame["type"] == "error"] == ["no_catalog_data"]
    assert later[-1] == {"type": "response_complete"}
    assert conversation.turn_started_at is None
    assert conversation.messages.filter(role=Message.Role.USER).count() == 1


def test_ping_is_answered_with_pong(ws_url, public_key):
    with open_socket(ws_url) as ws:
        authenticate(ws, public_key.raw_key)
        assert_open(ws)


def test_unanswered_server_ping_closes_4408(ws_url, settings, public_key):
    settings.WEBSOCKET_PING_INTERVAL_SECONDS = 0.1
    settings.WEBSOCKET_PONG_TIMEOUT_SECONDS = 0.3
    with open_socket(ws_url) as ws:
        authenticate(ws, public_key.raw_key)
        assert receive(ws) == {"type": "ping"}
        send_frame(ws, {"type": "pong"})
        assert receive(ws) == {"type": "ping"}
        assert close_code(ws) == 4408


def ascii_message_frame(size: int) -> str:
    """Return a ``message`` frame of ``size`` bytes, its text padded with ASCII letters."""
    empty = json.dumps({"type": "message", "text": ""})
    return json.dumps({"type": "message", "text": "a" * (size - len(empty))})


@pytest.mark.parametrize(
    ("_case", "frame"),
    [
        (
            "multibyte text",
            json.dumps(
                {"type": "message", "text": "м" * (MAX_MESSAGE_BYTES // 2)}, ensure_ascii=False
            ),
        ),
        ("one byte over", ascii_message_frame(MAX_MESSAGE_BYTES + 1)),
        ("2 MiB", ascii_message_frame(2 * 1024 * 1024)),
    ],
)
def test_message_over_64_kb_is_rejected(ws_url, public_key, _case, frame):
    with open_socket(ws_url) as ws:
        authenticate(ws, public_key.raw_key, store_id=STORE_ID)
        ws.send(frame)
        assert receive(ws) == {
            "type": "error",
            "code": "message_too_large",
            "detail": "The message is larger than 65536 bytes; send a shorter text.",
            "max_size": 65536,
        }
        assert_open(ws)
    assert Conversation.objects.count() == 0


def test_frame_of_max_size_is_accepted(ws_url, public_key):
    with open_socket(ws_url) as ws:
        authenticate(ws, public_key.raw_key, store_id=STORE_ID)
        ws.send(ascii_message_frame(MAX_MESSAGE_BYTES))
        assert receive(ws)["type"] == "conversation_started"
        assert reply_events(ws)[-1] == {"type": "response_complete"}
    assert Message.objects.filter(role=Message.Role.USER).count() == 1


def test_invalid_json_keeps_socket_open(ws_url, public_key):
    with open_socket(ws_url) as ws:
        authenticate(ws, public_key.raw_key)
        ws.send("{not json")
        assert receive(ws) == {
            "type": "error",
            "code": "invalid_json",
            "detail": "The message is not valid JSON.",
        }
        send_frame(ws, {"type": "message"})
        assert receive(ws) == {
            "type": "error",
            "code": "invalid_json",
            "detail": "The message is invalid.",
            "fields": {"text": ["This field is required."]},
        }
        assert_open(ws)
    assert Conversation.objects.count() == 0


def test_deeply_nested_json_is_rejected(ws_url, public_key):
    nested = "[" * 30_000 + "]" * 30_000
    with open_socket(ws_url) as ws:
        authenticate(ws, public_key.raw_key, store_id=STORE_ID)
        ws.send(nested)
        assert receive(ws) == {
            "type": "error",
            "code": "invalid_json",
            "detail": "The message is nested too deeply.",
        }
        assert_open(ws)
    with open_socket(ws_url) as ws:
        ws.send('{"type": "auth", "token": ' + nested + "}")
        assert receive(ws) == {
            "type": "error",
            "code": "invalid_json",
            "detail": "The message is nested too deeply.",
        }
        assert close_code(ws) == 4001
    assert Conversation.objects.count() == 0


def test_action_is_not_supported(ws_url, public_key):
    with open_socket(ws_url) as ws:
        authenticate(ws, public_key.raw_key)
        send_frame(ws, {"type": "action", "sku": "milk-001"})
        assert receive(ws) == {
            "type": "error",
            "code": "invalid_json",
            "detail": "Actions are not supported yet; send the shopper's choice as a message.",
            "reason": "action_not_supported",
        }


def test_connection_rate_limit_has_retry_after(ws_url, tenant, public_key):
    AssistantSettings.objects.filter(tenant=tenant).update(rate_limit_messages=2)
    with open_socket(ws_url) as ws:
        authenticate(ws, public_key.raw_key, store_id=STORE_ID)
        for _ in range(2):
            send_frame(ws, {"type": "message", "text": "молоко"})
            first = receive(ws)
            assert first["type"] == "conversation_started", first
            assert reply_events(ws)[-1] == {"type": "response_complete"}
        # A new conversation each time, so only the connection's count is full.
        send_frame(ws, {"type": "message", "text": "молоко"})
        rejection = receive(ws)
    assert rejection["code"] == "rate_limit_exceeded"
    assert 59 <= rejection["retry_after"] <= 60
    assert rejection["limit"] == 2
    assert rejection["window_seconds"] == 60
    assert Conversation.objects.count() == 2
    assert Message.objects.filter(role=Message.Role.USER).count() == 2


def test_busy_conversation_gets_agent_busy(ws_url, tenant, public_key):
    conversation = ConversationFactory(tenant=tenant)
    lease = turn_lease_acquire(conversation=conversation)
    assert lease is not None
    with open_socket(ws_url) as ws:
        authenticate(ws, public_key.raw_key)
        send_frame(
            ws, {"type": "message", "text": "молоко", "conversation_id": conversation.public_id}
        )
        rejection = receive(ws)
    assert rejection["code"] == "agent_busy"
    assert conversation.messages.count() == 0
    conversation.refresh_from_db()
    assert conversation.turn_started_at == lease.started_at


# Conversations


def test_tenant_isolation(ws_url, public_key, other_tenant):
    theirs = ConversationFactory(tenant=other_tenant)
    not_found = {"type": "error", "code": "not_found", "detail": "Conversation not found."}
    with open_socket(ws_url) as ws:
        assert authenticate(ws, public_key.raw_key, conversation_id=theirs.public_id) == {
            "type": "auth_ok",
            "assistant": "offline",
        }
        assert receive(ws) == not_found
        send_frame(ws, {"type": "message", "text": "молоко", "conversation_id": theirs.public_id})
        assert receive(ws) == not_found
        send_frame(ws, {"type": "message", "text": "молоко", "conversation_id": "conv_unknown"})
        assert receive(ws) == not_found
    theirs.refresh_from_db()
    assert theirs.messages.count() == 0
    assert theirs.turn_started_at is None
    assert Conversation.objects.count() == 1


@pytest.mark.parametrize("state", ["busy", "expired"])
def test_other_tenants_conversation_state_is_hidden(
    ws_url, public_key, other_tenant, state, caplog
):
    caplog.set_level(logging.INFO)
    theirs = ConversationFactory(tenant=other_tenant)
    if state == "busy":
        assert turn_lease_acquire(conversation=theirs) is not None
    else:
        Conversation.objects.filter(pk=theirs.pk).update(
            updated_at=timezone.now() - timedelta(seconds=3601)
        )
    row_before = Conversation.objects.filter(pk=theirs.pk).values().get()
    not_found = {"type": "error", "code": "not_found", "detail": "Conversation not found."}
    with open_socket(ws_url) as ws:
        authenticate(ws, public_key.raw_key, conversation_id=theirs.public_id)
        assert receive(ws) == not_found
        send_frame(ws, {"type": "message", "text": "молоко", "conversation_id": theirs.public_id})
        assert receive(ws) == not_found
    assert Conversation.objects.filter(pk=theirs.pk).values().get() == row_before
    assert theirs.messages.count() == 0
    assert UserDailyUsage.objects.count() == 0
    logged_tenants = {getattr(record, "tenant_id", None) for record in caplog.records}
    assert logged_tenants - {None} == {public_key.api_key.tenant_id}


def test_idle_session_expires(ws_url, tenant, public_key):
    conversation = ConversationFactory(tenant=tenant)
    Conversation.objects.filter(pk=conversation.pk).update(
        updated_at=timezone.now() - timedelta(seconds=3601)
    )
    with open_socket(ws_url) as ws:
        authenticate(ws, public_key.raw_key, conversation_id=conversation.public_id)
        rejection = receive(ws)
    assert rejection["code"] == "not_found"
    assert rejection["reason"] == "session_expired"


@pytest.fixture
def shop(tenant, catalog, merchant):
    """Tenant A with its catalog and the reference merchant, cart GET included."""
    tenant.webhook_settings.cart_get_url = merchant.cart_get_url
    tenant.webhook_settings.save()
    return merchant


SHOPPER_MESSAGES = ["молоко", "додай перший", "кефір"]


def test_events_match_rest_api(ws_url, shop, chat_client, public_key):
    socket_replies = []
    with open_socket(ws_url) as ws:
        authenticate(ws, public_key.raw_key, store_id=STORE_ID)
        send_frame(ws, {"type": "message", "text": SHOPPER_MESSAGES[0]})
        started = receive(ws)
        socket_replies.append(reply_events(ws))
        for text in SHOPPER_MESSAGES[1:]:
            send_frame(
                ws, {"type": "message", "text": text, "conversation_id": started["conversation_id"]}
            )
            socket_replies.append(reply_events(ws))

    created = chat_client.post("/api/v1/conversations", {"store_id": STORE_ID}, format="json")
    rest_conversation = Conversation.objects.get(public_id=created.json()["conversation_id"])
    rest_replies = [send(chat_client, rest_conversation, text) for text in SHOPPER_MESSAGES]

    conversation = Conversation.objects.get(public_id=started["conversation_id"])
    assert started == {
        "type": "conversation_started",
        "conversation_id": conversation.public_id,
        "store_id": STORE_ID,
        "session_id": conversation.session_id,
        "assistant": "offline",
    }
    assert socket_replies == rest_replies
    assert [event["type"] for event in socket_replies[0]] == [
        "status",
        "text_delta",
        "text_end",
        "product_cards",
        "response_complete",
    ]
    stored = conversation.messages.filter(role=Message.Role.ASSISTANT).order_by("created_at")
    assert [message.events for message in stored] == socket_replies


def test_reconnect_restores_cart(ws_url, shop, public_key):
    with open_socket(ws_url) as ws:
        authenticate(ws, public_key.raw_key, store_id=STORE_ID)
        send_frame(ws, {"type": "message", "text": "молоко"})
        conversation_id = receive(ws)["conversation_id"]
        reply_events(ws)
        send_frame(
            ws, {"type": "message", "text": "додай перший", "conversation_id": conversation_id}
        )
        added = reply_events(ws)
    assert any(event["type"] == "cart_changed" for event in added)

    with open_socket(ws_url) as ws:
        authenticate(ws, public_key.raw_key, conversation_id=conversation_id)
        restored = receive(ws)
        send_frame(ws, {"type": "message", "text": "кефір", "conversation_id": conversation_id})
        assert reply_events(ws)[-1] == {"type": "response_complete"}

    conversation = Conversation.objects.get(public_id=conversation_id)
    assert restored == {
        "type": "session_restored",
        "conversation_id": conversation_id,
        "store_id": STORE_ID,
        "selected_items": conversation.cart["items"],
        "total": conversation.cart["total"],
        "pending_tools": [],
    }
    assert len(restored["selected_items"]) == 1
    # The cart is loaded with the conversation's first message only.
    assert len(cart_gets(shop)) == 1


class BlockingAssistant:
    """Sends one text piece, then waits for ``release`` before the rest of its reply."""

    name = "offline"

    def __init__(self) -> None:
        self.release = threading.Event()

    def respond(self, turn: Turn) -> Iterator[dict]:
        yield events.text_delta("Шукаю")
        self.release.wait(timeout=10)
        yield events.text_end()
        yield events.text_delta("ще")
        yield events.text_end()


def test_disconnect_mid_reply_saves_it(ws_url, tenant, public_key, monkeypatch):
    assistant = BlockingAssistant()
    monkeypatch.setattr("conversations.services.get_assistant", lambda tenant: assistant)
    try:
        with open_socket(ws_url) as ws:
            authenticate(ws, public_key.raw_key, store_id=STORE_ID)
            send_frame(ws, {"type": "message", "text": "молоко"})
            conversation_id = receive(ws)["conversation_id"]
            assert receive(ws) == {"type": "text_delta", "delta": "Шукаю"}
            # The socket still reads frames while the turn waits.
            assert_open(ws)
            send_frame(ws, {"type": "message", "text": "кефір", "conversation_id": conversation_id})
            assert receive(ws)["code"] == "agent_busy"
        # The server has seen the close once it counted the socket out.
        deadline = time.monotonic() + 5
        while OpenSocket.objects.filter(api_key_id=public_key.api_key.pk).exists():
            assert time.monotonic() < deadline, "the server did not see the close"
            time.sleep(0.01)
    finally:
        assistant.release.set()

    conversation = Conversation.objects.get(public_id=conversation_id)
    deadline = time.monotonic() + 5
    while not conversation.messages.filter(role=Message.Role.ASSISTANT).exists():
        assert time.monotonic() < deadline, "the interrupted reply was not saved"
        time.sleep(0.02)
    reply = conversation.messages.get(role=Message.Role.ASSISTANT)
    assert reply.events == [{"type": "text_delta", "delta": "Шукаю"}, {"type": "text_end"}]
    assert reply.metadata["interrupted"] == "client_disconnected"
    assert [message.text for message in conversation.messages.filter(role="user")] == ["молоко"]
    deadline = time.monotonic() + 5
    while Conversation.objects.get(pk=conversation.pk).turn_started_at is not None:
        assert time.monotonic() < deadline, "the lease was not released"
        time.sleep(0.02)


def test_shutdown_waits_for_running_turn(ws_server, public_key, monkeypatch):
    assistant = BlockingAssistant()
    monkeypatch.setattr("conversations.services.get_assistant", lambda tenant: assistant)
    try:
        with open_socket(ws_server.url) as ws:
            authenticate(ws, public_key.raw_key, store_id=STORE_ID)
            send_frame(ws, {"type": "message", "text": "молоко"})
            conversation_id = receive(ws)["conversation_id"]
            assert receive(ws) == {"type": "text_delta", "delta": "Шукаю"}
            # What uvicorn does on SIGTERM.
            ws_server.server.should_exit = True
            assert close_code(ws) == 1012
        ws_server.thread.join(timeout=0.5)
        assert ws_server.thread.is_alive(), "uvicorn exited while a turn was running"
    finally:
        assistant.release.set()
    ws_server.thread.join(timeout=10)
    assert not ws_server.thread.is_alive()

    # Stored before uvicorn returned, so there is nothing to wait for.
    conversation = Conversation.objects.get(public_id=conversation_id)
    assert conversation.turn_started_at is None
    reply = conversation.messages.get(role=Message.Role.ASSISTANT)
    assert reply.events == [{"type": "text_delta", "delta": "Шукаю"}, {"type": "text_end"}]
    assert reply.metadata["interrupted"] == "client_disconnected"
    assert [message.text for message in conversation.messages.filter(role="user")] == ["молоко"]


def test_rejected_first_message_counts_conversation(ws_url, tenant, public_key):
    AssistantSettings.objects.filter(tenant=tenant).update(user_daily_message_limit=1)
    with open_socket(ws_url) as ws:
        authenticate(ws, public_key.raw_key, store_id=STORE_ID)
        send_frame(ws, {"type": "message", "text": "молоко"})
        assert receive(ws)["type"] == "conversation_started"
        assert reply_events(ws)[-1] == {"type": "response_complete"}
        send_frame(ws, {"type": "message", "text": "хліб"})
        started = receive(ws)
        rejection = receive(ws)
    assert started["type"] == "conversation_started"
    assert rejection["code"] == "user_message_limit"
    assert rejection["limit"] == 1
    empty = Conversation.objects.get(public_id=started["conversation_id"])
    assert empty.messages.count() == 0
    assert Conversation.objects.count() == 2
    [usage] = UserDailyUsage.objects.filter(tenant=tenant)
    assert usage.conversations == 2
    assert usage.messages == 1


# Daily limits of anonymous shoppers: the same client address rule as the REST API

SHOPPER_A = "203.0.113.7"
SHOPPER_B = "198.51.100.20"
# The peer of every socket, because the test client connects from this address.
TEST_PEER = "127.0.0.1"


def count_client_networks(*tenants, **limits: int) -> None:
    """Set ``tenants`` to count anonymous public-key shoppers per client network."""
    for each in tenants:
        AssistantSettings.objects.filter(tenant=each).update(
            anonymous_limit_identity="client_network", **limits
        )


def network_identity(tenant, address: str) -> str:
    return network_limit_key(tenant_id=tenant.pk, address=ip_address(address))


def start_conversation(url: str, token: str, *, headers: HeadersLike | None = None) -> dict:
    """Send one message without a conversation id; return the first frame of the response.

    That frame is ``conversation_started`` or the ``error`` that rejected the conversation.
    """
    with open_socket(url, headers=headers) as ws:
        assert authenticate(ws, token, store_id=STORE_ID)["type"] == "auth_ok"
        send_frame(ws, {"type": "message", "text": "молоко"})
        first = receive(ws)
        if first["type"] == "conversation_started":
            assert reply_events(ws)[-1] == {"type": "response_complete"}
        return first


@pytest.mark.parametrize(
    ("trusted_proxies", "forwarded_for"),
    [(1, "{client}"), (1, "192.0.2.66, {client}"), (2, "192.0.2.66, {client}, 10.0.0.2")],
)
def test_socket_counts_per_forwarded_client(
    ws_url, tenant, public_key, settings, trusted_proxies, forwarded_for
):
    settings.TRUSTED_PROXY_COUNT = trusted_proxies
    count_client_networks(tenant, user_daily_conversation_limit=1)

    def headers(client: str) -> dict[str, str]:
        return {"X-Forwarded-For": forwarded_for.format(client=client)}

    first = start_conversation(ws_url, public_key.raw_key, headers=headers(SHOPPER_A))
    rejected = start_conversation(ws_url, public_key.raw_key, headers=headers(SHOPPER_A))
    other = start_conversation(ws_url, public_key.raw_key, headers=headers(SHOPPER_B))

    assert first["type"] == "conversation_started"
    assert rejected["type"] == "error"
    assert rejected["code"] == "user_conversation_limit"
    assert rejected["limit"] == 1
    assert other["type"] == "conversation_started"
    identities = dict(Conversation.objects.values_list("public_id", "limit_identity"))
    assert identities == {
        first["conversation_id"]: network_identity(tenant, SHOPPER_A),
        other["conversation_id"]: network_identity(tenant, SHOPPER_B),
    }
    usage = dict(UserDailyUsage.objects.values_list("identity", "conversations"))
    assert usage == {
        network_identity(tenant, SHOPPER_A): 1,
        network_identity(tenant, SHOPPER_B): 1,
    }


def test_socket_ignores_forged_forwarded_for(ws_url, tenant, public_key, settings):
    settings.TRUSTED_PROXY_COUNT = 0
    count_client_networks(tenant, user_daily_conversation_limit=1)

    first = start_conversation(ws_url, public_key.raw_key, headers={"X-Forwarded-For": SHOPPER_A})
    forged = start_conversation(ws_url, public_key.raw_key, headers={"X-Forwarded-For": SHOPPER_B})

    assert first["type"] == "conversation_started"
    assert forged["code"] == "user_conversation_limit"
    assert Conversation.objects.get().limit_identity == network_identity(tenant, TEST_PEER)
    usage = dict(UserDailyUsage.objects.values_list("identity", "conversations"))
    assert usage == {network_identity(tenant, TEST_PEER): 1}


@pytest.mark.parametrize(
    ("headers", "reason", "forwarded_addresses"),
    [
        ({}, "forwarded_for_too_short", 0),
        ({"X-Forwarded-For": SHOPPER_A}, "forwarded_for_too_short", 1),
        ({"X-Forwarded-For": f"{SHOPPER_A}, unknown"}, "forwarded_for_invalid", 2),
    ],
)
def test_socket_unusable_forwarded_for_counts_peer(
    ws_url, tenant, public_key, settings, caplog, headers, reason, forwarded_addresses
):
    settings.TRUSTED_PROXY_COUNT = 2 if reason == "forwarded_for_too_short" else 1
    count_client_networks(tenant)

    started = start_conversation(ws_url, public_key.raw_key, headers=headers)

    assert started["type"] == "conversation_started"
    assert Conversation.objects.get().limit_identity == network_identity(tenant, TEST_PEER)
    records = [
        record
        for record in caplog.records
        if record.msg == "conversations.identity.client_address_fallback"
    ]
    assert len(records) == 1
    assert records[0].reason == reason
    assert records[0].forwarded_addresses == forwarded_addresses
    assert records[0].counted_by == "peer"


def test_socket_forwarded_for_headers_are_joined(ws_url, tenant, public_key, settings):
    settings.TRUSTED_PROXY_COUNT = 2
    count_client_networks(tenant)

    started = start_conversation(
        ws_url,
        public_key.raw_key,
        headers=Headers([("X-Forwarded-For", SHOPPER_A), ("X-Forwarded-For", "10.0.0.2")]),
    )

    assert started["type"] == "conversation_started"
    assert Conversation.objects.get().limit_identity == network_identity(tenant, SHOPPER_A)


def test_socket_secret_key_keeps_key_identity(ws_url, tenant, secret_key, settings, caplog):
    settings.TRUSTED_PROXY_COUNT = 1
    count_client_networks(tenant)

    started = start_conversation(ws_url, secret_key.raw_key, headers={"X-Forwarded-For": SHOPPER_A})

    assert started["type"] == "conversation_started"
    assert Conversation.objects.get().limit_identity == f"key:{secret_key.api_key.pk}"
    assert "conversations.identity.client_address_fallback" not in caplog.messages


def test_socket_address_counts_apart_per_tenant(
    ws_url, tenant, other_tenant, public_key, other_public_key, settings
):
    settings.TRUSTED_PROXY_COUNT = 1
    count_client_networks(tenant, other_tenant, user_daily_conversation_limit=1)
    headers = {"X-Forwarded-For": SHOPPER_A}

    first = start_conversation(ws_url, public_key.raw_key, headers=headers)
    over = start_conversation(ws_url, public_key.raw_key, headers=headers)
    elsewhere = start_conversation(ws_url, other_public_key.raw_key, headers=headers)

    assert first["type"] == "conversation_started"
    assert over["code"] == "user_conversation_limit"
    assert elsewhere["type"] == "conversation_started"
    assert Conversation.objects.get(tenant=other_tenant).limit_identity == network_identity(
        other_tenant, SHOPPER_A
    )


def test_socket_default_counts_by_the_key(
    ws_url, tenant, other_tenant, public_key, other_public_key, settings, caplog
):
    settings.TRUSTED_PROXY_COUNT = 1
    AssistantSettings.objects.filter(tenant=tenant).update(user_daily_conversation_limit=1)
    count_client_networks(other_tenant, user_daily_conversation_limit=1)

    first = start_conversation(ws_url, public_key.raw_key, headers={"X-Forwarded-For": SHOPPER_A})
    rejected = start_conversation(
        ws_url, public_key.raw_key, headers={"X-Forwarded-For": SHOPPER_B}
    )
    elsewhere = [
        start_conversation(ws_url, other_public_key.raw_key, headers={"X-Forwarded-For": client})
        for client in (SHOPPER_A, SHOPPER_B)
    ]

    assert first["type"] == "conversation_started"
    assert rejected["type"] == "error"
    assert rejected["code"] == "user_conversation_limit"
    assert rejected["limit"] == 1
    assert [frame["type"] for frame in elsewhere] == ["conversation_started"] * 2
    key_identity = f"key:{public_key.api_key.pk}"
    assert Conversation.objects.get(tenant=tenant).limit_identity == key_identity
    usage = dict(
        UserDailyUsage.objects.filter(tenant=tenant).values_list("identity", "conversations")
    )
    assert usage == {key_identity: 1}
    assert "conversations.identity.client_address_fallback" not in caplog.messages
