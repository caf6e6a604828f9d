"""The limit on failed logins to the Django admin."""

import logging
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import User
from django.core import signing
from django.db import connection
from django.test import Client

from conversations.client_address import ConnectionAddresses
from vizochok.admin_login import (
    DEVICE_COOKIE_NAME,
    DEVICE_COOKIE_SALT,
    AdminLoginThrottled,
    admin_login_attempt_start,
    device_key,
    user_name_key,
)
from vizochok.logging import JsonFormatter, KeyValueFormatter
from vizochok.models import LoginFailureCount

pytestmark = pytest.mark.django_db

LOGIN_URL = "/admin/login/?next=/admin/"
PASSWORD = "correct horse battery staple"
WRONG_PASSWORD = "Tr0ub4dor&3-guess"
WRONG_CREDENTIALS = (
    "Please enter the correct username and password for a staff account. Note that both "
    "fields may be case-sensitive."
)
REJECTED_EVENT = "vizochok.admin_login.rejected"
ADDRESS_A = "203.0.113.7"
ADDRESS_B = "198.51.100.20"
WINDOW_START = datetime(2030, 1, 2, 3, 4, 5, 250_000, tzinfo=UTC)
# WINDOW_START plus the 900-second window, rounded up to the second.
THROTTLED = "Too many failed login attempts. Try again after 2030-01-02 03:19:06 UTC."


@pytest.fixture(autouse=True)
def _limits(settings):
    settings.ADMIN_LOGIN_MAX_FAILURES = 3
    settings.ADMIN_LOGIN_WINDOW_SECONDS = 900
    settings.TRUSTED_PROXY_COUNT = 0


@pytest.fixture
def operator() -> User:
    return User.objects.create_superuser("operator", "operator@example.com", PASSWORD)


def log_in(
    user_name: str,
    password: str,
    *,
    address: str = ADDRESS_A,
    device_cookie: str | None = None,
    **headers: str,
):
    """Post the admin login form from ``address`` with a new client and return the response."""
    client = Client(REMOTE_ADDR=address, **headers)
    if device_cookie is not None:
        client.cookies[DEVICE_COOKIE_NAME] = device_cookie
    response = client.post(LOGIN_URL, {"username": user_name, "password": password})
    response.client_session = client.session
    return response


def login_errors(response) -> list[str]:
    assert response.status_code == 200
    return list(response.context["form"].non_field_errors())


def logged_in(response) -> bool:
    return response.status_code == 302 and "_auth_user_id" in response.client_session


def fail(
    user_name: str,
    times: int,
    *,
    address: str = ADDRESS_A,
    device_cookie: str | None = None,
    **headers: str,
) -> None:
    for _ in range(times):
        response = log_in(
            user_name, WRONG_PASSWORD, address=address, device_cookie=device_cookie, **headers
        )
        assert login_errors(response) == [WRONG_CREDENTIALS]


def pin_windows(start: datetime = WINDOW_START) -> None:
    """Start every counted window at ``start``, so that the message shows a known time."""
    LoginFailureCount.objects.update(window_started_at=start)


def counts() -> dict[str, int]:
    return {row.key.partition(":")[0]: row.failures for row in LoginFailureCount.objects.all()}


def test_correct_password_rejected_after_max_failures(operator, caplog):
    fail("operator", 3)
    pin_windows()

    response = log_in("operator", PASSWORD)

    assert login_errors(response) == [THROTTLED]
    assert THROTTLED in response.content.decode()
    assert not logged_in(response)
    # The rejected attempt is not counted and does not move the window.
    assert counts() == {"user": 3, "address": 3}
    assert set(LoginFailureCount.objects.values_list("window_started_at", flat=True)) == {
        WINDOW_START
    }
    records = [record for record in caplog.records if record.msg == REJECTED_EVENT]
    assert len(records) == 1
    assert records[0].levelno == logging.WARNING
    assert records[0].limited_by == "address,user"
    assert records[0].retry_at == "2030-01-02T03:19:05.250000+00:00"
    assert records[0].max_failures == 3
    assert records[0].window_seconds == 900


