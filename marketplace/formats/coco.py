"""Read COCO object-detection, segmentation and keypoint annotations into the neutral model.

Which files: ``annotation_files`` if given, else every ``*.json`` in a directory named
``annotations`` and every top-level ``*.json`` that holds ``images`` and ``annotations``
lists. The split comes from the file name ``instances_<split>.json`` or
``person_keypoints_<split>.json`` (``instances_train2017.json`` -> ``train2017``), else "".

Images: ``file_name`` is looked up, relative to the directory above ``annotations/`` (or the
JSON's own directory), as ``images/<split>/<file_name>``, ``images/<file_name>``,
``<split>/<file_name>`` and ``<file_name>``, first match wins. An image missing from the
delivery is a problem; it is not yielded, nor are its annotations (the one problem says why).

Annotations: one COCO annotation becomes one label whose ``geometry`` keeps every part the
annotation has (``bbox``; ``polygons`` from a list segmentation; ``rle`` from a dict
segmentation, uncompressed counts converted to compressed with pycocotools and stored as
str; ``keypoints``). The label's ``geometry_type`` is the first present of keypoints, mask,
polygon, bbox; an annotation with none of them is an image-level ``classification``.
``category_id`` is kept as ``CategoryDef.source_id``: never renumbered. ``area`` is not
kept: it is derived from the geometry.

Extra fields understood (none is required):

- ``annotation["attributes"]``: a dict of label attributes (CVAT's COCO export puts
  ``occluded``, ``rotation`` and the task's custom attributes there);
- provenance: ``annotator`` (str), ``created_at`` (ISO 8601), ``guideline_version``,
  ``source`` ("human", "model" or "consensus"), ``model_name``, ``model_version``, read into
  :class:`~marketplace.formats.model.Provenance`; ``is_final`` (bool) into
  ``LabelRecord.is_final``.

What is yielded when something is wrong: an annotation whose image, category or geometry is
invalid, or whose id repeats an earlier one, is reported and *not* yielded; a bad
provenance or attribute field, or a ``num_keypoints`` that disagrees with the keypoints, is
reported and the label is yielded without that field. Every problem carries a JSON pointer
such as ``/annotations/17/bbox``.
"""

from __future__ import annotations

import array
import functools
import posixpath
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from pycocotools import mask as mask_utils

from . import coco_stream, model, policy
from .archive import GiB, MiB, ProblemLog, safe_load_json
from .model import CategoryDef, FormatError, ItemRecord, LabelRecord, Parsed, Provenance

DEFAULT_MAX_JSON_BYTES = GiB // 2  # 512 MiB: parsed, a JSON costs a few times its size in memory
# COCO needs 5 levels (root, annotations, annotation, segmentation, ring); attributes a few more.
MAX_JSON_DEPTH = 64
# Above this, a file's annotations are parsed one at a time (coco_stream), not loaded whole.
STREAM_ABOVE_BYTES = 64 * MiB


def _size(source, name: str) -> int:
    """The entry's size if the source can tell (a missing entry raises KeyError), else 0."""
    size = getattr(source, "size", None)
    return size(name) if size is not None else 0


_SPLIT = re.compile(r"^(?:instances|person_keypoints)_(?P<split>.+)\.json$")
# Any COCO task file in annotations/: stuff_, labels_, captions_, image_info_, panoptic_ ...
_TASK_SPLIT = re.compile(r"^[a-z]+(?:_[a-z]+)*_(?P<split>[^_]+)\.json$")
ROBOFLOW_COCO = "_annotations.coco.json"
# Annotation fields read into the label; any other field is kept as a label attribute.
_KNOWN_FIELDS = frozenset(
    {"id", "image_id", "category_id", "bbox", "segmentation", "keypoints", "num_keypoints", "area",
     "iscrowd", "attributes", "annotator", "created_at", "guideline_version", "source", "model_name",
     "model_version", "is_final", "uid", "updated_at",
     "segmentation_is_box"}  # our writer's mark on a box-only annotation's rectangle segmentation
)  # fmt: skip
_PROVENANCE_STR = ("annotator", "guideline_version", "model_name", "model_version")
# Every field provenance() reads: an annotation with none of them (most, in a tool's export) has the
# default Provenance, found by one set operation instead of six look-ups.
_PROVENANCE_FIELDS = frozenset((*_PROVENANCE_STR, "created_at", "source"))
# The label attribute that lists the attributes read from annotation fields COCO does not define
# (COCO-WholeBody's face_kpts ...): our COCO export writes those back as fields.
COCO_FIELDS = "coco_fields"


@dataclass(slots=True)
class _Image:
    key: str
    width: int | None
    height: int | None


def _positions(source) -> bool:
    """Can the source number its names (ZipSource, DirectorySource)? Then tables are keyed by number."""
    return all(callable(getattr(source, m, None)) for m in ("position", "name_at", "count"))


