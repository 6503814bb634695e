"""Supplier deliveries: an uploaded archive becomes a new draft version, or a report and nothing else.

The flow of :func:`ingest_delivery`, and why it is cut where it is:

1. **Claim** the delivery (short transaction): an ingested delivery returns its version and
   nothing runs again; a failed one returns its report.
2. **Open and check** the archive (:class:`~marketplace.formats.archive.ZipSource`: traversal,
   symlinks, bombs ...), detect the format, run the codec, read ``provenance.jsonl``.
3. **Check every image** (Pillow, allowed formats only, pixel limit kept, decompression-bomb
   warning as an error, decoded to its last byte, size compared with what the labels declare) and
   **every label** (item, category, geometry against the real image size, annotator
   pseudonym, guideline tag). Validated rows are spooled to a temporary file, so neither a
   million labels nor the images sit in memory. Progress is written to the Delivery row in
   short transactions all along, so the supplier's page can show it.
4. **One transaction** writes the version, datasheet, schema, items, labels and their ledger
   events -- or, when step 2 or 3 found an error, nothing is written and the delivery is
   marked failed with its report.
5. **After commit** (``transaction.on_commit``) the image files are copied from the archive
   into content-addressed storage, and only then is the delivery marked ingested. Nothing is
   written to storage before the commit, so a failed or rolled-back ingest leaves no file
   behind; a crash between commit and the end of the copy leaves the delivery "validating"
   with its version set, and running it again finishes the copy (each copy is idempotent).

A delivery is a **full snapshot**: the new version holds exactly the delivery's items and
labels, nothing is carried forward from the previous version except its datasheet and its
schema (categories keep their ids; the delivery's new categories are added).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import logging
import pickle
import posixpath
import re
import shutil
import struct
import tempfile
import time
import uuid
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection, transaction
from django.db.models.base import ModelState
from django.db.utils import InterfaceError, OperationalError
from django.utils import timezone
from PIL import Image

from governance.models import Annotator, GuidelineVersion

from . import catalogue
from .blobs import blob_key
from .formats import model as fmt
from .formats.archive import ZipLimits, ZipSource
from .formats.coco import find_coco_files, read_coco
from .formats.cvat import read_cvat
from .formats.labelstudio import read_labelstudio
from .formats.provenance import ProvenanceCoverage, apply_provenance, looks_like_email, read_provenance
from .formats.voc import read_voc
from .formats.yolo import read_yolo
from .models import (
    AnnotationSchema,
    AttributeSpec,
    Category,
    Dataset,
    DatasetVersion,
    Datasheet,
    Delivery,
    Item,
    Label,
)

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- constants

FORMATS = ("coco", "voc", "yolo", "cvat", "labelstudio")
PROVENANCE_FILE = "provenance.jsonl"

# The report lists at most this many problems; the rest are counted by severity.
MAX_REPORTED_PROBLEMS = 1000
# A delivered image is read into memory once to hash and decode it; nothing legitimate is bigger.
MAX_IMAGE_BYTES = 256 * 1024 * 1024
# Pillow formats an image may be in. No EPS (it runs Ghostscript), no exotic decoders.
IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF")
SUFFIX_FOR_FORMAT = {
    "JPEG": ".jpg",
    "PNG": ".png",
    "WEBP": ".webp",
    "BMP": ".bmp",
    "TIFF": ".tif",
    "GIF": ".gif",
}
EXTENSIONS_FOR_FORMAT = {
    "JPEG": (".jpg", ".jpeg", ".jpe", ".jfif"),
    "PNG": (".png",),
    "WEBP": (".webp",),
    "BMP": (".bmp",),
    "TIFF": (".tif", ".tiff"),
    "GIF": (".gif",),
}
IMAGE_EXTENSIONS = tuple(e for exts in EXTENSIONS_FOR_FORMAT.values() for e in exts)
_EXIF_ORIENTATION = 0x0112
_TRANSPOSED_ORIENTATIONS = (5, 6, 7, 8)  # the EXIF orientations that swap width and height

# Everything not listed here is an error: it fails the delivery.
INFO_CODES = frozenset({"skipped_cancelled", "too_many_problems"})
WARNING_CODES = frozenset(
    {
        "duplicate_row",  # YOLO: an exact repeat of a row, dropped
        "clipped",  # YOLO: a box inside Ultralytics' 1% tolerance, clipped to the image
        "inconsistent",  # COCO: num_keypoints disagrees with the keypoints (derived anyway)
        "mask_class_mismatch",  # VOC: the class PNG and the XML disagree; the PNG wins
        "duplicate_content",  # two items are the same file
        "extension_mismatch",  # a .jpg that is a PNG: stored under its real type
        "category_id_kept",  # the previous version's category id wins over the delivery's
        "unmatched_provenance",  # provenance.jsonl names labels the delivery does not have
    }
)

_SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "dev": "val",
    "test": "test",
    "testing": "test",
    "test-dev": "test",
}
# Labels from a source that carries its own stable ids get a uid derived from them, per dataset,
# so the same source label delivered again keeps its identity (and its ledger history).
UID_NAMESPACE = uuid.UUID("6f1c1d1e-5b7e-4d4a-9d55-5d1f0c3b7a21")

PROGRESS_INTERVAL = 0.5  # seconds between progress writes
STORE_THREADS = 8  # concurrent writes to storage after the commit
SPOOL_BATCH = 2000
ITEM_KEY_MAX = Item._meta.get_field("key").max_length
ITEM_BATCH = 1000
LABEL_BATCH = 5000


# --------------------------------------------------------------------------- results and report


@dataclass
class IngestResult:
    """What one ingest run made of a delivery."""

    delivery_id: int
    status: str
    version_number: int | None = None
    counts: dict = field(default_factory=dict)
    problems: list[dict] = field(default_factory=list)
    created: bool = False  # this call wrote the version (False: it existed, or the delivery failed)

    @property
    def ok(self) -> bool:
        return self.status == Delivery.Status.INGESTED


def severity_of(code: str) -> str:
    """error (fails the delivery), warning or info, by problem code."""
    if code in INFO_CODES:
        return "info"
    if code in WARNING_CODES:
        return "warning"
    return "error"


def problem_dict(problem: fmt.Problem) -> dict:
    """One problem as the report, the API and the page show it."""
    if problem.line is not None:
        location = f"line {problem.line}"
    elif problem.pointer is not None:
        location = problem.pointer
    else:
        location = ""
    return {
        "severity": severity_of(problem.code),
        "code": problem.code,
        "file": problem.file,
        "location": location,
        "line": problem.line,
        "pointer": problem.pointer,
        "message": problem.message,
    }


class Report:
    """Problems of one run, capped, counted by severity."""

    def __init__(self, limit: int | None = None):
        self.limit = limit or MAX_REPORTED_PROBLEMS
        self.problems: list[dict] = []
        self.counts: Counter = Counter()
        self.dropped = 0

    def add(self, problem: fmt.Problem) -> None:
        entry = problem_dict(problem)
        self.counts[entry["severity"]] += 1
        if len(self.problems) < self.limit:
            self.problems.append(entry)
        else:
            self.dropped += 1

    def extend(self, problems: Iterable[fmt.Problem]) -> None:
        for p in problems:
            self.add(p)

    def error(self, file: str, message: str, *, code: str, line=None, pointer=None) -> None:
        self.add(fmt.Problem(file=file, message=message, line=line, pointer=pointer, code=code))

    @property
    def has_errors(self) -> bool:
        return self.counts["error"] > 0

    def as_dict(self) -> dict:
        # Errors first: they are what the supplier must fix.
        order = {"error": 0, "warning": 1, "info": 2}
        return {
            "problems": sorted(self.problems, key=lambda p: order[p["severity"]]),
            "problem_counts": {s: self.counts[s] for s in ("error", "warning", "info")},
            "problems_not_listed": self.dropped,
        }


class DeliveryFailed(Exception):
    """Validation found errors: nothing may be written."""


# --------------------------------------------------------------------------- small helpers


def normalise_split(raw: str) -> str:
    """A source's subset name as one of train, val, test or '' (train2017 -> train)."""
    s = (raw or "").strip().lower()
    if s in _SPLIT_ALIASES:
        return _SPLIT_ALIASES[s]
    return _SPLIT_ALIASES.get(re.sub(r"[-_]?\d+$", "", s), "")


