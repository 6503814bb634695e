"""Previews: samples with their labels as JSON, images with every label kind drawn, watermarks,
one rendering kept in storage, originals only for the entitled, anonymous callers throttled."""

import io
from unittest import mock

import numpy as np
import pytest
from django.core.cache import caches
from django.core.files.storage import default_storage
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils

from marketplace.api.samples import PreviewAnonThrottle
from marketplace.catalogue import previews
from marketplace.catalogue import publication as catalogue_publication
from marketplace.formats import model as fmt
from marketplace.models import Item
from tests import factories as f
from tests.conftest import build_version, clear_own_keys

from .buyer_support import attach_images, entitle, fast_passwords, version_with_images  # noqa: F401

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    """Files of each test in its own folder; throttling counts start from zero."""
    settings.MEDIA_ROOT = tmp_path / "media"
    clear_own_keys(caches["default"])
    yield
    clear_own_keys(caches["default"])


def view(category, kind, geometry, color, skeleton=None) -> previews.LabelView:
    return previews.LabelView(
        uid="u",
        category=category,
        category_id=1,
        color=color,
        geometry_type=kind,
        geometry=geometry,
        attributes={},
        source="human",
        model="",
        annotator="A-1",
        guideline_version="v1",
        made_at=None,
        skeleton=skeleton or [],
    )


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    assert image.format == "JPEG"
    return image.convert("RGB")


def near(pixel, color, tolerance=70) -> bool:
    return sum(abs(a - b) for a, b in zip(pixel, color, strict=True)) <= tolerance


def rle_of_rectangle(width, height, box) -> dict:
    canvas = Image.new("L", (width, height), 0)
    ImageDraw.Draw(canvas).rectangle(box, fill=1)
    rle = mask_utils.encode(np.asfortranarray(np.array(canvas, dtype=np.uint8)))
    return {"size": [height, width], "counts": rle["counts"].decode("ascii")}


# --------------------------------------------------------------------------- rendering


def test_every_label_kind_is_drawn_where_it_lies():
    """A 400x300 white image, one label of each kind in its own pure colour, no downscaling."""
    white = Image.new("RGB", (400, 300), (255, 255, 255))
    labels = [
        view("box", fmt.BBOX, {"bbox": [10, 10, 80, 60]}, "#ff0000"),
        view("poly", fmt.POLYGON, {"polygons": [[150, 10, 250, 10, 200, 90]]}, "#0000ff"),
        view("line", fmt.POLYLINE, {"points": [10, 150, 150, 150]}, "#00aa00"),
        view("mask", fmt.MASK, {"rle": rle_of_rectangle(400, 300, [300, 10, 390, 90])}, "#ff00ff"),
        view(
            "pose",
            fmt.KEYPOINTS,
            {"keypoints": [50, 200, 2, 120, 200, 2, 0, 0, 0]},
            "#ff8800",
            skeleton=[[1, 2], [2, 3]],
        ),
        view(
            "bearing",
            fmt.CUBOID_2D,
            {"cuboid": [200, 180, 200, 240, 260, 180, 260, 240, 220, 165, 220, 225, 280, 165, 280, 225]},
            "#00cccc",
        ),
        view(
            "bearing3d",
            fmt.CUBOID_3D,
            {"cuboid_3d": {"position": [0, 0, 5], "dimensions": [1, 1, 1], "rotation": [0, 0, 0]}},
            "#000000",
        ),
        view("condition_good", fmt.CLASSIFICATION, {}, "#ffff00"),
    ]
    image = decode(previews.render_preview(image=white, width=400, height=300, labels=labels, watermark=None))

    assert image.size == (400, 300)
    assert near(image.getpixel((50, 10)), (255, 0, 0))  # top edge of the box
    assert near(image.getpixel((50, 40)), (255, 255, 255))  # inside the box: outline only
    assert near(image.getpixel((200, 10)), (0, 0, 255))  # polygon edge
    inside_polygon = image.getpixel((200, 40))
    assert inside_polygon[2] > inside_polygon[0] + 20  # a light blue fill
    assert near(image.getpixel((80, 150)), (0, 170, 0))  # polyline
    tinted = image.getpixel((345, 50))
    assert tinted[1] < 200 and tinted[0] > 200 and tinted[2] > 200  # mask: magenta over white
    assert near(image.getpixel((85, 200)), (255, 136, 0))  # skeleton bone between two visible points
    assert near(image.getpixel((250, 165)), (0, 204, 204))  # the cuboid's back face, top edge
    assert near(image.getpixel((200, 210)), (0, 204, 204))  # a front-face edge
    assert max(image.getpixel((390, 290))) < 130  # the caption bar of the image class...
    assert near(image.getpixel((11, 289)), (255, 255, 0))  # ...with the class's colour
    assert near(image.getpixel((380, 160)), (255, 255, 255))  # nothing where nothing is


