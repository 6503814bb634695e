"""Builders and checks shared by the ingest tests: deliveries from in-memory files, storage listings."""

from __future__ import annotations

import io
import json
import os
import struct
import zipfile
import zlib
from pathlib import Path

from django.apps import apps
from django.core.files.base import ContentFile
from PIL import Image

from marketplace.deliveries import service as deliveries
from marketplace.models import Delivery

from .formats.builders import image_bytes, zip_bytes

__all__ = ["image_bytes", "zip_bytes"]  # re-exported for the test modules


def picture(width: int, height: int, seed: int = 0, fmt: str = "JPEG") -> bytes:
    """A small image whose content differs with the seed (so hashes differ)."""
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (seed * 37 % 256, seed * 91 % 256, 120)).save(buf, fmt)
    return buf.getvalue()


def coco_doc(images: list[tuple[str, int, int]], annotations: list[dict], categories=None) -> dict:
    """A COCO document: images as (file_name, width, height), ids from 1."""
    return {
        "images": [
            {"id": i, "file_name": n, "width": w, "height": h} for i, (n, w, h) in enumerate(images, 1)
        ],
        "annotations": [{"id": i, "iscrowd": 0, **a} for i, a in enumerate(annotations, 1)],
        "categories": categories or [{"id": 1, "name": "car"}, {"id": 2, "name": "person"}],
    }


def coco_files(
    *, n_images: int = 2, width: int = 64, height: int = 48, extra: dict | None = None, doc=None
) -> dict:
    """A small valid COCO delivery: n images, one box per image (car) and one polygon (person) on the first."""
    images = [(f"{i:04d}.jpg", width, height) for i in range(n_images)]
    annotations = [
        {"image_id": i, "category_id": 1, "bbox": [1.0 + i, 2.0, 10.0, 8.0]} for i in range(1, n_images + 1)
    ]
    annotations.append({"image_id": 1, "category_id": 2, "segmentation": [[5, 5, 20, 5, 20, 30, 5, 30]]})
    files = {
        "annotations/instances_train.json": json.dumps(doc or coco_doc(images, annotations)),
        **{f"images/train/{n}": picture(w, h, i) for i, (n, w, h) in enumerate(images)},
    }
    files.update(extra or {})
    return files


def make_delivery(
    dataset, files: dict | bytes, *, format: str = "auto", defaults=None, user=None
) -> Delivery:
    """A pending delivery whose archive holds the given files (or exactly the given zip bytes)."""
    data = files if isinstance(files, bytes) else zip_bytes(files)
    return deliveries.create_delivery(
        dataset=dataset,
        archive=ContentFile(data, name="delivery.zip"),
        format=format,
        defaults=defaults,
        uploaded_by=user,
    )


def storage_files(root) -> set[str]:
    """Every file under MEDIA_ROOT, as relative paths."""
    root = Path(root)
    if not root.exists():
        return set()
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def row_counts() -> dict[str, int]:
    """Row count of every model of both apps (the delivery's own row is updated, never added)."""
    return {
        m._meta.label: m.objects.count()
        for app in ("marketplace", "governance")
        for m in apps.get_app_config(app).get_models()
    }


def png_with_size(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height but holds one empty row: a decompression bomb's header."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0"))
        + chunk(b"IEND", b"")
    )


def zip_with_entry_mode(files: dict[str, bytes], link_name: str, target: str) -> bytes:
    """A zip holding the files plus a symlink entry."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, content in files.items():
            zf.writestr(name, content)
        info = zipfile.ZipInfo(link_name)
        info.create_system = 3
        info.external_attr = 0o120777 << 16
        zf.writestr(info, target)
    return buf.getvalue()


def jpeg_with_exif_orientation(width: int, height: int, orientation: int) -> bytes:
    buf = io.BytesIO()
    exif = Image.Exif()
    exif[274] = orientation
    Image.new("RGB", (width, height), (10, 200, 30)).save(buf, "JPEG", exif=exif)
    return buf.getvalue()


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").lower() in ("1", "true", "yes")


# --------------------------------------------------------------------------- fixtures

import pytest  # noqa: E402


@pytest.fixture
def media(settings, tmp_path):
    """A fresh MEDIA_ROOT per test, so the storage listing before and after means something."""
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return Path(settings.MEDIA_ROOT)


@pytest.fixture
def run(django_capture_on_commit_callbacks):
    """Ingest a delivery as the task does, running what waits for the commit (the file copy)."""

    def go(delivery):
        with django_capture_on_commit_callbacks(execute=True):
            result = deliveries.ingest_delivery(delivery_id=delivery.pk)
        # What the delivery says once the commit callbacks (the file copy) have run.
        delivery.refresh_from_db()
        return deliveries.delivery_result(delivery, created=result.created)

    return go
