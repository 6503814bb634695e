"""Helpers of the buyer's-marketplace tests: versions with real image files, entitlements with seats."""

from __future__ import annotations

import hashlib
import io

import pytest
from PIL import Image, ImageDraw

from marketplace.blobs import put_blob
from marketplace.catalogue import publication as catalogue_publication
from marketplace.models import Entitlement, LicenseAcceptance, Offer
from tests import factories as f
from tests.conftest import build_version


def jpeg_for(key: str, width: int, height: int) -> bytes:
    """A small picture that differs per key, so every item has its own sha256."""
    seed = hashlib.sha256(key.encode()).digest()
    image = Image.new("RGB", (width, height), (seed[0], seed[1], seed[2]))
    ImageDraw.Draw(image).rectangle([20, 20, width // 2, height // 2], fill=(seed[3], seed[4], seed[5]))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=90)
    return out.getvalue()


def attach_images(version) -> None:
    """Store a real image for every item of a draft version (a published one is frozen)."""
    for item in version.items.all():
        data = jpeg_for(item.key, item.width, item.height)
        item.storage_key, item.sha256 = put_blob(data, suffix=".jpg")
        item.size_bytes = len(data)
        item.save()


def version_with_images(dataset, *, number: int = 1, items: int = 3, publish: bool = True, **kwargs):
    version = build_version(dataset, number=number, items=items, publish=False, **kwargs)
    attach_images(version)
    if publish:
        catalogue_publication.publish_version(version=version, release_notes=f"Release {number}")
        version.refresh_from_db()
    return version


def org_of(user):
    return user.memberships.get().organization


def entitle(user, dataset, *, license=None, seat: bool = True, **kwargs) -> Entitlement:
    """Give the user's organisation an entitlement (and the user a seat under it, by default)."""
    license = license or f.LicenseFactory()
    entitlement = Entitlement.objects.create(
        organization=org_of(user), dataset=dataset, license=license, **kwargs
    )
    if seat:
        LicenseAcceptance.objects.create(
            user=user,
            organization=org_of(user),
            license=license,
            text_sha256="0" * 64,
            entitlement=entitlement,
        )
    return entitlement


def purchase_offer(dataset, *, price=4900, seats=None, duration_days=None, **kwargs) -> Offer:
    license = f.LicenseFactory(
        name=kwargs.pop("license_name", "Commercial AI License"),
        text="Train and ship models inside the licensee. No redistribution.",
        seats=seats,
        duration_days=duration_days,
    )
    return f.OfferFactory(
        dataset=dataset, license=license, access_mode=Offer.AccessMode.PURCHASE, price=price, **kwargs
    )


def request_offer(dataset, *, price=0, **kwargs) -> Offer:
    license = f.LicenseFactory(name="Research only", commercial_use=False, text="Research use only.")
    return f.OfferFactory(
        dataset=dataset, license=license, access_mode=Offer.AccessMode.REQUEST, price=price, **kwargs
    )


def open_offer(dataset) -> Offer:
    license = f.LicenseFactory(spdx_id="CC-BY-4.0", name="CC BY 4.0", text="Share and adapt with credit.")
    return f.OfferFactory(dataset=dataset, license=license, access_mode=Offer.AccessMode.OPEN, price=0)


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    """The personas' passwords are hashed with a fast hasher: PBKDF2 costs ~0.5 s per user."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
