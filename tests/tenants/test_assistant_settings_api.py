"""The tenant's AI settings through the admin API, checked like the Django admin checks them."""

from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from tenants.admin import AssistantSettingsForm
from tenants.models import AssistantSettings, Tenant
from tenants.services import MAX_SYSTEM_PROMPT_ADDITION_LENGTH, api_key_revoke
from tests.factories import ASSISTANT_SETTINGS_DEFAULTS, ASSISTANT_SETTINGS_FORM_DEFAULTS
from tests.tenants.test_admin import page_version

pytestmark = pytest.mark.django_db

URL = "/api/v1/admin/assistant"


def stored_row(tenant: Tenant) -> dict[str, object]:
    return AssistantSettings.objects.values().get(tenant=tenant)


def test_get_returns_the_defaults(server_client):
    response = server_client.get(URL)

    assert response.status_code == 200
    assert response.json() == ASSISTANT_SETTINGS_DEFAULTS


def test_get_creates_missing_settings(server_client, tenant):
    AssistantSettings.objects.filter(tenant=tenant).delete()

    response = server_client.get(URL)

    assert response.status_code == 200
    assert response.json() == ASSISTANT_SETTINGS_DEFAULTS
    assert AssistantSettings.objects.filter(tenant=tenant).count() == 1


def test_patch_changes_only_the_fields_sent(server_client, tenant):
    changes = {
        "complex_model": "org/model-1:beta",
        "temperature": 0.55,
        "disabled_tools": ["get_product_details", "clear_cart"],
        "rate_limit_messages": 0,
    }

    response = server_client.patch(URL, changes, format="json")

    expected = {
        **ASSISTANT_SETTINGS_DEFAULTS,
        **changes,
        "disabled_tools": ["clear_cart", "get_product_details"],
    }
    assert response.status_code == 200
    assert response.json() == expected
    assert server_client.get(URL).json() == expected
    row = AssistantSettings.objects.get(tenant=tenant)
    assert row.temperature == Decimal("0.55")
    assert row.disabled_tools == ["clear_cart", "get_product_details"]
    assert row.fast_model == ""
    assert row.max_tool_rounds == 6


def test_patch_creates_missing_settings(server_client, tenant):
    AssistantSettings.objects.filter(tenant=tenant).delete()

    response = server_client.patch(URL, {"max_tool_rounds": 3}, format="json")

    assert response.status_code == 200
    assert response.json() == {**ASSISTANT_SETTINGS_DEFAULTS, "max_tool_rounds": 3}
    assert AssistantSettings.objects.get(tenant=tenant).max_tool_rounds == 3


def test_patch_normalizes_tools_and_text(server_client, tenant):
    body = {
        "disabled_tools": ["clear_cart", "clear_cart", "add_to_cart"],
        "system_prompt_addition": "  Be brief.\n",
        "fast_model": " gpt-4.1-mini ",
    }

    response = server_client.patch(URL, body, format="json")

    assert response.status_code == 200
    row = AssistantSettings.objects.get(tenant=tenant)
    assert row.disabled_tools == ["add_to_cart", "clear_cart"]
    assert row.system_prompt_addition == "Be brief."
    assert row.fast_model == "gpt-4.1-mini"


def test_patch_switches_limit_identity(server_client, tenant, other_tenant):
    to_network = server_client.patch(
        URL, {"anonymous_limit_identity": "client_network"}, format="json"
    )
    other = AssistantSettings.objects.get(tenant=other_tenant)
    stored = AssistantSettings.objects.get(tenant=tenant).anonymous_limit_identity
    back = server_client.patch(URL, {"anonymous_limit_identity": "api_key"}, format="json")

    assert to_network.status_code == 200
    assert to_network.json() == {
        **ASSISTANT_SETTINGS_DEFAULTS,
        "anonymous_limit_identity": "client_network",
    }
    assert stored == "client_network"
    assert other.anonymous_limit_identity == "api_key"
    assert back.status_code == 200
    assert back.json() == ASSISTANT_SETTINGS_DEFAULTS
    assert AssistantSettings.objects.get(tenant=tenant).anonymous_limit_identity == "api_key"


