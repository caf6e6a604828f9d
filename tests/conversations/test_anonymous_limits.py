"""Daily limits of anonymous shoppers counted per client network, through the chat API.

The ``tenant`` of every test here chose ``client_network``. ``other_tenant`` keeps the
default, ``api_key``, unless a test changes it.
"""

import hashlib
import hmac
import logging
from datetime import UTC, datetime, time, timedelta
from ipaddress import ip_address

import pytest
from django.utils import timezone

from conversations.identity import NETWORK_IDENTITY_SALT, network_limit_key
from conversations.models import Conversation, UserDailyUsage
from tests.factories import ConversationFactory

pytestmark = pytest.mark.django_db

CREATE_URL = "/api/v1/conversations"
SHOPPER_A = "203.0.113.7"
SHOPPER_B = "198.51.100.20"
PROXY = "10.0.0.1"
FALLBACK_EVENT = "conversations.identity.client_address_fallback"


def create(client, **headers):
    return client.post(CREATE_URL, {"store_id": "store-1"}, format="json", **headers)


def set_limits(tenant, **values) -> None:
    for name, value in values.items():
        setattr(tenant.assistant_settings, name, value)
    tenant.assistant_settings.save()


@pytest.fixture(autouse=True)
def _tenant_counts_client_networks(tenant) -> None:
    set_limits(tenant, anonymous_limit_identity="client_network")


def identity_of(tenant, address: str) -> str:
    return network_limit_key(tenant_id=tenant.pk, address=ip_address(address))


def usage_counts(tenant) -> dict[str, int]:
    return dict(
        UserDailyUsage.objects.filter(tenant=tenant).values_list("identity", "conversations")
    )


def fallback_records(caplog) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.msg == FALLBACK_EVENT]


def test_identity_is_a_keyed_hash_of_the_network(settings, tenant):
    key = hashlib.sha256((NETWORK_IDENTITY_SALT + settings.SECRET_KEY).encode()).digest()
    expected = hmac.new(key, f"{tenant.pk}/{SHOPPER_A}".encode(), hashlib.sha256).hexdigest()

    identity = identity_of(tenant, SHOPPER_A)

    assert identity == f"ip:{expected}"
    assert SHOPPER_A not in identity


def test_identity_changes_with_the_secret_key(settings, tenant):
    before = identity_of(tenant, SHOPPER_A)
    settings.SECRET_KEY = "another-secret-key-for-this-test-only"

    assert identity_of(tenant, SHOPPER_A) != before


def test_shoppers_at_two_addresses_count_apart(chat_client, tenant):
    statuses = [create(chat_client, REMOTE_ADDR=SHOPPER_A).status_code for _ in range(20)]

    rejected = create(chat_client, REMOTE_ADDR=SHOPPER_A)
    other = create(chat_client, REMOTE_ADDR=SHOPPER_B)

    assert statuses == [201] * 20
    assert rejected.status_code == 429
    tomorrow = timezone.now().date() + timedelta(days=1)
    assert rejected.json() == {
        "detail": "This user started the maximum of 20 conversations for today (UTC). The "
        "count resets at midnight UTC.",
        "code": "user_conversation_limit",
        "limit": 20,
        "resets_at": datetime.combine(tomorrow, time.min, tzinfo=UTC).isoformat(),
    }
    assert other.status_code == 201
    assert Conversation.objects.filter(limit_identity=identity_of(tenant, SHOPPER_A)).count() == 20
    assert Conversation.objects.filter(limit_identity=identity_of(tenant, SHOPPER_B)).count() == 1
    assert Conversation.objects.count() == 21
    assert usage_counts(tenant) == {
        identity_of(tenant, SHOPPER_A): 20,
        identity_of(tenant, SHOPPER_B): 1,
    }


def test_new_conversation_stores_the_network_identity(chat_client, tenant):
    response = create(chat_client, REMOTE_ADDR=SHOPPER_A)

    assert response.status_code == 201
    conversation = Conversation.objects.get()
    assert conversation.limit_identity == identity_of(tenant, SHOPPER_A)
    assert conversation.user_id == ""
    assert conversation.session_id.startswith("anon_")


def test_ipv6_addresses_of_one_64_share_a_count(chat_client, tenant):
    set_limits(tenant, user_daily_conversation_limit=2)

    statuses = [
        create(chat_client, REMOTE_ADDR=address).status_code
        for address in ("2001:db8:1:2::1", "2001:db8:1:2:ffff::9", "2001:db8:1:2::abcd")
    ]
    neighbour = create(chat_client, REMOTE_ADDR="2001:db8:1:3::1")

    assert statuses == [201, 201, 429]
    assert neighbour.status_code == 201
    assert identity_of(tenant, "2001:db8:1:2::1") == identity_of(tenant, "2001:db8:1:2::abcd")
    assert usage_counts(tenant) == {
        identity_of(tenant, "2001:db8:1:2::1"): 2,
        identity_of(tenant, "2001:db8:1:3::1"): 1,
    }


