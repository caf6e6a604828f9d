"""factory_boy factories for every model the tests need."""

import factory

from catalog.models import Product
from catalog.services import product_content_fields_hash
from conversations.models import Conversation, Message
from tenants.models import AssistantSettings, Tenant, WebhookSettings


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
