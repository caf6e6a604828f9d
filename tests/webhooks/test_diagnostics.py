"""The webhook test API, the admin "Send test" actions and the check_merchant command."""

from __future__ import annotations

import json
import math
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from tenants.models import WebhookSettings
from tests.factories import ProductFactory, TenantFactory
from tests.webhooks.behaviours import json_reply, point_webhooks_at, raw_reply, slow
from webhooks.dispatch import FailureReason, products_fetch
from webhooks.models import CircuitBreaker, WebhookDelivery
from webhooks.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature

pytestmark = pytest.mark.django_db

TEST_URL = "/api/v1/admin/webhooks/test"


def route(routes):
    """Answer by (method, path without query) from ``routes``; 404 for anything else."""

    def behaviour(handler) -> None:
        key = (handler.command, handler.path.split("?")[0])
        routes.get(key, json_reply(404, {"error": "not_found"}))(handler)

    return behaviour


# --- POST /api/v1/admin/webhooks/test -----------------------------------------------------


def test_products_test_uses_the_tenants_own_skus(tenant, merchant, server_client):
    ProductFactory(tenant=tenant, sku="atb-0318", name="Молоко")
    ProductFactory(tenant=tenant, sku="atb-0330", name="Кефір")

    response = server_client.post(TEST_URL, {}, format="json")

    assert response.status_code == 200
    body = response.json()
    assert body["kind"] == "products"
    assert body["ok"] is True
    assert body["status_code"] == 200
    assert isinstance(body["latency_ms"], int)
    assert body["response"] == {
        "products": [
            {"sku": "atb-0318", "price": 41.9, "in_stock": True},
            {
                "sku": "atb-0330",
                "price": 37.5,
                "in_stock": True,
                "promo_price": 31.9,
                "promo_label": "-15%",
            },
        ],
        "dropped": [],
    }
    [request] = merchant.requests
    assert json.loads(request.body) == {
        "skus": ["atb-0318", "atb-0330"],
        "store_id": "vizochok-test",
    }


def test_products_test_falls_back_to_sample_skus(tenant, merchant, server_client):
    response = server_client.post(TEST_URL, {"kind": "products"}, format="json")

    assert response.json()["ok"] is True
    assert response.json()["response"] == {"products": [], "dropped": []}
    assert json.loads(merchant.requests[0].body)["skus"] == ["vizochok-test-1", "vizochok-test-2"]


@pytest.mark.parametrize(
    ("store_id", "message"),
    [
        (" store-1", "Must not start or end with whitespace."),
        (7, "Expected a string, got a number."),
        ("", "This field may not be blank."),
        # A conversation's store_id has at most 100 characters, so no real one is longer.
        ("s" * 101, "Ensure this field has no more than 100 characters."),
    ],
)
def test_webhook_test_rejects_an_invalid_store_id(
    tenant, merchant, server_client, store_id, message
):
    response = server_client.post(TEST_URL, {"store_id": store_id}, format="json")

    assert response.status_code == 400
    assert response.json()["fields"] == {"store_id": [message]}
    assert merchant.requests == []
    assert WebhookDelivery.objects.count() == 0


def test_webhook_test_accepts_100_character_store_id(tenant, merchant, server_client):
    response = server_client.post(TEST_URL, {"store_id": "s" * 100}, format="json")

    assert response.status_code == 200
    assert response.json()["ok"] is True
    [request] = merchant.requests
    assert json.loads(request.body)["store_id"] == "s" * 100


def test_cart_test_clears_the_test_session(tenant, merchant, server_client):
    merchant.store.cart_seed("store-1", "shopper-1", [("atb-0318", 1)])

    response = server_client.post(TEST_URL, {"kind": "cart"}, format="json")

    assert response.json() == {
        "kind": "cart",
        "ok": True,
        "status_code": 200,
        "latency_ms": response.json()["latency_ms"],
        "response": {"ok": True},
    }
    [request] = merchant.requests
    assert json.loads(request.body) == {
        "action": "clear",
        "store_id": "vizochok-test",
        "session_id": "vizochok-test",
    }
    assert request.headers["X-VIZOCHOK-Idempotency-Key"]
    assert len(merchant.store.cart_items("store-1", "shopper-1")) == 1