def test_failures_below_max_keep_login_open(operator):
    fail("operator", 2)

    response = log_in("operator", PASSWORD)

    assert logged_in(response)
    assert response["Location"] == "/admin/"


def test_unknown_user_name_gets_same_message(operator):
    fail("operator", 3)
    fail("nobody", 3, address=ADDRESS_B)
    pin_windows()

    known = log_in("operator", WRONG_PASSWORD, address="192.0.2.1")
    unknown = log_in("nobody", WRONG_PASSWORD, address="192.0.2.2")

    assert login_errors(known) == [THROTTLED]
    assert login_errors(unknown) == [THROTTLED]


def test_login_open_again_after_window(operator):
    fail("operator", 3)
    pin_windows(datetime.now(tz=UTC) - timedelta(seconds=901))

    response = log_in("operator", PASSWORD)

    assert logged_in(response)
    # The expired rows were deleted, and the success took its attempt back.
    assert counts() == {"address": 0}


def test_failure_after_window_starts_new_window(operator):
    fail("operator", 3)
    old_start = datetime.now(tz=UTC) - timedelta(seconds=901)
    pin_windows(old_start)

    fail("operator", 1)

    rows = list(LoginFailureCount.objects.all())
    assert [row.failures for row in rows] == [1, 1]
    assert all(row.window_started_at > old_start + timedelta(seconds=900) for row in rows)


def test_expired_counts_pruned_by_any_attempt(operator):
    fail("someone", 2, address=ADDRESS_B)
    pin_windows(datetime.now(tz=UTC) - timedelta(seconds=900))

    fail("operator", 1)

    assert counts() == {"user": 1, "address": 1}
    assert LoginFailureCount.objects.filter(key=user_name_key("someone")).exists() is False


def test_success_clears_user_name_count(operator):
    fail("operator", 2)

    assert logged_in(log_in("operator", PASSWORD))

    assert not LoginFailureCount.objects.filter(key=user_name_key("operator")).exists()
    # The address keeps its failures, because only the successful attempt is taken back.
    assert counts() == {"address": 2}


def test_success_gives_user_name_full_attempts(operator):
    fail("operator", 2)
    assert logged_in(log_in("operator", PASSWORD))

    # Two failures would remain of the old count; three fit into the new one.
    fail("operator", 3, address=ADDRESS_B)
    pin_windows()

    assert login_errors(log_in("operator", PASSWORD, address=ADDRESS_B)) == [THROTTLED]


def test_user_name_limit_applies_from_every_address(operator):
    fail("operator", 3, address=ADDRESS_A)
    pin_windows()

    response = log_in("operator", PASSWORD, address=ADDRESS_B)

    assert login_errors(response) == [THROTTLED]
    assert not logged_in(response)


def test_address_limit_spares_other_addresses(operator, caplog):
    for user_name in ("admin", "root", "staff"):
        fail(user_name, 1, address=ADDRESS_A)
    pin_windows()

    from_a = log_in("operator", PASSWORD, address=ADDRESS_A)
    from_b = log_in("operator", PASSWORD, address=ADDRESS_B)

    assert login_errors(from_a) == [THROTTLED]
    assert logged_in(from_b)
    records = [record for record in caplog.records if record.msg == REJECTED_EVENT]
    assert [record.limited_by for record in records] == ["address"]


def test_ipv6_addresses_of_one_prefix_share_count(operator):
    fail("admin", 1, address="2001:db8:1:2::1")
    fail("root", 1, address="2001:db8:1:2::2")
    fail("staff", 1, address="2001:db8:1:2:ffff::3")
    pin_windows()

    assert login_errors(log_in("operator", PASSWORD, address="2001:db8:1:2::4")) == [THROTTLED]
    assert logged_in(log_in("operator", PASSWORD, address="2001:db8:1:3::4"))


