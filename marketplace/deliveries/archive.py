"""Opening a delivery archive within its limits, detecting its format, running the codec."""

from __future__ import annotations

import contextlib
import logging
import posixpath
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator

from django.conf import settings

from ..formats import model as fmt
from ..formats.archive import ZipLimits, ZipSource
from ..formats.coco import find_coco_files, read_coco
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
    118,287 images; each entry costs zipfile about 0.5 KB of memory while the archive is open.
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


def _peek(source, name: str, size: int = 4096) -> bytes:
    with source.open(name) as stream:
        head = stream.read(size)
    return head.removeprefix(b"\xef\xbb\xbf").lstrip()


def detect_format(source) -> str:
    """Which codec reads this delivery: coco, voc, yolo, cvat or labelstudio.

    Checked in this order, first match wins: Pascal VOC (``Annotations/*.xml``); a JSON file
    that is a list (Label Studio) or an object (COCO); a YOLO ``data.yaml``/``obj.names``;
    a CVAT ``annotations.xml`` (or a single XML whose root is ``<annotations>``).
    """
    names = source.names()
    if any(re.search(r"(?:^|/)Annotations/[^/]+\.xml$", n) for n in names):
        return "voc"
    jsons = [n for n in names if n.lower().endswith(".json")]
    # The Label Studio reader takes the one top-level JSON file (or the one JSON file at all).
    export = [n for n in jsons if "/" not in n] or jsons
    if len(export) == 1 and _peek(source, export[0], 64).startswith(b"["):
        return "labelstudio"
    for name in find_coco_files(names):
        head = _peek(source, name, 256)
        # Our own exports carry croissant.json at the top level: JSON-LD metadata, not labels.
        if head.startswith(b"{") and b'"@context"' not in head:
            return "coco"
    if any(
        re.fullmatch(r"(?:[^/]+/)?(?:data|dataset)\.ya?ml|[^/]+\.ya?ml|(?:.*/)?obj\.(?:names|data)", n)
        for n in names
    ):
        return "yolo"
    xmls = [n for n in names if n.lower().endswith(".xml")]
    if any(posixpath.basename(n) == "annotations.xml" for n in xmls):
        return "cvat"
    for name in xmls:
        if b"<annotations" in _peek(source, name):
            return "cvat"
    raise fmt.FormatError(
        [
            fmt.Problem(
                file="",
                message="cannot tell the format: no COCO JSON, Pascal VOC Annotations/, YOLO data.yaml or "
                "obj.names, CVAT annotations.xml or Label Studio JSON export found",
                code="unknown_format",
            )
        ]
    )


def read_delivery(
    source, format: str, *, image_size: Callable[[str], tuple[int, int]] | None = None
) -> fmt.Parsed:
    """Run the codec for a format over a source."""
    if format == "coco":
        return read_coco(source, max_json_bytes=settings.DELIVERY_MAX_JSON_BYTES)
    if format == "voc":
        return read_voc(source)
    if format == "yolo":
        return read_yolo(source, image_size=image_size)
    if format == "cvat":
        return read_cvat(source)
    if format == "labelstudio":
        return read_labelstudio(source)
    raise fmt.FormatError([fmt.Problem(file="", message=f"unknown format {format!r}", code="unknown_format")])
