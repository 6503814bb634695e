"""A supplier deletes an abandoned draft: only a draft, only its own (issue #14)."""

from __future__ import annotations

import pytest
from django.core.files.storage import default_storage

from marketplace.deliveries import sweeping
from marketplace.models import DatasetVersion, Delivery, Item, Label

from . import ingest_support as support
from .ingest_support import coco_files, make_delivery

media, run = support.media, support.run  # fixtures

pytestmark = pytest.mark.django_db


def _url(dataset, number):
    return f"/api/v1/workspace/datasets/{dataset.slug}/versions/{number}/"


@pytest.fixture
def draft(dataset, media, run):
    result = run(make_delivery(dataset, coco_files(n_images=2)))
    assert result.ok
    return DatasetVersion.objects.get(dataset=dataset, number=result.version_number)


def test_the_supplier_deletes_its_abandoned_draft(api_for, supplier, dataset, draft, media):
    keys = set(draft.items.values_list("storage_key", flat=True))
    delivery = Delivery.objects.get(version=draft)

    response = api_for(supplier).delete(_url(dataset, draft.number))

    assert response.status_code == 204
    assert not DatasetVersion.objects.filter(pk=draft.pk).exists()
    assert not Item.objects.filter(version_id=draft.pk).exists()
    assert not Label.objects.filter(version_id=draft.pk).exists()
    delivery.refresh_from_db()
    assert delivery.version_id is None and delivery.report["version_deleted"] == draft.number
    # Its images are orphans now; the sweep removes them once past the grace period.
    assert sweeping.sweep_orphan_blobs(grace_seconds=0)["deleted"] == len(keys)
    assert not any(default_storage.exists(k) for k in keys)


def test_an_outsider_or_a_buyer_cannot_delete_it_nor_learn_it_exists(
    api_for, outsider, buyer, dataset, draft
):
    for user in (outsider, buyer):
        response = api_for(user).delete(_url(dataset, draft.number))
        assert response.status_code == 404, user
    assert DatasetVersion.objects.filter(pk=draft.pk).exists()


def test_a_published_version_is_never_deleted(api_for, supplier, published_version):
    response = api_for(supplier).delete(_url(published_version.dataset, published_version.number))
    assert response.status_code == 409 and response.json()["code"] == "not_draft"
    assert DatasetVersion.objects.filter(pk=published_version.pk).exists()
    assert Item.objects.filter(version=published_version).exists()


def test_the_workspace_page_deletes_a_draft(client, supplier, dataset, draft):
    client.force_login(supplier)
    page = client.get(f"/workspace/{dataset.slug}/versions/{draft.number}/")
    assert b"delete-draft-button" in page.content
    response = client.post(f"/workspace/{dataset.slug}/versions/{draft.number}/delete/")
    assert response.status_code == 302 and response["Location"] == f"/workspace/{dataset.slug}/"
    assert not DatasetVersion.objects.filter(pk=draft.pk).exists()


def test_the_page_refuses_another_suppliers_draft(client, outsider, dataset, draft):
    client.force_login(outsider)
    response = client.post(f"/workspace/{dataset.slug}/versions/{draft.number}/delete/")
    assert response.status_code == 404
    assert DatasetVersion.objects.filter(pk=draft.pk).exists()