def test_address_from_trusted_proxy_header(operator, settings):
    settings.TRUSTED_PROXY_COUNT = 1
    proxy = "10.0.0.2"
    for user_name in ("admin", "root", "staff"):
        fail(user_name, 1, address=proxy, HTTP_X_FORWARDED_FOR=f"192.0.2.99, {ADDRESS_A}")
    pin_windows()

    # A forged address left of the one that the proxy appended changes nothing.
    from_a = log_in("operator", PASSWORD, address=proxy, HTTP_X_FORWARDED_FOR=ADDRESS_A)
    from_b = log_in(
        "operator", PASSWORD, address=proxy, HTTP_X_FORWARDED_FOR=f"{ADDRESS_A}, {ADDRESS_B}"
    )

    assert login_errors(from_a) == [THROTTLED]
    assert logged_in(from_b)


def test_missing_password_not_counted(operator):
    response = Client(REMOTE_ADDR=ADDRESS_A).post(LOGIN_URL, {"username": "operator"})

    assert response.status_code == 200
    assert LoginFailureCount.objects.count() == 0


def test_counts_store_no_user_name_or_address(operator):
    fail("operator", 1)

    keys = sorted(LoginFailureCount.objects.values_list("key", flat=True))
    assert [key.partition(":")[0] for key in keys] == ["address", "user"]
    for key in keys:
        digest = key.partition(":")[2]
        assert len(digest) == 64
        assert int(digest, 16) >= 0
        assert "operator" not in key
        assert ADDRESS_A not in key


def test_logs_contain_no_password_or_user_name(operator, caplog):
    caplog.set_level(logging.DEBUG)
    fail("operator", 3)
    log_in("operator", PASSWORD)
    log_in("operator", WRONG_PASSWORD)

    assert [record.msg for record in caplog.records if record.msg == REJECTED_EVENT] == [
        REJECTED_EVENT,
        REJECTED_EVENT,
    ]
    for formatter in (KeyValueFormatter(), JsonFormatter()):
        text = "\n".join(formatter.format(record) for record in caplog.records)
        assert PASSWORD not in text
        assert WRONG_PASSWORD not in text
        assert "operator" not in text
        assert ADDRESS_A not in text