def test_cart_get_test_loads_the_test_session(tenant, merchant, server_client):
    merchant.store.cart_seed("vizochok-test", "vizochok-test", [("atb-0318", 2)])

    response = server_client.post(TEST_URL, {"kind": "cart_get"}, format="json")

    body = response.json()
    assert body["ok"] is True
    assert [(item["sku"], item["quantity"]) for item in body["response"]["items"]] == [
        ("atb-0318", 2.0)
    ]
    assert merchant.requests[0].method == "GET"
    assert merchant.requests[0].query == {
        "store_id": "vizochok-test",
        "session_id": "vizochok-test",
    }


def test_test_request_is_signed_like_production(
    tenant, local_webhooks, start_server, server_client
):
    server = start_server(json_reply(200, {"ok": True}))
    point_webhooks_at(tenant, server)

    server_client.post(TEST_URL, {"kind": "cart"}, format="json")

    [request] = server.log.requests
    assert verify_signature(
        secret=tenant.webhook_settings.secret,
        body=request.body,
        signature=request.headers[SIGNATURE_HEADER.lower()],
        timestamp=request.headers[TIMESTAMP_HEADER.lower()],
    )


@pytest.mark.parametrize(
    ("_case", "behaviour", "status_code", "error_code"),
    [
        ("server error", json_reply(503, {"error": "busy"}), 503, "http_503"),
        ("html page", raw_reply(200, b"<html>oops</html>", "text/html"), 200, "wrong_content_type"),
        ("schema", json_reply(200, {"items": []}), 200, "invalid_schema"),
    ],
)
def test_failed_test_is_a_normal_answer(
    tenant, local_webhooks, start_server, server_client, _case, behaviour, status_code, error_code
):
    server = start_server(behaviour)
    point_webhooks_at(tenant, server)

    response = server_client.post(TEST_URL, {"kind": "products"}, format="json")

    assert response.status_code == 200
    body = response.json()
    assert body["ok"] is False
    assert body["status_code"] == status_code
    assert body["error_code"] == error_code
    assert body["error"].startswith(f"{error_code}: ")
    assert "response" not in body
    assert len(server.log.requests) == 1


def test_timed_out_test_reports_the_timeout(tenant, local_webhooks, start_server, server_client):
    server = start_server(slow(1.5))
    point_webhooks_at(tenant, server)

    body = server_client.post(TEST_URL, {"kind": "cart"}, format="json").json()

    assert body["ok"] is False
    assert body["error_code"] == "timeout"
    assert body["status_code"] is None
    assert 1000 <= body["latency_ms"] < 1500
    assert len(server.log.requests) == 1


