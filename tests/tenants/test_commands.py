import io
import re

import pytest
from django.core.management import CommandError, call_command

from tenants.keys import hash_api_key
from tenants.models import ApiKey, Tenant, WebhookSettings

pytestmark = pytest.mark.django_db


def test_create_tenant_prints_credentials_once():
    output = io.StringIO()

    call_command("create_tenant", "atb", "--name", "ATB", stdout=output)

    text = output.getvalue()
    public_key = re.search(r"(pk_live_\S+)", text).group(1)
    secret_key = re.search(r"(sk_live_\S+)", text).group(1)
    tenant = Tenant.objects.get(slug="atb")
    assert tenant.name == "ATB"
    assert ApiKey.objects.filter(tenant=tenant, key_hash=hash_api_key(public_key)).exists()
    assert ApiKey.objects.filter(tenant=tenant, key_hash=hash_api_key(secret_key)).exists()
    assert WebhookSettings.objects.get(tenant=tenant).secret in text


def test_create_tenant_aligns_the_credentials():
    output = io.StringIO()

    call_command("create_tenant", "atb", stdout=output)

    tenant = Tenant.objects.get(slug="atb")
    credential_lines = output.getvalue().splitlines()[2:]
    assert len(credential_lines) == 4
    assert {line.index(line.split()[-1]) for line in credential_lines} == {40}
    assert credential_lines[2].endswith(WebhookSettings.objects.get(tenant=tenant).secret)
    assert credential_lines[3].endswith(tenant.user_token_secret)


def test_create_tenant_rejects_a_duplicate_slug():
    call_command("create_tenant", "atb", stdout=io.StringIO())

    with pytest.raises(CommandError, match="already exists"):
        call_command("create_tenant", "atb", stdout=io.StringIO())
    assert Tenant.objects.filter(slug="atb").count() == 1


def test_rotate_webhook_secret_now(tenant):
    old_secret = tenant.webhook_settings.secret
    output = io.StringIO()

    call_command("rotate_webhook_secret", tenant.slug, "--overlap-hours", "0", stdout=output)

    webhook_settings = WebhookSettings.objects.get(tenant=tenant)
    assert webhook_settings.secret != old_secret
    assert webhook_settings.secret in output.getvalue()
    assert webhook_settings.next_secret == ""
    assert output.getvalue().endswith(
        "The new secret is in use now; the old one no longer signs.\n"
    )


def test_rotate_webhook_secret_with_overlap(tenant):
    old_secret = tenant.webhook_settings.secret
    output = io.StringIO()

    call_command("rotate_webhook_secret", tenant.slug, stdout=output)

    webhook_settings = WebhookSettings.objects.get(tenant=tenant)
    assert webhook_settings.secret == old_secret
    assert output.getvalue() == (
        f"New webhook signing secret (shown only now): {webhook_settings.next_secret}\n"
        "Both secrets sign requests until "
        f"{webhook_settings.next_secret_promote_at:%Y-%m-%d %H:%M} UTC. Switch your verifier "
        "to the new secret before then.\n"
    )


def test_rotate_first_secret_skips_overlap(tenant):
    WebhookSettings.objects.filter(tenant=tenant).update(secret="")
    output = io.StringIO()

    call_command("rotate_webhook_secret", tenant.slug, "--overlap-hours", "24", stdout=output)

    webhook_settings = WebhookSettings.objects.get(tenant=tenant)
    assert webhook_settings.next_secret == ""
    assert webhook_settings.next_secret_promote_at is None
    assert output.getvalue() == (
        f"New webhook signing secret (shown only now): {webhook_settings.secret}\n"
        "The new secret is in use now; the tenant had no secret before.\n"
    )


def test_rotate_webhook_secret_unknown_tenant():
    with pytest.raises(CommandError, match="^Tenant 'missing' not found; check the slug.$"):
        call_command("rotate_webhook_secret", "missing", stdout=io.StringIO())


@pytest.mark.parametrize(
    ("_case", "slug", "message"),
    [
        ("spaces", "Bad Slug", "slug"),
        ("slash", "a/b", "slug"),
        ("empty", "", "slug"),
        ("too long", "a" * 101, "slug"),
    ],
)
def test_create_tenant_rejects_invalid_slugs(_case, slug, message):
    with pytest.raises(CommandError, match=f"Invalid tenant: .*{message}: "):
        call_command("create_tenant", slug, stdout=io.StringIO())
    assert Tenant.objects.count() == 0


def test_create_tenant_empty_slug_message():
    with pytest.raises(CommandError) as exc_info:
        call_command("create_tenant", "", stdout=io.StringIO())

    assert str(exc_info.value) == (
        "Invalid tenant: name: This field cannot be blank. slug: This field cannot be blank."
    )
    assert Tenant.objects.count() == 0


