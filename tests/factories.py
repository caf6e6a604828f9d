"""factory_boy factories for every model the tests need."""

import factory

from catalog.models import Product
from catalog.services import product_content_fields_hash
from conversations.models import Conversation, Message, TokenUsage
from conversations.usage import utc_today
from tenants.models import AssistantSettings, Tenant, WebhookSettings

# A new tenant's AI settings, as the admin API returns them.
ASSISTANT_SETTINGS_DEFAULTS = {
    "complex_model": "",
    "fast_model": "",
    "system_prompt_addition": "",
    "disabled_tools": [],
    "temperature": 0.2,
    "default_language": "uk",
    "max_tool_rounds": 6,
    "session_token_limit": 100_000,
    "daily_token_limit": 500_000,
    "monthly_token_limit": 10_000_000,
    "user_daily_message_limit": 200,
    "user_daily_conversation_limit": 20,
    "anonymous_limit_identity": "api_key",
    "rate_limit_messages": 10,
    "rate_limit_window_seconds": 60,
}

# The same settings as the admin form posts them: the temperature as text, and no
# disabled tools, because a browser sends no field for unticked boxes.
ASSISTANT_SETTINGS_FORM_DEFAULTS = {
    name: "0.20" if name == "temperature" else value
    for name, value in ASSISTANT_SETTINGS_DEFAULTS.items()
    if name != "disabled_tools"
}


class TenantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tenant
        django_get_or_create = ("slug",)
        skip_postgeneration_save = True

    name = factory.Sequence(lambda n: f"Shop {n}")
    slug = factory.Sequence(lambda n: f"shop-{n}")

    assistant_settings = factory.RelatedFactory(
        "tests.factories.AssistantSettingsFactory", factory_related_name="tenant"
    )


class AssistantSettingsFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = AssistantSettings

    tenant = factory.SubFactory(TenantFactory, assistant_settings=None)


class WebhookSettingsFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = WebhookSettings

    tenant = factory.SubFactory(TenantFactory)
    secret = factory.Sequence(lambda n: f"test-webhook-secret-{n:04d}-abcdefghijkl")
    timeout_seconds = 5


class ProductFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Product

    tenant = factory.SubFactory(TenantFactory)
    sku = factory.Sequence(lambda n: f"sku-{n:05d}")
    name = factory.Sequence(lambda n: f"Product {n}")
    content_hash = factory.LazyAttribute(
        lambda product: product_content_fields_hash(
            {
                "name": product.name,
                "description": product.description,
                "ingredients": product.ingredients,
                "brand": product.brand,
                "category_path": product.category_path,
                "country": product.country,
            }
        )
    )
    description = ""
    ingredients = ""
    brand = ""
    category_path = ""
    country = ""


class ConversationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Conversation

    tenant = factory.SubFactory(TenantFactory)
    store_id = "store-1"
    session_id = factory.Sequence(lambda n: f"shopper-{n}")


class MessageFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Message

    conversation = factory.SubFactory(ConversationFactory)
    tenant = factory.SelfAttribute("conversation.tenant")
    role = Message.Role.USER
    text = "молоко"


class TokenUsageFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = TokenUsage

    tenant = factory.SubFactory(TenantFactory)
    date = factory.LazyFunction(utc_today)
