"""Checks the redirect to HTTPS that the settings turn on for sites served over HTTPS."""

import pytest
from django.test import Client, override_settings

pytestmark = pytest.mark.django_db


@override_settings(SECURE_SSL_REDIRECT=True)
def test_plain_http_request_is_redirected():
    response = Client().get("/api/v1/conversations/conv_unknown")

    assert response.status_code == 301
    assert response["Location"] == "https://testserver/api/v1/conversations/conv_unknown"


@override_settings(SECURE_SSL_REDIRECT=True)
def test_health_check_is_not_redirected():
    response = Client().get("/api/v1/health")

    assert response.status_code == 200


@override_settings(
    SECURE_SSL_REDIRECT=True, SECURE_PROXY_SSL_HEADER=("HTTP_X_FORWARDED_PROTO", "https")
)
def test_request_forwarded_by_tls_proxy_is_served():
    response = Client().get(
        "/api/v1/conversations/conv_unknown", headers={"X-Forwarded-Proto": "https"}
    )

    assert response.status_code == 401
    assert "Location" not in response