def parallel_attempts(*, workers: int, device: str | None = None) -> list[str]:
    """Start ``workers`` attempts of "operator" at once; return "counted" or "rejected" each."""
    barrier = threading.Barrier(workers)
    outcomes: list[str] = []
    addresses = ConnectionAddresses(peer=ADDRESS_A, forwarded_for=None)

    def attempt() -> None:
        try:
            barrier.wait()
            try:
                admin_login_attempt_start(user_name="operator", addresses=addresses, device=device)
            except AdminLoginThrottled:
                outcomes.append("rejected")
            else:
                outcomes.append("counted")
        finally:
            connection.close()

    threads = [threading.Thread(target=attempt) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


@pytest.mark.django_db(transaction=True)
def test_parallel_attempts_check_at_most_max_passwords():
    outcomes = parallel_attempts(workers=8)

    assert sorted(outcomes) == ["counted"] * 3 + ["rejected"] * 5
    assert counts() == {"user": 3, "address": 3}


PASSWORD_CHANGE_URL = "/admin/password_change/"
NEW_PASSWORD = "a new long passphrase 42"
WRONG_OLD_PASSWORD = "Your old password was entered incorrectly. Please enter it again."


def change_password(client: Client, old_password: str):
    return client.post(
        PASSWORD_CHANGE_URL,
        {
            "old_password": old_password,
            "new_password1": NEW_PASSWORD,
            "new_password2": NEW_PASSWORD,
        },
    )


def old_password_errors(response) -> list[str]:
    assert response.status_code == 200
    return list(response.context["form"].errors.get("old_password", []))


@pytest.fixture
def operator_session(operator) -> Client:
    client = Client(REMOTE_ADDR=ADDRESS_A)
    client.force_login(operator)
    return client


def test_password_change_counts_wrong_old_passwords(operator, operator_session):
    for _ in range(3):
        response = change_password(operator_session, WRONG_PASSWORD)
        assert old_password_errors(response) == [WRONG_OLD_PASSWORD]
    pin_windows()

    response = change_password(operator_session, PASSWORD)

    assert old_password_errors(response) == [THROTTLED]
    operator.refresh_from_db()
    assert operator.check_password(PASSWORD)
    assert counts() == {"user": 3, "address": 3}


def test_password_change_failures_block_login(operator, operator_session):
    for _ in range(3):
        change_password(operator_session, WRONG_PASSWORD)
    pin_windows()

    response = log_in("operator", PASSWORD, address=ADDRESS_B)

    assert login_errors(response) == [THROTTLED]
    assert not logged_in(response)


def test_password_change_with_old_password_clears_count(operator, operator_session):
    change_password(operator_session, WRONG_PASSWORD)

    response = change_password(operator_session, PASSWORD)

    assert response.status_code == 302
    assert response["Location"] == "/admin/password_change/done/"
    operator.refresh_from_db()
    assert operator.check_password(NEW_PASSWORD)
    assert counts() == {"address": 1}


def test_password_change_form_not_checked_without_old_password(operator, operator_session):
    response = change_password(operator_session, "")

    assert old_password_errors(response) == ["This field is required."]
    assert counts() == {}


DEVICE_REJECTED_EVENT = "vizochok.admin_login.device_cookie_rejected"


def device_cookie_of(user_name: str, password: str = PASSWORD, *, address: str = ADDRESS_A):
    """Log in with a new client and return the device cookie that the response sets."""
    response = log_in(user_name, password, address=address)
    assert logged_in(response)
    return response.cookies[DEVICE_COOKIE_NAME].value


def count_of(key_prefix: str) -> list[int]:
    return sorted(
        LoginFailureCount.objects.filter(key__startswith=f"{key_prefix}:").values_list(
            "failures", flat=True
        )
    )


class PastTimestampSigner(signing.TimestampSigner):
    """A signer that dates its values ``age`` seconds back."""

    def __init__(self, *, age: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.age = age

    def timestamp(self) -> str:
        return signing.b62_encode(int(time.time()) - self.age)


def test_login_sets_device_cookie(operator):
    response = log_in("operator", PASSWORD)

    assert logged_in(response)
    cookie = response.cookies[DEVICE_COOKIE_NAME]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Lax"
    assert cookie["path"] == "/admin/"
    assert cookie["max-age"] == 90 * 86_400
    assert cookie["secure"] == ""
    payload = signing.loads(cookie.value, salt=DEVICE_COOKIE_SALT)
    assert sorted(payload) == ["id", "password_hmac", "user"]
    assert payload["user"] == "operator"
    assert PASSWORD not in cookie.value


def test_device_cookie_secure_over_https(operator, settings):
    settings.ADMIN_DEVICE_COOKIE_MAX_AGE_SECONDS = 3600
    client = Client(REMOTE_ADDR=ADDRESS_A)

    response = client.post(LOGIN_URL, {"username": "operator", "password": PASSWORD}, secure=True)

    assert response.status_code == 302
    assert response.cookies[DEVICE_COOKIE_NAME]["secure"] is True
    assert response.cookies[DEVICE_COOKIE_NAME]["max-age"] == 3600


def test_failed_login_sets_no_device_cookie(operator):
    response = log_in("operator", WRONG_PASSWORD)

    assert login_errors(response) == [WRONG_CREDENTIALS]
    assert DEVICE_COOKIE_NAME not in response.cookies


def test_stranger_failures_spare_device_cookie_holder(operator, caplog):
    device_cookie = device_cookie_of("operator")
    # The stranger uses up the user name's and the operator's network's attempts.
    fail("operator", 3, address=ADDRESS_A)
    pin_windows()
    assert login_errors(log_in("operator", PASSWORD)) == [THROTTLED]
    caplog.clear()

    response = log_in("operator", PASSWORD, device_cookie=device_cookie)

    assert logged_in(response)
    assert response.cookies[DEVICE_COOKIE_NAME].value != device_cookie
    assert count_of("user") == [3]
    assert count_of("address") == [3]
    assert count_of("device") == []
    assert [record.msg for record in caplog.records if record.msg == REJECTED_EVENT] == []


def test_device_cookie_holder_failures_count_against_cookie(operator):
    device_cookie = device_cookie_of("operator")

    fail("operator", 2, device_cookie=device_cookie)

    assert count_of("device") == [2]
    # Only the successful login without the cookie is in the address count, taken back.
    assert count_of("address") == [0]
    assert count_of("user") == []


def test_stolen_device_cookie_gets_max_guesses(operator, caplog):
    device_cookie = device_cookie_of("operator")
    fail("operator", 3, address=ADDRESS_B, device_cookie=device_cookie)
    pin_windows()

    response = log_in("operator", PASSWORD, address=ADDRESS_B, device_cookie=device_cookie)

    assert login_errors(response) == [THROTTLED]
    assert not logged_in(response)
    assert DEVICE_COOKIE_NAME not in response.cookies
    assert count_of("device") == [3]
    records = [record for record in caplog.records if record.msg == REJECTED_EVENT]
    assert [record.limited_by for record in records] == ["device"]
    # The guesses with the cookie did not count against the user name or the network.
    assert logged_in(log_in("operator", PASSWORD, address=ADDRESS_B))


def test_device_cookie_open_again_after_window(operator):
    device_cookie = device_cookie_of("operator")
    fail("operator", 3, device_cookie=device_cookie)
    pin_windows(datetime.now(tz=UTC) - timedelta(seconds=901))

    response = log_in("operator", PASSWORD, device_cookie=device_cookie)

    assert logged_in(response)
    assert count_of("device") == []


def _forged(cookie: str, operator: User) -> str:
    payload = signing.loads(cookie, salt=DEVICE_COOKIE_SALT)
    return signing.dumps(payload, key="another secret key", salt=DEVICE_COOKIE_SALT)


def _tampered(cookie: str, operator: User) -> str:
    payload = signing.loads(cookie, salt=DEVICE_COOKIE_SALT)
    value, signed = cookie.split(":", 1)
    forged_value = signing.dumps({**payload, "id": "chosen"}, salt="other").split(":", 1)[0]
    assert forged_value != value
    return f"{forged_value}:{signed}"


def _expired(cookie: str, operator: User) -> str:
    payload = signing.loads(cookie, salt=DEVICE_COOKIE_SALT)
    signer = PastTimestampSigner(age=90 * 86_400 + 60, salt=DEVICE_COOKIE_SALT)
    return signer.sign_object(payload)


def _other_user(cookie: str, operator: User) -> str:
    User.objects.create_superuser("other", "other@example.com", PASSWORD)
    return device_cookie_of("other", address="192.0.2.50")


def _revoked(cookie: str, operator: User) -> str:
    operator.set_password(PASSWORD)
    operator.save()
    return cookie


INVALID_COOKIES = [
    ("forged", _forged, "bad_signature"),
    ("tampered", _tampered, "bad_signature"),
    ("expired", _expired, "expired"),
    ("other_user", _other_user, "other_user"),
    ("revoked", _revoked, "revoked"),
]


@pytest.mark.parametrize(
    ("_case", "make_cookie", "reason"), INVALID_COOKIES, ids=[case[0] for case in INVALID_COOKIES]
)
def test_invalid_device_cookie_gives_no_bypass(operator, caplog, _case, make_cookie, reason):
    caplog.set_level(logging.INFO)
    device_cookie = make_cookie(device_cookie_of("operator"), operator)
    fail("operator", 3, address=ADDRESS_B)
    pin_windows()
    caplog.clear()

    response = log_in("operator", PASSWORD, device_cookie=device_cookie)

    assert login_errors(response) == [THROTTLED]
    assert not logged_in(response)
    assert DEVICE_COOKIE_NAME not in response.cookies
    assert count_of("user") == [3]
    assert count_of("device") == []
    rejected = [record for record in caplog.records if record.msg == REJECTED_EVENT]
    assert [record.limited_by for record in rejected] == ["user"]
    cookie_records = [record for record in caplog.records if record.msg == DEVICE_REJECTED_EVENT]
    assert [record.reason for record in cookie_records] == [reason]
    assert cookie_records[0].levelno == logging.INFO


def test_device_cookie_for_other_user_name_not_valid(operator):
    device_cookie = device_cookie_of("operator")

    assert device_key(cookie=device_cookie, user_name="Operator") is None
    assert device_key(cookie=device_cookie, user_name="operator") is not None


def test_device_cookie_of_deleted_user_not_valid(operator):
    device_cookie = device_cookie_of("operator")
    operator.delete()

    assert device_key(cookie=device_cookie, user_name="operator") is None


def test_new_secret_key_ends_device_cookies(operator, settings):
    device_cookie = device_cookie_of("operator")

    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "a new secret key for the admin device cookie test"

    assert device_key(cookie=device_cookie, user_name="operator") is None


def test_device_cookie_logs_no_user_name(operator, caplog):
    caplog.set_level(logging.DEBUG)
    device_cookie = device_cookie_of("operator")
    fail("operator", 3, device_cookie=device_cookie)
    log_in("operator", PASSWORD, device_cookie=device_cookie)
    log_in("operator", PASSWORD, device_cookie=_forged(device_cookie, operator))

    for formatter in (KeyValueFormatter(), JsonFormatter()):
        text = "\n".join(formatter.format(record) for record in caplog.records)
        assert device_cookie not in text
        assert device_cookie.split(":", 1)[0] not in text
        assert "operator" not in text
        assert PASSWORD not in text


@pytest.mark.django_db(transaction=True)
def test_parallel_attempts_with_one_device_cookie(operator):
    device = device_key(cookie=device_cookie_of("operator"), user_name="operator")
    LoginFailureCount.objects.all().delete()

    outcomes = parallel_attempts(workers=8, device=device)

    assert sorted(outcomes) == ["counted"] * 3 + ["rejected"] * 5
    assert counts() == {"device": 3}


@pytest.fixture
def device_session(operator) -> Client:
    """A client with the operator's session and the device cookie of its login."""
    client = Client(REMOTE_ADDR=ADDRESS_A)
    response = client.post(LOGIN_URL, {"username": "operator", "password": PASSWORD})
    assert response.status_code == 302
    assert DEVICE_COOKIE_NAME in client.cookies
    LoginFailureCount.objects.all().delete()
    return client


def test_password_change_with_device_cookie_counts_cookie(device_session):
    for _ in range(3):
        response = change_password(device_session, WRONG_PASSWORD)
        assert old_password_errors(response) == [WRONG_OLD_PASSWORD]
    pin_windows()

    response = change_password(device_session, PASSWORD)

    assert old_password_errors(response) == [THROTTLED]
    assert counts() == {"device": 3}
    # The user name stays open for a browser without the cookie.
    assert logged_in(log_in("operator", PASSWORD, address=ADDRESS_B))


def test_password_change_with_device_cookie_spared_by_stranger(operator, device_session):
    old_cookie = device_session.cookies[DEVICE_COOKIE_NAME].value
    fail("operator", 3, address=ADDRESS_A)
    pin_windows()

    response = change_password(device_session, PASSWORD)

    assert response.status_code == 302
    assert response["Location"] == "/admin/password_change/done/"
    operator.refresh_from_db()
    assert operator.check_password(NEW_PASSWORD)
    assert count_of("user") == [3]
    assert count_of("device") == []
    new_cookie = response.cookies[DEVICE_COOKIE_NAME]
    assert new_cookie["path"] == "/admin/"
    assert new_cookie["httponly"] is True
    # The new password revoked the old cookie; the new one is valid.
    assert device_key(cookie=old_cookie, user_name="operator") is None
    assert device_key(cookie=new_cookie.value, user_name="operator") is not None
    assert logged_in(log_in("operator", NEW_PASSWORD, device_cookie=new_cookie.value))