def label_uid(dataset_id: int, source_uid: str | None) -> uuid.UUID:
    """The label's uid: the source's own when it is a UUID, derived from it when not, else new."""
    if source_uid is None or source_uid == "":
        return uuid.uuid4()
    try:
        return uuid.UUID(str(source_uid))
    except ValueError:
        return uuid.uuid5(UID_NAMESPACE, f"{dataset_id}:{source_uid}")


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class Progress:
    """Writes a delivery's progress in its own short statements, at most every PROGRESS_INTERVAL."""

    def __init__(self, delivery_id: int):
        self.delivery_id = delivery_id
        self.last = 0.0
        self.percent = -1

    def set(self, percent: int, *, stage: str | None = None, force: bool = False, **counts) -> None:
        percent = max(0, min(99, int(percent)))
        now = time.monotonic()
        if not force and (percent == self.percent or now - self.last < PROGRESS_INTERVAL):
            return
        self.last, self.percent = now, percent
        report = {"stage": stage or "", "counts": counts} if stage else None
        update: dict[str, Any] = {"progress": percent}
        if report is not None:
            update["report"] = report
        Delivery.objects.filter(pk=self.delivery_id).update(**update)


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


# --------------------------------------------------------------------------- images


@dataclass
class ImageInfo:
    """What checking one image file found."""

    sha256: str
    size_bytes: int
    width: int  # after the EXIF orientation, as viewers and annotation tools show it
    height: int
    format: str
    raw_width: int
    raw_height: int

    @property
    def suffix(self) -> str:
        return SUFFIX_FOR_FORMAT[self.format]