# An image id below this many times the archive's files (plus a margin) goes to the dense table; a
# larger one (or a string) to a dict: a hostile id of 10**9 must not allocate gigabytes.
_DENSE_PER_FILE, _DENSE_MARGIN = 4, 1 << 16
_ABSENT, _MISSING = -2, -1  # no such image id; an image without its file (None)


def _code(side: int | None) -> int:
    """A declared width or height in 32 bits: 0 for None (undeclared), else the side plus one."""
    return 0 if side is None else side + 1


def _decode(code: int) -> int | None:
    return None if code == 0 else code - 1


class _ImageTable:
    """COCO image id -> _Image (None: the image's file is missing), as the dict it replaces.

    Over a numbered source (a ZipSource), ids that are small non-negative integers -- COCO's 1..N --
    go to two numpy arrays indexed by id: the position of the image's file among the source's names
    and its declared width and height. 12 bytes an image instead of ~280 (a dict slot, an int, an
    _Image, the key's str). Anything else goes to a dict.
    """

    def __init__(self, source):
        self.source = source if _positions(source) else None
        self.limit = _DENSE_PER_FILE * source.count() + _DENSE_MARGIN if self.source is not None else 0
        self.position = np.full(0, _ABSENT, dtype=np.int32)
        self.size = np.zeros(0, dtype=np.int64)  # _code(width) << 32 | _code(height)
        self.other: dict = {}

    def _dense(self, iid) -> bool:
        return _is_int(iid) and 0 <= iid < self.limit

    @staticmethod
    def _as_int(iid):
        """What a dict would match: 1.0 and True find the key 1 (equal, same hash)."""
        if isinstance(iid, bool) or (isinstance(iid, float) and iid.is_integer()):
            return int(iid)
        return iid

    def __setitem__(self, iid, image: _Image | None) -> None:
        if self._dense(iid):
            position = self.source.position(image.key) if image is not None else _MISSING
            width, height = (image.width, image.height) if image is not None else (None, None)
            fits = all(v is None or 0 <= v < 0x7FFFFFFF for v in (width, height))
            if position is not None and fits:
                if iid >= self.position.size:
                    grown = min(max(iid + 1, 2 * self.position.size, 1024), self.limit)  # iid < limit
                    self.position = np.concatenate(
                        (self.position, np.full(grown - self.position.size, _ABSENT, dtype=np.int32))
                    )
                    self.size = np.concatenate((self.size, np.zeros(grown - self.size.size, dtype=np.int64)))
                self.position[iid] = position
                self.size[iid] = (_code(width) << 32) | _code(height)
                self.other.pop(iid, None)
                return
            if iid < self.position.size:
                self.position[iid] = _ABSENT
        self.other[iid] = image

    def __contains__(self, iid) -> bool:
        iid = self._as_int(iid)
        if self._dense(iid) and iid < self.position.size and self.position[iid] != _ABSENT:
            return True
        return iid in self.other

    def get(self, iid, default=None) -> _Image | None:
        iid = self._as_int(iid)
        if self._dense(iid) and iid < self.position.size:
            position = int(self.position[iid])
            if position == _MISSING:
                return None
            if position != _ABSENT:
                size = int(self.size[iid])
                return _Image(self.source.name_at(position), _decode(size >> 32), _decode(size & 0xFFFFFFFF))
        return self.other.get(iid, default)

    def lookup(self, iid) -> tuple[bool, _Image | None]:
        """``(iid in self, self.get(iid))`` in one look-up: the reader's per-label question."""
        iid = self._as_int(iid)
        if self._dense(iid) and iid < self.position.size:
            position = int(self.position[iid])
            if position == _MISSING:
                return True, None
            if position != _ABSENT:
                size = int(self.size[iid])
                return True, _Image(
                    self.source.name_at(position), _decode(size >> 32), _decode(size & 0xFFFFFFFF)
                )
        other = self.other
        return (True, other[iid]) if iid in other else (False, None)

    def __getitem__(self, iid) -> _Image | None:
        if iid not in self:
            raise KeyError(iid)
        return self.get(iid)


class _Declared:
    """Item key -> where it was first declared (a packed int), keyed by the key's position among the
    source's names when the source numbers them (8 bytes a file), else a dict."""

    def __init__(self, source):
        self.source = source if _positions(source) else None
        self.dense = np.full(source.count() if self.source is not None else 0, -1, dtype=np.int64)
        self.other: dict[str, int] = {}

    def get(self, key: str) -> int | None:
        position = self.source.position(key) if self.source is not None else None
        if position is not None:
            value = int(self.dense[position])
            return None if value < 0 else value
        return self.other.get(key)

    def __setitem__(self, key: str, where: int) -> None:
        position = self.source.position(key) if self.source is not None else None
        if position is not None:
            self.dense[position] = where
        else:
            self.other[key] = where


