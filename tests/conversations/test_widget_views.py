"""The widget script and the demo store page served by the app."""

import hashlib
import hmac
import time
from pathlib import Path
from urllib.parse import parse_qsl

import pytest

from demo.run import SHOPPER_ID, STORE_ID, print_instructions, widget_demo_url
from tenants.models import ApiKey
from tenants.services import api_key_create

WIDGET_FILE = (
    Path(__file__).resolve().parents[2] / "conversations" / "widget" / "vizochok-widget.js"
)
SCRIPT_URL = "/widget/v1/vizochok-widget.js"
DEMO_URL = "/widget/demo/"


def test_script_is_the_widget_file(client):
    response = client.get(SCRIPT_URL)
    body = WIDGET_FILE.read_bytes()

    assert response.status_code == 200
    assert response.content == body
    assert response["Content-Type"] == "text/javascript; charset=utf-8"
    assert response["ETag"] == f'"{hashlib.sha256(body).hexdigest()[:32]}"'
    assert response["Cache-Control"] == "public, max-age=300"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Access-Control-Allow-Origin"] == "*"
    assert response["Cross-Origin-Resource-Policy"] == "cross-origin"
    assert "Access-Control-Allow-Credentials" not in response


def test_script_revalidates_with_etag(client):
    etag = client.get(SCRIPT_URL)["ETag"]

    response = client.get(SCRIPT_URL, HTTP_IF_NONE_MATCH=etag, HTTP_ORIGIN="https://shop.example")

    assert response.status_code == 304
    assert response.content == b""
    assert response["ETag"] == etag
    assert response["Cache-Control"] == "public, max-age=300"
    assert response["Access-Control-Allow-Origin"] == "*"
    assert response["Cross-Origin-Resource-Policy"] == "cross-origin"


def test_script_head_has_no_body(client):
    response = client.head(SCRIPT_URL)

    assert response.status_code == 200
    assert response.content == b""
    assert response["Content-Type"] == "text/javascript; charset=utf-8"


def test_script_rejects_post(client):
    response = client.post(SCRIPT_URL)

    assert response.status_code == 405
    assert response["Allow"] == "GET, HEAD"


def test_script_in_production_mode(client, settings):
    settings.DEBUG = False

    response = client.get(SCRIPT_URL)

    assert response.status_code == 200
    assert response.content == WIDGET_FILE.read_bytes()


@pytest.mark.django_db
def test_demo_page_renders_without_keys(client, tenant):
    issued = api_key_create(tenant=tenant, kind=ApiKey.Kind.PUBLIC, name="widget")

    response = client.get(DEMO_URL)
    page = response.content.decode()

    assert response.status_code == 200
    assert response["Content-Type"] == "text/html; charset=utf-8"
    assert '<script src="/widget/v1/vizochok-widget.js"></script>' in page
    assert "window.location.hash" in page
    assert 'id="setup"' in page
    assert "pk_live" not in page
    assert issued.raw_key not in page
    assert "name=" not in page.split('id="setup"')[1].split("</form>")[0]


def test_demo_page_welcomes_in_each_language(client):
    page = client.get(DEMO_URL).content.decode()

    assert 'en: "Hi! Tell me what you are looking for, for example: milk."' in page
    assert 'ru: "Здравствуйте! Напишите, что ищете, например: молоко."' in page
    assert '|| "Вітаю! Напишіть, що шукаєте, наприклад: молоко."' in page


def test_demo_page_log_wraps_long_lines(client):
    # An unwrapped callback line widened a phone's page and pushed the widget off screen.
    page = client.get(DEMO_URL).content.decode()
    log_rule = page.split("#log {")[1].split("}")[0]

    assert "overflow-wrap: anywhere;" in log_rule


def test_demo_url_carries_settings_in_fragment():
    secret = "demo-user-token-secret"
    before = int(time.time())

    url = widget_demo_url(
        app_url="http://127.0.0.1:8000", public_key="pk_live_public", user_token_secret=secret
    )

    page, _, fragment = url.partition("#")
    settings = dict(parse_qsl(fragment))
    assert page == "http://127.0.0.1:8000/widget/demo/"
    assert list(settings) == ["key", "store", "user", "token", "lang"]
    assert settings["key"] == "pk_live_public"
    assert settings["store"] == STORE_ID
    assert settings["user"] == SHOPPER_ID
    assert settings["lang"] == "uk"
    expires_at, signature = settings["token"].split(".")
    assert before + 86400 <= int(expires_at) <= int(time.time()) + 86400
    message = f"{SHOPPER_ID}.{expires_at}".encode()
    assert signature == hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def test_demo_url_without_secret_is_anonymous():
    url = widget_demo_url(
        app_url="http://127.0.0.1:8000", public_key="pk_live_public", user_token_secret=None
    )

    assert url == "http://127.0.0.1:8000/widget/demo/#key=pk_live_public&store=store-1&lang=uk"


def test_demo_instructions_print_widget_url(capsys):
    credentials = {
        "public_key": "pk_live_public",
        "secret_key": "sk_live_secret",
        "admin_password": "password",
        "user_token_secret": "demo-user-token-secret",
    }

    print_instructions(app_url="http://127.0.0.1:8000", credentials=credentials)

    output = capsys.readouterr().out
    assert "http://127.0.0.1:8000/widget/demo/#key=pk_live_public&store=store-1&user=" in output


def test_demo_page_hides_setup_with_keys(client):
    # The form's display: grid rule kept the hidden settings form on screen next to the widget.
    page = client.get(DEMO_URL).content.decode()

    assert '<form id="setup" hidden>' in page
    assert "form[hidden] { display: none; }" in page


def test_demo_page_language_matches_its_text(client):
    page = client.get(DEMO_URL).content.decode()

    assert '<html lang="en">' in page
    assert '<div class="shelf" lang="uk">' in page