def test_unconfigured_webhook_is_a_client_error(tenant, server_client):
    response = server_client.post(TEST_URL, {"kind": "cart_get"}, format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "webhook_not_configured"
    assert WebhookDelivery.objects.count() == 0


def test_unknown_kind_is_rejected(tenant, server_client):
    response = server_client.post(TEST_URL, {"kind": "orders"}, format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_json"
    assert "kind" in response.json()["fields"]


def test_public_key_cannot_send_tests(tenant, merchant, chat_client):
    response = chat_client.post(TEST_URL, {}, format="json")

    assert response.status_code == 403
    assert merchant.requests == []


def test_test_reaches_only_the_callers_webhooks(
    tenant, other_tenant, merchant, other_server_client
):
    response = other_server_client.post(TEST_URL, {}, format="json")

    assert response.status_code == 400
    assert response.json() == {
        "detail": (
            "The Products webhook URL or the signing secret is not set; configure it with "
            "PATCH /api/v1/admin/webhooks first."
        ),
        "code": "webhook_not_configured",
    }
    assert merchant.requests == []
    assert WebhookDelivery.objects.count() == 0


def test_test_sends_only_the_callers_skus(
    tenant, other_tenant, merchant, server_client, start_server
):
    ProductFactory(tenant=tenant, sku="atb-0318", name="Молоко")
    ProductFactory(tenant=other_tenant, sku="b-secret-1", name="Товар магазину B")
    theirs = start_server(json_reply(200, {"products": []}))
    point_webhooks_at(other_tenant, theirs)
    CircuitBreaker.objects.create(
        tenant=other_tenant, kind="products", state="open", retry_at="2999-01-01T00:00:00Z"
    )
    theirs_breaker = CircuitBreaker.objects.filter(tenant=other_tenant).values().get()

    response = server_client.post(TEST_URL, {}, format="json")

    assert response.status_code == 200
    assert response.json()["ok"] is True
    [request] = merchant.requests
    assert json.loads(request.body) == {"skus": ["atb-0318"], "store_id": "vizochok-test"}
    assert theirs.log.requests == []
    assert list(WebhookDelivery.objects.values_list("tenant_id", flat=True)) == [tenant.pk]
    assert CircuitBreaker.objects.filter(tenant=other_tenant).values().get() == theirs_breaker
    assert not CircuitBreaker.objects.filter(tenant=tenant).exists()


def test_blocked_url_is_reported_without_a_request(
    tenant, local_webhooks, start_server, server_client, settings
):
    server = start_server(json_reply(200, {"ok": True}))
    point_webhooks_at(tenant, server)
    settings.WEBHOOK_ALLOWED_NETWORKS = []

    body = server_client.post(TEST_URL, {"kind": "cart"}, format="json").json()

    assert body["ok"] is False
    assert body["error_code"] == "address_not_allowed"
    assert server.log.requests == []


def test_test_bypasses_an_open_breaker(tenant, merchant, server_client):
    CircuitBreaker.objects.create(
        tenant=tenant, kind="products", state="open", retry_at="2999-01-01T00:00:00Z"
    )
    assert products_fetch(tenant=tenant, skus=["a"], store_id="s").failure == (
        FailureReason.CIRCUIT_OPEN
    )

    body = server_client.post(TEST_URL, {}, format="json").json()

    assert body["ok"] is True
    assert len(merchant.requests) == 1
    assert WebhookDelivery.objects.get(is_test=True).outcome == "success"


def test_failed_tests_never_open_the_breaker(tenant, local_webhooks, start_server, server_client):
    server = start_server(json_reply(404, {"error": "not_found"}))
    point_webhooks_at(tenant, server)

    for _ in range(8):
        server_client.post(TEST_URL, {}, format="json")

    assert not CircuitBreaker.objects.exists()
    assert WebhookDelivery.objects.filter(is_test=True).count() == 8


# --- Admin "Send test" actions ------------------------------------------------------------


@pytest.mark.parametrize(
    ("_case", "action", "expected_path", "expected_method"),
    [
        ("products", "send_test_products", "/vizochok/products", "POST"),
        ("cart", "send_test_cart", "/vizochok/cart", "POST"),
        ("cart get", "send_test_cart_get", "/vizochok/cart", "GET"),
    ],
)
def test_admin_send_test_action(
    tenant, merchant, admin_client, _case, action, expected_path, expected_method
):
    response = admin_client.post(
        "/admin/tenants/webhooksettings/",
        {"action": action, "_selected_action": [tenant.webhook_settings.pk]},
        follow=True,
    )

    assert response.status_code == 200
    messages = [str(message) for message in response.context["messages"]]
    assert len(messages) == 1
    assert "answered HTTP 200" in messages[0]
    [request] = merchant.requests
    assert (request.method, request.path) == (expected_method, expected_path)
    assert request.status == 200
    assert WebhookDelivery.objects.get().is_test is True


def test_admin_send_test_reports_a_failure(tenant, local_webhooks, start_server, admin_client):
    server = start_server(json_reply(500, {"error": "boom"}))
    point_webhooks_at(tenant, server)

    response = admin_client.post(
        "/admin/tenants/webhooksettings/",
        {"action": "send_test_products", "_selected_action": [tenant.webhook_settings.pk]},
        follow=True,
    )

    [message] = [str(message) for message in response.context["messages"]]
    assert "test failed" in message
    assert "http_500" in message
    assert len(server.log.requests) == 1


def test_admin_send_test_without_url(tenant, local_webhooks, start_server, admin_client):
    server = start_server(json_reply(200, {"items": []}))
    point_webhooks_at(tenant, server)
    WebhookSettings.objects.filter(tenant=tenant).update(cart_get_url="")

    response = admin_client.post(
        "/admin/tenants/webhooksettings/",
        {"action": "send_test_cart_get", "_selected_action": [tenant.webhook_settings.pk]},
        follow=True,
    )

    [message] = [str(message) for message in response.context["messages"]]
    assert message == (
        f"{tenant}: no test was sent, because the Cart GET webhook URL or the signing secret "
        "is not set. Enter the URL on this tenant's webhook settings page and save it, which "
        "also generates a missing secret."
    )
    assert server.log.requests == []
    assert not WebhookDelivery.objects.exists()


# --- check_merchant -----------------------------------------------------------------------


def run_check(*args: str) -> tuple[str, CommandError | None]:
    output = StringIO()
    try:
        call_command("check_merchant", *args, stdout=output)
    except CommandError as error:
        return output.getvalue(), error
    return output.getvalue(), None


def test_check_merchant_passes_the_reference_merchant(tenant, merchant):
    ProductFactory(tenant=tenant, sku="atb-0318", name="Молоко")

    output, error = run_check("shop-a")

    assert error is None
    assert output.count("conforms to the contract") == 3
    assert "1 of 1 requested SKUs returned" in output
    assert "All checked endpoints conform" in output
    # Each endpoint got the signed sample and the wrong-signature request, which it rejected.
    assert [request.status for request in merchant.requests] == [200, 401, 200, 401, 200, 401]


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--store-id", " store-1", "must not start or end with whitespace"),
        ("--session-id", "user-1 ", "must not start or end with whitespace"),
        ("--sku", "", "must not be empty"),
        ("--sku", "   ", "must not be empty"),
        # An argument with the byte 0xff, as Python's argv decodes it, made the command fail
        # with a UnicodeEncodeError traceback when it encoded the request body.
        ("--store-id", "store-\udcff", "'store-\\udcff' is not valid UTF-8"),
        ("--session-id", "\udcffuser", "'\\udcffuser' is not valid UTF-8"),
        ("--sku", "atb-\udcff", "'atb-\\udcff' is not valid UTF-8"),
    ],
)
def test_check_merchant_rejects_unusable_ids(tenant, merchant, option, value, message):
    ProductFactory(tenant=tenant, sku="atb-0318", name="Молоко")

    output, error = run_check("shop-a", option, value)

    assert error is not None
    assert message in str(error)
    assert output == ""
    assert merchant.requests == []