@dataclass
class _File:
    name: str
    split: str
    root: str
    doc: dict  # "images" and "annotations": lists, or streamed (coco_stream), walked again each time
    images: _ImageTable | None = None  # COCO image id -> _Image (None: missing file); set by the reader
    # Positions in doc["images"] to yield, ascending: 4 bytes each ("I"; "L" is 8 on 64-bit Linux),
    # not a list of ints.
    keep: array.array = field(default_factory=lambda: array.array("I"))
    classified: bool = False  # does a kept image hold "classifications"? (else no pass to find them)


def _kept(f: _File) -> Iterator[tuple[int, dict]]:
    """(position, object) of each kept image, in order: one walk over the images, list or stream."""
    keep = f.keep
    if not keep:
        return
    at = 0
    for j, img in enumerate(f.doc["images"]):
        if j == keep[at]:
            yield j, img
            at += 1
            if at == len(keep):
                return


def _split_of(name: str) -> str:
    base = posixpath.basename(name)
    if base == ROBOFLOW_COCO:  # Roboflow: <split>/_annotations.coco.json beside the images
        return posixpath.basename(posixpath.dirname(name))
    m = _SPLIT.match(base)
    if m:
        return m.group("split")
    if posixpath.basename(posixpath.dirname(name)) == "annotations":
        m = _TASK_SPLIT.match(base)
        return m.group("split") if m else ""
    return ""


def _root_of(name: str) -> str:
    folder = posixpath.dirname(name)
    if posixpath.basename(name) == ROBOFLOW_COCO:
        return folder
    if posixpath.basename(folder) == "annotations":
        folder = posixpath.dirname(folder)
    return folder


def _is_caption(ann) -> bool:
    """A captions_* annotation: a caption and no geometry (datumaro writes category_id 0 too)."""
    return (
        isinstance(ann, dict)
        and "caption" in ann
        and not any(ann.get(k) for k in ("bbox", "segmentation", "keypoints"))
    )


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


class SeenIds:
    """The annotation ids seen in one file: a bit per id for COCO's usual 0..N integers, a set for the rest.

    A set of 500,000 integer ids holds ~35 MB (an int object and a slot each), growing with the
    delivery; the bitmap holds one bit per id up to the largest seen, at most ``BITMAP_LIMIT`` bits
    (16 MB). Integers outside it and string ids go to the set, so the answers are the set's.
    """

    BITMAP_LIMIT = 1 << 27
    __slots__ = ("bits", "others")

    def __init__(self):
        self.bits = bytearray()
        self.others: set = set()

    def __contains__(self, aid) -> bool:
        if isinstance(aid, int) and 0 <= aid < self.BITMAP_LIMIT:
            byte = int(aid) >> 3
            return byte < len(self.bits) and bool(self.bits[byte] & (1 << (int(aid) & 7)))
        return aid in self.others

    def add(self, aid) -> None:
        if isinstance(aid, int) and 0 <= aid < self.BITMAP_LIMIT:
            byte = int(aid) >> 3
            if byte >= len(self.bits):  # grow by doubling: amortised O(1) per id
                self.bits.extend(bytes(max(byte + 1 - len(self.bits), len(self.bits))))
            self.bits[byte] |= 1 << (int(aid) & 7)
        else:
            self.others.add(aid)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def find_coco_files(names: list[str]) -> list[str]:
    """Candidate annotation files: JSON in an ``annotations`` folder or at the top level."""
    return [
        n
        for n in names
        if n.lower().endswith(".json")
        and (
            "/" not in n
            or posixpath.basename(posixpath.dirname(n)) == "annotations"
            or posixpath.basename(n) == ROBOFLOW_COCO
        )
    ]


def _rle_counts(s: str) -> list[int] | None:
    """Decode pycocotools' compressed RLE string (LEB128-like, delta-coded) to run lengths."""
    counts: list[int] = []
    p, n = 0, len(s)
    while p < n:
        x, k, more = 0, 0, True
        while more:
            if p >= n or k > 12:
                return None
            c = ord(s[p]) - 48
            if not 0 <= c < 64:
                return None
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


