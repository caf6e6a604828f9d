import sys

import numpy as np
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from catalog.models import CatalogJob, Product
from catalog.services import product_content_fields_hash
from tests.factories import ProductFactory

pytestmark = pytest.mark.django_db

VECTOR_MARKER = 0.123456


def _embedded_product(tenant, **fields) -> Product:
    product = ProductFactory(tenant=tenant, **fields)
    product.embedding = np.full(384, VECTOR_MARKER).tolist()
    product.embedding_hash = product.content_hash
    product.embedding_model = "test-model"
    product.save()
    return product


def _form_data(product: Product, **changes) -> dict:
    data = {
        "tenant": product.tenant_id,
        "sku": product.sku,
        "name": product.name,
        "brand": product.brand,
        "category_path": product.category_path,
        "is_active": "on" if product.is_active else "",
        "description": product.description,
        "ingredients": product.ingredients,
        "country": product.country,
        "unit": product.unit,
        "quantity_step": "",
        "min_quantity": "",
        "weight": "",
        "volume": "",
        "barcode": product.barcode,
        "image_url": product.image_url,
        "attributes": "{}",
    }
    data.update(changes)
    return data


def test_changelist_shows_embedding_status_not_vector(admin_client, tenant):
    _embedded_product(tenant, sku="milk-1", name="Молоко")
    ProductFactory(tenant=tenant, sku="kefir-1", name="Кефір")

    response = admin_client.get(reverse("admin:catalog_product_changelist"))

    content = response.content.decode()
    assert response.status_code == 200
    assert "milk-1" in content
    assert "kefir-1" in content
    assert '<td class="field-embedding_status">current</td>' in content
    assert '<td class="field-embedding_status">missing</td>' in content
    assert str(VECTOR_MARKER) not in content


def test_changelist_search_by_name(admin_client, tenant):
    ProductFactory(tenant=tenant, sku="milk-1", name="Молоко")
    ProductFactory(tenant=tenant, sku="kefir-1", name="Кефір")

    response = admin_client.get(reverse("admin:catalog_product_changelist"), {"q": "Кефір"})

    assert [product.sku for product in response.context["cl"].result_list] == ["kefir-1"]


def test_change_form_hides_vector(admin_client, tenant):
    product = _embedded_product(tenant, sku="milk-1", name="Молоко")

    response = admin_client.get(reverse("admin:catalog_product_change", args=[product.pk]))

    content = response.content.decode()
    assert response.status_code == 200
    assert str(VECTOR_MARKER) not in content
    assert product.content_hash in content


def test_change_form_saves_through_upsert(admin_client, tenant):
    product = _embedded_product(tenant, sku="milk-1", name="Молоко", brand="Галичина")

    response = admin_client.post(
        reverse("admin:catalog_product_change", args=[product.pk]),
        _form_data(product, name="Молоко ультрапастеризоване 2,5%", sku="ignored-sku"),
    )

    product.refresh_from_db()
    assert response.status_code == 302
    assert product.sku == "milk-1"
    assert product.name == "Молоко ультрапастеризоване 2,5%"
    assert product.search_title == "молок ультрапастеризован 2.5 % галичин"
    assert product.content_hash == product_content_fields_hash(
        {"name": "Молоко ультрапастеризоване 2,5%", "brand": "Галичина"}
    )
    assert product.embedding_hash != product.content_hash
    assert product.needs_embedding is True
    assert Product.objects.filter(tenant=tenant).count() == 1


def test_add_form_creates_product(admin_client, tenant):
    response = admin_client.post(
        reverse("admin:catalog_product_add"),
        _form_data(Product(tenant=tenant, sku="bread-1", name="Хліб Київхліб", unit="pcs")),
    )

    product = Product.objects.get(tenant=tenant, sku="bread-1")
    assert response.status_code == 302
    assert product.search_title == "хліб київхліб"
    assert product.content_hash == product_content_fields_hash({"name": "Хліб Київхліб"})