def test_a_preview_is_at_most_512_pixels_and_labels_scale_with_it():
    big = Image.new("RGB", (2048, 1024), (255, 255, 255))
    labels = [view("box", fmt.BBOX, {"bbox": [1000, 400, 400, 200]}, "#ff0000")]
    image = decode(previews.render_preview(image=big, width=2048, height=1024, labels=labels, watermark=None))
    assert image.size == (512, 256)
    assert near(image.getpixel((300, 100)), (255, 0, 0))  # 1200/4, 400/4: the top edge, scaled


def test_the_watermark_covers_the_image_for_those_not_entitled():
    plain = Image.new("RGB", (512, 384), (40, 40, 40))
    clean = np.asarray(
        decode(previews.render_preview(image=plain, width=512, height=384, labels=[], watermark=None)),
        dtype=int,
    )
    marked = np.asarray(
        decode(
            previews.render_preview(
                image=plain, width=512, height=384, labels=[], watermark="PREVIEW · Northwind"
            )
        ),
        dtype=int,
    )
    changed = np.abs(marked - clean).sum(axis=2) > 30
    assert changed.mean() > 0.03  # visible text...
    for quarter in (changed[:192, :256], changed[:192, 256:], changed[192:, :256], changed[192:, 256:]):
        assert quarter.mean() > 0.01  # ...in every quarter, so it cannot be cropped away


def test_colours_are_stable_per_category_and_follow_the_declared_one():
    assert previews.category_color("car") == previews.category_color("car")
    assert previews.category_color("car") != previews.category_color("pedestrian")
    assert previews.category_color("car", "#E6194B") == "#e6194b"
    assert previews.category_color("car", "red") == previews.category_color("car")


def test_a_broken_mask_does_not_break_the_preview():
    image = Image.new("RGB", (100, 100))
    labels = [view("mask", fmt.MASK, {"rle": {"size": [100, 100], "counts": 17}}, "#ff00ff")]
    assert decode(previews.render_preview(image=image, width=100, height=100, labels=labels, watermark=None))


# --------------------------------------------------------------------------- storage


def test_a_preview_is_rendered_once_and_kept_in_storage(dataset, supplier):
    version = version_with_images(dataset)
    item = version.items.first()
    with mock.patch.object(previews, "render_preview", wraps=previews.render_preview) as render:
        first = previews.preview_bytes(item=item, entitled=False)
        second = previews.preview_bytes(item=item, entitled=False)
        assert render.call_count == 1 and first == second
        previews.preview_bytes(item=item, entitled=True)
        assert render.call_count == 2  # the unwatermarked one is another file
    key = previews.preview_key(item=item, version=version, entitled=False)
    assert item.sha256 in key and f"-v{version.pk}-" in key and default_storage.exists(key)


def test_a_drafts_previews_are_not_kept_because_its_labels_can_change(dataset):
    version = version_with_images(dataset, publish=False)
    item = version.items.first()
    previews.preview_bytes(item=item, entitled=True)
    assert not default_storage.exists(previews.preview_key(item=item, version=version, entitled=True))