class _Reader:
    def __init__(self, source: model.Source, files: list[_File], problems: ProblemLog):
        self.source = source
        self.files = files
        self.problems = problems
        # A ZipSource (or DirectorySource) answers ``in`` from its own index: no set of every name.
        self.names = source if hasattr(type(source), "__contains__") else set(source.names())
        self.categories: dict[int, CategoryDef] = {}
        # item key -> where it was first declared: (index of its file in self.files) << 32 | position
        # in that file's images. One int an image, not two strings.
        self.declared = _Declared(source)
        for f in files:
            f.images = _ImageTable(source)
        self.captions: dict[str, list[str]] = {}  # item key -> captions (captions_* files)
        self.adjusted = policy.Adjustments()

    # -- schema ----------------------------------------------------------------------------

    def read_categories(self, f: _File) -> None:
        cats = f.doc.get("categories", [])
        if not isinstance(cats, list):
            self.problems.add(f.name, "categories must be a list", pointer="/categories")
            return
        by_name = {c.name: cid for cid, c in self.categories.items()}
        for i, cat in enumerate(cats):
            ptr = f"/categories/{i}"
            if not isinstance(cat, dict):
                self.problems.add(f.name, "a category must be an object", pointer=ptr)
                continue
            cid, name = cat.get("id"), cat.get("name")
            if not _is_int(cid):
                self.problems.add(f.name, f"category id must be an integer, not {cid!r}", pointer=f"{ptr}/id")
                continue
            if not isinstance(name, str) or not name:
                self.problems.add(f.name, "category needs a non-empty name", pointer=f"{ptr}/name")
                continue
            keypoints = cat.get("keypoints") or []
            if not (isinstance(keypoints, list) and all(isinstance(k, str) for k in keypoints)):
                self.problems.add(f.name, "keypoints must be a list of names", pointer=f"{ptr}/keypoints")
                keypoints = []
            skeleton = cat.get("skeleton") or []
            if (
                isinstance(skeleton, list)
                and skeleton
                and all(isinstance(e, list) and len(e) == 2 and all(_is_int(j) for j in e) for e in skeleton)
                and min(j for e in skeleton for j in e) == 0
                and (not keypoints or max(j for e in skeleton for j in e) < len(keypoints))
            ):
                self.adjusted.note(
                    "skeleton_renumbered",
                    f.name,
                    "skeleton pairs are 0-based (an index is 0): read as 1-based, each index + 1",
                    pointer=f"{ptr}/skeleton",
                )
                skeleton = [[j + 1 for j in e] for e in skeleton]
            if not keypoints and isinstance(skeleton, list):
                pass  # no names yet: checked once the annotations say how many keypoints there are
            elif isinstance(skeleton, list) and any(
                isinstance(e, list) and len(e) == 2 and any(_is_int(j) and j > len(keypoints) for j in e)
                for e in skeleton
            ):
                self.adjusted.note(
                    "skeleton_dropped",
                    f.name,
                    f"skeleton names keypoints beyond the {len(keypoints)} declared: not kept",
                    pointer=f"{ptr}/skeleton",
                )
                skeleton = []
            elif not (
                isinstance(skeleton, list)
                and all(
                    isinstance(e, list)
                    and len(e) == 2
                    and all(_is_int(j) and 1 <= j <= len(keypoints) for j in e)
                    for e in skeleton
                )
            ):
                self.problems.add(
                    f.name,
                    f"skeleton must be pairs of 1-based keypoint indices (1..{len(keypoints)})",
                    pointer=f"{ptr}/skeleton",
                )
                skeleton = []
            known = self.categories.get(cid)
            if known is not None:
                # instances_* and person_keypoints_* declare the same category: the keypoint
                # names and skeleton come from whichever file has them.
                if known.name == name and keypoints and not known.keypoints:
                    known.keypoints = list(keypoints)
                    known.skeleton = [list(e) for e in skeleton]
                    known.geometry_types = sorted({*known.geometry_types, model.KEYPOINTS})
                if known.name != name:
                    self.problems.add(
                        f.name,
                        f"category id {cid} is {name!r} here but {known.name!r} elsewhere",
                        pointer=f"{ptr}/id",
                        code="duplicate_id",
                    )
                continue
            if name in by_name:
                self.problems.add(
                    f.name,
                    f"category name {name!r} is used by ids {by_name[name]} and {cid}",
                    pointer=f"{ptr}/name",
                    code="duplicate_name",
                )
                continue
            by_name[name] = cid
            self.categories[cid] = CategoryDef(
                name=name,
                source_id=cid,
                supercategory=str(cat.get("supercategory") or ""),
                keypoints=list(keypoints),
                skeleton=[list(e) for e in skeleton],
                geometry_types=[model.KEYPOINTS] if keypoints else [],
            )

    # -- images ----------------------------------------------------------------------------

    def resolve(self, f: _File, file_name: str) -> str | None:
        fn = file_name[2:] if file_name.startswith("./") else file_name
        if f.split:
            rels = [f"images/{f.split}/{fn}", f"images/{fn}", f"{f.split}/{fn}", fn]
        else:
            rels = [f"images/{fn}", fn]
        for rel in rels:
            key = posixpath.join(f.root, rel) if f.root else rel
            if key in self.names:
                return key
        return None

    def index_images(self, f: _File) -> None:
        images = f.doc["images"]
        position = next(k for k, g in enumerate(self.files) if g is f)
        for j, img in enumerate(images):
            ptr = f"/images/{j}"
            if not isinstance(img, dict):
                self.problems.add(f.name, "an image must be an object", pointer=ptr)
                continue
            iid = img.get("id")
            if not (_is_int(iid) or isinstance(iid, str)):
                self.problems.add(f.name, f"image id must be an integer, not {iid!r}", pointer=f"{ptr}/id")
                continue
            if iid in f.images:
                self.problems.add(
                    f.name, f"duplicate image id {iid!r}", pointer=f"{ptr}/id", code="duplicate_id"
                )
                continue
            width, height = img.get("width"), img.get("height")
            if not (_is_int(width) and _is_int(height) and width > 0 and height > 0):
                self.problems.add(
                    f.name,
                    f"image needs positive integer width and height, not {width!r} x {height!r}",
                    pointer=ptr,
                )
                width = height = None
            file_name = img.get("file_name")
            if not isinstance(file_name, str) or not file_name:
                self.problems.add(f.name, "image needs a file_name", pointer=f"{ptr}/file_name")
                f.images[iid] = None
                continue
            key = self.resolve(f, file_name)
            if key is None:
                self.problems.add(
                    f.name,
                    f"image file {file_name!r} is not in the delivery",
                    pointer=f"{ptr}/file_name",
                    code="missing_file",
                )
                f.images[iid] = None
                continue
            where = self.declared.get(key)
            if where is not None:
                first = self.files[where >> 32]
                if first.name != f.name:
                    # COCO's annotations/ folder: instances_, person_keypoints_, captions_ ... of the
                    # same images. One item; each file's annotations refer to it.
                    self.adjusted.note(
                        "merged_image",
                        f.name,
                        f"{key!r} is also declared in {first.name}: one item, the labels of both files",
                        pointer=f"{ptr}/file_name",
                    )
                else:
                    self.problems.add(
                        f.name,
                        f"{key!r} is already declared at {first.name}#/images/{where & 0xFFFFFFFF}",
                        pointer=f"{ptr}/file_name",
                        code="duplicate_image",
                    )
                f.images[iid] = _Image(key, width, height)
                continue
            self.declared[key] = position << 32 | j
            f.images[iid] = _Image(key, width, height)
            f.keep.append(j)
            f.classified = f.classified or "classifications" in img

    def index_captions(self, f: _File) -> None:
        annotations = f.doc["annotations"]
        if isinstance(annotations, coco_stream.StreamedArray) and not annotations.may_hold_captions:
            return  # no caption in the file's bytes: no need to parse every annotation once more
        for i, ann in enumerate(annotations):
            if _is_caption(ann):
                image = f.images.get(ann.get("image_id"))
                if image is not None and isinstance(ann["caption"], str):
                    self.captions.setdefault(image.key, []).append(ann["caption"])
                    self.problems_note_captions = f"{f.name}#/annotations/{i}"

    def items(self) -> Iterator[ItemRecord]:
        if self.captions:
            self.problems.add(
                self.problems_note_captions.split("#")[0],
                f"captions of {len(self.captions)} image(s) kept as the item attribute 'captions'",
                pointer=self.problems_note_captions.split("#")[1],
                code="captions_kept",
            )
        for f in self.files:
            for j, img in _kept(f):
                known = f.images[img["id"]]
                yield ItemRecord(
                    key=known.key,
                    width=known.width,
                    height=known.height,
                    split=f.split,
                    attributes={
                        **{
                            k: v
                            for k, v in img.items()
                            if k not in ("id", "file_name", "width", "height", "classifications")
                        },
                        **({"captions": self.captions[known.key]} if known.key in self.captions else {}),
                    },
                    source_ref=f"{f.name}#/images/{j}",
                    source_id=img["id"],
                )

    # -- annotations -----------------------------------------------------------------------

    def labels(self) -> Iterator[LabelRecord]:
        for f in self.files:
            seen_ids = SeenIds()
            for i, ann in enumerate(f.doc["annotations"]):
                if _is_caption(ann):
                    continue  # kept as the item's "captions" attribute
                label = self.label(f, i, ann, seen_ids)
                if label is not None:
                    yield label
            # Our COCO export puts image-level classifications in the image entry (COCOeval
            # breaks on annotations without a box): read them back as classification labels.
            for j, img in _kept(f) if f.classified else ():
                entries = img.get("classifications")
                for k, entry in enumerate(entries if isinstance(entries, list) else []):
                    ptr = f"/images/{j}/classifications/{k}"
                    if not isinstance(entry, dict):
                        self.problems.add(f.name, "a classification must be an object", pointer=ptr)
                        continue
                    ann = {**entry, "image_id": img["id"]}
                    ann.setdefault("id", f"images/{j}/classifications/{k}")
                    label = self.label(f, k, ann, seen_ids, ptr=ptr)
                    if label is not None:
                        yield label
        self.adjusted.flush_into(self.problems)

    def label(
        self, f: _File, i: int, ann, seen_ids: SeenIds, *, ptr: str | None = None
    ) -> LabelRecord | None:
        ptr = ptr or f"/annotations/{i}"
        add = self.problems.add
        if not isinstance(ann, dict):
            add(f.name, "an annotation must be an object", pointer=ptr)
            return None
        ok = True
        aid = ann.get("id")
        if aid is None:
            add(f.name, "annotation has no id", pointer=ptr)
        elif not (_is_int(aid) or isinstance(aid, str)):
            add(f.name, f"annotation id must be an integer, not {aid!r}", pointer=f"{ptr}/id")
            aid = None
        elif aid in seen_ids:
            add(f.name, f"duplicate annotation id {aid!r}", pointer=f"{ptr}/id", code="duplicate_id")
            ok = False
        else:
            seen_ids.add(aid)
        iid = ann.get("image_id")
        known, image = f.images.lookup(iid) if _is_int(iid) or isinstance(iid, str) else (False, None)
        if not known:
            add(f.name, f"image_id {iid!r} is not in images", pointer=f"{ptr}/image_id", code="unknown_image")
            ok = False
        if not ok:
            image = None
        cid = ann.get("category_id")
        category = self.categories.get(cid) if _is_int(cid) else None
        if category is None:
            add(
                f.name,
                f"category_id {cid!r} is not in categories",
                pointer=f"{ptr}/category_id",
                code="unknown_category",
            )
            ok = False
        geometry, geometry_type, geometry_ok = self.geometry(f, ptr, ann, category, image)
        if not (ok and geometry_ok) or image is None:
            return None
        attributes = ann.get("attributes", {})
        if not isinstance(attributes, dict):
            add(f.name, "attributes must be an object", pointer=f"{ptr}/attributes")
            attributes = {}
        extra = (
            {}
            if _KNOWN_FIELDS.issuperset(ann)  # the common case, in C: no field of its own
            else {
                k: v
                for k, v in ann.items()
                if k not in _KNOWN_FIELDS and k not in attributes and k not in geometry
            }
        )
        if extra:
            self.adjusted.note(
                "extra_fields",
                f.name,
                f"annotation fields {', '.join(k[:50] for k in sorted(extra)[:8])} are not COCO's: kept as label attributes "
                f"(and written back as fields by our COCO export)",
                pointer=ptr,
            )
            # COCO_FIELDS names them, so our COCO export writes them back as fields.
            attributes = {**attributes, **extra, COCO_FIELDS: sorted(extra)}
        is_final = ann.get("is_final", True)
        if not isinstance(is_final, bool):
            add(f.name, "is_final must be true or false", pointer=f"{ptr}/is_final")
            is_final = True
        iscrowd = ann.get("iscrowd", 0)
        if iscrowd not in (0, 1):
            add(f.name, "iscrowd must be 0 or 1", pointer=f"{ptr}/iscrowd")
        # The label's stable uid, as our own COCO export writes it: kept so a round trip keeps
        # each label's identity (and its ledger history).
        uid = ann.get("uid")
        if uid is not None and not (isinstance(uid, str) and uid):
            add(f.name, "uid must be a non-empty string", pointer=f"{ptr}/uid")
            uid = None
        return LabelRecord(
            item_key=image.key,
            category=category.name,
            geometry_type=geometry_type,
            geometry=geometry,
            attributes=dict(attributes),
            is_final=is_final,
            iscrowd=iscrowd == 1,
            provenance=self.provenance(f, ptr, ann),
            source_ref=f"{f.name}#{ptr}",
            source_id=aid,
            stable_id=None if aid is None else str(aid),
            uid=uid,
        )

    def geometry(self, f: _File, ptr: str, ann: dict, category, image) -> tuple[dict, str, bool]:
        """The label's geometry parts, its geometry type, and whether every part is valid."""
        return self.valid_polygon(ann, image) or self.geometry_parts(f, ptr, ann, category, image)

    @staticmethod
    def valid_polygon(ann: dict, image) -> tuple[dict, str, bool] | None:
        """The common annotation -- a box and polygon rings, nothing else, all valid -- in one check.

        None for anything else, or when the check finds a problem: geometry_parts then checks each
        part where it is and says what is wrong with it. One validate_geometry of the box and every
        ring finds nothing wrong exactly when geometry_parts' check of the box and of each ring finds
        nothing (more than MAX_RINGS rings is one problem here, none there: geometry_parts decides).
        """
        bbox, seg = ann.get("bbox"), ann.get("segmentation")
        if not (
            type(bbox) is list
            and bbox
            and type(seg) is list
            and seg
            and ann.get("keypoints") in (None, [])
            and ann.get("segmentation_is_box") is not True
        ):
            return None
        width, height = (image.width, image.height) if image else (None, None)
        if not model.polygon_fits(bbox, seg, width, height):
            return None
        return {"bbox": list(bbox), "polygons": [list(r) for r in seg]}, model.POLYGON, True

    def geometry_parts(self, f: _File, ptr: str, ann: dict, category, image) -> tuple[dict, str, bool]:
        """geometry(), part by part: each problem reported at its part's pointer."""
        add = self.problems.add
        width = image.width if image else None
        height = image.height if image else None
        geometry: dict = {}
        ok = True

        def check(kind: str, part: dict, where: str) -> bool:
            errors = model.validate_geometry(kind, part, width, height)
            for e in errors:
                add(f.name, e, pointer=where, code="invalid_geometry")
            return not errors

        bbox = ann.get("bbox")
        if bbox is not None and bbox != []:
            if check(model.BBOX, {"bbox": bbox}, f"{ptr}/bbox"):
                geometry["bbox"] = list(bbox)
            else:
                ok = False
        seg = ann.get("segmentation")
        if (
            ann.get("segmentation_is_box") is True
            and "bbox" in geometry
            and seg == [model.box_ring(geometry["bbox"])]
        ):
            # Our writer's segmentation for a box-only annotation, marked so: it adds no shape, the
            # annotation is its box (or keypoints with their box). Unmarked rings stay polygons.
            seg = []
        if isinstance(seg, list) and seg:
            rings_ok = True
            for j, ring in enumerate(seg):
                rings_ok &= check(model.POLYGON, {"polygons": [ring]}, f"{ptr}/segmentation/{j}")
            if rings_ok:
                geometry["polygons"] = [list(r) for r in seg]
            ok &= rings_ok
        elif isinstance(seg, dict):
            rle = self.rle(f, f"{ptr}/segmentation", seg)
            if rle is not None and check(model.MASK, {"rle": rle}, f"{ptr}/segmentation/size"):
                geometry["rle"] = rle
            else:
                ok = False
        elif seg not in (None, []):
            add(
                f.name,
                "segmentation must be a list of polygons or an RLE object",
                pointer=f"{ptr}/segmentation",
            )
            ok = False
        kp = ann.get("keypoints")
        if kp is not None and kp != []:
            expected = len(category.keypoints) if category else 0
            if category is not None and not expected and isinstance(kp, list) and len(kp) % 3 == 0:
                # A keypoint category without names (or declared only in instances_*): 1..K.
                category.keypoints = [str(k) for k in range(1, len(kp) // 3 + 1)]
                category.geometry_types = sorted({*category.geometry_types, model.KEYPOINTS})
                expected = len(category.keypoints)
                category.skeleton = [
                    e
                    for e in category.skeleton
                    if isinstance(e, list)
                    and len(e) == 2
                    and all(_is_int(j) and 1 <= j <= expected for j in e)
                ]
                self.adjusted.note(
                    "keypoints_named",
                    f.name,
                    f"category {category.name!r} declares no keypoint names: named 1..{expected}",
                    pointer=f"{ptr}/keypoints",
                )
            if category is not None and not expected:
                add(f.name, f"category {category.name!r} declares no keypoints", pointer=f"{ptr}/keypoints")
                ok = False
            elif category is not None and isinstance(kp, list) and len(kp) != 3 * expected:
                add(
                    f.name,
                    f"{len(kp)} keypoint values, expected {3 * expected} for the {expected} keypoints "
                    f"of {category.name!r}",
                    pointer=f"{ptr}/keypoints",
                )
                ok = False
            elif check(model.KEYPOINTS, {"keypoints": kp}, f"{ptr}/keypoints"):
                geometry["keypoints"] = list(kp)
                labelled = sum(1 for v in kp[2::3] if v > 0)
                declared = ann.get("num_keypoints")
                if declared is not None and declared != labelled:
                    add(
                        f.name,
                        f"num_keypoints is {declared!r} but {labelled} keypoints have v > 0",
                        pointer=f"{ptr}/num_keypoints",
                        code="inconsistent",
                    )
            else:
                ok = False
        if ok and not geometry.keys() - {"bbox"}:
            # Our COCO export keeps a polyline's points and a 2D cuboid's corners beside its box.
            for kind, part, size in ((model.POLYLINE, "points", None), (model.CUBOID_2D, "cuboid", 16)):
                values = ann.get(part)
                if (
                    isinstance(values, list)
                    and len(values) >= 4
                    and len(values) % 2 == 0
                    and (size is None or len(values) == size)
                    and all(_is_number(v) for v in values)
                    and check(kind, {part: values}, f"{ptr}/{part}")
                ):
                    return {part: list(values), **geometry}, kind, ok  # with its box part, if any
        for geometry_type, part in (
            (model.KEYPOINTS, "keypoints"),
            (model.MASK, "rle"),
            (model.POLYGON, "polygons"),
            (model.BBOX, "bbox"),
        ):
            if part in geometry:
                return geometry, geometry_type, ok
        return geometry, model.CLASSIFICATION, ok

    def rle(self, f: _File, ptr: str, seg: dict) -> dict | None:
        add = self.problems.add
        size, counts = seg.get("size"), seg.get("counts")
        if not (isinstance(size, list) and len(size) == 2 and all(_is_int(v) and v > 0 for v in size)):
            add(f.name, "RLE size must be [height, width]", pointer=f"{ptr}/size", code="invalid_geometry")
            return None
        h, w = size
        if isinstance(counts, list):
            if not all(_is_int(c) and c >= 0 for c in counts) or sum(counts) != h * w:
                add(
                    f.name,
                    f"uncompressed RLE counts must be non-negative integers summing to {h}x{w}",
                    pointer=f"{ptr}/counts",
                    code="invalid_geometry",
                )
                return None
            encoded = mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)
            return {"size": [h, w], "counts": encoded["counts"].decode("ascii")}
        if isinstance(counts, str):
            runs = _rle_counts(counts)
            if runs is None or any(c < 0 for c in runs) or sum(runs) != h * w:
                add(
                    f.name,
                    f"compressed RLE counts do not decode to a {h}x{w} mask",
                    pointer=f"{ptr}/counts",
                    code="invalid_geometry",
                )
                return None
            return {"size": [h, w], "counts": counts}
        add(f.name, "RLE counts must be a string or a list", pointer=f"{ptr}/counts", code="invalid_geometry")
        return None

    def provenance(self, f: _File, ptr: str, ann: dict) -> Provenance:
        prov = Provenance()
        if _PROVENANCE_FIELDS.isdisjoint(ann):
            return prov
        add = self.problems.add
        for key in _PROVENANCE_STR:
            value = ann.get(key)
            if value is None:
                continue
            if isinstance(value, (str, int)) and not isinstance(value, bool):
                value = str(value)
                setattr(prov, key, value)
            else:
                add(f.name, f"{key} must be a string", pointer=f"{ptr}/{key}")
        created = ann.get("created_at")
        if created is not None:
            try:
                prov.made_at = datetime.fromisoformat(created)
            except (TypeError, ValueError):
                add(
                    f.name,
                    f"created_at {created!r} is not an ISO 8601 date-time",
                    pointer=f"{ptr}/created_at",
                )
        source = ann.get("source")
        if source is not None:
            if source in model.SOURCES:
                prov.source = source
            else:
                add(f.name, f"source must be one of {', '.join(model.SOURCES)}", pointer=f"{ptr}/source")
        return prov


def read_coco(
    source: model.Source,
    *,
    annotation_files: list[str] | None = None,
    max_json_bytes: int = DEFAULT_MAX_JSON_BYTES,
) -> Parsed:
    """Read the COCO annotation files of a source; items and labels stream from the parsed JSON."""
    problems = ProblemLog()
    explicit = annotation_files is not None
    candidates = list(annotation_files) if explicit else find_coco_files(source.names())
    files: list[_File] = []
    errors: list[model.Problem] = []
    for name in candidates:
        try:
            # Refused by the size the archive declares before a byte is read (a 6.9 MB zip can hold
            # a 1 GB JSON); the stream then enforces what it really holds (ZipSource stops a member
            # that outgrows its declared size, and safe_load_json reads at most max_json_bytes + 1).
            declared = source.size(name) if hasattr(source, "size") else None
            if declared is not None and declared > max_json_bytes:
                errors.append(
                    model.Problem(
                        file=name,
                        message=f"JSON of {declared} bytes: at most {max_json_bytes} are read",
                        code="too_large",
                    )
                )
                continue
            if _size(source, name) > STREAM_ABOVE_BYTES:  # annotations parsed one at a time (ijson)
                doc = coco_stream.read_outline(
                    functools.partial(source.open, name),
                    max_bytes=max_json_bytes,
                    max_depth=MAX_JSON_DEPTH,
                    name=name,
                )
            else:
                with source.open(name) as stream:
                    doc = safe_load_json(
                        stream, max_bytes=max_json_bytes, max_depth=MAX_JSON_DEPTH, name=name
                    )
        except KeyError:
            errors.append(
                model.Problem(
                    file=name, message="annotation file is not in the delivery", code="missing_file"
                )
            )
            continue
        except FormatError as exc:
            errors.extend(exc.problems)
            continue
        is_coco = (
            isinstance(doc, dict)
            and isinstance(doc.get("images"), (list, coco_stream.StreamedHead))
            and isinstance(doc.get("annotations"), (list, coco_stream.StreamedArray))
        )
        if not is_coco:
            if explicit:
                errors.append(
                    model.Problem(
                        file=name, message="not a COCO file: needs 'images' and 'annotations' lists"
                    )
                )
            continue
        files.append(_File(name=name, split=_split_of(name), root=_root_of(name), doc=doc))
    if errors:
        raise FormatError(errors)
    if not files:
        raise FormatError(
            [model.Problem(file="", message="no COCO annotation file found", code="missing_file")]
        )
    reader = _Reader(source, files, problems)
    for f in files:
        reader.read_categories(f)
    for f in files:
        reader.index_images(f)
    # Where each key was first declared is for index_images' duplicate check only: 8 bytes an archive
    # entry not held through the label pass, where the read peaks at ten times the images.
    reader.declared = None
    for f in files:
        reader.index_captions(f)
    return Parsed(
        format="coco",
        categories=list(reader.categories.values()),
        items=reader.items(),
        labels=reader.labels(),
        problems=problems,
    )
