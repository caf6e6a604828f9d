"""Trusted user ids: user tokens for public keys, reserved session ids, the limit identity."""

import time

import pytest

from conversations.identity import USER_TOKEN_MAX_LIFETIME, user_token_sign
from conversations.models import Conversation, UserDailyUsage
from tenants.services import user_token_secret_set

pytestmark = pytest.mark.django_db

CREATE_URL = "/api/v1/conversations"
VICTIM = "victim-42"


@pytest.fixture
def user_token_secret(tenant) -> str:
    return user_token_secret_set(tenant=tenant)


def token_for(secret: str, user_id: str, *, lifetime: float = 3600) -> str:
    return user_token_sign(secret=secret, user_id=user_id, expires_at=int(time.time() + lifetime))


def create(client, **body) -> object:
    return client.post(CREATE_URL, {"store_id": "store-1", **body}, format="json")


def assert_nothing_created() -> None:
    assert Conversation.objects.count() == 0
    assert UserDailyUsage.objects.count() == 0


def test_public_key_with_user_id_needs_a_token(chat_client, user_token_secret):
    response = create(chat_client, user_id=VICTIM)

    assert response.status_code == 400
    assert response.json() == {
        "detail": "A user id sent with a public key needs a user token.",
        "code": "invalid_json",
        "fields": {
            "user_token": [
                "Required with a public (pk_) key when user_id is set; the merchant's server "
                "issues it."
            ]
        },
    }
    assert_nothing_created()


def test_public_key_with_a_valid_token_gets_the_user(chat_client, tenant, user_token_secret):
    response = create(chat_client, user_id=VICTIM, user_token=token_for(user_token_secret, VICTIM))

    assert response.status_code == 201
    conversation = Conversation.objects.get()
    assert response.json()["session_id"] == VICTIM
    assert conversation.user_id == VICTIM
    assert conversation.session_id == VICTIM
    assert conversation.limit_identity == f"user:{VICTIM}"


@pytest.mark.parametrize(
    ("_case", "make_token", "reason"),
    [
        (
            "other user's token",
            lambda secret: token_for(secret, "attacker"),
            "user_token_invalid",
        ),
        (
            "wrong secret",
            lambda secret: token_for("not-the-tenant-secret-0123456789abcdef", VICTIM),
            "user_token_invalid",
        ),
        ("expired", lambda secret: token_for(secret, VICTIM, lifetime=-1), "user_token_expired"),
        (
            "lifetime over a day",
            lambda secret: token_for(
                secret, VICTIM, lifetime=USER_TOKEN_MAX_LIFETIME.total_seconds() + 3600
            ),
            "user_token_lifetime_too_long",
        ),
        (
            "expiry changed after signing",
            lambda secret: str(int(time.time()) + 7200) + token_for(secret, VICTIM)[10:],
            "user_token_invalid",
        ),
    ],
)
def test_public_key_rejects_bad_tokens(chat_client, user_token_secret, _case, make_token, reason):
    response = create(chat_client, user_id=VICTIM, user_token=make_token(user_token_secret))

    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"
    assert response.json()["reason"] == reason
    assert_nothing_created()


def test_too_long_token_lifetime_detail(chat_client, user_token_secret):
    token = token_for(
        user_token_secret, VICTIM, lifetime=USER_TOKEN_MAX_LIFETIME.total_seconds() + 3600
    )

    response = create(chat_client, user_id=VICTIM, user_token=token)

    assert response.status_code == 403
    assert response.json() == {
        "detail": "The user token expires more than 24 hours ahead; issue tokens with a "
        "shorter lifetime.",
        "code": "permission_denied",
        "reason": "user_token_lifetime_too_long",
    }
    assert_nothing_created()


def test_public_key_rejects_malformed_token(chat_client, user_token_secret):
    response = create(chat_client, user_id=VICTIM, user_token="victim-42")

    assert response.status_code == 400
    assert response.json()["fields"] == {
        "user_token": ["Expected '<expires_at>.<64 hex digits of HMAC-SHA256>'."]
    }
    assert_nothing_created()


def with_expiry_digits(token: str, digits: str) -> str:
    expires_at, signature = token.split(".")
    return f"{expires_at.translate(str.maketrans('0123456789', digits))}.{signature}"


