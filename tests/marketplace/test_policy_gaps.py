"""Policy gaps (issue #14, point 8): what one organisation may learn about another's activity."""

from __future__ import annotations

import json

import pytest

from .. import factories as f
from .test_export_api import ask, entitle, media  # noqa: F401 - media is an autouse fixture there

pytestmark = pytest.mark.django_db


def _list(api_for, user, version):
    url = f"/api/v1/datasets/{version.dataset.slug}/versions/{version.number}/exports/"
    return api_for(user).get(url)


def test_a_versions_export_list_shows_only_the_callers_organisations_exports(
    api_for, buyer, published_version, supplier, django_capture_on_commit_callbacks
):
    rival = f.MembershipFactory(role="buyer").user
    entitle(buyer, published_version.dataset)
    entitle(rival, published_version.dataset)
    mine = ask(api_for, buyer, published_version, capture=django_capture_on_commit_callbacks).json()["id"]

    assert [e["id"] for e in _list(api_for, buyer, published_version).json()["results"]] == [mine]
    rival_view = _list(api_for, rival, published_version)
    assert rival_view.status_code == 200 and rival_view.json()["results"] == []
    # The dataset's supplier sees every export of its own dataset.
    assert [e["id"] for e in _list(api_for, supplier, published_version).json()["results"]] == [mine]


def test_an_open_offer_exports_original_images_only_once_the_license_is_accepted(
    api_for, outsider, published_version, django_capture_on_commit_callbacks
):
    from marketplace.licensing import service as licensing

    from .buyer_support import open_offer

    offer = open_offer(published_version.dataset)
    with_images = {"include_images": True}

    refused = ask(api_for, outsider, published_version, options=with_images)
    assert refused.status_code == 403 and refused.json()["code"] == "license_not_accepted"
    assert ask(api_for, outsider, published_version).status_code == 202  # labels only: open to all

    licensing.purchase(user=outsider, offer=offer, idempotency_key="claim", accept_license=True)
    assert ask(api_for, outsider, published_version, options=with_images).status_code == 202


# -- a hidden draft's slug -----------------------------------------------------------------------


def _create(api_for, user, slug):
    body = {"slug": slug, "title": "Cars", "summary": "Cars at night.", "domain": "autonomous-driving"}
    return api_for(user).post("/api/v1/workspace/datasets/", body, format="json")


def test_a_hidden_drafts_slug_is_refused_exactly_like_a_public_one_and_probing_is_throttled(
    api_for, other_supplier, published_version, settings
):
    hidden = f.DatasetFactory(slug="secret-project")  # another organisation's draft: invisible to them
    assert api_for(other_supplier).get(f"/api/v1/datasets/{hidden.slug}/").status_code == 404

    on_hidden = _create(api_for, other_supplier, "secret-project")
    on_public = _create(api_for, other_supplier, published_version.dataset.slug)

    assert on_hidden.status_code == on_public.status_code == 400
    # The same code and the same sentence: nothing says whether the holder is visible or hidden.
    strip = lambda r, slug: json.dumps(r.json()).replace(slug, "SLUG")  # noqa: E731
    assert strip(on_hidden, "secret-project") == strip(on_public, published_version.dataset.slug)
    assert on_hidden.json()["code"] == "slug_taken"

    # Probing many names is throttled per user on the shared cache (a free slug too, then).
    settings.SLUG_REFUSALS_PER_HOUR = 3
    assert _create(api_for, other_supplier, "their-dataset").status_code == 400  # third refusal
    throttled = _create(api_for, other_supplier, "a-free-name")
    assert throttled.status_code == 429 and throttled.json()["code"] == "throttled"
    assert not f.models.Dataset.objects.filter(slug="a-free-name").exists()
