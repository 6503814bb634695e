"""The upload limit holds while the body streams in (issue #14, point 5)."""

from __future__ import annotations

import io
import os
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.files.uploadhandler import MemoryFileUploadHandler, TemporaryFileUploadHandler
from django.core.management.base import CommandError
from django.utils import timezone

from marketplace.models import Delivery

from . import ingest_support as support

pytestmark = pytest.mark.django_db

media = support.media  # fixture
MiB = 1024 * 1024


@pytest.fixture
def stored_bytes(monkeypatch):
    """Bytes that reached the handlers that keep an upload (memory or a temporary file)."""
    seen = {"bytes": 0}
    for handler in (MemoryFileUploadHandler, TemporaryFileUploadHandler):
        original = handler.receive_data_chunk

        def counting(self, raw_data, start, original=original):
            if getattr(self, "activated", True):  # the memory handler passes chunks on when off
                seen["bytes"] += len(raw_data)
            return original(self, raw_data, start)

        monkeypatch.setattr(handler, "receive_data_chunk", counting)
    return seen


def _upload(api_for, supplier, size: int):
    archive = SimpleUploadedFile("big.zip", os.urandom(size), content_type="application/zip")
    return api_for(supplier).post(
        "/api/v1/datasets/street-scenes/deliveries/", {"archive": archive}, format="multipart"
    )


def test_an_upload_past_the_limit_stops_within_one_chunk_of_it(
    api_for, supplier, dataset, media, settings, stored_bytes
):
    settings.DELIVERY_MAX_BYTES = 1 * MiB
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 0  # straight to a temporary file, as big uploads go

    response = _upload(api_for, supplier, int(1.5 * MiB))  # declared length within the slack

    assert response.status_code == 413 and response.json()["code"] == "too_large"
    assert stored_bytes["bytes"] <= 1 * MiB, "nothing past the limit is stored"
    assert not Delivery.objects.exists()


def test_a_request_declaring_more_than_the_limit_is_refused_before_reading(
    api_for, supplier, dataset, media, settings, stored_bytes
):
    settings.DELIVERY_MAX_BYTES = 1 * MiB

    response = _upload(api_for, supplier, 8 * MiB)

    assert response.status_code == 413 and response.json()["code"] == "too_large"
    assert stored_bytes["bytes"] == 0
    assert not Delivery.objects.exists()


def test_an_upload_under_the_limit_still_goes_through(api_for, supplier, dataset, media, settings):
    settings.DELIVERY_MAX_BYTES = 1 * MiB
    archive = SimpleUploadedFile(
        "d.zip", support.zip_bytes(support.coco_files(n_images=1)), content_type="application/zip"
    )
    response = api_for(supplier).post(
        "/api/v1/datasets/street-scenes/deliveries/", {"archive": archive}, format="multipart"
    )
    assert response.status_code == 202, response.content[:300]


def test_the_page_upload_past_the_limit_is_refused_not_a_500(client_for, supplier, dataset, media, settings):
    settings.DELIVERY_MAX_BYTES = 1 * MiB
    client = client_for(supplier)
    archive = SimpleUploadedFile("big.zip", os.urandom(int(1.5 * MiB)), content_type="application/zip")

    response = client.post("/supplier/deliveries/", {"dataset": dataset.pk, "archive": archive})

    assert response.status_code in (400, 413)
    assert not Delivery.objects.exists()


# -- manage.py ingest refuses what is not a regular file, and what is too big ---------------------


def _ingest(*args):
    from django.core.management import call_command

    call_command("ingest", *args, "--dataset", "street-scenes", stdout=io.StringIO(), stderr=io.StringIO())


def test_the_cli_refuses_dev_zero(dataset, media):
    with pytest.raises(CommandError, match="not a regular file"):
        _ingest("/dev/zero")
    assert not Delivery.objects.exists()


def test_the_cli_refuses_a_fifo(dataset, media, tmp_path):
    fifo = tmp_path / "delivery.zip"
    os.mkfifo(fifo)  # opening it for reading would block forever: it must not be opened at all
    with pytest.raises(CommandError, match="not a regular file"):
        _ingest(str(fifo))


def test_the_cli_applies_the_upload_size_limit(dataset, media, tmp_path, settings):
    settings.DELIVERY_MAX_BYTES = 1000
    archive = tmp_path / "d.zip"
    archive.write_bytes(support.zip_bytes(support.coco_files(n_images=2)))
    with pytest.raises(CommandError, match="more than the 1000 allowed"):
        _ingest(str(archive))
    assert not Delivery.objects.exists()


def test_the_cli_applies_the_unpacked_limit_to_a_folder(dataset, media, tmp_path, settings):
    settings.DELIVERY_MAX_UNCOMPRESSED_BYTES = 1000
    folder = tmp_path / "delivery"
    for name, content in support.coco_files(n_images=2).items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(CommandError, match="more than the 1000 bytes"):
        _ingest(str(folder))


# -- failed deliveries' archives expire ----------------------------------------------------------


def test_a_failed_deliverys_archive_expires_after_the_retention_days(dataset, media, settings):
    from marketplace.deliveries import retention

    settings.DELIVERY_FAILED_RETENTION_DAYS = 30
    old = support.make_delivery(dataset, b"not a zip")
    recent = support.make_delivery(dataset, b"not a zip either")
    ok = support.make_delivery(dataset, support.coco_files(n_images=1))
    now = timezone.now()
    Delivery.objects.filter(pk=old.pk).update(
        status=Delivery.Status.FAILED, finished_at=now - timedelta(days=31)
    )
    Delivery.objects.filter(pk=recent.pk).update(
        status=Delivery.Status.FAILED, finished_at=now - timedelta(days=29)
    )
    Delivery.objects.filter(pk=ok.pk).update(
        status=Delivery.Status.INGESTED, finished_at=now - timedelta(days=90)
    )
    old_name = old.archive.name

    assert retention.expire_failed_archives(now=now) == 1
    assert retention.expire_failed_archives(now=now) == 0  # idempotent

    old.refresh_from_db()
    assert old.archive.name == "" and "archive_expired_at" in old.report
    assert old_name not in support.storage_files(media)
    assert recent.archive.name in support.storage_files(media)
    assert ok.archive.name in support.storage_files(media)