def test_check_merchant_lists_every_violation(tenant, local_webhooks, start_server):
    products = {
        "products": [
            {"sku": "vizochok-test-1", "price": 10, "in_stock": True, "promo_price": 12},
            {"sku": "vizochok-test-1", "price": 9, "in_stock": True},
            {"sku": "extra", "price": 1, "in_stock": True},
            {"sku": "vizochok-test-2", "price": "10", "in_stock": "yes"},
            {"price": -1},
            "not an object",
        ]
    }
    server = start_server(
        route(
            {
                ("POST", "/products"): json_reply(200, products),
                ("POST", "/cart"): json_reply(200, {"ok": False}),
                ("GET", "/cart"): json_reply(
                    200, {"items": [{"sku": "a", "name": "A", "price": 1, "quantity": 0}]}
                ),
            }
        )
    )
    point_webhooks_at(tenant, server)

    output, error = run_check("shop-a", "--json")

    assert error is not None
    assert error.returncode == 1
    reports = {report["kind"]: report for report in json.loads(output)}
    assert [v["code"] for v in reports["products"]["violations"]] == [
        "promo_not_below_price",
        "duplicate_sku",
        "unrequested_sku",
        "wrong_type",
        "wrong_type",
        "missing_field",
        "missing_field",
        "invalid_number",
        "invalid_item",
        "accepts_invalid_signature",
    ]
    assert [v["code"] for v in reports["cart"]["violations"]] == [
        "cart_reason_missing",
        "accepts_invalid_signature",
    ]
    assert [v["code"] for v in reports["cart_get"]["violations"]] == [
        "invalid_number",
        "accepts_invalid_signature",
    ]
    assert str(error) == "14 contract violations found."


