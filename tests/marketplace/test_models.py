"""Model invariants: what the database and the models refuse, whatever the caller."""

import pytest
from django.db import IntegrityError, connection, transaction

from marketplace.catalogue import publication as catalogue_publication
from marketplace.catalogue import stats as catalogue_stats
from marketplace.formats import model as fmt
from marketplace.models import Dataset, DatasetVersion, FrozenVersionError, Item, Label, Offer
from tests import factories as f
from tests.conftest import build_version

pytestmark = pytest.mark.django_db


def test_dataset_slugs_are_unique():
    f.DatasetFactory(slug="streets")
    with pytest.raises(IntegrityError), transaction.atomic():
        f.DatasetFactory(slug="streets")


def test_version_numbers_are_unique_within_a_dataset(dataset):
    f.VersionFactory(dataset=dataset, number=1)
    f.VersionFactory(number=1)  # another dataset may have its own v1
    with pytest.raises(IntegrityError), transaction.atomic():
        f.VersionFactory(dataset=dataset, number=1)


def test_it_rejects_a_version_number_below_one(dataset):
    with pytest.raises(IntegrityError), transaction.atomic():
        f.VersionFactory(dataset=dataset, number=0)


def test_publishing_freezes_the_version_and_lists_the_dataset(dataset):
    version = build_version(dataset, publish=False)
    assert Dataset.objects.get(pk=dataset.pk).status == Dataset.Status.DRAFT

    catalogue_publication.publish_version(version=version)

    version.refresh_from_db()
    assert version.status == DatasetVersion.Status.PUBLISHED
    assert len(version.content_hash) == 64
    assert version.stats["items"] == 3 and version.stats["labels"] == 6
    assert Dataset.objects.get(pk=dataset.pk).status == Dataset.Status.LISTED


def test_a_published_version_cannot_be_edited(published_version):
    published_version.release_notes = "rewritten history"
    with pytest.raises(FrozenVersionError, match="published and cannot be changed"):
        published_version.save()


def test_a_published_version_cannot_go_back_to_draft(published_version):
    published_version.status = DatasetVersion.Status.DRAFT
    with pytest.raises(FrozenVersionError):
        published_version.save()


def test_a_published_version_can_be_deprecated_with_a_reason(published_version):
    published_version.status = DatasetVersion.Status.DEPRECATED
    published_version.deprecation_reason = "Mislabelled pedestrians; use v2."
    published_version.save()
    assert DatasetVersion.objects.get(pk=published_version.pk).status == "deprecated"


def test_a_published_version_cannot_be_deleted(published_version):
    with pytest.raises(FrozenVersionError):
        published_version.delete()


def test_labels_of_a_published_version_cannot_be_saved_updated_or_deleted(published_version):
    label = published_version.labels.first()
    label.geometry = {"bbox": [0, 0, 1, 1]}
    with pytest.raises(FrozenVersionError):
        label.save()
    with pytest.raises(FrozenVersionError):
        Label.objects.filter(version=published_version).update(attributes={"edited": True})
    with pytest.raises(FrozenVersionError):
        Label.objects.filter(pk=label.pk).delete()
    with pytest.raises(FrozenVersionError):
        published_version.datasheet.purpose = "changed"
        published_version.datasheet.save()


def test_the_database_refuses_raw_updates_of_a_published_versions_labels(published_version):
    """The trigger stops writes that bypass the models entirely."""
    label = published_version.labels.first()
    with (
        pytest.raises(IntegrityError, match="version_frozen"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("UPDATE marketplace_label SET attributes = '{}' WHERE id = %s", [label.pk])
    with (
        pytest.raises(IntegrityError, match="version_frozen"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(
            "UPDATE marketplace_datasetversion SET content_hash = 'x' WHERE id = %s", [published_version.pk]
        )


def test_the_database_refuses_new_items_in_a_published_version(published_version):
    with pytest.raises(IntegrityError, match="version_frozen"), transaction.atomic():
        Item.objects.bulk_create(
            [
                Item(
                    version=published_version,
                    key="late.jpg",
                    storage_key="k",
                    sha256="0" * 64,
                    width=1,
                    height=1,
                )
            ]
        )


def test_drafts_stay_editable(dataset):
    version = build_version(dataset, publish=False)
    label = version.labels.first()
    label.geometry = {"bbox": [1.0, 2.0, 3.0, 4.0]}
    label.save()
    assert Label.objects.get(pk=label.pk).geometry["bbox"] == [1.0, 2.0, 3.0, 4.0]


def test_an_open_offer_must_be_free(dataset):
    with pytest.raises(IntegrityError), transaction.atomic():
        f.OfferFactory(dataset=dataset, access_mode=Offer.AccessMode.OPEN, price=10)


def test_a_model_made_label_must_name_its_model(dataset):
    version = build_version(dataset, publish=False, items=1)
    item = version.items.first()
    with pytest.raises(IntegrityError), transaction.atomic():
        f.LabelFactory(item=item, category=version.schema.categories.first(), source=fmt.MODEL, model_name="")


def test_a_skeleton_must_point_at_declared_keypoints(dataset):
    category = f.CategoryFactory(keypoint_names=["a", "b"], skeleton=[[1, 3]], geometry_types=[fmt.KEYPOINTS])
    with pytest.raises(Exception, match="1-based"):
        category.clean()


def test_has_element_finds_a_string_in_a_json_list():
    f.DatasetFactory(slug="a", task_types=["detection", "segmentation"])
    f.DatasetFactory(slug="b", task_types=["classification"])
    assert list(
        Dataset.objects.filter(task_types__has_element="segmentation").values_list("slug", flat=True)
    ) == ["a"]
    assert not Dataset.objects.filter(task_types__has_element="segment").exists()


def test_the_content_hash_changes_when_a_label_changes(dataset):
    version = build_version(dataset, publish=False, items=2)
    before = catalogue_stats.compute_content_hash(version=version)
    label = version.labels.first()
    label.geometry = {"bbox": [11.0, 20.0, 100.0, 50.0]}
    label.save()
    assert catalogue_stats.compute_content_hash(version=version) != before