@pytest.mark.parametrize(
    ("temperature", "stored"),
    [(0, Decimal("0.00")), (2, Decimal("2.00")), (0.1, Decimal("0.10")), (1.5, Decimal("1.50"))],
)
def test_patch_accepts_temperature_numbers(server_client, tenant, temperature, stored):
    response = server_client.patch(URL, {"temperature": temperature}, format="json")

    assert response.status_code == 200
    assert response.json()["temperature"] == float(stored)
    assert AssistantSettings.objects.get(tenant=tenant).temperature == stored


def test_negative_zero_temperature_returns_zero(server_client, tenant):
    response = server_client.patch(URL, {"temperature": -0.0}, format="json")

    assert response.status_code == 200
    assert response.content.count(b'"temperature":0.0') == 1
    assert response.json() == server_client.get(URL).json()
    assert AssistantSettings.objects.get(tenant=tenant).temperature == Decimal("0.00")


def test_empty_patch_changes_nothing(server_client, tenant, caplog):
    caplog.set_level("INFO", logger="tenants.services")
    before = stored_row(tenant)

    response = server_client.patch(URL, {}, format="json")

    assert response.status_code == 200
    assert response.json() == ASSISTANT_SETTINGS_DEFAULTS
    assert stored_row(tenant) == before
    assert [r for r in caplog.records if r.msg == "tenants.assistant_settings.updated"] == []


def test_patch_logs_changed_field_names_only(server_client, tenant, caplog):
    caplog.set_level("INFO", logger="tenants.services")
    prompt = "Mention the free delivery from 500 UAH."

    response = server_client.patch(
        URL,
        {"system_prompt_addition": prompt, "max_tool_rounds": 6, "daily_token_limit": 1000},
        format="json",
    )

    assert response.status_code == 200
    [record] = [r for r in caplog.records if r.msg == "tenants.assistant_settings.updated"]
    assert record.tenant_id == tenant.pk
    assert record.fields == ["daily_token_limit", "system_prompt_addition"]
    assert prompt not in caplog.text


TOO_LONG_PROMPT = "x" * (MAX_SYSTEM_PROMPT_ADDITION_LENGTH + 1)

# Values that both the admin form and the API parse, and both reject with the same message.
INVALID_VALUES = [
    ("session_token_limit", -1, "Ensure this value is greater than or equal to 0."),
    ("daily_token_limit", 2**31, "Ensure this value is less than or equal to 2147483647."),
    ("max_tool_rounds", 0, "Ensure this value is greater than or equal to 1."),
    ("max_tool_rounds", 21, "Ensure this value is less than or equal to 20."),
    ("rate_limit_window_seconds", 3601, "Ensure this value is less than or equal to 3600."),
    ("temperature", 2.01, "Ensure this value is less than or equal to 2."),
    ("temperature", -0.5, "Ensure this value is greater than or equal to 0."),
    ("temperature", 0.123, "Ensure that there are no more than 2 decimal places."),
    ("temperature", 10.5, "Ensure that there are no more than 1 digit before the decimal point."),
    (
        "complex_model",
        "gpt 4.1",
        "Invalid model name 'gpt 4.1'. Enter a name without spaces or control characters, "
        "such as gpt-4.1.",
    ),
    (
        "fast_model",
        "gpt-4.1\u200bmini",
        "Invalid model name 'gpt-4.1\\u200bmini'. Enter a name without spaces or control "
        "characters, such as gpt-4.1.",
    ),
    ("complex_model", "m" * 201, "Ensure this value has at most 200 characters (it has 201)."),
    (
        "system_prompt_addition",
        TOO_LONG_PROMPT,
        f"Ensure this value has at most {MAX_SYSTEM_PROMPT_ADDITION_LENGTH} characters "
        f"(it has {MAX_SYSTEM_PROMPT_ADDITION_LENGTH + 1}).",
    ),
    (
        "default_language",
        "de",
        "Select a valid choice. de is not one of the available choices.",
    ),
    ("default_language", "", "This field cannot be blank."),
    (
        "default_language",
        " uk",
        "Select a valid choice.  uk is not one of the available choices.",
    ),
    (
        "anonymous_limit_identity",
        "ip",
        "Select a valid choice. ip is not one of the available choices.",
    ),
    (
        "anonymous_limit_identity",
        "client_network ",
        "Select a valid choice. client_network  is not one of the available choices.",
    ),
    (
        "disabled_tools",
        ["clear_cart", " search_products"],
        "Select a valid choice.  search_products is not one of the available choices.",
    ),
    (
        "disabled_tools",
        [""],
        "Select a valid choice.  is not one of the available choices.",
    ),
    (
        "disabled_tools",
        ["clear_cart", "checkout"],
        "Select a valid choice. checkout is not one of the available choices.",
    ),
]