def test_check_merchant_reports_transport_problems(tenant, local_webhooks, start_server):
    server = start_server(
        route(
            {
                ("POST", "/products"): raw_reply(200, b"NaN", "text/plain"),
                ("POST", "/cart"): json_reply(500, {"error": "boom"}),
                ("GET", "/cart"): slow(0.6, json_reply(401, {"error": "invalid_signature"})),
            }
        )
    )
    point_webhooks_at(tenant, server)

    output, error = run_check("shop-a", "--json")

    reports = {report["kind"]: report for report in json.loads(output)}
    assert [v["code"] for v in reports["products"]["violations"]] == [
        "wrong_content_type",
        "invalid_json",
        "accepts_invalid_signature",
    ]
    assert [v["code"] for v in reports["cart"]["violations"]] == ["http_status"]
    assert [v["code"] for v in reports["cart_get"]["violations"]] == [
        "http_status",
        "slow_response",
    ]
    assert error is not None
    assert math.isclose(reports["cart_get"]["timeout_seconds"], 1)


def test_check_merchant_reports_oversized_error_page(tenant, local_webhooks, start_server):
    server = start_server(raw_reply(404, b"x" * (1024 * 1024), "text/html"))
    point_webhooks_at(tenant, server)

    output, error = run_check("shop-a", "--kind", "products", "--json")

    [report] = json.loads(output)
    assert report["status_code"] == 404
    assert report["violations"] == [
        {"code": "http_status", "message": "HTTP 404; the contract expects 200"}
    ]
    assert str(error) == "1 contract violation found."


def test_check_merchant_reports_deeply_nested_json(tenant, local_webhooks, start_server):
    server = start_server(raw_reply(200, b"[" * 100_000 + b"]" * 100_000))
    point_webhooks_at(tenant, server)

    output, error = run_check("shop-a", "--kind", "products", "--json")

    [report] = json.loads(output)
    assert [v["code"] for v in report["violations"]] == [
        "invalid_json",
        "accepts_invalid_signature",
    ]
    assert "nested too deeply" in report["violations"][0]["message"]
    assert str(error) == "2 contract violations found."


def test_check_merchant_reports_oversized_amounts(tenant, local_webhooks, start_server):
    # 10**400 is a valid JSON integer that no float can hold.
    products = {
        "products": [
            {"sku": "vizochok-test-1", "price": 10**400, "in_stock": True},
            {"sku": "vizochok-test-2", "price": 1e12, "in_stock": True},
        ]
    }
    cart_items = {"items": [{"sku": "a", "name": "A", "price": 1, "quantity": 10**400}]}
    server = start_server(
        route(
            {
                ("POST", "/products"): raw_reply(200, json.dumps(products).encode()),
                ("POST", "/cart"): json_reply(401, {"error": "invalid_signature"}),
                ("GET", "/cart"): raw_reply(200, json.dumps(cart_items).encode()),
            }
        )
    )
    point_webhooks_at(tenant, server)

    output, error = run_check("shop-a", "--json")

    reports = {report["kind"]: report for report in json.loads(output)}
    products_violations = reports["products"]["violations"]
    assert [v["code"] for v in products_violations] == [
        "invalid_number",
        "invalid_number",
        "accepts_invalid_signature",
    ]
    assert products_violations[0]["message"].endswith("price must be at most 1000000000")
    assert [v["code"] for v in reports["cart_get"]["violations"]] == [
        "invalid_number",
        "accepts_invalid_signature",
    ]
    assert error is not None


def test_check_merchant_reports_duplicate_cart_lines(tenant, local_webhooks, start_server):
    line = {"sku": "a", "name": "A", "price": 1, "quantity": 1}
    server = start_server(json_reply(200, {"items": [line, {**line, "quantity": 2}]}))
    point_webhooks_at(tenant, server)

    output, error = run_check("shop-a", "--kind", "cart_get", "--json")

    [report] = json.loads(output)
    assert [v["code"] for v in report["violations"]] == [
        "duplicate_sku",
        "accepts_invalid_signature",
    ]
    assert report["violations"][0]["message"] == "items[1].sku 'a' appears more than once"
    assert error is not None


