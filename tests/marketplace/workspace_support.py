"""Builders for the workspace tests: a COCO delivery in memory, a tiny PDF, a complete datasheet."""

from __future__ import annotations

import io
import json
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

# The one answer per section that a release needs (marketplace.workspace.REQUIRED_DATASHEET_FIELDS).
REQUIRED_ANSWERS = {
    "purpose": "Detecting cars and people at crossings.",
    "instances": "Street frames with boxes around cars and people.",
    "acquisition": "Dash cameras on delivery vans.",
    "labelling": "Two annotators per frame under the street guideline, reviewed by a third.",
    "intended_uses": "Training detectors for driver assistance.",
    "distribution": "Through the registry, under CC-BY-4.0.",
    "maintainer": "data@northwind.example",
}

SCHEMA = {
    "categories": [
        {"name": "car", "geometry_types": ["bbox", "polygon"], "supercategory": "vehicle"},
        {
            "name": "person",
            "geometry_types": ["bbox", "keypoints"],
            "keypoint_names": ["head", "left_foot", "right_foot"],
            "skeleton": [[1, 2], [1, 3]],
        },
    ],
    "attributes": [
        {"name": "occluded", "type": "boolean"},
        {
            "name": "age_band",
            "type": "choice",
            "allowed_values": ["child", "adult", "senior"],
            "categories": ["person"],
            "describes_person": True,
        },
    ],
}

# The smallest file that is a PDF as far as a magic-bytes check goes, and a real one for viewers.
PDF_BYTES = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
    b"2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
    b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 200 200]>>endobj\n"
    b"trailer<</Root 1 0 R>>\n%%EOF\n"
)


def picture(width: int, height: int, seed: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (seed * 37 % 256, seed * 91 % 256, 120)).save(buf, "JPEG")
    return buf.getvalue()


def coco_zip(*, boxes: dict[int, list[float]], images: int = 3, shift_first: float = 0.0) -> bytes:
    """A COCO delivery: ``images`` pictures, annotation ``id`` -> box on image ((id - 1) % images) + 1."""
    names = [f"{i:04d}.jpg" for i in range(images)]
    doc = {
        "images": [{"id": i, "file_name": n, "width": 96, "height": 64} for i, n in enumerate(names, 1)],
        "annotations": [
            {
                "id": ann_id,
                "image_id": (ann_id - 1) % images + 1,
                "category_id": 1 if ann_id % 2 else 2,
                "bbox": [box[0] + (shift_first if ann_id == 1 else 0.0), *box[1:]],
                "iscrowd": 0,
            }
            for ann_id, box in boxes.items()
        ],
        "categories": [{"id": 1, "name": "car"}, {"id": 2, "name": "person"}],
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("annotations/instances_train.json", json.dumps(doc))
        for i, n in enumerate(names):
            zf.writestr(f"images/train/{n}", picture(96, 64, i))
    return buf.getvalue()


def upload_delivery(api, slug: str, data: bytes, capture, *, defaults: dict | None = None):
    """POST a delivery through the ingest API and let the after-commit work run, as a worker would."""
    with capture(execute=True):
        response = api.post(
            f"/api/v1/datasets/{slug}/deliveries/",
            {
                "archive": SimpleUploadedFile("delivery.zip", data, content_type="application/zip"),
                "format": "coco",
                "defaults": json.dumps(defaults or {"guideline_version": "v1.0"}),
            },
            format="multipart",
        )
    assert response.status_code == 202, response.content
    return response.json()


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    """Personas' passwords hashed cheaply: PBKDF2's deliberate slowness is not what these tests test."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