def test_a_missing_or_hostile_original_gives_a_placeholder_that_is_not_kept(dataset, monkeypatch):
    version = build_version(dataset)  # items whose files were never stored
    item = version.items.first()
    image = decode(previews.preview_bytes(item=item, entitled=False))
    assert image.size == (512, 384)
    assert not default_storage.exists(previews.preview_key(item=item, version=version, entitled=False))

    other = version_with_images(f.DatasetFactory(supplier=dataset.supplier), items=1).items.get()
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 640x480 is now a "bomb"
    assert previews.open_original(other) is None


@pytest.mark.s3
def test_previews_are_kept_in_s3_storage(s3_storage, dataset):
    version = version_with_images(dataset, items=1)
    item = version.items.get()
    previews.preview_bytes(item=item, entitled=False)
    keys = [o["Key"] for o in s3_storage["client"].list_objects_v2(Bucket=s3_storage["bucket"])["Contents"]]
    assert previews.preview_key(item=item, version=version, entitled=False) in keys


# --------------------------------------------------------------------------- samples API


@pytest.fixture
def sampled(dataset, supplier_org):
    """Six items: five with cars and people, one with the only 'bicycle'; guideline v1.2, annotator A-7."""
    gv = f.GuidelineVersionFactory(guideline=f.GuidelineFactory(dataset=dataset), tag="v1.2")
    annotator = f.AnnotatorFactory(organization=supplier_org, pseudonym="A-7")
    version = build_version(dataset, items=5, publish=False, guideline_version=gv, annotator=annotator)
    bicycle = f.CategoryFactory(schema=version.schema, name="bicycle", source_id=3, color="#00ff00")
    rare = f.ItemFactory(version=version, key="images/val/zzzz.jpg", split="val")
    f.LabelFactory(item=rare, category=bicycle, geometry={"bbox": [1.0, 1.0, 20.0, 20.0]})
    f.AttributeSpecFactory(schema=version.schema, name="age_band", describes_person=True)
    attach_images(version)
    catalogue_publication.publish_version(version=version)
    version.refresh_from_db()
    return version


def test_samples_cover_every_class_before_repeating_one(sampled, api_for):
    body = api_for().get("/api/v1/datasets/street-scenes/versions/1/samples/?limit=2").json()
    keys = [s["key"] for s in body["results"]]
    assert len(keys) == 2 and "images/val/zzzz.jpg" in keys  # the rare class gets its turn
    assert {row["category"] for row in body["legend"]} >= {"bicycle"}


def test_samples_carry_labels_with_provenance_and_no_per_person_attributes(sampled, api_for):
    body = api_for().get("/api/v1/datasets/street-scenes/versions/1/samples/?category=person&limit=3").json()
    assert body["entitled"] is False and len(body["results"]) == 3
    sample = body["results"][0]
    assert (
        sample["preview_url"].endswith(f"/items/{sample['id']}/preview/") and sample["original_url"] is None
    )
    person = next(lab for lab in sample["labels"] if lab["category"] == "person")
    assert person["annotator"] == "A-7" and person["guideline_version"] == "v1.2"
    assert person["geometry"]["keypoints"][:3] == [50.0, 60.0, 2]
    assert "age_band" not in person["attributes"]  # demographic: shown aggregated only


def test_the_suppliers_pinned_items_come_first(dataset, api_for):
    version = build_version(dataset, items=4, publish=False)
    Item.objects.filter(version=version, key="images/train/0003.jpg").update(pinned=True)
    catalogue_publication.publish_version(version=version)
    body = api_for().get("/api/v1/datasets/street-scenes/versions/1/samples/?limit=2").json()
    assert body["results"][0]["key"] == "images/train/0003.jpg"


