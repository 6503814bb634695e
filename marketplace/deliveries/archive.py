"""Opening a delivery archive within its limits, detecting its format, running the codec."""

from __future__ import annotations

import contextlib
import logging
import posixpath
import shutil
import tempfile
from collections.abc import Callable, Iterator

from django.conf import settings

from ..formats import detect
from ..formats import model as fmt
from ..formats.archive import ZipLimits, ZipSource
from ..formats.coco import read_coco
from ..formats.cvat import read_cvat
from ..formats.labelstudio import read_labelstudio
from ..formats.voc import read_voc
from ..formats.yolo import read_yolo
from ..models import (
    Delivery,
)

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- opening archives


def zip_limits() -> ZipLimits:
    """How much a delivery archive may hold (settings.DELIVERY_MAX_*, from the environment).

    The entry default (250,000) is above the codec's 100,000 because COCO train2017 alone is
    118,287 images; each entry costs about 16 bytes while the archive is open (where its record
    starts, its name's hash and place: formats.archive._Directory reads the rest back from the file)
    and about 120 at the peak of its opening (the checks); zipfile's own ZipInfo objects held 0.5 KB.
    """
    return ZipLimits(
        max_entries=settings.DELIVERY_MAX_ENTRIES,
        max_total_size=settings.DELIVERY_MAX_UNCOMPRESSED_BYTES,
        max_entry_size=settings.DELIVERY_MAX_ENTRY_BYTES,
        max_ratio=settings.DELIVERY_MAX_RATIO,
    )


@contextlib.contextmanager
def open_archive(delivery: Delivery) -> Iterator[ZipSource]:
    """The delivery's archive as a checked ZipSource (a local copy when storage is remote)."""
    name = delivery.original_name or posixpath.basename(delivery.archive.name)
    try:
        path = delivery.archive.path
    except (NotImplementedError, AttributeError, ValueError):
        path = None
    limits = zip_limits()
    if path is not None:
        with ZipSource(path, name=name, limits=limits) as source:
            yield source
        return
    # Object storage: zipfile needs random access, so copy to a local temporary file first.
    with tempfile.TemporaryFile() as local:
        with delivery.archive.open("rb") as remote:
            shutil.copyfileobj(remote, local, 1024 * 1024)
        local.seek(0)
        with ZipSource(local, name=name, limits=limits) as source:
            yield source


def detect_format(source) -> str:
    """Which codec reads this delivery: coco, voc, yolo, cvat or labelstudio (formats.detect)."""
    return detect.detect_format(source)


def read_delivery(
    source, format: str, *, image_size: Callable[[str], tuple[int, int]] | None = None
) -> fmt.Parsed:
    """Run the codec for a format over a source."""
    if format == "coco":
        return read_coco(source, max_json_bytes=settings.DELIVERY_MAX_JSON_BYTES)
    if format == "voc":
        return read_voc(source, image_size=image_size)
    if format == "yolo":
        return read_yolo(source, image_size=image_size)
    if format == "cvat":
        return read_cvat(source)
    if format == "labelstudio":
        return read_labelstudio(source)
    raise fmt.FormatError([fmt.Problem(file="", message=f"unknown format {format!r}", code="unknown_format")])
