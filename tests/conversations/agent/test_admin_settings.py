"""The AI settings of a tenant in the Django admin."""

import pytest

from tenants.admin import AssistantSettingsForm

pytestmark = pytest.mark.django_db


def form_data(**changes):
    data = {
        "complex_model": "",
        "fast_model": "",
        "system_prompt_addition": "",
        "temperature": "0.20",
        "default_language": "uk",
        "max_tool_rounds": 6,
        "session_token_limit": 100_000,
        "daily_token_limit": 500_000,
        "monthly_token_limit": 10_000_000,
        "user_daily_message_limit": 200,
        "user_daily_conversation_limit": 20,
        "rate_limit_messages": 10,
        "rate_limit_window_seconds": 60,
    }
    return {**data, **changes}


def test_disabled_tools_are_chosen_from_the_agent_tools(tenant):
    form = AssistantSettingsForm(
        data=form_data(disabled_tools=["clear_cart", "get_product_details"]),
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