def test_samples_filter_by_split_and_are_stable(sampled, api_for):
    api = api_for()
    val = api.get("/api/v1/datasets/street-scenes/versions/1/samples/?split=val").json()
    assert {s["split"] for s in val["results"]} == {"val"}
    first = api.get("/api/v1/datasets/street-scenes/versions/1/samples/?limit=4").json()
    assert first == api.get("/api/v1/datasets/street-scenes/versions/1/samples/?limit=4").json()
    assert api.get("/api/v1/datasets/street-scenes/versions/1/samples/?limit=x").status_code == 400


def test_samples_of_a_draft_are_the_suppliers_alone(draft_dataset, api_for, supplier, outsider):
    url = "/api/v1/datasets/secret-draft/versions/1/samples/"
    assert api_for(outsider).get(url).status_code == 404
    assert api_for().get(url).status_code == 404
    assert api_for(supplier).get(url).json()["entitled"] is True


# --------------------------------------------------------------------------- images over HTTP


def test_a_visitor_gets_a_watermarked_preview_and_no_original(sampled, api_for, buyer):
    item = sampled.items.first()
    base = f"/api/v1/datasets/street-scenes/versions/1/items/{item.pk}"
    anonymous = api_for().get(f"{base}/preview/")
    assert anonymous.status_code == 200 and anonymous["Content-Type"] == "image/jpeg"
    assert anonymous["Cache-Control"].startswith("public")
    assert decode(anonymous.content).size == (512, 384)

    for user in (None, buyer):
        refused = api_for(user).get(f"{base}/original/")
        assert refused.status_code in (401, 403) and refused.json()["code"] in (
            "not_entitled",
            "not_authenticated",
        )

    entitle(buyer, sampled.dataset)
    licensed = api_for(buyer).get(f"{base}/preview/")
    assert licensed["Cache-Control"].startswith("private") and licensed.content != anonymous.content
    original = api_for(buyer).get(f"{base}/original/")
    assert original.status_code == 200
    assert b"".join(original.streaming_content) == default_storage.open(item.storage_key).read()


def test_an_entitled_colleague_who_has_not_accepted_the_license_sees_the_watermark(sampled, api_for, buyer):
    colleague = f.MembershipFactory(organization=buyer.memberships.get().organization).user
    entitle(buyer, sampled.dataset)
    item = sampled.items.first()
    base = f"/api/v1/datasets/street-scenes/versions/1/items/{item.pk}"
    assert api_for(colleague).get(f"{base}/original/").status_code == 403
    assert api_for(colleague).get(f"{base}/preview/").content == api_for().get(f"{base}/preview/").content


def test_an_item_of_another_version_is_not_found_through_this_one(sampled, api_for, supplier_org, supplier):
    other = build_version(f.DatasetFactory(supplier=supplier_org, slug="other"), items=1, publish=False)
    foreign = other.items.get()
    response = api_for(supplier).get(f"/api/v1/datasets/street-scenes/versions/1/items/{foreign.pk}/preview/")
    assert response.status_code == 404


def test_anonymous_preview_calls_are_throttled_and_logged_in_ones_are_not(
    sampled, api_for, buyer, monkeypatch
):
    monkeypatch.setattr(PreviewAnonThrottle, "THROTTLE_RATES", {"previews_anon": "3/minute"})
    url = "/api/v1/datasets/street-scenes/versions/1/samples/?limit=1"
    anonymous = api_for()
    assert [anonymous.get(url).status_code for _ in range(4)] == [200, 200, 200, 429]
    assert anonymous.get(url).json()["code"] == "throttled"
    assert {api_for(buyer).get(url).status_code for _ in range(5)} == {200}


def test_the_sample_viewer_shows_a_legend_and_a_tooltip_per_label(sampled, client):
    html = client.get("/datasets/street-scenes/versions/1/samples/").content.decode()
    assert 'id="legend"' in html and "bicycle" in html
    assert "Annotator: A-7" in html and "Guideline: v1.2" in html
    assert html.count('class="hotspot"') >= 6 and "watermarked" in html
    assert "/preview/" in html and "/original/" not in html
