"""Self-service sign-up of a buyer organisation, with e-mail confirmation, throttled."""

import re
from unittest import mock

import pytest
from django.contrib.auth import get_user_model
from django.core import mail, signing
from django.core.cache import caches

from marketplace.accounts import service as accounts
from marketplace.errors import DomainError
from marketplace.models import Membership, Organization, Role
from tests.browser import chromium_page
from tests.conftest import clear_own_keys

pytestmark = pytest.mark.django_db

User = get_user_model()
FORM = {
    "organization_name": "Acme  Robotics GmbH",
    "country": "de",
    "username": "ada",
    "email": "ada@acme.example",
    "password": "a-long-pass-phrase-77",
    "password_again": "a-long-pass-phrase-77",
}


@pytest.fixture(autouse=True)
def fresh_throttle(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    clear_own_keys(caches["default"])  # the throttle counts live in the default (local-memory) cache
    yield
    clear_own_keys(caches["default"])


def link_in(message) -> str:
    return re.search(r"https?://\S+/accounts/confirm/\S+/", message.body).group(0)


def test_signing_up_creates_an_inactive_buyer_and_mails_the_link(client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/accounts/signup/", FORM)
    assert response.status_code == 200 and "Check your e-mail" in response.content.decode()
    user = User.objects.get(username="ada")
    assert not user.is_active and user.email == "ada@acme.example"
    membership = Membership.objects.get(user=user)
    assert membership.role == Role.BUYER
    assert membership.organization.name == "Acme Robotics GmbH" and membership.organization.country == "DE"
    assert membership.organization.slug == "acme-robotics-gmbh"
    assert not client.login(username="ada", password=FORM["password"])  # inactive until confirmed

    (message,) = mail.outbox
    assert message.to == ["ada@acme.example"]
    link = link_in(message)
    confirmed = client.get(link.split("://", 1)[1].split("/", 1)[1].join(["/", ""]))
    assert confirmed.status_code == 302 and confirmed["Location"].startswith("/accounts/login/")
    assert User.objects.get(pk=user.pk).is_active
    assert client.login(username="ada", password=FORM["password"])


def test_a_taken_username_or_address_writes_nothing(client):
    accounts.sign_up_buyer(
        organization_name="First", username="ada", email="other@x.example", password=FORM["password"]
    )
    before = Organization.objects.count()
    taken_name = client.post("/accounts/signup/", FORM)
    assert "That username is taken." in taken_name.content.decode()
    taken_mail = client.post("/accounts/signup/", {**FORM, "username": "bob", "email": "OTHER@x.example"})
    assert "An account with this e-mail address exists" in taken_mail.content.decode()
    assert Organization.objects.count() == before and User.objects.count() == 1
    assert not mail.outbox


@pytest.mark.parametrize(
    ("change", "field_error"),
    [
        ({"password": "short", "password_again": "short"}, "too short"),
        ({"password_again": "something-else-99"}, "The two passwords differ."),
        ({"email": "not-an-address"}, "valid email"),
        ({"username": "ada lovelace"}, "letters, digits"),
        ({"country": "D1"}, "two-letter"),
        ({"organization_name": "   "}, "required"),
    ],
)
def test_bad_input_is_refused_next_to_its_field_and_nothing_is_written(client, change, field_error):
    response = client.post("/accounts/signup/", {**FORM, **change})
    assert response.status_code == 200
    assert field_error in response.content.decode()
    assert not User.objects.exists() and not Organization.objects.exists()


def test_an_error_never_echoes_a_huge_input(client):
    huge = "x" * 100_000
    response = client.post("/accounts/signup/", {**FORM, "username": huge, "organization_name": huge})
    assert huge[:300] not in response.content.decode()
    assert not User.objects.exists()


def test_sign_ups_are_throttled_per_client_address(client, settings):
    settings.SIGNUP_RATE_PER_HOUR = 2
    for n in range(2):
        client.post("/accounts/signup/", {**FORM, "username": f"u{n}", "email": f"u{n}@x.example"})
    refused = client.post("/accounts/signup/", {**FORM, "username": "u9", "email": "u9@x.example"})
    assert refused.status_code == 429 and "Too many sign-ups" in refused.content.decode()
    assert not User.objects.filter(username="u9").exists()
    other = client.post(
        "/accounts/signup/", {**FORM, "username": "u8", "email": "u8@x.example"}, REMOTE_ADDR="10.0.0.8"
    )
    assert other.status_code == 200 and User.objects.filter(username="u8").exists()


def test_a_tampered_expired_or_foreign_token_activates_nobody(client, settings):
    user = accounts.sign_up_buyer(
        organization_name="Acme", username="ada", email="ada@acme.example", password=FORM["password"]
    )
    token = accounts.confirmation_token(user)
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    assert client.get(f"/accounts/confirm/{tampered}/").status_code == 400
    other_salt = signing.dumps({"user": user.pk, "email": user.email}, salt="another-purpose", compress=True)
    assert client.get(f"/accounts/confirm/{other_salt}/").status_code == 400
    with mock.patch("django.core.signing.time.time", return_value=1_000_000_000.0):
        old = accounts.confirmation_token(user)
    expired = client.get(f"/accounts/confirm/{old}/")
    assert expired.status_code == 410 and "expired" in expired.content.decode()
    user.email = "changed@acme.example"
    user.save()
    assert client.get(f"/accounts/confirm/{token}/").status_code == 400  # names the old address
    assert not User.objects.get(pk=user.pk).is_active


def test_a_link_cannot_reactivate_a_user_staff_deactivated(client):
    user = accounts.sign_up_buyer(
        organization_name="Acme", username="ada", email="ada@acme.example", password=FORM["password"]
    )
    token = accounts.confirmation_token(user)
    assert client.get(f"/accounts/confirm/{token}/").status_code == 302
    assert client.login(username="ada", password=FORM["password"])
    client.logout()
    User.objects.filter(pk=user.pk).update(is_active=False)
    with pytest.raises(DomainError) as caught:
        accounts.confirm_email(token=token)
    assert caught.value.code == "account_inactive"
    assert not User.objects.get(pk=user.pk).is_active


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_buyer_signs_up_confirms_and_logs_in_in_chromium(live_server, settings):
    settings.SITE_URL = live_server.url  # the e-mail's link points at this server
    with chromium_page() as page:
        page.goto(live_server.url + "/")
        page.click("text=Log in")
        page.click("#signup-link")
        page.fill("#id_organization_name", "Acme Robotics")
        page.fill("#id_country", "NL")
        page.fill("#id_username", "ada")
        page.fill("#id_email", "ada@acme.example")
        page.fill("#id_password", FORM["password"])
        page.fill("#id_password_again", FORM["password"])
        page.click("text=Create the account")
        page.wait_for_selector("text=Check your e-mail")

        (message,) = mail.outbox
        page.goto(link_in(message))
        page.wait_for_selector("text=Your e-mail address is confirmed")
        page.fill("#id_username", "ada")
        page.fill("#id_password", FORM["password"])
        page.click("button:has-text('Log in')")
        page.wait_for_url("**/library/")
        assert "ada" in page.locator("header").inner_text()
    user = User.objects.get(username="ada")
    assert user.is_active and Membership.objects.get(user=user).organization.name == "Acme Robotics"
