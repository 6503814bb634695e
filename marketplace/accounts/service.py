"""Self-service sign-up of a buyer organisation: the organisation, its first user (a buyer), and the
e-mail confirmation that activates the user.

The user is created inactive, so nothing can be done with the account before the address is
confirmed (Django's login refuses inactive users). The confirmation link carries a token signed with
the site's SECRET_KEY (``django.core.signing``, salted for this purpose, timestamped): it names the user
and the address, and expires after SIGNUP_CONFIRM_DAYS. Opening it again changes nothing; and once the
user has logged in, it cannot re-activate an account that staff deactivated later.

Sign-ups are throttled per client address (SIGNUP_RATE_PER_HOUR) in the default cache; with several
web processes, point CACHES at Redis so that they share the count.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core import signing
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils.crypto import get_random_string
from django.utils.text import slugify

from ..errors import DomainError
from ..models import Membership, Organization, Role

log = logging.getLogger(__name__)

SALT = "marketplace.accounts.signup-confirmation"
THROTTLE_WINDOW = 3600  # seconds: the rate is per hour
NAME_MAX = 200  # Organization.name
USERNAME_MAX = 150  # Django's User.username


def confirm_days() -> int:
    return int(getattr(settings, "SIGNUP_CONFIRM_DAYS", 3))


def check_rate(*, client: str) -> None:
    """Count one sign-up attempt from ``client`` (an IP address); refuse past the hourly rate."""
    limit = int(getattr(settings, "SIGNUP_RATE_PER_HOUR", 5))
    key = f"signup-rate:{client or 'unknown'}"
    # add() then incr(): atomic on Redis and on the local-memory cache alike.
    if cache.add(key, 1, timeout=THROTTLE_WINDOW):
        count = 1
    else:
        try:
            count = cache.incr(key)
        except ValueError:  # expired between add() and incr()
            cache.set(key, 1, timeout=THROTTLE_WINDOW)
            count = 1
    if count > limit:
        raise DomainError(
            "Too many sign-ups from your network: try again in an hour.", code="throttled", status_code=429
        )


def _unique_slug(name: str) -> str:
    base = slugify(name)[:60].strip("-") or "organisation"
    for n in range(1, 20):
        slug = base if n == 1 else f"{base}-{n}"
        if not Organization.objects.filter(slug=slug).exists():
            return slug
    # Twenty taken: a random suffix rather than an unbounded search.
    return f"{base}-{get_random_string(6).lower()}"


def sign_up_buyer(*, organization_name: str, username: str, email: str, password: str, country: str = ""):
    """Create a buyer organisation and its first user, inactive until the e-mail is confirmed."""
    User = get_user_model()
    name = " ".join((organization_name or "").split())
    if not name or len(name) > NAME_MAX:
        raise DomainError(f"Give your organisation's name (1 to {NAME_MAX} characters).", code="invalid_name")
    username = (username or "").strip()
    if not username or len(username) > USERNAME_MAX:
        raise DomainError(f"Choose a username of 1 to {USERNAME_MAX} characters.", code="invalid_username")
    try:
        User.username_validator(username)
    except ValidationError:
        raise DomainError(
            "A username may hold letters, digits and @ . + - _ only.", code="invalid_username"
        ) from None
    email = (email or "").strip()
    try:
        validate_email(email)
    except ValidationError:
        raise DomainError("Give a valid e-mail address.", code="invalid_email") from None
    country = (country or "").strip().upper()
    if country and (len(country) != 2 or not country.isalpha()):
        raise DomainError("Country is a two-letter ISO code, e.g. DE.", code="invalid_country")
    candidate = User(username=username, email=email)
    try:
        validate_password(password, user=candidate)
    except ValidationError as error:
        raise DomainError(" ".join(error.messages), code="weak_password") from None
    with transaction.atomic():
        if User.objects.filter(username__iexact=username).exists():
            raise DomainError("That username is taken.", code="username_taken", status_code=409)
        if User.objects.filter(email__iexact=email).exists():
            raise DomainError(
                "An account with this e-mail address exists: log in, or ask its organisation to add you.",
                code="email_taken",
                status_code=409,
            )
        try:
            with transaction.atomic():
                user = User.objects.create_user(
                    username=username, email=email, password=password, is_active=False
                )
        except IntegrityError:  # the same username, a moment ago
            raise DomainError("That username is taken.", code="username_taken", status_code=409) from None
        organization = Organization.objects.create(name=name, slug=_unique_slug(name), country=country)
        Membership.objects.create(user=user, organization=organization, role=Role.BUYER)
    return user


def confirmation_token(user) -> str:
    return signing.dumps({"user": user.pk, "email": user.email}, salt=SALT, compress=True)


def confirmation_url(user) -> str:
    path = reverse("signup-confirm", kwargs={"token": confirmation_token(user)})
    return settings.SITE_URL.rstrip("/") + path


def send_confirmation_email(*, user) -> None:
    """E-mail the confirmation link through Django's e-mail backend (EMAIL_BACKEND)."""
    days = confirm_days()
    organization = user.memberships.select_related("organization").first()
    send_mail(
        subject="Confirm your e-mail address for the dataset registry",
        message=(
            f"Hello {user.get_username()},\n\n"
            f"you signed up {organization.organization.name if organization else 'an organisation'} as a buyer. "
            f"Open this link within {days} days to confirm your address and activate the account:\n\n"
            f"{confirmation_url(user)}\n\n"
            "If you did not sign up, ignore this e-mail: the account stays inactive.\n"
        ),
        from_email=settings.DEFAULT_FROM_EMAIL,
        recipient_list=[user.email],
    )


def confirm_email(*, token: str):
    """Activate the user a confirmation token names; return the user. Idempotent for an active user."""
    User = get_user_model()
    try:
        data = signing.loads(token, salt=SALT, max_age=confirm_days() * 86400)
    except signing.SignatureExpired:
        raise DomainError(
            "This confirmation link has expired: sign up again.", code="token_expired", status_code=410
        ) from None
    except signing.BadSignature:
        raise DomainError(
            "This confirmation link is not valid.", code="invalid_token", status_code=400
        ) from None
    with transaction.atomic():
        user = User.objects.select_for_update().filter(pk=data.get("user")).first()
        if user is None or user.email != data.get("email"):
            raise DomainError("This confirmation link is not valid.", code="invalid_token", status_code=400)
        if user.is_active:
            return user
        if user.last_login is not None:
            # Once active and logged in, then deactivated by staff: a sign-up link must not undo that.
            raise DomainError(
                "This account was deactivated: contact the registry.",
                code="account_inactive",
                status_code=403,
            )
        user.is_active = True
        user.save(update_fields=["is_active"])
    return user