def test_check_merchant_reports_spaced_duplicate_sku(tenant, local_webhooks, start_server):
    line = {"sku": "a", "name": "A", "price": 1, "quantity": 1}
    server = start_server(json_reply(200, {"items": [line, {**line, "sku": " a "}]}))
    point_webhooks_at(tenant, server)

    output, error = run_check("shop-a", "--kind", "cart_get", "--json")

    [report] = json.loads(output)
    assert [v["code"] for v in report["violations"]] == [
        "duplicate_sku",
        "accepts_invalid_signature",
    ]
    assert report["violations"][0]["message"] == (
        "items[1].sku ' a ', stripped to 'a', appears more than once"
    )
    assert error is not None


@pytest.mark.parametrize("promo_price", [1.5, 0.999, 0.995])
def test_check_merchant_reports_cart_promo_not_below_price(
    tenant, local_webhooks, start_server, promo_price
):
    line = {"sku": "a", "name": "A", "price": 1, "quantity": 1, "promo_price": promo_price}
    server = start_server(json_reply(200, {"items": [line]}))
    point_webhooks_at(tenant, server)

    output, error = run_check("shop-a", "--kind", "cart_get", "--json")

    [report] = json.loads(output)
    assert [v["code"] for v in report["violations"]] == [
        "promo_not_below_price",
        "accepts_invalid_signature",
    ]
    assert report["violations"][0]["message"] == (
        f"items[0].promo_price {promo_price} is not below price 1 once both are rounded to cents,"
        " so the assistant shows the regular price and leaves out the promotion"
    )
    assert error is not None


@pytest.mark.parametrize("promo_price", [10, 12.5, 9.999])
def test_check_merchant_reports_product_promo_not_below_price(
    tenant, local_webhooks, start_server, promo_price
):
    item = {"sku": "vizochok-test-1", "price": 10, "in_stock": True, "promo_price": promo_price}
    server = start_server(json_reply(200, {"products": [item]}))
    point_webhooks_at(tenant, server)

    output, error = run_check("shop-a", "--kind", "products", "--json")

    [report] = json.loads(output)
    assert [v["code"] for v in report["violations"]] == [
        "promo_not_below_price",
        "accepts_invalid_signature",
    ]
    assert report["violations"][0]["message"] == (
        f"products[0].promo_price {promo_price} is not below price 10 once both are rounded to"
        " cents, so the assistant shows the regular price and leaves out the promotion"
    )
    assert error is not None
    assert error.returncode == 1


def test_check_merchant_accepts_one_cent_promo(tenant, local_webhooks, start_server):
    line = {"sku": "a", "name": "A", "price": 1, "quantity": 1, "promo_price": 0.994}
    server = start_server(json_reply(200, {"items": [line]}))
    point_webhooks_at(tenant, server)

    output, error = run_check("shop-a", "--kind", "cart_get", "--json")

    [report] = json.loads(output)
    assert [v["code"] for v in report["violations"]] == ["accepts_invalid_signature"]
    assert error is not None


def test_check_merchant_reports_a_timeout(tenant, local_webhooks, start_server):
    server = start_server(slow(1.5))
    point_webhooks_at(tenant, server)

    output, error = run_check("shop-a", "--kind", "cart")

    assert "VIOLATION timeout:" in output
    assert error is not None
    assert len(server.log.requests) == 1


def test_check_merchant_requires_the_products_webhook(tenant):
    output, error = run_check("shop-a")

    assert "VIOLATION not_configured" in output
    assert output.count("not set") == 3
    assert str(error) == "1 contract violation found."


def test_check_merchant_unknown_tenant():
    TenantFactory(slug="known")

    with pytest.raises(CommandError, match="^Tenant 'unknown' not found; check the slug.$"):
        call_command("check_merchant", "unknown")


def test_check_merchant_json_output_is_one_json_document(tenant, merchant):
    ProductFactory(tenant=tenant, sku="atb-0318", name="Молоко")

    output, error = run_check("shop-a", "--json")

    assert error is None
    assert [report["kind"] for report in json.loads(output)] == ["products", "cart", "cart_get"]