@pytest.mark.parametrize(("field", "value", "message"), INVALID_VALUES)
def test_api_and_admin_reject_alike(server_client, tenant, field, value, message):
    before = stored_row(tenant)
    form_value = str(value) if field == "temperature" else value

    response = server_client.patch(URL, {field: value}, format="json")
    form = AssistantSettingsForm(
        data={
            **ASSISTANT_SETTINGS_FORM_DEFAULTS,
            field: form_value,
            "version": page_version(tenant.assistant_settings),
        },
        instance=tenant.assistant_settings,
    )

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_json"
    assert response.json()["fields"] == {field: [message]}
    assert form.errors == {field: [message]}
    assert stored_row(tenant) == before


@pytest.mark.parametrize(
    ("_case", "body", "fields"),
    [
        ("unknown field", {"temperatur": 0.5}, {"temperatur": ["Unknown field."]}),
        (
            "unknown with valid",
            {"temperature": 0.5, "model": "gpt-4.1"},
            {"model": ["Unknown field."]},
        ),
        (
            "temperature string",
            {"temperature": "0.5"},
            {"temperature": ["Expected a number, got a string."]},
        ),
        (
            "temperature boolean",
            {"temperature": True},
            {"temperature": ["Expected a number, got a boolean."]},
        ),
        (
            "temperature null",
            {"temperature": None},
            {"temperature": ["This field may not be null."]},
        ),
        (
            "integer as float",
            {"max_tool_rounds": 5.0},
            {"max_tool_rounds": ["Expected an integer, got a number."]},
        ),
        (
            "integer as string",
            {"daily_token_limit": "1000"},
            {"daily_token_limit": ["Expected an integer, got a string."]},
        ),
        (
            "tools not a list",
            {"disabled_tools": "clear_cart"},
            {"disabled_tools": ['Expected a list of items but got type "str".']},
        ),
        (
            "model not a string",
            {"complex_model": 4},
            {"complex_model": ["Expected a string, got a number."]},
        ),
        (
            "identity not a string",
            {"anonymous_limit_identity": 1},
            {"anonymous_limit_identity": ["Expected a string, got a number."]},
        ),
        (
            "identity null",
            {"anonymous_limit_identity": None},
            {"anonymous_limit_identity": ["This field may not be null."]},
        ),
        (
            "identity blank",
            {"anonymous_limit_identity": ""},
            {"anonymous_limit_identity": ["This field cannot be blank."]},
        ),
        (
            "nul in prompt",
            {"system_prompt_addition": "a\x00b"},
            {"system_prompt_addition": ["Null characters are not allowed."]},
        ),
        (
            "several errors",
            {"max_tool_rounds": 50, "default_language": "en", "fast_model": "a b"},
            {
                "max_tool_rounds": ["Ensure this value is less than or equal to 20."],
                "fast_model": [
                    "Invalid model name 'a b'. Enter a name without spaces or control "
                    "characters, such as gpt-4.1."
                ],
            },
        ),
    ],
)
def test_patch_rejects_invalid_body(server_client, tenant, _case, body, fields):
    before = stored_row(tenant)

    response = server_client.patch(URL, body, format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_json"
    assert response.json()["fields"] == fields
    assert stored_row(tenant) == before


@pytest.mark.parametrize(
    ("raw_body", "expected"),
    [
        (
            '{"temperature": NaN}',
            {
                "detail": "JSON parse error - Out of range float values are not JSON "
                "compliant: 'NaN'",
                "code": "invalid_json",
            },
        ),
        (
            '{"temperature": -Infinity}',
            {
                "detail": "JSON parse error - Out of range float values are not JSON "
                "compliant: '-Infinity'",
                "code": "invalid_json",
            },
        ),
        (
            '{"temperature": 1e999}',
            {
                "detail": "The request body is invalid.",
                "code": "invalid_json",
                "fields": {"temperature": ["Expected a finite number."]},
            },
        ),
    ],
)
def test_patch_rejects_non_finite_temperature(server_client, tenant, raw_body, expected):
    before = stored_row(tenant)

    response = server_client.patch(URL, raw_body, content_type="application/json")

    assert response.status_code == 400
    assert response.json() == expected
    assert stored_row(tenant) == before


def test_prompt_at_the_limit_is_accepted(server_client, tenant):
    prompt = "x" * MAX_SYSTEM_PROMPT_ADDITION_LENGTH

    response = server_client.patch(URL, {"system_prompt_addition": prompt}, format="json")

    assert response.status_code == 200
    assert AssistantSettings.objects.get(tenant=tenant).system_prompt_addition == prompt


def test_longer_stored_prompt_keeps_working(server_client, admin_client, tenant):
    long_prompt = "y" * (MAX_SYSTEM_PROMPT_ADDITION_LENGTH + 500)
    AssistantSettings.objects.filter(tenant=tenant).update(system_prompt_addition=long_prompt)

    read = server_client.get(URL)
    same = server_client.patch(URL, {"system_prompt_addition": long_prompt}, format="json")
    other = server_client.patch(URL, {"max_tool_rounds": 4}, format="json")
    form = AssistantSettingsForm(
        data={
            **ASSISTANT_SETTINGS_FORM_DEFAULTS,
            "system_prompt_addition": long_prompt,
            "max_tool_rounds": 5,
            "version": page_version(tenant.assistant_settings),
        },
        instance=AssistantSettings.objects.get(tenant=tenant),
    )

    assert read.json()["system_prompt_addition"] == long_prompt
    assert same.status_code == 200
    assert other.status_code == 200
    assert form.is_valid(), form.errors
    form.save()
    row = AssistantSettings.objects.get(tenant=tenant)
    assert row.system_prompt_addition == long_prompt
    assert row.max_tool_rounds == 5


def test_longer_prompt_cannot_grow(server_client, tenant):
    long_prompt = "y" * (MAX_SYSTEM_PROMPT_ADDITION_LENGTH + 500)
    AssistantSettings.objects.filter(tenant=tenant).update(system_prompt_addition=long_prompt)

    response = server_client.patch(
        URL, {"system_prompt_addition": long_prompt + "z"}, format="json"
    )

    assert response.status_code == 400
    assert list(response.json()["fields"]) == ["system_prompt_addition"]
    row = AssistantSettings.objects.get(tenant=tenant)
    assert row.system_prompt_addition == long_prompt


# Access


def test_key_reads_and_changes_only_its_tenant(
    server_client, other_server_client, tenant, other_tenant
):
    server_client.patch(URL, {"system_prompt_addition": "Tenant A only."}, format="json")
    before = stored_row(tenant)

    other_get = other_server_client.get(URL)
    other_patch = other_server_client.patch(URL, {"max_tool_rounds": 2}, format="json")

    assert other_get.json() == ASSISTANT_SETTINGS_DEFAULTS
    assert other_patch.status_code == 200
    assert AssistantSettings.objects.get(tenant=other_tenant).max_tool_rounds == 2
    assert stored_row(tenant) == before
    assert server_client.get(URL).json()["max_tool_rounds"] == 6


def test_public_key_is_forbidden(chat_client, tenant):
    before = stored_row(tenant)

    get_response = chat_client.get(URL)
    patch_response = chat_client.patch(URL, {"max_tool_rounds": 2}, format="json")

    assert get_response.status_code == 403
    assert patch_response.status_code == 403
    assert patch_response.json()["code"] == "permission_denied"
    assert "max_tool_rounds" not in get_response.json()
    assert stored_row(tenant) == before


def test_missing_key_is_unauthenticated(tenant):
    before = stored_row(tenant)

    response = APIClient().patch(URL, {"max_tool_rounds": 2}, format="json")

    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
    assert stored_row(tenant) == before


def test_revoked_key_is_rejected(server_client, secret_key, tenant):
    api_key_revoke(tenant=tenant, api_key_id=secret_key.api_key.pk)
    before = stored_row(tenant)

    get_response = server_client.get(URL)
    patch_response = server_client.patch(URL, {"max_tool_rounds": 2}, format="json")

    assert get_response.status_code == 401
    assert patch_response.status_code == 401
    assert patch_response.json()["code"] == "authentication_failed"
    assert stored_row(tenant) == before
