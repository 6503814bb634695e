"""Which codec reads a delivery: coco, voc, yolo, cvat or labelstudio (pure: no Django).

The layouts the tools really write (issue #17) are told apart by file names and, where names are
not enough, by the first bytes of a file (never more than a few KiB per file, and at most
``MAX_PEEKS`` files, so detection is bounded whatever the archive holds).
"""

from __future__ import annotations

import posixpath
import re

from . import model
from .coco import find_coco_files

MAX_PEEKS = 64  # files whose head is read to tell XML dialects apart

_VOC_DEVKIT = re.compile(r"(?:^|/)Annotations/[^/]+\.xml$")
_YOLO_CONFIG = re.compile(
    r"(?:[^/]+/)?(?:data|dataset)\.ya?ml|[^/]+\.ya?ml|(?:.*/)?obj\.(?:names|data)|(?:.*/)?classes\.txt"
)
_DOTA = re.compile(r"(?:^|/)labelTxt/[^/]+\.txt$")
_CVAT_ROOT = re.compile(rb"<annotations[\s>]")
_VOC_ROOT = re.compile(rb"<annotation[\s>]")


def peek(source: model.Source, name: str, size: int = 4096) -> bytes:
    """The first bytes of a file, without a UTF-8 BOM or leading white space."""
    with source.open(name) as stream:
        head = stream.read(size)
    return head.removeprefix(b"\xef\xbb\xbf").lstrip()


def xml_root(head: bytes) -> str | None:
    """'cvat' for an ``<annotations>`` root, 'voc' for an ``<annotation>`` root, else None."""
    cvat, voc = _CVAT_ROOT.search(head), _VOC_ROOT.search(head)
    if cvat and (not voc or cvat.start() <= voc.start()):
        return "cvat"
    if voc:
        return "voc"
    return None


def detect_format(source: model.Source) -> str:
    """Which codec reads this delivery.

    First match wins: Pascal VOC devkit (``Annotations/*.xml``); a JSON file that is a list
    (Label Studio) or an object (COCO, also Roboflow's ``<split>/_annotations.coco.json``); YOLO
    (``data.yaml`` or any top-level YAML, darknet ``obj.names``/``obj.data``, LabelImg's and Label
    Studio's ``classes.txt``, DOTA ``labelTxt/``); CVAT (``annotations.xml``, or an XML whose root is
    ``<annotations>``); VOC XMLs beside the images (Roboflow, LabelImg: ``<annotation>`` roots).
    """
    names = source.names()
    if any(_VOC_DEVKIT.search(n) for n in names):
        return "voc"
    jsons = [n for n in names if n.lower().endswith(".json")]
    # The Label Studio reader takes the one top-level JSON file (or the one JSON file at all).
    export = [n for n in jsons if "/" not in n] or jsons
    if len(export) == 1 and peek(source, export[0], 64).startswith(b"["):
        return "labelstudio"
    classes_txt = any(posixpath.basename(n) == "classes.txt" for n in names)
    for name in find_coco_files(names):
        if classes_txt and posixpath.basename(name) == "notes.json":
            continue  # Label Studio's YOLO export: notes.json lists the classes, it holds no labels
        head = peek(source, name, 256)
        # Our own exports carry croissant.json at the top level: JSON-LD metadata, not labels.
        if head.startswith(b"{") and b'"@context"' not in head:
            return "coco"
    if any(_YOLO_CONFIG.fullmatch(n) or _DOTA.search(n) for n in names):
        return "yolo"
    xmls = [n for n in names if n.lower().endswith(".xml")]
    if any(posixpath.basename(n) == "annotations.xml" for n in xmls):
        return "cvat"
    found = None
    for name in xmls[:MAX_PEEKS]:
        kind = xml_root(peek(source, name))
        if kind == "cvat":
            return "cvat"
        found = found or kind
    if found:
        return found
    raise model.FormatError(
        [
            model.Problem(
                file="",
                message="cannot tell the format: no COCO JSON, Pascal VOC Annotations/ or XML beside "
                "the images, YOLO data.yaml, obj.names, classes.txt or labelTxt/, CVAT annotations.xml "
                "or Label Studio JSON export found",
                code="unknown_format",
            )
        ]
    )