@pytest.mark.parametrize("hours", ["-1", "169", "nan", "1e9"])
def test_rotate_webhook_secret_rejects_out_of_range_overlaps(tenant, hours):
    old_secret = tenant.webhook_settings.secret

    with pytest.raises(CommandError, match="--overlap-hours must be between 0 and 168"):
        call_command("rotate_webhook_secret", tenant.slug, "--overlap-hours", hours)

    assert WebhookSettings.objects.get(tenant=tenant).secret == old_secret


@pytest.mark.parametrize(
    ("_case", "secret"),
    [("longer than the column", "x" * 201), ("NUL character", "x" * 30 + "\x00")],
)
def test_rotate_webhook_secret_rejects_unstorable_secret(tenant, monkeypatch, _case, secret):
    old_secret = tenant.webhook_settings.secret
    monkeypatch.setattr("sys.stdin", io.StringIO(secret + "\n"))

    with pytest.raises(CommandError, match="^Use 24 to 200 characters of UTF-8 text"):
        call_command("rotate_webhook_secret", tenant.slug, "--secret-stdin")

    webhook_settings = WebhookSettings.objects.get(tenant=tenant)
    assert webhook_settings.secret == old_secret
    assert webhook_settings.next_secret == ""


def test_rotate_webhook_secret_rejects_two_lines(tenant, monkeypatch):
    before = WebhookSettings.objects.values().get(tenant=tenant)
    monkeypatch.setattr("sys.stdin", io.StringIO("first-line-of-the-secret\nsecond-line\n"))

    with pytest.raises(CommandError) as raised:
        call_command("rotate_webhook_secret", tenant.slug, "--secret-stdin")

    assert str(raised.value) == (
        "The secret contains the control character U+000A. Use a secret on one line, without "
        "line breaks, tabs or other control characters."
    )
    assert WebhookSettings.objects.values().get(tenant=tenant) == before


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_rotate_webhook_secret_prompts_on_terminal(tenant, monkeypatch):
    secret = "typed-at-the-prompt-0123456789"
    prompts = []
    monkeypatch.setattr("sys.stdin", _Terminal())
    monkeypatch.setattr("getpass.getpass", lambda prompt: prompts.append(prompt) or secret)
    output = io.StringIO()

    call_command(
        "rotate_webhook_secret",
        tenant.slug,
        "--secret-stdin",
        "--overlap-hours",
        "0",
        stdout=output,
    )

    assert prompts == ["Custom webhook secret (not shown): "]
    assert WebhookSettings.objects.get(tenant=tenant).secret == secret
    assert secret not in output.getvalue()


@pytest.mark.parametrize("stdin", ["", "\n"], ids=["empty", "newline"])
def test_rotate_webhook_secret_rejects_empty_stdin(tenant, monkeypatch, stdin):
    before = WebhookSettings.objects.values().get(tenant=tenant)
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))

    with pytest.raises(CommandError) as raised:
        call_command("rotate_webhook_secret", tenant.slug, "--secret-stdin")

    assert str(raised.value) == (
        "No secret on standard input: pipe the custom secret in, for example "
        '`printf %s "$SECRET" | python manage.py rotate_webhook_secret SLUG --secret-stdin`. '
        "Nothing was changed."
    )
    assert WebhookSettings.objects.values().get(tenant=tenant) == before


@pytest.mark.parametrize(
    "arguments",
    [
        ["rotate_webhook_secret"],
        ["check_merchant"],
        ["purge_webhook_deliveries", "--older-than-days", "1", "--commit", "--tenant"],
    ],
    ids=["rotate_webhook_secret", "check_merchant", "purge_webhook_deliveries"],
)
def test_command_unencodable_tenant_slug(tenant, arguments):
    # A command line's bytes that are not UTF-8 reach Python as unpaired surrogates.
    old_secret = tenant.webhook_settings.secret

    with pytest.raises(CommandError) as raised:
        call_command(*arguments, "shop-a\udcff", stdout=io.StringIO())

    assert str(raised.value) == "Tenant 'shop-a\\udcff' not found; check the slug."
    assert WebhookSettings.objects.get(tenant=tenant).secret == old_secret


def test_create_tenant_rejects_unencodable_name():
    with pytest.raises(CommandError) as raised:
        call_command("create_tenant", "shop-c", "--name", "Shop \udcff", stdout=io.StringIO())

    assert str(raised.value) == "Invalid tenant: name: Use UTF-8 text without NUL characters."
    assert Tenant.objects.count() == 0
