"""Hostile input that used to cost minutes or end as internal_error (issue #14, points 1 and 6)."""

from __future__ import annotations

import json

import pytest

from marketplace.models import Delivery

from . import ingest_support as support
from .formats.test_yolo_hostile import YAML_BOMB
from .ingest_support import make_delivery, picture, row_counts, storage_files, zip_bytes

pytestmark = pytest.mark.django_db

media, run = support.media, support.run  # fixtures


def test_the_yaml_alias_bomb_fails_the_delivery_with_a_small_report(dataset, media, run):
    files = {"data.yaml": YAML_BOMB, "images/train/a.jpg": picture(64, 48)}
    delivery = make_delivery(dataset, zip_bytes(files))
    rows, stored = row_counts(), storage_files(media)

    result = run(delivery)

    assert delivery.status == Delivery.Status.FAILED
    assert [(p["code"], p["file"]) for p in result.problems] == [("unsafe_yaml", "data.yaml")]
    assert len(json.dumps(delivery.report)) < 10_000  # it was 522 MB
    assert row_counts() == rows and storage_files(media) == stored
