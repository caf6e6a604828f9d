"""The AI settings of a tenant in the Django admin and the admin API."""

from decimal import Decimal

import pytest

from conversations.assistants.prompts import TENANT_INSTRUCTIONS_HEADER
from tenants.admin import AssistantSettingsForm
from tenants.models import AssistantSettings, Tenant
from tests.conversations.agent.llm_server import reply
from tests.conversations.chat import reply_text, send
from tests.factories import ASSISTANT_SETTINGS_FORM_DEFAULTS
from tests.tenants.test_admin import page_version

pytestmark = pytest.mark.django_db


def form_data(**changes):
    return {**ASSISTANT_SETTINGS_FORM_DEFAULTS, **changes}


def test_disabled_tools_are_chosen_from_the_agent_tools(tenant):
    form = AssistantSettingsForm(
        data=form_data(
            disabled_tools=["clear_cart", "get_product_details"],
            version=page_version(tenant.assistant_settings),
        ),
        instance=tenant.assistant_settings,
    )

    assert form.is_valid(), form.errors
    form.save()
    tenant.assistant_settings.refresh_from_db()
    assert tenant.assistant_settings.disabled_tools == ["clear_cart", "get_product_details"]


def test_unknown_tool_name_is_invalid(tenant):
    form = AssistantSettingsForm(
        data=form_data(disabled_tools=["checkout"]), instance=tenant.assistant_settings
    )

    assert not form.is_valid()
    assert "disabled_tools" in form.errors


def test_tenant_page_shows_the_ai_settings(admin_client, tenant):
    response = admin_client.get(f"/admin/tenants/tenant/{tenant.pk}/change/")

    content = response.content.decode()
    assert response.status_code == 200
    assert "AI settings" in content
    assert 'value="clear_cart"' in content
    assert "Token budgets" in content


def _tenant_add_data(inline_forms: int, **settings) -> dict[str, object]:
    data: dict[str, object] = {
        "name": "Shop C",
        "slug": "shop-c",
        "is_active": "on",
        "assistant_settings-TOTAL_FORMS": inline_forms,
        "assistant_settings-INITIAL_FORMS": 0,
        "assistant_settings-MIN_NUM_FORMS": 0,
        "assistant_settings-MAX_NUM_FORMS": 1,
    }
    if inline_forms:
        data.update({f"assistant_settings-0-{name}": value for name, value in settings.items()})
    return data


def test_tenant_add_with_ai_settings(admin_client):
    data = _tenant_add_data(
        1, **form_data(temperature="0.50", default_language="en", rate_limit_messages=3)
    )

    response = admin_client.post("/admin/tenants/tenant/add/", data)

    assert response.status_code == 302
    tenant = Tenant.objects.get(slug="shop-c")
    assert AssistantSettings.objects.filter(tenant=tenant).count() == 1
    assert tenant.assistant_settings.temperature == Decimal("0.50")
    assert tenant.assistant_settings.default_language == "en"
    assert tenant.assistant_settings.rate_limit_messages == 3


def test_tenant_add_without_ai_settings(admin_client):
    response = admin_client.post("/admin/tenants/tenant/add/", _tenant_add_data(0))

    assert response.status_code == 302
    tenant = Tenant.objects.get(slug="shop-c")
    assert AssistantSettings.objects.filter(tenant=tenant).count() == 1
    assert tenant.assistant_settings.temperature == Decimal("0.20")
    assert tenant.assistant_settings.rate_limit_messages == 10


def test_api_change_reaches_the_next_llm_request(
    server_client, chat_client, shop, conversation, llm
):
    llm.add(reply("Добрий день!"), reply("Доставка безкоштовна від 500 грн."))
    send(chat_client, conversation, "Привіт")
    prompt = "Delivery is free from 500 UAH."

    response = server_client.patch(
        "/api/v1/admin/assistant",
        {"disabled_tools": ["clear_cart"], "system_prompt_addition": prompt},
        format="json",
    )
    sent = send(chat_client, conversation, "Скільки коштує доставка?")

    assert response.status_code == 200
    before, after = llm.requests
    assert "clear_cart" in before.tool_names
    assert TENANT_INSTRUCTIONS_HEADER not in before.messages[0]["content"]
    assert "clear_cart" not in after.tool_names
    assert len(after.tool_names) == len(before.tool_names) - 1
    assert f"{TENANT_INSTRUCTIONS_HEADER}\n{prompt}" in after.messages[0]["content"]
    assert reply_text(sent) == "Доставка безкоштовна від 500 грн."
