"""The erase_shopper command and the user id checks of the shopper erasure."""

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from conversations.models import Conversation, Message, UserDailyUsage
from conversations.retention import shopper_data_erase
from tests.factories import ConversationFactory, MessageFactory
from vizochok.exceptions import InvalidInput

pytestmark = pytest.mark.django_db

USER_ID = "user-42"


def _shopper_conversation(tenant, *, user_id: str = USER_ID) -> Conversation:
    conversation = ConversationFactory(
        tenant=tenant, user_id=user_id, session_id=user_id, limit_identity=f"user:{user_id}"
    )
    MessageFactory(tenant=tenant, conversation=conversation, role=Message.Role.USER)
    MessageFactory(tenant=tenant, conversation=conversation, role=Message.Role.ASSISTANT)
    return conversation


def _anonymous_conversation(tenant) -> Conversation:
    conversation = ConversationFactory(
        tenant=tenant, user_id="", session_id="anon_abc", limit_identity="key:1"
    )
    MessageFactory(tenant=tenant, conversation=conversation, role=Message.Role.USER)
    return conversation


def _usage(tenant, identity: str) -> UserDailyUsage:
    return UserDailyUsage.objects.create(
        tenant=tenant, identity=identity, date=timezone.now().date(), messages=3, conversations=1
    )


def _kept_ids() -> set[str]:
    return set(Conversation.objects.values_list("public_id", flat=True))


def test_command_erases_one_tenants_shopper(tenant, other_tenant, capsys):
    _shopper_conversation(tenant)
    _shopper_conversation(tenant)
    _usage(tenant, f"user:{USER_ID}")
    other_shopper = _shopper_conversation(tenant, user_id="user-7")
    anonymous = _anonymous_conversation(tenant)
    same_id_elsewhere = _shopper_conversation(other_tenant)
    other_usage = _usage(other_tenant, f"user:{USER_ID}")

    call_command("erase_shopper", USER_ID, "--tenant", "shop-a")

    assert capsys.readouterr().out == (
        "Deleted 2 conversations with 4 messages, and 1 daily usage row.\n"
    )
    assert _kept_ids() == {
        other_shopper.public_id,
        anonymous.public_id,
        same_id_elsewhere.public_id,
    }
    assert Message.objects.filter(tenant=tenant).count() == 3
    assert Message.objects.filter(tenant=other_tenant).count() == 2
    assert list(UserDailyUsage.objects.values_list("pk", flat=True)) == [other_usage.pk]


def test_command_erases_id_the_api_cannot(tenant, capsys):
    # DELETE /api/v1/admin/shoppers/a/conversations reaches the export's route instead.
    _shopper_conversation(tenant, user_id="a/conversations")
    _usage(tenant, "user:a/conversations")

    call_command("erase_shopper", "a/conversations", "--tenant", "shop-a")

    assert capsys.readouterr().out == (
        "Deleted 1 conversation with 2 messages, and 1 daily usage row.\n"
    )
    assert _kept_ids() == set()
    assert UserDailyUsage.objects.count() == 0


def test_command_without_data_deletes_nothing(tenant, capsys):
    kept = _shopper_conversation(tenant)

    call_command("erase_shopper", "user-7", "--tenant", "shop-a")

    assert capsys.readouterr().out == (
        "Deleted 0 conversations with 0 messages, and 0 daily usage rows.\n"
    )
    assert _kept_ids() == {kept.public_id}


@pytest.mark.parametrize(
    ("user_id", "problem"),
    [
        ("", "Must not be empty."),
        (" user-42", "Must not start or end with whitespace."),
        ("user\x0042", "Null characters are not allowed."),
        ("user-\udcff", "Must be valid UTF-8 text."),
        (
            "ANON_abc",
            "User ids starting with 'anon_' are reserved; delete an anonymous shopper's "
            "conversation by its id.",
        ),
        ("u" * 201, "Ensure this field has no more than 200 characters."),
    ],
)
def test_command_rejects_invalid_user_id(tenant, user_id, problem):
    shopper = _shopper_conversation(tenant)
    anonymous = _anonymous_conversation(tenant)

    with pytest.raises(CommandError) as error:
        call_command("erase_shopper", user_id, "--tenant", "shop-a")

    assert str(error.value) == f"Invalid user id: {problem}"
    assert _kept_ids() == {shopper.public_id, anonymous.public_id}
    assert Message.objects.count() == 3


def test_erase_of_empty_user_id_keeps_anonymous(tenant):
    # The conversations of anonymous shoppers have an empty user id.
    anonymous = _anonymous_conversation(tenant)
    usage = _usage(tenant, "user:")

    with pytest.raises(InvalidInput) as error:
        shopper_data_erase(tenant=tenant, user_id="")

    assert error.value.extra == {"fields": {"user_id": ["Must not be empty."]}}
    assert _kept_ids() == {anonymous.public_id}
    assert Message.objects.count() == 1
    assert UserDailyUsage.objects.filter(pk=usage.pk).exists()


def test_command_busy_shopper_deletes_nothing(tenant):
    idle = _shopper_conversation(tenant)
    busy = _shopper_conversation(tenant)
    Conversation.objects.filter(pk=busy.pk).update(turn_started_at=timezone.now())
    usage = _usage(tenant, f"user:{USER_ID}")

    with pytest.raises(CommandError) as error:
        call_command("erase_shopper", USER_ID, "--tenant", "shop-a")

    assert str(error.value) == (
        "A message of this shopper's conversation is being processed; retry when it is done. "
        "Nothing was deleted."
    )
    assert _kept_ids() == {idle.public_id, busy.public_id}
    assert Message.objects.count() == 4
    assert UserDailyUsage.objects.filter(pk=usage.pk).exists()


@pytest.mark.parametrize("slug", ["nope", ""])
def test_command_rejects_unknown_tenant(tenant, slug):
    kept = _shopper_conversation(tenant)

    with pytest.raises(CommandError) as error:
        call_command("erase_shopper", USER_ID, "--tenant", slug)

    assert str(error.value) == f"Tenant {slug!r} not found; check the slug."
    assert _kept_ids() == {kept.public_id}
