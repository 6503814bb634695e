"""The README's path for the demo draft: upload var/demo/urban-street-scenes-v3-delivery.zip, publish v3."""

import io
import json
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from pycocotools.coco import COCO

from marketplace.demo.delivery import delivery_path
from marketplace.models import Dataset, DatasetVersion, Item, Label

pytestmark = pytest.mark.django_db


@pytest.fixture
def demo(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.VAR_DIR = tmp_path / "var"
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    call_command("demo", stdout=io.StringIO())
    return Dataset.objects.get(slug="urban-street-scenes")


def test_the_demo_draft_is_empty_and_its_delivery_is_a_coco_zip_pycocotools_reads(demo, tmp_path):
    draft = demo.versions.get(number=3)
    assert draft.status == DatasetVersion.Status.DRAFT
    assert not Item.objects.filter(version=draft).exists()
    assert draft.datasheet.purpose  # the datasheet is written; only the delivery is missing

    path = delivery_path("urban-street-scenes", 3)
    assert path == tmp_path / "var" / "demo" / "urban-street-scenes-v3-delivery.zip"
    with zipfile.ZipFile(path) as zf:
        files = [n for n in zf.namelist() if n.startswith("annotations/") and n.endswith(".json")]
        images = [n for n in zf.namelist() if n.endswith(".jpg")]
        cocos = []
        for name in files:
            (tmp_path / "ann.json").write_bytes(zf.read(name))
            cocos.append(COCO(str(tmp_path / "ann.json")))
    assert sum(len(c.getImgIds()) for c in cocos) == len(images) == 28  # v2's 24 frames and 4 new ones
    names = {c["name"] for coco in cocos for c in coco.loadCats(coco.getCatIds())}
    assert {"car", "road", "lane_marking"} <= names


def test_the_supplier_uploads_the_demo_delivery_and_publishes_draft_3(
    demo, api_for, django_capture_on_commit_callbacks
):
    from django.contrib.auth import get_user_model

    api = api_for(get_user_model().objects.get(username="supplier"))
    path = delivery_path("urban-street-scenes", 3)
    blocked = api.get("/api/v1/workspace/datasets/urban-street-scenes/versions/3/").json()
    assert blocked["missing"], "an empty draft is not publishable"

    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(
            "/api/v1/datasets/urban-street-scenes/deliveries/",
            {
                "archive": SimpleUploadedFile(path.name, path.read_bytes(), content_type="application/zip"),
                "format": "coco",
            },
            format="multipart",
        )
    assert response.status_code == 202, response.content
    delivery = api.get(f"/api/v1/deliveries/{response.json()['id']}/").json()
    assert delivery["status"] == "ingested", json.dumps(delivery)[:2000]

    # The delivery filled draft 3; no version 4 was made.
    assert sorted(demo.versions.values_list("number", flat=True)) == [1, 2, 3]
    draft = demo.versions.get(number=3)
    assert Item.objects.filter(version=draft).count() == 28
    # Labels kept their identity from v2 (the zip carries their uids): a diff, not a new dataset.
    v2_uids = set(
        Label.objects.filter(version__number=2, version__dataset=demo).values_list("uid", flat=True)
    )
    v3_uids = set(Label.objects.filter(version=draft).values_list("uid", flat=True))
    assert v2_uids <= v3_uids and len(v3_uids) > len(v2_uids)
    assert draft.datasheet.purpose  # the supplier's datasheet survived the delivery

    response = api.post(
        "/api/v1/workspace/datasets/urban-street-scenes/versions/3/publish/",
        {"release_notes": "Four new frames."},
        format="json",
    )
    assert response.status_code == 200, response.content
    draft.refresh_from_db()
    assert draft.status == DatasetVersion.Status.PUBLISHED


def test_each_demo_release_is_signed_at_its_publication_date_and_the_ledger_verifies(demo):
    from governance.models import TreeHead

    for version in DatasetVersion.objects.filter(status=DatasetVersion.Status.PUBLISHED):
        head = TreeHead.objects.filter(version=version).order_by("tree_size").first()
        assert head is not None and head.timestamp == version.published_at, version
    out = io.StringIO()
    call_command("ledger", "verify", stdout=out)
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and all(": intact" in line for line in lines), out.getvalue()