def test_add_form_applies_product_input_rules(admin_client, tenant):
    response = admin_client.post(
        reverse("admin:catalog_product_add"),
        _form_data(
            Product(tenant=tenant, sku="bread-1", name="Хліб", unit="pcs"),
            image_url="ftp://example.com/bread.jpg",
        ),
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["image_url"] == [
        "Enter an absolute http:// or https:// URL."
    ]
    assert Product.objects.filter(tenant=tenant).count() == 0


def test_delete_counts_catalog_change(admin_client, tenant):
    product = _embedded_product(tenant, sku="milk-1", name="Молоко")

    response = admin_client.post(
        reverse("admin:catalog_product_delete", args=[product.pk]), {"post": "yes"}
    )

    tenant.refresh_from_db(fields=["catalog_version"])
    assert response.status_code == 302
    assert not Product.objects.filter(pk=product.pk).exists()
    assert tenant.catalog_version == 1


def test_bulk_delete_counts_catalog_change(admin_client, tenant, other_tenant):
    own = _embedded_product(tenant, sku="milk-1", name="Молоко")
    other = _embedded_product(other_tenant, sku="bread-1", name="Хліб")

    response = admin_client.post(
        reverse("admin:catalog_product_changelist"),
        {"action": "delete_selected", "_selected_action": [own.pk], "post": "yes"},
    )

    tenant.refresh_from_db(fields=["catalog_version"])
    other_tenant.refresh_from_db(fields=["catalog_version"])
    assert response.status_code == 302
    assert not Product.objects.filter(pk=own.pk).exists()
    assert Product.objects.filter(pk=other.pk).exists()
    assert tenant.catalog_version == 1
    assert other_tenant.catalog_version == 0


HOSTILE = '"><img src=x onerror=alert(1)><script>alert(2)</script>'


def _query_count(client, url: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200
    return len(queries.captured_queries)


def test_changelist_queries_do_not_grow_with_rows(admin_client, tenant, other_tenant):
    url = reverse("admin:catalog_product_changelist")
    ProductFactory(tenant=tenant)
    few = _query_count(admin_client, url)

    for index in range(60):
        ProductFactory(tenant=tenant if index % 2 else other_tenant)
    many = _query_count(admin_client, url)

    assert many == few


def test_pages_escape_hostile_product(admin_client, tenant):
    product = ProductFactory(tenant=tenant, sku="evil-1", name=HOSTILE, brand=HOSTILE)
    escaped = "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;&lt;script&gt;alert(2)&lt;/script&gt;"

    pages = [
        admin_client.get(reverse("admin:catalog_product_changelist")),
        admin_client.get(reverse("admin:catalog_product_changelist"), {"q": HOSTILE}),
        admin_client.get(reverse("admin:catalog_product_change", args=[product.pk])),
        admin_client.get(reverse("admin:catalog_product_delete", args=[product.pk])),
    ]

    for page in pages:
        content = page.content.decode()
        assert page.status_code == 200
        assert "<script>alert" not in content
        assert "<img src=x" not in content
        assert escaped in content


def test_catalog_job_cannot_be_deleted(admin_client, tenant):
    product = ProductFactory(tenant=tenant, sku="milk-1", name="Молоко")
    admin_client.post(
        reverse("admin:catalog_product_change", args=[product.pk]),
        _form_data(product, name="Молоко 2.5%"),
    )
    job = CatalogJob.objects.get(tenant=tenant)

    page = admin_client.get(reverse("admin:catalog_catalogjob_change", args=[job.pk]))
    delete_page = admin_client.get(reverse("admin:catalog_catalogjob_delete", args=[job.pk]))
    delete = admin_client.post(
        reverse("admin:catalog_catalogjob_delete", args=[job.pk]), {"post": "yes"}
    )
    bulk_delete = admin_client.post(
        reverse("admin:catalog_catalogjob_changelist"),
        {"action": "delete_selected", "_selected_action": [job.pk], "post": "yes"},
    )

    assert page.status_code == 200
    assert "deletelink" not in page.content.decode()
    assert delete_page.status_code == 403
    assert delete.status_code == 403
    # Django returns the changelist, unchanged, for an action that the user may not run.
    assert bulk_delete.status_code == 200
    job.refresh_from_db()
    assert job.status == CatalogJob.Status.PENDING
    assert job.product_ids == [product.pk]


@pytest.mark.parametrize(
    ("name", "message"),
    [("   ", "This field is required."), ("Мо\x00локо", "Null characters are not allowed.")],
)
def test_change_form_reports_name_error_once(admin_client, tenant, name, message):
    product = ProductFactory(tenant=tenant, sku="milk-1", name="Молоко")

    response = admin_client.post(
        reverse("admin:catalog_product_change", args=[product.pk]), _form_data(product, name=name)
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {"name": [message]}
    product.refresh_from_db()
    assert product.name == "Молоко"
    assert not CatalogJob.objects.filter(tenant=tenant).exists()


@pytest.mark.parametrize(
    ("attributes", "message"),
    [
        (
            '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}",
            "The JSON is nested too deeply to parse. Attributes may be nested at most 32 "
            "levels deep.",
        ),
        (
            '{"a": 1' + "0" * sys.get_int_max_str_digits() + "}",
            f"A number has more than {sys.get_int_max_str_digits()} digits.",
        ),
    ],
    ids=["deep", "long number"],
)
def test_change_form_rejects_unparsable_attributes(admin_client, tenant, attributes, message):
    product = ProductFactory(tenant=tenant, sku="milk-1", name="Молоко")
    url = reverse("admin:catalog_product_change", args=[product.pk])

    response = admin_client.post(url, _form_data(product, name="Кефір", attributes=attributes))

    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {"attributes": [message]}
    product.refresh_from_db()
    assert product.name == "Молоко"
    assert product.attributes == {}
    assert not CatalogJob.objects.filter(tenant=tenant).exists()
