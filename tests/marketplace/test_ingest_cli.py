"""``manage.py ingest``: the same service from a terminal, with a JSON mode for scripts."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from marketplace.models import Dataset, Delivery
from tests import factories as f

from . import ingest_support as support
from .ingest_support import coco_doc, coco_files, zip_bytes

pytestmark = pytest.mark.django_db
# The command runs outside any test transaction, as it does in a terminal: the file copy that
# waits for the commit then happens before the command prints its result.
outside_a_transaction = pytest.mark.django_db(transaction=True)

media = support.media  # fixture


@pytest.fixture
def org(db):
    return f.OrganizationFactory(slug="northwind")


def _ingest(*args) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("ingest", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@outside_a_transaction
def test_it_creates_the_dataset_as_a_draft_and_prints_json(org, media, tmp_path):
    archive = tmp_path / "cars.zip"
    archive.write_bytes(zip_bytes(coco_files(n_images=2)))

    out, _ = _ingest(str(archive), "--dataset", "city-cars", "--supplier", "northwind", "--json")

    body = json.loads(out)
    assert body["version"] == 1 and body["status"] == "ingested" and body["format"] == "coco"
    assert body["items"] == 2 and body["labels"] == {"bbox": 2, "polygon": 1} and body["categories"] == 2
    dataset = Dataset.objects.get(slug="city-cars")
    assert dataset.status == Dataset.Status.DRAFT and dataset.supplier == org
    assert Delivery.objects.get().original_name == "cars.zip"


@outside_a_transaction
def test_it_ingests_a_folder_into_an_existing_dataset(org, media, tmp_path):
    f.DatasetFactory(slug="city-cars", supplier=org)
    for name, content in coco_files(n_images=1).items():
        path = tmp_path / "delivery" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)

    out, _ = _ingest(str(tmp_path / "delivery"), "--dataset", "city-cars")

    assert "city-cars version 1 (draft)" in out and "1 items, 2 labels (bbox 1, polygon 1)" in out


@outside_a_transaction
def test_a_refused_delivery_prints_the_report_and_exits_non_zero(org, media, tmp_path):
    doc = coco_doc([("0000.jpg", 64, 48)], [{"image_id": 1, "category_id": 3, "bbox": [1, 1, 5, 5]}])
    archive = tmp_path / "bad.zip"
    archive.write_bytes(zip_bytes(coco_files(n_images=1, doc=doc)))
    err = io.StringIO()

    with pytest.raises(CommandError) as caught:
        call_command(
            "ingest",
            str(archive),
            "--dataset",
            "x",
            "--supplier",
            "northwind",
            stderr=err,
            stdout=io.StringIO(),
        )

    assert caught.value.returncode == 1 and "1 error" in str(caught.value)
    assert "unknown_category" in err.getvalue()
    assert "annotations/instances_train.json:/annotations/0/category_id" in err.getvalue()


def test_it_needs_a_supplier_to_create_a_dataset(db, media, tmp_path):
    archive = tmp_path / "a.zip"
    archive.write_bytes(zip_bytes(coco_files(n_images=1)))
    with pytest.raises(CommandError, match="give --supplier"):
        _ingest(str(archive), "--dataset", "new-one")


def test_it_refuses_a_dataset_of_another_supplier(org, media, tmp_path):
    f.DatasetFactory(slug="theirs", supplier=f.OrganizationFactory(slug="lattice"))
    archive = tmp_path / "a.zip"
    archive.write_bytes(zip_bytes(coco_files(n_images=1)))
    with pytest.raises(CommandError, match="supplied by 'lattice'"):
        _ingest(str(archive), "--dataset", "theirs", "--supplier", "northwind")
    assert not Delivery.objects.exists()
