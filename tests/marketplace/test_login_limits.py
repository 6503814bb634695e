"""Password guessing is slowed down on the token endpoint and the login page (issue #14, point 4)."""

from __future__ import annotations

import pytest
from django.core.cache import caches
from django.test import override_settings
from rest_framework.test import APIClient

from ..conftest import clear_own_keys

pytestmark = pytest.mark.django_db

TOKEN = "/api/v1/auth/token/"
LOGIN = "/accounts/login/"
RIGHT = "pass-word-123"


def _guess(client, username, password, addr="198.51.100.7"):
    return client.post(TOKEN, {"username": username, "password": password}, format="json", REMOTE_ADDR=addr)


def test_a_hundred_wrong_passwords_from_one_address_are_throttled_with_retry_after(buyer):
    client = APIClient()
    statuses = [_guess(client, "buyer", f"guess-{i}").status_code for i in range(100)]

    assert statuses[:10] == [400] * 10  # LOGIN_RATE: 10/minute per address
    assert set(statuses[10:]) == {429}
    refused = _guess(client, "buyer", RIGHT)
    assert refused.status_code == 429 and refused.json()["code"] == "throttled"
    assert int(refused["Retry-After"]) > 0


def test_a_username_is_locked_after_ten_failures_from_many_addresses(buyer):
    client = APIClient()
    for i in range(10):
        assert _guess(client, "buyer", f"guess-{i}", addr=f"203.0.113.{i}").status_code == 400

    locked = _guess(client, "buyer", RIGHT, addr="192.0.2.200")  # the right password, a fresh address

    assert locked.status_code == 429 and locked.json()["code"] == "locked_out"
    assert int(locked["Retry-After"]) > 0
    other = APIClient().post(TOKEN, {"username": "BUYER ", "password": RIGHT}, format="json")
    assert other.status_code == 429, "the same username in other case and spacing shares the count"


def test_a_correct_password_resets_the_failure_count(buyer):
    client = APIClient()
    for i in range(9):
        _guess(client, "buyer", f"guess-{i}", addr=f"203.0.113.{i}")
    assert _guess(client, "buyer", RIGHT, addr="192.0.2.1").status_code == 200
    for i in range(9):
        _guess(client, "buyer", f"again-{i}", addr=f"203.0.113.{i}")
    assert _guess(client, "buyer", RIGHT, addr="192.0.2.2").status_code == 200


def test_the_login_page_locks_a_username_after_repeated_failures(client, buyer):
    for i in range(10):
        response = client.post(
            LOGIN, {"username": "buyer", "password": f"guess-{i}"}, REMOTE_ADDR=f"203.0.113.{i}"
        )
        assert response.status_code == 200  # the form again, with its error

    response = client.post(LOGIN, {"username": "buyer", "password": RIGHT}, REMOTE_ADDR="192.0.2.9")

    assert response.status_code == 429 and int(response["Retry-After"]) > 0
    assert b"Too many login attempts" in response.content
    assert "_auth_user_id" not in client.session


def test_the_login_page_throttles_one_address(client, buyer):
    codes = [
        client.post(LOGIN, {"username": f"user{i}", "password": "x"}, REMOTE_ADDR="198.51.100.9").status_code
        for i in range(12)
    ]
    assert codes[:10] == [200] * 10 and codes[10:] == [429, 429]


def test_the_login_page_still_logs_in(client, buyer):
    response = client.post(LOGIN, {"username": "buyer", "password": RIGHT})
    assert response.status_code == 302 and client.session["_auth_user_id"] == str(buyer.pk)


@pytest.fixture
def redis_cache():
    """The shared cache the README configures with CACHE_URL (Redis DB 5, this branch's)."""
    redis = pytest.importorskip("redis")
    try:
        redis.Redis.from_url("redis://127.0.0.1:6379/5").ping()
    except redis.exceptions.ConnectionError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    config = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:6379/5",
            "KEY_PREFIX": "test-login-limits",
        }
    }
    with override_settings(CACHES=config):
        clear_own_keys(caches["default"])  # not FLUSHDB: the database may serve others
        yield caches["default"]
        clear_own_keys(caches["default"])


def test_the_counts_live_in_the_shared_cache_so_every_process_sees_them(redis_cache, buyer):
    client = APIClient()
    for i in range(10):
        _guess(client, "buyer", f"guess-{i}", addr=f"203.0.113.{i}")

    # Another web process would read the same Redis keys: look for them there.
    keys = redis_cache._cache.get_client().keys("test-login-limits:*")
    assert any(b"login-failures" in k for k in keys) and any(b"throttle_login" in k for k in keys)
    assert _guess(client, "buyer", RIGHT, addr="192.0.2.3").status_code == 429