def inspect_image(source, key: str) -> ImageInfo:
    """Hash and decode one delivered image, safely; raise FormatError saying what is wrong."""

    def bad(message: str, code: str) -> fmt.FormatError:
        return fmt.FormatError([fmt.Problem(file=key, message=message, code=code)])

    digest = hashlib.sha256()
    buffer = io.BytesIO()
    with source.open(key) as stream:
        while chunk := stream.read(1024 * 1024):
            digest.update(chunk)
            buffer.write(chunk)
            if buffer.tell() > MAX_IMAGE_BYTES:
                raise bad(f"image file is larger than {MAX_IMAGE_BYTES} bytes", "too_large")
    size_bytes = buffer.tell()
    buffer.seek(0)
    # Image.MAX_IMAGE_PIXELS stays at Pillow's default: above it Pillow warns, above twice it
    # refuses. The warning is turned into an error here, so the limit is the default itself.
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(buffer, formats=IMAGE_FORMATS) as img:
                image_format = img.format
                raw_width, raw_height = img.size
                orientation = (
                    img.getexif().get(_EXIF_ORIENTATION)
                    if image_format in ("JPEG", "WEBP", "PNG", "TIFF")
                    else None
                )
                if image_format == "JPEG":
                    # Decode at 1/8 scale: every byte of the stream is still read and checked,
                    # at a fraction of the cost of a full-size decode.
                    img.draft(img.mode, (max(1, raw_width // 8), max(1, raw_height // 8)))
                img.load()
        except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
            raise bad(
                f"image is too large to decode safely (decompression bomb?): {exc}", "image_bomb"
            ) from None
        except Image.UnidentifiedImageError:
            raise bad(
                f"not an image in an allowed format ({', '.join(IMAGE_FORMATS)})", "not_an_image"
            ) from None
        except (OSError, SyntaxError, ValueError, EOFError, struct.error) as exc:
            raise bad(f"the image cannot be decoded: {exc}", "corrupt_image") from None
    width, height = raw_width, raw_height
    if orientation in _TRANSPOSED_ORIENTATIONS:
        width, height = raw_height, raw_width
    return ImageInfo(
        sha256=digest.hexdigest(),
        size_bytes=size_bytes,
        width=width,
        height=height,
        format=image_format,
        raw_width=raw_width,
        raw_height=raw_height,
    )


class ImageChecker:
    """Checks each image once, remembering the outcome (a reader may ask for a size first)."""

    def __init__(self, source):
        self.source = source
        self.results: dict[str, ImageInfo | fmt.FormatError] = {}

    def check(self, key: str) -> ImageInfo | fmt.FormatError:
        result = self.results.get(key)
        if result is None:
            try:
                result = inspect_image(self.source, key)
            except fmt.FormatError as exc:
                result = exc
            except KeyError:
                result = fmt.FormatError(
                    [fmt.Problem(file=key, message="image file is not in the delivery", code="missing_image")]
                )
            self.results[key] = result
        return result

    def size(self, key: str) -> tuple[int, int]:
        """For readers that need the size (YOLO): raise FormatError when the image is bad."""
        result = self.check(key)
        if isinstance(result, fmt.FormatError):
            raise result
        return result.width, result.height

    def forget(self, key: str) -> None:
        self.results.pop(key, None)


# --------------------------------------------------------------------------- provenance defaults


def parse_defaults(
    defaults: dict | None, *, name: str = "defaults"
) -> tuple[fmt.Provenance, list[fmt.Problem]]:
    """Delivery-level provenance defaults (the provenance.jsonl defaults keys) as a Provenance."""
    if not defaults:
        return fmt.Provenance(), []
    if not isinstance(defaults, dict):
        return fmt.Provenance(), [
            fmt.Problem(file=name, message="defaults must be a JSON object", code="invalid")
        ]
    line = json.dumps({"defaults": defaults}).encode()
    _, provenance, problems = read_provenance(io.BytesIO(line), name=name)
    for p in problems:
        p.line = None  # there is one line, and it is not in a file the supplier wrote
    return provenance, problems


def merge_defaults(first: fmt.Provenance, then: fmt.Provenance) -> fmt.Provenance:
    """``first``'s fields, with what it leaves empty taken from ``then``."""
    merged = dataclasses.replace(first)
    for f in dataclasses.fields(fmt.Provenance):
        if f.name == "source":
            continue
        if getattr(merged, f.name) in (None, "") and getattr(then, f.name) not in (None, ""):
            setattr(merged, f.name, getattr(then, f.name))
    if merged.source == fmt.HUMAN and then.source != fmt.HUMAN:
        merged.source = then.source
    return merged


def find_provenance_file(names: list[str]) -> list[str]:
    found = [n for n in names if posixpath.basename(n) == PROVENANCE_FILE]
    return sorted(found, key=lambda n: (n.count("/"), n))


# --------------------------------------------------------------------------- schema


@dataclass
class CategorySpec:
    """A category of the new version's schema, before it has a row."""

    name: str
    source_id: int | None = None
    supercategory: str = ""
    description: str = ""
    geometry_types: list[str] = field(default_factory=list)
    keypoint_names: list[str] = field(default_factory=list)
    skeleton: list[list[int]] = field(default_factory=list)
    keypoint_sigmas: list = field(default_factory=list)
    flip_idx: list = field(default_factory=list)
    color: str = ""


PALETTE = [
    "#e6194b",
    "#3cb44b",
    "#4363d8",
    "#f58231",
    "#911eb4",
    "#46f0f0",
    "#f032e6",
    "#bcf60c",
    "#008080",
    "#9a6324",
]


def merge_schema(
    delivered: list[fmt.CategoryDef], previous: list[Category], report: Report
) -> dict[str, CategorySpec]:
    """The previous version's categories (ids, colours, keypoints kept) plus the delivery's new ones."""
    specs: dict[str, CategorySpec] = {}
    for c in previous:
        specs[c.name] = CategorySpec(
            name=c.name,
            source_id=c.source_id,
            supercategory=c.supercategory,
            description=c.description,
            geometry_types=list(c.geometry_types),
            keypoint_names=list(c.keypoint_names),
            skeleton=[list(e) for e in c.skeleton],
            keypoint_sigmas=list(c.keypoint_sigmas),
            flip_idx=list(c.flip_idx),
            color=c.color,
        )
    taken = {s.source_id for s in specs.values() if s.source_id is not None}
    fresh: list[CategorySpec] = []
    renumbered: list[tuple[CategorySpec, int]] = []
    for c in delivered:
        known = specs.get(c.name)
        if known is not None:
            for g in c.geometry_types:
                if g not in known.geometry_types:
                    known.geometry_types.append(g)
            if c.keypoints and known.keypoint_names and list(c.keypoints) != known.keypoint_names:
                report.error(
                    "",
                    f"category {c.name!r} has keypoints {c.keypoints} here but {known.keypoint_names} in the "
                    "previous version: keypoint definitions cannot change between versions",
                    code="schema_conflict",
                )
            elif c.keypoints and not known.keypoint_names:
                known.keypoint_names, known.skeleton = list(c.keypoints), [list(e) for e in c.skeleton]
            if c.source_id is not None and known.source_id is not None and c.source_id != known.source_id:
                report.add(
                    fmt.Problem(
                        file="",
                        message=f"category {c.name!r} keeps id {known.source_id} from the previous version "
                        f"(the delivery says {c.source_id})",
                        code="category_id_kept",
                    )
                )
            elif known.source_id is None and c.source_id is not None and c.source_id not in taken:
                known.source_id = c.source_id
                taken.add(c.source_id)
            continue
        spec = CategorySpec(
            name=c.name,
            supercategory=c.supercategory,
            geometry_types=list(c.geometry_types),
            keypoint_names=list(c.keypoints),
            skeleton=[list(e) for e in c.skeleton],
            color=c.color,
        )
        if c.source_id is not None and c.source_id not in taken:
            spec.source_id = c.source_id
            taken.add(c.source_id)
        elif c.source_id is not None:
            renumbered.append((spec, c.source_id))
        specs[c.name] = spec
        fresh.append(spec)
    # Categories without an id (VOC names, an id already taken) get the next free one, so every
    # export can name them by number and keeps doing so in later versions.
    next_id = max((i for i in taken if i is not None), default=0) + 1
    for spec in fresh:
        if spec.source_id is None:
            spec.source_id = next_id
            next_id += 1
    for spec, wanted in renumbered:
        holder = next(s.name for s in specs.values() if s.source_id == wanted and s is not spec)
        report.add(
            fmt.Problem(
                file="",
                message=f"new category {spec.name!r} gets id {spec.source_id}: the delivery's id {wanted} "
                f"is {holder!r} in the previous version",
                code="category_id_kept",
            )
        )
    for i, spec in enumerate(specs.values()):
        if not spec.color:
            spec.color = PALETTE[i % len(PALETTE)]
    return specs


_CVAT_ATTRIBUTE_TYPES = {
    "checkbox": AttributeSpec.Type.BOOLEAN,
    "number": AttributeSpec.Type.NUMBER,
    "text": AttributeSpec.Type.TEXT,
    "select": AttributeSpec.Type.CHOICE,
    "radio": AttributeSpec.Type.CHOICE,
}


def merge_attribute_specs(delivered: list[fmt.CategoryDef], previous: list[AttributeSpec]) -> list[dict]:
    """The previous version's attribute specs plus those a CVAT delivery declares per label."""
    specs: dict[tuple[str, str], dict] = {}
    existing = {(a.scope, a.name) for a in previous}
    for a in previous:
        specs[(a.scope, a.name)] = {
            "name": a.name,
            "type": a.type,
            "scope": a.scope,
            "allowed_values": list(a.allowed_values),
            "categories": list(a.categories),
            "describes_person": a.describes_person,
            "target_distribution": dict(a.target_distribution),
            "description": a.description,
        }
    for c in delivered:
        for a in getattr(c, "attributes", None) or []:
            key = (AttributeSpec.Scope.LABEL, a.name)
            spec = specs.get(key)
            if spec is None:
                spec = specs[key] = {
                    "name": a.name,
                    "type": _CVAT_ATTRIBUTE_TYPES.get(a.input_type, AttributeSpec.Type.TEXT),
                    "scope": AttributeSpec.Scope.LABEL,
                    "allowed_values": [],
                    "categories": [],
                    "describes_person": False,
                    "target_distribution": {},
                    "description": "",
                }
            if spec["type"] == AttributeSpec.Type.CHOICE:
                for v in a.values:
                    if v not in spec["allowed_values"]:
                        spec["allowed_values"].append(v)
            # A spec new in this delivery applies to the labels that declare it; an existing spec
            # with no category list applies to all and stays so.
            if spec["categories"] and c.name not in spec["categories"]:
                spec["categories"].append(c.name)
            elif not spec["categories"] and (AttributeSpec.Scope.LABEL, a.name) not in existing:
                spec["categories"] = [c.name]
    return list(specs.values())


# --------------------------------------------------------------------------- the spool


class Spool:
    """Rows written to a temporary file in pickled batches and read back in order."""

    def __init__(self):
        self.file = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        self.batch: list = []
        self.count = 0

    def add(self, row) -> None:
        self.batch.append(row)
        self.count += 1
        if len(self.batch) >= SPOOL_BATCH:
            self._flush()

    def _flush(self) -> None:
        if self.batch:
            pickle.dump(self.batch, self.file, protocol=pickle.HIGHEST_PROTOCOL)
            self.batch = []

    def batches(self) -> Iterator[list]:
        self._flush()
        self.file.seek(0)
        while True:
            try:
                # Only ever our own file, written above by this process: not untrusted input.
                yield pickle.load(self.file)  # noqa: S301
            except EOFError:
                return

    def close(self) -> None:
        self.file.close()


# --------------------------------------------------------------------------- validation


class LabelRow(NamedTuple):
    """A validated label, spooled until the write transaction (names, not ids, for its relations)."""

    item: str
    category: str
    geometry_type: str
    geometry: dict
    attributes: dict
    iscrowd: bool
    is_final: bool
    annotator: str
    guideline_version: int | None
    source: str
    model_name: str
    model_version: str
    made_at: datetime | None
    source_ref: str


@dataclass
class ItemRow:
    key: str
    storage_key: str
    sha256: str
    size_bytes: int
    width: int
    height: int
    split: str
    attributes: dict


@dataclass
class Plan:
    """Everything the write transaction needs, validated."""

    format: str
    categories: dict[str, CategorySpec]
    attribute_specs: list[dict]
    items: Spool
    labels: Spool
    annotators: set[str]
    guideline_ids: dict[str, int]
    counts: dict
    provenance: dict

    def close(self) -> None:
        self.items.close()
        self.labels.close()


def _guideline_index(dataset: Dataset) -> dict[str, list[int]]:
    index: dict[str, list[int]] = defaultdict(list)
    for tag, pk in GuidelineVersion.objects.filter(guideline__dataset=dataset).values_list("tag", "pk"):
        index[tag].append(pk)
    return index


def validate_delivery(
    *, source, delivery: Delivery, report: Report, progress: Progress | None = None
) -> Plan:
    """Read and check everything; spool the rows to write. Errors go to the report, not raised."""
    dataset = delivery.dataset
    progress = progress or Progress(delivery.pk)
    format = delivery.format if delivery.format in FORMATS else detect_format(source)
    if format != delivery.format:
        Delivery.objects.filter(pk=delivery.pk).update(format=format)  # the page shows it at once
    from . import image_pool  # it imports this module: import late

    images = image_pool.checker_for(source)  # checks on every core for a large delivery
    parsed = read_delivery(source, format, image_size=images.size)

    # Provenance: the sidecar, then the upload's defaults for what the sidecar's defaults leave out.
    table: dict[str, fmt.Provenance] = {}
    file_defaults = fmt.Provenance()
    sidecars = find_provenance_file(source.names())
    if len(sidecars) > 1:
        report.error(
            sidecars[1], f"a second {PROVENANCE_FILE} ({sidecars[0]} is used)", code="duplicate_file"
        )
    if sidecars:
        with source.open(sidecars[0]) as stream:
            table, file_defaults, sidecar_problems = read_provenance(stream, name=sidecars[0])
        report.extend(sidecar_problems)
    upload_defaults, default_problems = parse_defaults(delivery.defaults)
    report.extend(default_problems)
    defaults = merge_defaults(file_defaults, upload_defaults)

    # The schema builds on the latest version as it is now; a delivery of the same dataset that
    # commits in between changes the number this one gets (taken under a lock), not its schema.
    previous = dataset.versions.order_by("-number").first()
    previous_categories = list(Category.objects.filter(schema__version=previous)) if previous else []
    previous_attributes = list(AttributeSpec.objects.filter(schema__version=previous)) if previous else []
    categories = merge_schema(parsed.categories, previous_categories, report)
    attribute_specs = merge_attribute_specs(parsed.categories, previous_attributes)

    # -- items -------------------------------------------------------------------------------
    image_files = sum(1 for n in source.names() if n.lower().endswith(IMAGE_EXTENSIONS)) or 1
    progress.set(5, stage="checking images", force=True, items=0)
    items = Spool()
    labels = Spool()
    sizes: dict[str, tuple[int, int, bool]] = {}  # item key -> real (width, height, recheck labels?)
    rejected: set[str] = set()  # items refused (and reported): their labels are skipped silently
    seen_content: dict[str, str] = {}
    splits: Counter = Counter()
    total_bytes = 0
    try:
        for n, record in enumerate(image_pool.ahead(images, parsed.items), start=1):
            where = record.source_ref or record.key
            if len(record.key) > ITEM_KEY_MAX:
                report.error(
                    **_where(where), message=f"path longer than {ITEM_KEY_MAX} characters", code="invalid"
                )
                rejected.add(record.key)
                continue
            if record.key in sizes or record.key in rejected:
                report.error(
                    **_where(where), message=f"image {record.key!r} is declared twice", code="duplicate_image"
                )
                continue
            result = images.check(record.key)
            images.forget(record.key)
            if isinstance(result, fmt.FormatError):
                report.extend(result.problems)
                rejected.add(record.key)
                continue
            declared = (record.width, record.height)
            if None not in declared and declared != (result.width, result.height):
                hint = ""
                if declared == (result.raw_width, result.raw_height):
                    hint = " (the size before its EXIF orientation is applied)"
                report.error(
                    **_where(where),
                    message=f"{record.key!r} is declared {declared[0]}x{declared[1]}{hint} but the image "
                    f"is {result.width}x{result.height}",
                    code="size_mismatch",
                )
                rejected.add(record.key)
                continue
            if not record.key.lower().endswith(EXTENSIONS_FOR_FORMAT[result.format]):
                report.add(
                    fmt.Problem(
                        file=record.key,
                        message=f"the file is a {result.format} image; stored as {result.suffix}",
                        code="extension_mismatch",
                    )
                )
            if result.sha256 in seen_content:
                report.add(
                    fmt.Problem(
                        file=record.key,
                        message=f"same content as {seen_content[result.sha256]!r}",
                        code="duplicate_content",
                    )
                )
            else:
                seen_content[result.sha256] = record.key
            split = normalise_split(record.split)
            attributes = dict(record.attributes)
            if record.split and record.split != split:
                attributes.setdefault("subset", record.split)
            splits[split or "unassigned"] += 1
            # The third value: did the reader check the geometry against this very size? Readers
            # validate against the size they declare, and a declared size that is not the real
            # one was refused above, so only undeclared sizes need the check again.
            sizes[record.key] = (result.width, result.height, None in declared)
            total_bytes += result.size_bytes
            items.add(
                ItemRow(
                    key=record.key,
                    storage_key=blob_key(result.sha256, result.suffix),
                    sha256=result.sha256,
                    size_bytes=result.size_bytes,
                    width=result.width,
                    height=result.height,
                    split=split,
                    attributes=attributes,
                )
            )
            progress.set(5 + 40 * n / max(image_files, n), stage="checking images", items=n)

        # -- labels ------------------------------------------------------------------------------
        progress.set(45, stage="checking labels", force=True, items=items.count, labels=0)
        coverage = ProvenanceCoverage()
        guidelines = _guideline_index(dataset)
        guideline_ids: dict[str, int] = {}
        unknown_tags: dict[str, list] = {}
        annotators: set[str] = set()
        uids: set[uuid.UUID] = set()
        kinds: Counter = Counter()
        finals = candidates = 0
        seen_types: dict[str, set[str]] = defaultdict(set)
        # Images a reader asked about (YOLO) and that failed were reported by the reader.
        rejected |= {k for k, r in images.results.items() if isinstance(r, fmt.FormatError)}
        expected = max(items.count, 1) * 2
        labels_in = _provenance_references(format, parsed.labels)
        for n, record in enumerate(_with_provenance(labels_in, table, defaults, coverage), start=1):
            row = _check_label(
                record, sizes, categories, guidelines, guideline_ids, unknown_tags, report, rejected
            )
            if n % 1000 == 0:
                progress.set(
                    45 + 40 * n / (n + expected), stage="checking labels", items=items.count, labels=n
                )
            if row is None:
                continue
            uid = label_uid(dataset.pk, record.uid)
            if record.uid:  # a fresh uuid4 never collides: only the source's own ids are remembered
                if uid in uids:
                    report.error(
                        **_locate(record),
                        message=f"label uid {record.uid!r} is used by another label of the delivery",
                        code="duplicate_uid",
                    )
                    continue
                uids.add(uid)
            if row.annotator:
                annotators.add(row.annotator)
            seen_types[row.category].add(row.geometry_type)
            if row.is_final:
                finals += 1
                kinds[row.geometry_type] += 1
            else:
                candidates += 1
            labels.add((uid, row))
        for tag, (where, count) in unknown_tags.items():
            known = ", ".join(sorted(guidelines)) or "none"
            report.error(
                **_where(where),
                message=f"guideline version {tag!r} is not one of this dataset's guideline versions "
                f"(known: {known}); {count} label(s) name it. Add it on the dataset's guideline first.",
                code="unknown_guideline",
            )
        # The readers' own findings are complete once both streams are exhausted.
        report.extend(parsed.problems)
        unmatched = coverage.unmatched(table)
        if unmatched:
            shown = ", ".join(repr(r) for r in unmatched[:5])
            report.add(
                fmt.Problem(
                    file=sidecars[0] if sidecars else PROVENANCE_FILE,
                    message=f"{len(unmatched)} record(s) name labels the delivery does not have: {shown}"
                    + (" ..." if len(unmatched) > 5 else ""),
                    code="unmatched_provenance",
                )
            )
        if not items.count and not rejected and not report.has_errors:
            report.error("", "the delivery has no image", code="no_items")
        for name, types in seen_types.items():
            spec = categories[name]
            spec.geometry_types += sorted(types - set(spec.geometry_types))
        total = coverage.total or 1
        provenance = {
            **coverage.as_dict(),
            "shares": {
                "per_label": round((coverage.per_label + coverage.native) / total, 4),
                "defaults": round(coverage.defaults / total, 4),
                "none": round(coverage.nothing / total, 4),
            },
            "sidecar": sidecars[0] if sidecars else None,
            "unmatched_records": len(unmatched),
        }
        counts = {
            "items": items.count,
            "labels": finals,
            "candidate_labels": candidates,
            "labels_by_kind": dict(sorted(kinds.items())),
            "categories": len(categories),
            "annotators": len(annotators),
            "splits": dict(splits),
            "bytes": total_bytes,
            "duplicate_images": items.count - len(seen_content),
        }
    except BaseException:
        items.close()
        labels.close()
        raise
    return Plan(
        format=format,
        categories=categories,
        attribute_specs=attribute_specs,
        items=items,
        labels=labels,
        annotators=annotators,
        guideline_ids=guideline_ids,
        counts=counts,
        provenance=provenance,
    )


def _provenance_references(format: str, labels: Iterable[fmt.LabelRecord]) -> Iterator[fmt.LabelRecord]:
    """For YOLO, match provenance.jsonl records by ``<label file>:<line>`` only.

    apply_provenance tries a label's ``source_id`` first; the YOLO reader's is the bare line
    number, so a record ``{"label": 3}`` would give its provenance to line 3 of every label file.
    The id is not stored anywhere, so it is dropped here, for matching only.
    """
    for label in labels:
        if format == "yolo":
            label.source_id = None
        yield label


def _with_provenance(labels, table, defaults: fmt.Provenance, coverage: ProvenanceCoverage):
    """apply_provenance, or -- with no sidecar and no defaults -- just the coverage count.

    apply_provenance copies every label twice to merge nothing: at a million labels that is
    seconds spent for no change.
    """
    if table or defaults != fmt.Provenance():
        yield from apply_provenance(labels, table, defaults, coverage=coverage)
        return
    for label in labels:
        if label.provenance.annotator or label.provenance.made_at:
            coverage.native += 1
        else:
            coverage.nothing += 1
        yield label


def _line_of(where: str) -> int | None:
    m = re.search(r":(\d+)$", where)
    return int(m.group(1)) if m else None


def _locate(record: fmt.LabelRecord) -> dict:
    return _where(record.source_ref or record.item_key)


def _where(ref: str) -> dict:
    """file, pointer and line of a reference such as ``a.json#/annotations/3`` or ``labels/a.txt:7``."""
    file, _, pointer = ref.partition("#")
    line = _line_of(file)
    if line is not None:
        file = file.rsplit(":", 1)[0]
    return {"file": file, "pointer": pointer or None, "line": line}


def _check_label(
    record: fmt.LabelRecord,
    sizes: dict,
    categories: dict[str, CategorySpec],
    guidelines: dict[str, list[int]],
    guideline_ids: dict[str, int],
    unknown_tags: dict[str, list],
    report: Report,
    rejected: set[str],
) -> LabelRow | None:
    """One label's row, or None after reporting why it cannot be written."""
    size = sizes.get(record.item_key)
    if size is None:
        if record.item_key not in rejected:
            report.error(
                **_locate(record),
                message=f"label refers to image {record.item_key!r}, which the delivery does not have",
                code="unknown_image",
            )
        return None
    ok = True
    category = categories.get(record.category)
    if category is None:
        report.error(
            **_locate(record), message=f"unknown category {record.category!r}", code="unknown_category"
        )
        ok = False
    if size[2]:
        for message in fmt.validate_geometry(record.geometry_type, record.geometry, size[0], size[1]):
            report.error(**_locate(record), message=message, code="invalid_geometry")
            ok = False
    elif record.geometry_type not in fmt.GEOMETRY_TYPES:
        report.error(
            **_locate(record),
            message=f"unknown geometry type {record.geometry_type!r}",
            code="invalid_geometry",
        )
        ok = False
    kp = record.geometry.get("keypoints")
    if ok and kp is not None and category.keypoint_names and len(kp) != 3 * len(category.keypoint_names):
        report.error(
            **_locate(record),
            message=f"{len(kp) // 3} keypoints, but category {category.name!r} has {len(category.keypoint_names)}",
            code="invalid_geometry",
        )
        ok = False
    prov = record.provenance
    annotator = prov.annotator or ""
    if annotator and looks_like_email(annotator):
        report.error(
            **_locate(record),
            message="the annotator must be a pseudonymous id, not an e-mail address",
            code="personal_data",
        )
        ok = False
    elif len(annotator) > Annotator._meta.get_field("pseudonym").max_length:
        report.error(
            **_locate(record), message=f"annotator id {annotator[:80]!r}... is too long", code="invalid"
        )
        ok = False
    for value, name in ((prov.model_name, "model_name"), (prov.model_version, "model_version")):
        limit = Label._meta.get_field(name).max_length
        if value and len(value) > limit:
            report.error(
                **_locate(record), message=f"{name} is longer than {limit} characters", code="invalid"
            )
            ok = False
    if prov.source not in fmt.SOURCES:
        report.error(**_locate(record), message=f"unknown source {prov.source!r}", code="invalid")
        ok = False
    elif prov.source == fmt.MODEL and not prov.model_name:
        report.error(
            **_locate(record),
            message="a label made by a model must name the model (model_name)",
            code="missing_model_name",
        )
        ok = False
    guideline_id = None
    tag = prov.guideline_version
    if tag:
        ids = guidelines.get(tag, [])
        if len(ids) == 1:
            guideline_id = guideline_ids[tag] = ids[0]
        elif len(ids) > 1:
            report.error(
                **_locate(record),
                message=f"guideline version {tag!r} exists in several of the dataset's guidelines",
                code="ambiguous_guideline",
            )
            ok = False
        else:
            seen = unknown_tags.get(tag)
            if seen is None:
                unknown_tags[tag] = [record.source_ref or record.item_key, 1]
            else:
                seen[1] += 1
            ok = False
    if not ok:
        return None
    return LabelRow(
        item=record.item_key,
        category=record.category,
        geometry_type=record.geometry_type,
        geometry=record.geometry,
        attributes=record.attributes,
        iscrowd=bool(record.iscrowd),
        is_final=bool(record.is_final),
        annotator=annotator,
        guideline_version=guideline_id,
        source=prov.source,
        model_name=prov.model_name or "",
        model_version=prov.model_version or "",
        made_at=_aware(prov.made_at),
        source_ref=(record.source_ref or "")[:300],
    )


# --------------------------------------------------------------------------- writing


def _copy_datasheet(previous: DatasetVersion | None, version: DatasetVersion) -> None:
    sheet = Datasheet.objects.filter(version=previous).first() if previous else None
    if sheet is None:
        Datasheet.objects.create(version=version)
        return
    values = {
        f.attname: getattr(sheet, f.attname)
        for f in Datasheet._meta.concrete_fields
        if f.attname not in ("id", "version_id", "updated_at")
    }
    Datasheet.objects.create(version=version, **values)


def _annotators(organization_id: int, pseudonyms: set[str]) -> dict[str, Annotator]:
    """Annotator rows of the supplier by pseudonym, created for the ones it does not have yet."""
    existing = {
        a.pseudonym: a
        for a in Annotator.objects.filter(organization_id=organization_id, pseudonym__in=pseudonyms)
    }
    missing = [
        Annotator(organization_id=organization_id, pseudonym=p) for p in sorted(pseudonyms - existing.keys())
    ]
    if missing:
        # ignore_conflicts: a concurrent ingest of the same supplier may create the same pseudonym.
        Annotator.objects.bulk_create(missing, ignore_conflicts=True)
        existing = {
            a.pseudonym: a
            for a in Annotator.objects.filter(organization_id=organization_id, pseudonym__in=pseudonyms)
        }
    return existing


_LABEL_ATTNAMES = frozenset(f.attname for f in Label._meta.concrete_fields)
_LABEL_COLUMNS = (
    "uid",
    "version_id",
    "item_id",
    "category_id",
    "geometry_type",
    "geometry",
    "attributes",
    "iscrowd",
    "is_final",
    "annotator_id",
    "guideline_version_id",
    "source",
    "model_name",
    "model_version",
    "made_at",
    "source_ref",
    "delivery_id",
)


# One encoder for every row: json.dumps with arguments builds a new encoder per call.
_to_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _copy_labels(objs: list[Label]) -> None:
    """PostgreSQL COPY: about five times the rows per second of INSERT for JSON-heavy rows."""
    table = Label._meta.db_table
    with connection.cursor() as cursor:
        raw = cursor.cursor
        with raw.copy(f"COPY {table} ({', '.join(_LABEL_COLUMNS)}) FROM STDIN") as copy:
            for o in objs:
                copy.write_row(
                    (
                        o.uid,
                        o.version_id,
                        o.item_id,
                        o.category_id,
                        o.geometry_type,
                        _to_json(o.geometry),
                        _to_json(o.attributes),
                        o.iscrowd,
                        o.is_final,
                        o.annotator_id,
                        o.guideline_version_id,
                        o.source,
                        o.model_name,
                        o.model_version,
                        o.made_at,
                        o.source_ref,
                        o.delivery_id,
                    )
                )


def _write_labels(
    plan: Plan,
    *,
    version: DatasetVersion,
    delivery: Delivery,
    items: dict[str, int],
    categories: dict[str, Category],
    annotators: dict[str, Annotator],
    guidelines: dict[int, GuidelineVersion],
) -> Iterator[Label]:
    """Insert the spooled labels batch by batch, yielding each saved Label to the ledger."""
    use_copy = connection.vendor == "postgresql"  # psycopg 3, which has COPY FROM STDIN
    common = {"id": None, "version_id": version.pk, "delivery_id": delivery.pk}
    db = connection.alias  # read once: the connection proxy costs a context-local lookup per access
    for batch in plan.labels.batches():
        objs = []
        stubs: dict[str, Item] = {}  # per batch: a million labels must not pin every Item
        for uid, row in batch:
            annotator = annotators[row.annotator] if row.annotator else None
            guideline = guidelines[row.guideline_version] if row.guideline_version else None
            item = stubs.get(row.item) or stubs.setdefault(
                row.item, _item_stub(items[row.item], row.item, version, db)
            )
            category = categories[row.category]
            values = {
                **common,
                "uid": uid,
                "item_id": item.pk,
                "category_id": category.pk,
                "geometry_type": row.geometry_type,
                "geometry": row.geometry,
                "attributes": row.attributes,
                "iscrowd": row.iscrowd,
                "is_final": row.is_final,
                "annotator_id": annotator.pk if annotator else None,
                "guideline_version_id": guideline.pk if guideline else None,
                "source": row.source,
                "model_name": row.model_name,
                "model_version": row.model_version,
                "made_at": row.made_at,
                "source_ref": row.source_ref,
            }
            related = {
                "version": version,
                "delivery": delivery,
                "item": item,
                "category": category,
                "annotator": annotator,
                "guideline_version": guideline,
            }
            objs.append(_new_label(values, related))
        if objs:
            # Checked once per batch, not per label: _new_label must be given every column.
            assert objs[0].__dict__.keys() >= _LABEL_ATTNAMES, "every column of Label must be given"
        if use_copy:
            _copy_labels(objs)
        else:
            Label.objects.bulk_create(objs, batch_size=500)
        yield from objs


def _new_label(values: dict, related: dict) -> Label:
    """A Label from all its column values and its related rows, without Model.__init__.

    ``Label(**kwargs)`` costs ~18 us (field by field, descriptor by descriptor): 15 s at train2017's
    860k labels. Every concrete field's attname is set here, so nothing is deferred (no query on
    access), and the related rows sit in the instance's relation cache as assignment would put them.
    """
    label = Label.__new__(Label)
    label._state = ModelState()
    label.__dict__.update(values)
    label._state.fields_cache.update(related)
    return label


def _item_stub(pk: int, key: str, version: DatasetVersion, db: str) -> Item:
    """The saved Item as the ledger reads it from a label (``label.item.key``), at a tenth of the memory.

    Only ``id``, ``key`` and ``version_id`` are set; any other field would be loaded on access,
    like a deferred field of ``.only("key")``.
    """
    item = Item.__new__(Item)
    item._state = ModelState()
    item._state.adding, item._state.db = False, db
    item.__dict__.update({"id": pk, "key": key, "version_id": version.pk})
    return item


def write_version(*, delivery_id: int, plan: Plan, report: Report) -> tuple[DatasetVersion, bool]:
    """The one transaction: version, datasheet, schema, items, labels, ledger events.

    Returns the version and whether this call wrote it (False: a concurrent run of the same
    delivery committed first).
    """
    from governance import ledger  # governance imports marketplace models; import late

    with transaction.atomic():
        # Lock the dataset: two deliveries of one dataset must not both take number N + 1.
        dataset = Dataset.objects.select_for_update().get(
            pk=Delivery.objects.values("dataset_id").get(pk=delivery_id)["dataset_id"]
        )
        delivery = Delivery.objects.select_for_update().get(pk=delivery_id)
        if delivery.version_id is not None:
            return delivery.version, False  # another run got here first
        previous = dataset.versions.order_by("-number").first()
        notes = f"Delivery {delivery.pk}" + (f" ({delivery.original_name})" if delivery.original_name else "")
        schema_description = (
            AnnotationSchema.objects.filter(version=previous).values_list("description", flat=True).first()
            or ""
        )
        if (
            previous is not None
            and previous.status == DatasetVersion.Status.DRAFT
            and not Item.objects.filter(version=previous).exists()
        ):
            # A supplier prepares a release as an empty draft (its datasheet and schema: see
            # workspace.start_draft); the delivery fills that draft rather than leaving it behind
            # and taking the next number. Its schema is rebuilt from the merged plan.
            version, number = previous, previous.number
            AnnotationSchema.objects.filter(version=version).delete()
            if not Datasheet.objects.filter(version=version).exists():
                Datasheet.objects.create(version=version)
            if not version.release_notes:
                version.release_notes = notes
                version.save(update_fields=["release_notes"])
        else:
            number = previous.number + 1 if previous else 1
            version = DatasetVersion.objects.create(dataset=dataset, number=number, release_notes=notes)
            _copy_datasheet(previous, version)
        schema = AnnotationSchema.objects.create(version=version, description=schema_description)
        categories = {
            c.name: c
            for c in Category.objects.bulk_create(
                [Category(schema=schema, **dataclasses.asdict(spec)) for spec in plan.categories.values()]
            )
        }
        AttributeSpec.objects.bulk_create(
            [AttributeSpec(schema=schema, **spec) for spec in plan.attribute_specs]
        )
        annotators = _annotators(dataset.supplier_id, plan.annotators)
        guidelines = GuidelineVersion.objects.in_bulk(set(plan.guideline_ids.values()))

        items: dict[str, int] = {}
        for batch in plan.items.batches():
            rows = [Item(version=version, **vars(row)) for row in batch]
            for obj in Item.objects.bulk_create(rows, batch_size=ITEM_BATCH):
                items[obj.key] = obj.pk

        labels = _write_labels(
            plan,
            version=version,
            delivery=delivery,
            items=items,
            categories=categories,
            annotators=annotators,
            guidelines=guidelines,
        )
        ledger.append_events(
            dataset=dataset,
            events=ledger.label_created_events(labels, delivery_id=delivery.pk, version_number=number),
        )
        if guidelines:
            version.guideline_versions.set(guidelines.values())
        version.stats = catalogue.compute_version_stats(version=version)
        version.save(update_fields=["stats"])

        delivery.version = version
        delivery.format = plan.format
        delivery.progress = 95
        delivery.report = _report_body(plan=plan, report=report, stage="storing images", version=number)
        delivery.save(update_fields=["version", "format", "progress", "report"])
        # Files only once the rows are committed: a rollback must leave storage as it was.
        transaction.on_commit(lambda: store_delivery_files(delivery_id=delivery_id))
    return version, True


def _report_body(
    *, plan: Plan | None, report: Report, stage: str, version: int | None = None, format: str = ""
) -> dict:
    body = {
        "stage": stage,
        "format": plan.format if plan else format,
        "counts": plan.counts if plan else {},
        "provenance": plan.provenance if plan else {},
        **report.as_dict(),
    }
    if version is not None:
        body["version"] = version
    return body


# --------------------------------------------------------------------------- after commit


def _put_blob(storage_key: str, data: bytes) -> None:
    if default_storage.exists(storage_key):
        return  # content-addressed: the same bytes are already there
    saved = default_storage.save(storage_key, ContentFile(data))
    if saved != storage_key:  # a concurrent writer won the race; keep one copy
        default_storage.delete(saved)


def store_delivery_files(*, delivery_id: int) -> None:
    """Copy the version's images from the archive into content-addressed storage; mark it ingested.

    Idempotent: a file already in storage (from this run, an earlier version or another
    dataset with the same image) is not written again.
    """
    delivery = Delivery.objects.select_related("version").get(pk=delivery_id)
    if delivery.version_id is None or delivery.status == Delivery.Status.INGESTED:
        return
    done: set[str] = set()
    rows = (
        Item.objects.filter(version_id=delivery.version_id).values_list("key", "storage_key").order_by("key")
    )
    # Reads from the archive stay in this thread; the writes go to a few threads, because storage
    # is latency-bound (an S3 PUT, a local mkdir + write) and a delivery has thousands of files.
    with open_archive(delivery) as source, ThreadPoolExecutor(max_workers=STORE_THREADS) as pool:
        pending: set[Future] = set()
        for key, storage_key in rows.iterator(chunk_size=2000):
            if storage_key in done:
                continue
            done.add(storage_key)
            with source.open(key) as stream:
                data = stream.read(MAX_IMAGE_BYTES + 1)
            if hashlib.sha256(data).hexdigest() != posixpath.basename(storage_key).split(".")[0]:
                # The archive changed under us: never store a file under a hash it does not have.
                raise RuntimeError(f"{key} in delivery {delivery_id} no longer matches its checked content")
            pending.add(pool.submit(_put_blob, storage_key, data))
            if len(pending) >= 4 * STORE_THREADS:  # bound what waits in memory
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    future.result()
        for future in pending:
            future.result()
    report = dict(delivery.report or {})
    report["stage"] = "done"
    Delivery.objects.filter(pk=delivery_id).update(
        status=Delivery.Status.INGESTED, progress=100, report=report, finished_at=timezone.now()
    )


# --------------------------------------------------------------------------- the service


def delivery_result(delivery: Delivery, *, created: bool = False) -> IngestResult:
    """The outcome recorded on a delivery, as an IngestResult."""
    report = delivery.report or {}
    return IngestResult(
        delivery_id=delivery.pk,
        status=delivery.status,
        version_number=delivery.version.number if delivery.version_id else None,
        counts=report.get("counts", {}),
        problems=report.get("problems", []),
        created=created,
    )


def _claim(delivery_id: int) -> tuple[Delivery, bool]:
    """Mark the delivery as being validated; False when there is nothing to do."""
    with transaction.atomic():
        delivery = (
            Delivery.objects.select_for_update(of=("self",))
            .select_related("dataset", "version")
            .get(pk=delivery_id)
        )
        if delivery.status in (Delivery.Status.INGESTED, Delivery.Status.FAILED):
            return delivery, False
        if delivery.version_id is not None:
            return delivery, False  # written; only the files remain
        delivery.status = Delivery.Status.VALIDATING
        delivery.progress = 0
        delivery.report = {"stage": "opening the archive"}
        delivery.finished_at = None
        delivery.save(update_fields=["status", "progress", "report", "finished_at"])
    return delivery, True


def _fail(delivery_id: int, report: Report, plan: Plan | None = None, format: str = "") -> None:
    Delivery.objects.filter(pk=delivery_id).update(
        status=Delivery.Status.FAILED,
        progress=100,
        report=_report_body(plan=plan, report=report, stage="failed", format=format),
        finished_at=timezone.now(),
    )


def ingest_delivery(*, delivery_id: int) -> IngestResult:
    """Validate a delivery and write it as the dataset's next draft version, all or nothing."""
    delivery, claimed = _claim(delivery_id)
    if not claimed:
        if delivery.version_id is not None and delivery.status != Delivery.Status.INGESTED:
            store_delivery_files(delivery_id=delivery_id)  # finish what a crashed run left
            delivery.refresh_from_db()
        return delivery_result(delivery)

    report = Report()
    plan: Plan | None = None
    created = False
    progress = Progress(delivery_id)
    try:
        with open_archive(delivery) as source:
            plan = validate_delivery(source=source, delivery=delivery, report=report, progress=progress)
        if report.has_errors:
            raise DeliveryFailed
        progress.set(85, stage="writing", force=True, **{k: plan.counts[k] for k in ("items", "labels")})
        _, created = write_version(delivery_id=delivery_id, plan=plan, report=report)
    except fmt.FormatError as exc:
        report.extend(exc.problems)
        _fail(delivery_id, report, plan)
    except DeliveryFailed:
        _fail(delivery_id, report, plan)
    except (OperationalError, InterfaceError):
        # The database went away: leave the delivery pending so the task's retry starts it again.
        with contextlib.suppress(OperationalError, InterfaceError):
            Delivery.objects.filter(pk=delivery_id).update(status=Delivery.Status.PENDING, progress=0)
        raise
    except Exception as exc:
        log.exception("ingest of delivery %s failed", delivery_id)
        report.error("", f"internal error while ingesting: {type(exc).__name__}", code="internal_error")
        _fail(delivery_id, report, plan)
    finally:
        if plan is not None:
            plan.close()
    delivery = Delivery.objects.select_related("version").get(pk=delivery_id)
    return delivery_result(delivery, created=created)


# --------------------------------------------------------------------------- creating deliveries


def create_delivery(
    *,
    dataset: Dataset,
    archive,
    format: str = Delivery.Format.AUTO,
    defaults: dict | None = None,
    uploaded_by=None,
    original_name: str = "",
) -> Delivery:
    """Store an uploaded archive as a pending delivery of a dataset (the task ingests it)."""
    from .api.errors import DomainError

    if format not in Delivery.Format.values:
        raise DomainError(f"format must be one of {', '.join(Delivery.Format.values)}", code="invalid_format")
    size = getattr(archive, "size", None)
    if size is not None and size > settings.DELIVERY_MAX_BYTES:
        raise DomainError(
            f"the archive is {size} bytes, more than the {settings.DELIVERY_MAX_BYTES} allowed",
            code="too_large",
            status_code=413,
        )
    _, problems = parse_defaults(defaults)
    if problems:
        raise DomainError("defaults: " + "; ".join(p.message for p in problems), code="invalid_defaults")
    name = original_name or posixpath.basename(getattr(archive, "name", "") or "delivery.zip")
    delivery = Delivery(
        dataset=dataset,
        format=format,
        defaults=defaults or {},
        uploaded_by=uploaded_by,
        original_name=name[:300],
    )
    delivery.archive.save(_safe_archive_name(name), archive, save=False)
    delivery.save()
    return delivery


def _safe_archive_name(name: str) -> str:
    stem = (
        re.sub(r"[^A-Za-z0-9._-]+", "-", posixpath.splitext(posixpath.basename(name))[0]).strip("-.")
        or "delivery"
    )
    return f"{stem[:80]}.zip"