# A regular expression's \d matches these digits, and int() reads them as 0 to 9.
@pytest.mark.parametrize(
    "digits", ["٠١٢٣٤٥٦٧٨٩", "０１２３４５６７８９"], ids=["arabic", "fullwidth"]
)
def test_public_key_rejects_token_with_non_ascii_digits(chat_client, user_token_secret, digits):
    token = with_expiry_digits(token_for(user_token_secret, VICTIM), digits)

    response = create(chat_client, user_id=VICTIM, user_token=token)

    assert response.status_code == 400
    assert response.json()["fields"] == {
        "user_token": ["Expected '<expires_at>.<64 hex digits of HMAC-SHA256>'."]
    }
    assert_nothing_created()


def test_token_is_rejected_while_the_tenant_has_no_secret(chat_client, tenant):
    token = token_for("a-secret-the-tenant-does-not-have-000000", VICTIM)

    response = create(chat_client, user_id=VICTIM, user_token=token)

    assert tenant.user_token_secret == ""
    assert response.status_code == 403
    assert response.json()["reason"] == "user_token_secret_not_set"
    assert_nothing_created()


def test_new_secret_invalidates_old_tokens(chat_client, tenant, user_token_secret):
    token = token_for(user_token_secret, VICTIM)
    user_token_secret_set(tenant=tenant)

    response = create(chat_client, user_id=VICTIM, user_token=token)

    assert response.status_code == 403
    assert response.json()["reason"] == "user_token_invalid"
    assert_nothing_created()


def test_secret_key_user_id_is_trusted_without_token(server_client):
    response = create(server_client, user_id=VICTIM)

    assert response.status_code == 201
    assert Conversation.objects.get().session_id == VICTIM


@pytest.mark.parametrize("user_id", ["anon_abc", "ANON_abc", "anon_"])
def test_generated_session_prefix_is_reserved(server_client, chat_client, user_id, tenant):
    secret = user_token_secret_set(tenant=tenant)
    responses = [
        create(server_client, user_id=user_id),
        create(chat_client, user_id=user_id, user_token=token_for(secret, user_id)),
    ]

    for response in responses:
        assert response.status_code == 400
        assert response.json()["fields"] == {
            "user_id": ["User ids starting with 'anon_' are reserved."]
        }
    assert_nothing_created()


def test_anonymous_conversations_share_the_key_identity(chat_client, public_key):
    first = create(chat_client)
    second = create(chat_client)

    assert first.status_code == 201
    assert second.status_code == 201
    sessions = {first.json()["session_id"], second.json()["session_id"]}
    assert len(sessions) == 2
    assert all(session.startswith("anon_") for session in sessions)
    identities = set(Conversation.objects.values_list("limit_identity", flat=True))
    assert identities == {f"key:{public_key.api_key.pk}"}


def test_token_of_one_tenant_fails_at_another(chat_client, other_tenant, user_token_secret):
    other_secret = user_token_secret_set(tenant=other_tenant)

    response = create(chat_client, user_id=VICTIM, user_token=token_for(other_secret, VICTIM))

    assert response.status_code == 403
    assert response.json()["reason"] == "user_token_invalid"
    assert_nothing_created()


def test_tenant_create_returns_a_user_token_secret(db):
    from tenants.services import tenant_create

    created = tenant_create(name="Shop C", slug="shop-c")

    assert len(created.user_token_secret) == 43
    created.tenant.refresh_from_db()
    assert created.tenant.user_token_secret == created.user_token_secret
    assert created.tenant.user_token_secret_updated_at is not None


def test_public_key_cannot_reach_another_shoppers_cart(chat_client, merchant, user_token_secret):
    merchant.store.cart_seed("store-1", VICTIM, [("milk-001", 1)])

    response = create(chat_client, user_id=VICTIM)

    assert response.status_code == 400
    assert merchant.requests == []
    assert_nothing_created()


@pytest.mark.parametrize("field", ["store_id", "user_id", "user_token"])
@pytest.mark.parametrize("value", [" victim-42", "victim-42\n", "\tvictim-42"])
def test_ids_with_surrounding_whitespace_are_rejected(server_client, field, value):
    # Trimming would store another id than the merchant issued and signed.
    response = create(server_client, **{field: value})

    assert response.status_code == 400
    assert response.json()["fields"] == {field: ["Must not start or end with whitespace."]}
    assert_nothing_created()


def test_user_id_with_an_inner_space_is_kept(chat_client, user_token_secret):
    user_id = "victim 42"
    response = create(
        chat_client, user_id=user_id, user_token=token_for(user_token_secret, user_id)
    )

    assert response.status_code == 201
    assert Conversation.objects.get().user_id == "victim 42"