def test_ipv4_mapped_peer_counts_as_ipv4(chat_client, tenant):
    set_limits(tenant, user_daily_conversation_limit=1)

    first = create(chat_client, REMOTE_ADDR=SHOPPER_A)
    mapped = create(chat_client, REMOTE_ADDR=f"::ffff:{SHOPPER_A}")

    assert first.status_code == 201
    assert mapped.status_code == 429
    assert usage_counts(tenant) == {identity_of(tenant, SHOPPER_A): 1}


def test_no_trusted_proxy_ignores_forged_forwarded_for(chat_client, tenant, settings, caplog):
    settings.TRUSTED_PROXY_COUNT = 0
    set_limits(tenant, user_daily_conversation_limit=1)

    first = create(chat_client, REMOTE_ADDR=SHOPPER_A)
    forged = create(chat_client, REMOTE_ADDR=SHOPPER_A, HTTP_X_FORWARDED_FOR=SHOPPER_B)

    assert first.status_code == 201
    assert forged.status_code == 429
    assert forged.json()["code"] == "user_conversation_limit"
    assert Conversation.objects.count() == 1
    assert usage_counts(tenant) == {identity_of(tenant, SHOPPER_A): 1}
    assert fallback_records(caplog) == []


@pytest.mark.parametrize(
    ("trusted_proxies", "forwarded_for"),
    [
        (1, f"{SHOPPER_B}, {SHOPPER_A}"),
        (2, f"{SHOPPER_B}, {SHOPPER_A}, 10.0.0.2"),
    ],
)
def test_trusted_proxies_read_their_entry(
    chat_client, tenant, settings, caplog, trusted_proxies, forwarded_for
):
    settings.TRUSTED_PROXY_COUNT = trusted_proxies

    response = create(chat_client, REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=forwarded_for)

    assert response.status_code == 201
    assert Conversation.objects.get().limit_identity == identity_of(tenant, SHOPPER_A)
    assert usage_counts(tenant) == {identity_of(tenant, SHOPPER_A): 1}
    assert fallback_records(caplog) == []


def test_trusted_proxy_gives_each_client_its_count(chat_client, tenant, settings):
    settings.TRUSTED_PROXY_COUNT = 1
    set_limits(tenant, user_daily_conversation_limit=1)

    first = create(chat_client, REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=SHOPPER_A)
    again = create(chat_client, REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=f"{SHOPPER_B}, {SHOPPER_A}")
    other = create(chat_client, REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=SHOPPER_B)

    assert first.status_code == 201
    assert again.status_code == 429
    assert other.status_code == 201
    assert usage_counts(tenant) == {
        identity_of(tenant, SHOPPER_A): 1,
        identity_of(tenant, SHOPPER_B): 1,
    }


@pytest.mark.parametrize(
    ("trusted_proxies", "headers", "reason", "forwarded_addresses"),
    [
        (1, {}, "forwarded_for_too_short", 0),
        (2, {"HTTP_X_FORWARDED_FOR": SHOPPER_B}, "forwarded_for_too_short", 1),
        (1, {"HTTP_X_FORWARDED_FOR": f"{SHOPPER_B}, unknown"}, "forwarded_for_invalid", 2),
        (1, {"HTTP_X_FORWARDED_FOR": ""}, "forwarded_for_invalid", 1),
    ],
)
def test_unusable_forwarded_for_counts_the_peer(
    chat_client,
    public_key,
    tenant,
    settings,
    caplog,
    trusted_proxies,
    headers,
    reason,
    forwarded_addresses,
):
    settings.TRUSTED_PROXY_COUNT = trusted_proxies
    caplog.set_level(logging.INFO, logger="conversations.identity")

    response = create(chat_client, REMOTE_ADDR=SHOPPER_A, **headers)

    assert response.status_code == 201
    assert Conversation.objects.get().limit_identity == identity_of(tenant, SHOPPER_A)
    [record] = fallback_records(caplog)
    assert record.levelno == logging.WARNING
    assert record.tenant_id == tenant.pk
    assert record.api_key == public_key.api_key.prefix
    assert record.reason == reason
    assert record.trusted_proxies == trusted_proxies
    assert record.forwarded_addresses == forwarded_addresses
    assert record.counted_by == "peer"


def test_invalid_peer_counts_the_key(chat_client, public_key, tenant, caplog):
    response = create(chat_client, REMOTE_ADDR="")

    assert response.status_code == 201
    assert Conversation.objects.get().limit_identity == f"key:{public_key.api_key.pk}"
    [record] = fallback_records(caplog)
    assert record.reason == "peer_invalid"
    assert record.counted_by == "api_key"


def test_secret_key_keeps_the_key_identity(server_client, secret_key, tenant, settings, caplog):
    settings.TRUSTED_PROXY_COUNT = 1
    set_limits(tenant, user_daily_conversation_limit=1)

    first = create(server_client, REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=SHOPPER_A)
    second = create(server_client, REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=SHOPPER_B)

    assert first.status_code == 201
    assert second.status_code == 429
    assert Conversation.objects.get().limit_identity == f"key:{secret_key.api_key.pk}"
    assert usage_counts(tenant) == {f"key:{secret_key.api_key.pk}": 1}
    assert fallback_records(caplog) == []


def test_same_address_counts_apart_at_two_tenants(
    chat_client, other_chat_client, tenant, other_tenant
):
    set_limits(tenant, user_daily_conversation_limit=1)
    set_limits(
        other_tenant, user_daily_conversation_limit=1, anonymous_limit_identity="client_network"
    )

    first = create(chat_client, REMOTE_ADDR=SHOPPER_A)
    over = create(chat_client, REMOTE_ADDR=SHOPPER_A)
    elsewhere = create(other_chat_client, REMOTE_ADDR=SHOPPER_A)

    assert first.status_code == 201
    assert over.status_code == 429
    assert elsewhere.status_code == 201
    assert identity_of(tenant, SHOPPER_A) != identity_of(other_tenant, SHOPPER_A)
    assert usage_counts(tenant) == {identity_of(tenant, SHOPPER_A): 1}
    assert usage_counts(other_tenant) == {identity_of(other_tenant, SHOPPER_A): 1}
    assert Conversation.objects.get(tenant=other_tenant).limit_identity == identity_of(
        other_tenant, SHOPPER_A
    )


def test_other_tenant_keeps_the_key_identity(
    chat_client, other_chat_client, other_public_key, tenant, other_tenant, caplog
):
    set_limits(tenant, user_daily_conversation_limit=1)
    set_limits(other_tenant, user_daily_conversation_limit=1)
    other_key_identity = f"key:{other_public_key.api_key.pk}"

    here = [create(chat_client, REMOTE_ADDR=address) for address in (SHOPPER_A, SHOPPER_B)]
    there = [create(other_chat_client, REMOTE_ADDR=address) for address in (SHOPPER_A, SHOPPER_B)]

    assert [response.status_code for response in here] == [201, 201]
    assert [response.status_code for response in there] == [201, 429]
    assert there[1].json()["code"] == "user_conversation_limit"
    assert usage_counts(tenant) == {
        identity_of(tenant, SHOPPER_A): 1,
        identity_of(tenant, SHOPPER_B): 1,
    }
    assert usage_counts(other_tenant) == {other_key_identity: 1}
    assert Conversation.objects.get(tenant=other_tenant).limit_identity == other_key_identity
    assert fallback_records(caplog) == []


def test_switch_back_keeps_stored_network_identity(chat_client, public_key, tenant):
    created = create(chat_client, REMOTE_ADDR=SHOPPER_A)
    set_limits(tenant, anonymous_limit_identity="api_key")

    message = chat_client.post(
        f"/api/v1/conversations/{created.json()['conversation_id']}/messages",
        {"text": "дякую"},
        format="json",
        REMOTE_ADDR=SHOPPER_A,
    )
    later = create(chat_client, REMOTE_ADDR=SHOPPER_A)

    assert created.status_code == 201
    assert message.status_code == 200
    assert later.status_code == 201
    key_identity = f"key:{public_key.api_key.pk}"
    usage = {
        row.identity: (row.messages, row.conversations)
        for row in UserDailyUsage.objects.filter(tenant=tenant)
    }
    assert usage == {identity_of(tenant, SHOPPER_A): (1, 1), key_identity: (0, 1)}
    identities = dict(Conversation.objects.values_list("public_id", "limit_identity"))
    assert identities == {
        created.json()["conversation_id"]: identity_of(tenant, SHOPPER_A),
        later.json()["conversation_id"]: key_identity,
    }


def test_stored_key_identity_keeps_counting_messages(chat_client, public_key, tenant):
    key_identity = f"key:{public_key.api_key.pk}"
    conversation = ConversationFactory(tenant=tenant, limit_identity=key_identity)

    response = chat_client.post(
        f"/api/v1/conversations/{conversation.public_id}/messages",
        {"text": "дякую"},
        format="json",
        REMOTE_ADDR=SHOPPER_A,
    )

    assert response.status_code == 200
    usage = UserDailyUsage.objects.get(tenant=tenant)
    assert (usage.identity, usage.messages, usage.conversations) == (key_identity, 1, 0)
    conversation.refresh_from_db()
    assert conversation.limit_identity == key_identity


def test_messages_count_by_the_stored_identity(chat_client, tenant):
    created = create(chat_client, REMOTE_ADDR=SHOPPER_A)
    conversation_id = created.json()["conversation_id"]

    response = chat_client.post(
        f"/api/v1/conversations/{conversation_id}/messages",
        {"text": "дякую"},
        format="json",
        REMOTE_ADDR=SHOPPER_B,
    )

    assert response.status_code == 200
    usage = UserDailyUsage.objects.get(tenant=tenant)
    assert (usage.identity, usage.messages, usage.conversations) == (
        identity_of(tenant, SHOPPER_A),
        1,
        1,
    )
