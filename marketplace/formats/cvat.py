"""Reader for "CVAT for images 1.1" XML (``annotations.xml``).

The file is read incrementally with defusedxml, so a 1 GB export never sits in memory and an
entity bomb or an external entity becomes a :class:`model.Problem`, not a crash or a hang.
``<meta>`` is read first (it is at the top of every CVAT export); ``items`` and ``labels`` each
stream the file again, so a caller may exhaust one before starting the other without either
holding the delivery. Problems found by both passes are reported once.

Mapping into :mod:`model`:

- ``<meta>`` ``<label>`` -> :class:`CvatCategory` (a ``CategoryDef`` that also keeps CVAT's
  attribute specs); the label ``<type>`` gives ``geometry_types``; skeleton sub-labels
  (``<parent>``) become the skeleton's ``keypoints`` names, not categories of their own.
- ``<image id name width height subset? task_id?>`` -> ``ItemRecord``: ``split`` from ``subset``,
  ``source_id`` the image id, ``key`` the path of the image file in the delivery, looked up as
  ``images/<subset>/<name>``, ``images/<name>``, ``<subset>/<name>``, ``<name>``, then by unique
  path suffix. The same name in several subsets is fine when the files differ (a project
  export); an image that is not in the delivery is a problem and its shapes are skipped.
- ``<box xtl ytl xbr ybr>`` -> bbox ``[xtl, ytl, xbr - xtl, ybr - ytl]`` (CVAT box corners are
  already continuous 0-based pixel coordinates). A box with a non-zero ``rotation`` (degrees,
  clockwise, about the box centre) becomes a polygon of its four corners and keeps ``rotation``
  as an attribute.
- ``<polygon points="x,y;x,y">`` -> polygon; ``<polyline>`` -> polyline ``points``;
  ``<points>`` -> one keypoints label, every point ``v=2``; ``<cuboid xtl1 ... xbr2>`` -> the 8
  corners in CVAT's (and the model's) order; ``<tag>`` -> classification.
- ``<mask rle left top width height>`` -> full-image compressed COCO RLE. CVAT's RLE is its own:
  run lengths over the ``width`` x ``height`` box at (``left``, ``top``), row-major, the first run
  background (CVAT's exporter, ``dump_as_cvat_annotation``).
- ``occluded`` (bool), ``z_order`` (int), ``group_id`` (int, when non-zero) and every
  ``<attribute name>`` child (typed by the meta spec: checkbox -> bool, number -> int/float,
  others -> str) -> ``LabelRecord.attributes``.
- ``source``: ``manual`` -> human; ``auto``, ``semi-auto``, ``file`` -> model with
  ``model_name = "cvat-<source>"``; ``consensus`` -> consensus.

Provenance extension attributes. CVAT 1.1 image exports carry no author or time per shape.
Some supplier pipelines add them as XML attributes on the shape element; we accept:

- ``annotator``: a pseudonymous id (an e-mail address is refused as personal data),
- ``created_at``, ``updated_at``: ISO-8601 date-times (no zone given -> UTC),
- ``guideline_version``: the annotation guideline tag, e.g. ``v1.2``,
- ``model_name``, ``model_version``: the model behind an ``auto``/``semi-auto`` shape.

Anything they do not give can come from a ``provenance.jsonl`` sidecar
(:mod:`marketplace.formats.provenance`): a shape's ``source_ref`` is ``annotations.xml:<line>``
and its ``source_id`` its 0-based position among the file's shapes and tags.

Without ``<meta><labels>`` (job exports, hand-made files) the categories are taken from the
shapes, with the warning ``no_schema``. ``<values>`` are one per line (CVAT); a single line with
spaces is split on them (datumaro writes ``<values>v1 v2 v3</values>``). A label attribute whose
name is one of the shape's own flags (``occluded``, ``z_order``, ``group_id``, ``rotation``,
``keyframe``, ``track_id``) is kept as ``attribute:<name>`` beside the flag (warning
``attribute_renamed``): neither is lost.

CVAT for video (``<track>``): one item per frame that has shapes (the frame's image is
``frame_<6-digit number>.<ext>`` anywhere in the delivery, as CVAT exports frames), one label
per shape that is not ``outside``, with the attributes ``track_id`` and ``keyframe`` (info
``video_frames``).

Not read (each reported as a problem): ``<ellipse>``, ``<skeleton>``.
"""

from __future__ import annotations

import math
import posixpath
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

# Element and TreeBuilder only build the tree; all parsing goes through defusedxml's parser.
from xml.etree.ElementTree import Element, TreeBuilder  # noqa: S405

import numpy as np
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import DefusedXMLParser, ParseError, iterparse
from pycocotools import mask as mask_utils

from . import model
from .provenance import looks_like_email, parse_timestamp

FORMAT = "cvat_images_1.1"
MAX_PROBLEMS = 1000
# A mask is decoded onto a full-image canvas: refuse what Pillow itself would refuse as a
# decompression bomb (its default MAX_IMAGE_PIXELS), so a lying <image width height> cannot
# make us allocate gigabytes.
MAX_MASK_PIXELS = 89_478_485

SHAPE_TAGS = ("box", "polygon", "polyline", "points", "cuboid", "mask")
SHAPE_FLAGS = ("occluded", "z_order", "group_id", "rotation", "keyframe", "track_id")
_FRAME_FILE = re.compile(r"(?:^|/)frame_(\d+)\.(?:jpe?g|png|bmp|webp|tiff?|gif)$", re.IGNORECASE)
UNSUPPORTED_TAGS = ("ellipse", "skeleton")

CVAT_SOURCES = {
    "manual": (model.HUMAN, ""),
    "auto": (model.MODEL, "cvat-auto"),
    "semi-auto": (model.MODEL, "cvat-semi-auto"),
    "file": (model.MODEL, "cvat-file"),
    "consensus": (model.CONSENSUS, ""),
}

# CVAT label <type> -> the geometry types a label of that type may carry.
LABEL_TYPES = {
    "rectangle": [model.BBOX],
    "polygon": [model.POLYGON],
    "polyline": [model.POLYLINE],
    "points": [model.KEYPOINTS],
    "cuboid": [model.CUBOID_2D],
    "mask": [model.MASK],
    "tag": [model.CLASSIFICATION],
    "skeleton": [model.KEYPOINTS],
}

CUBOID_CORNERS = (
    "xtl1", "ytl1", "xbl1", "ybl1", "xtr1", "ytr1", "xbr1", "ybr1",
    "xtl2", "ytl2", "xbl2", "ybl2", "xtr2", "ytr2", "xbr2", "ybr2",
)  # fmt: skip

_INT = re.compile(r"[+-]?\d+")


@dataclass
class AttributeSpec:
    """One attribute a CVAT label declares in ``<meta>``."""

    name: str
    input_type: str  # checkbox | radio | number | text | select
    values: list[str] = field(default_factory=list)
    default: str = ""
    mutable: bool = False


@dataclass
class CvatCategory(model.CategoryDef):
    """A category plus the attribute specs CVAT declares for it (``CategoryDef`` has no field for them)."""

    attributes: list[AttributeSpec] = field(default_factory=list)


def read_cvat(source: model.Source, *, xml_name: str | None = None) -> model.Parsed:
    """Read a CVAT for images 1.1 export into the neutral model, streaming items and labels."""
    name = xml_name or _find_annotations_xml(source)
    problems: list[model.Problem] = []
    log = _ProblemLog(problems)
    categories, declared = _read_schema(source, name, log)
    images = _ImageIndex(source.names())
    images.frame_size = _original_size(source, name)
    # Without a declared schema there is nothing to check labels and attributes against.
    schema = {c.name: c for c in categories} if declared else None
    return model.Parsed(
        format=FORMAT,
        categories=categories,
        items=_iter_items(source, name, images, log),
        labels=_iter_labels(source, name, images, schema, log),
        problems=problems,
    )


# --- problems ---------------------------------------------------------------------------------


class _ProblemLog:
    """Collects problems: at most MAX_PROBLEMS, each reported once however many passes see it."""

    def __init__(self, sink: list[model.Problem]):
        self.sink = sink
        self.seen: set[tuple] = set()
        self.full = False

    def add(self, file: str, message: str, *, line: int | None = None, code: str = "invalid") -> None:
        key = (file, line, code, message)
        if key in self.seen:
            return
        if len(self.sink) >= MAX_PROBLEMS:
            if not self.full:
                self.full = True
                self.sink.append(
                    model.Problem(
                        file,
                        f"more than {MAX_PROBLEMS} problems; the rest are not listed",
                        code="too_many_problems",
                    )
                )
            return
        self.seen.add(key)
        self.sink.append(model.Problem(file, message, line=line, code=code))


# --- XML plumbing -----------------------------------------------------------------------------


class _LineElement(Element):
    """An element that remembers the line its start tag is on."""

    __slots__ = ("line",)


def _xml_events(stream):
    """(iterator of (event, element), parser) over a defused parser recording each element's line.

    iterparse hands events over only after it has fed a whole 16 KB chunk, so reading the expat
    position when an event is consumed would give the chunk's end; the element factory runs
    inside expat's start-tag callback, where ``CurrentLineNumber`` is the tag's own line.
    """
    holder: list[DefusedXMLParser] = []

    def factory(tag, attrib):
        element = _LineElement(tag, attrib)
        element.line = holder[0].parser.CurrentLineNumber
        return element

    parser = DefusedXMLParser(target=TreeBuilder(element_factory=factory))
    holder.append(parser)
    return iterparse(stream, events=("start", "end"), parser=parser), parser


def _report_xml_error(exc: Exception, parser, name: str, log: _ProblemLog) -> None:
    if isinstance(exc, DefusedXmlException):
        line = parser.parser.CurrentLineNumber
        log.add(name, f"refused unsafe XML ({type(exc).__name__}: {exc})", line=line, code="unsafe_xml")
    else:
        line = getattr(exc, "position", (None, None))[0]
        log.add(name, f"malformed XML: {exc}", line=line, code="xml_syntax")


def _find_annotations_xml(source: model.Source) -> str:
    names = [n for n in source.names() if posixpath.basename(n) == "annotations.xml"]
    if not names:
        xmls = [n for n in source.names() if n.lower().endswith(".xml")]
        if len(xmls) == 1:
            return xmls[0]
        raise model.FormatError(
            [model.Problem("", "no annotations.xml in the delivery", code="missing_file")]
        )
    # A shallower file wins: CVAT writes annotations.xml at the root of its export.
    names.sort(key=lambda n: (n.count("/"), n))
    return names[0]


def _text(element: Element | None) -> str:
    return (element.text or "").strip() if element is not None else ""


# --- schema -----------------------------------------------------------------------------------


def _read_schema(source: model.Source, name: str, log: _ProblemLog) -> tuple[list[CvatCategory], bool]:
    """The categories declared in <meta> (only the head of the file is read), and whether there were any."""
    with source.open(name) as stream:
        events, parser = _xml_events(stream)
        try:
            for event, element in events:
                if event == "start" and element.tag in ("image", "track"):
                    break  # the body started without a <meta>
                if event == "end" and element.tag == "meta":
                    categories = _parse_meta(element, name, log)
                    if categories:
                        return categories, True
                    break
        except (ParseError, DefusedXmlException) as exc:
            _report_xml_error(exc, parser, name, log)
            return [], False
    log.add(
        name,
        "<meta> declares no labels: categories are taken from the shapes, unchecked",
        code="no_schema",
    )
    return _schema_from_shapes(source, name, log), False


def _parse_meta(meta: Element, name: str, log: _ProblemLog) -> list[CvatCategory]:
    categories: dict[str, CvatCategory] = {}
    children: list[tuple[str, str]] = []  # (parent, sub-label) of skeletons
    for labels in meta.iter("labels"):
        for label in labels.findall("label"):
            label_name = _text(label.find("name"))
            if not label_name:
                log.add(name, "a <meta> label has no <name>", line=getattr(label, "line", None))
                continue
            parent = _text(label.find("parent"))
            if parent:
                children.append((parent, label_name))
                continue
            if label_name in categories:
                continue  # project exports may list a label once per task
            specs = []
            for attribute in label.iter("attribute"):
                specs.append(
                    AttributeSpec(
                        name=_text(attribute.find("name")),
                        input_type=_text(attribute.find("input_type")).lower() or "text",
                        values=_values(attribute.findtext("values") or ""),
                        default=_text(attribute.find("default_value")),
                        mutable=_text(attribute.find("mutable")).lower() == "true",
                    )
                )
            categories[label_name] = CvatCategory(
                name=label_name,
                color=_text(label.find("color")),
                geometry_types=list(LABEL_TYPES.get(_text(label.find("type")).lower(), [])),
                attributes=specs,
            )
    for parent, child in children:
        if parent in categories:
            categories[parent].keypoints.append(child)
    return list(categories.values())


def _values(text: str) -> list[str]:
    """CVAT writes one value per line; datumaro one line with the values separated by spaces."""
    lines = [v.strip() for v in text.splitlines() if v.strip()]
    return lines[0].split() if len(lines) == 1 else lines


def _original_size(source: model.Source, name: str) -> tuple[int | None, int | None]:
    """A video task's frame size (<meta><task><original_size>), read from the head of the file."""
    with source.open(name) as stream:
        events, _ = _xml_events(stream)
        try:
            for event, element in events:
                if event == "start" and element.tag in ("image", "track"):
                    break
                if event == "end" and element.tag == "original_size":
                    w, h = _text(element.find("width")), _text(element.find("height"))
                    if _INT.fullmatch(w) and _INT.fullmatch(h) and int(w) > 0 and int(h) > 0:
                        return int(w), int(h)
                    break
        except (ParseError, DefusedXmlException):
            pass  # reported by the other passes
    return None, None


def _schema_from_shapes(source: model.Source, name: str, log: _ProblemLog) -> list[CvatCategory]:
    found: dict[str, CvatCategory] = {}
    with source.open(name) as stream:
        events, parser = _xml_events(stream)
        root = None
        try:
            for event, element in events:
                if root is None:
                    root = element
                if event == "start" and element.tag in (*SHAPE_TAGS, "tag"):
                    label = element.get("label")
                    if label and label not in found:
                        found[label] = CvatCategory(name=label)
                elif event == "end" and element.tag in ("image", "track"):
                    element.clear()
                    root.clear()
        except (ParseError, DefusedXmlException) as exc:
            _report_xml_error(exc, parser, name, log)
    return list(found.values())


# --- images -----------------------------------------------------------------------------------


class _ImageIndex:
    """Finds the file an <image name> refers to among the delivery's files."""

    def __init__(self, names: list[str]):
        # name -> itself: a found key is the index's own string, not a new copy per image.
        self.names = {n: n for n in names}
        self.by_basename: dict[str, list[str]] = {}
        self.frames: dict[int, str] = {}  # video frame number -> its image (frame_000010.png)
        self.frame_size: tuple[int | None, int | None] = (None, None)
        for n in names:
            self.by_basename.setdefault(posixpath.basename(n), []).append(n)
            m = _FRAME_FILE.search(n)
            if m and len(m.group(1)) <= 9:
                self.frames.setdefault(int(m.group(1)), n)

    def find(self, name: str, subset: str) -> str | None:
        name = name.lstrip("/")
        candidates = [f"images/{subset}/{name}", f"{subset}/{name}"] if subset else []
        for candidate in (*candidates, f"images/{name}", name):
            if candidate in self.names:
                return self.names[candidate]
        suffix = "/" + name
        matches = [n for n in self.by_basename.get(posixpath.basename(name), []) if n.endswith(suffix)]
        if subset:
            # Never borrow another subset's file of the same name: the path must name the subset.
            folder = subset.lower()
            matches = [n for n in matches if folder in n.lower().split("/")[:-1]]
        return matches[0] if len(matches) == 1 else None


@dataclass
class _Image:
    id: int | None
    name: str
    width: int | None
    height: int | None
    subset: str
    line: int
    key: str | None  # None: not usable, already reported
    attributes: dict


class _ImageChecker:
    """Validates <image> elements; both passes run it so both know which images are usable."""

    def __init__(self, name: str, index: _ImageIndex, log: _ProblemLog):
        self.name, self.index, self.log = name, index, log
        self.seen_keys: dict[str, tuple[str, int]] = {}  # key -> (subset, line) of its <image>

    def check(self, element: _LineElement) -> _Image:
        a, line = element.attrib, element.line
        image_name = a.get("name", "")
        subset = a.get("subset", "")
        image_id = self._int(a.get("id"), "id", line)
        width = self._int(a.get("width"), "width", line, positive=True)
        height = self._int(a.get("height"), "height", line, positive=True)
        attributes = {}
        if "task_id" in a:
            task_id = a["task_id"].strip()
            attributes["task_id"] = int(task_id) if _INT.fullmatch(task_id) else task_id
        image = _Image(image_id, image_name, width, height, subset, line, None, attributes)
        if not image_name:
            self.log.add(self.name, "<image> has no name", line=line)
            return image
        key = self.index.find(image_name, subset)
        if key is None:
            where = f" (subset {subset!r})" if subset else ""
            self.log.add(
                self.name,
                f"image {image_name!r}{where} is not in the delivery",
                line=line,
                code="missing_image",
            )
            return image
        previous = self.seen_keys.get(key)
        if previous is not None:
            prev_subset, prev_line = previous
            if prev_subset == subset:
                message = f"image {image_name!r} is declared twice (first on line {prev_line})"
            else:
                message = (
                    f"image {image_name!r} in subset {subset!r} is the same file as in subset "
                    f"{prev_subset!r} (line {prev_line}): an image in two splits leaks between them"
                )
            self.log.add(self.name, message, line=line, code="duplicate_image")
            return image
        self.seen_keys[key] = (subset, line)
        image.key = key
        return image

    def _int(self, text: str | None, what: str, line: int, *, positive: bool = False) -> int | None:
        if text is None:
            self.log.add(self.name, f"<image> has no {what}", line=line)
            return None
        if not _INT.fullmatch(text.strip()) or (positive and int(text) <= 0):
            self.log.add(
                self.name,
                f"<image> {what}={text!r} is not a {'positive ' if positive else ''}integer",
                line=line,
            )
            return None
        return int(text)


def _iter_items(
    source: model.Source, name: str, index: _ImageIndex, log: _ProblemLog
) -> Iterator[model.ItemRecord]:
    checker = _ImageChecker(name, index, log)
    frames: dict[int, int] = {}
    with source.open(name) as stream:
        events, parser = _xml_events(stream)
        root = None
        try:
            for event, element in events:
                if root is None:
                    root = element
                if event == "start":
                    if element.tag == "image":
                        image = checker.check(element)
                        if image.key is not None:
                            yield model.ItemRecord(
                                key=image.key,
                                width=image.width,
                                height=image.height,
                                split=image.subset,
                                attributes=image.attributes,
                                source_ref=f"{name}:{image.line}",
                                source_id=image.id,
                            )
                elif element.tag in ("image", "track"):
                    if element.tag == "track":
                        frames.update(_track_frames(element, name, log))
                    # Cleared, and dropped from the root, so memory stays flat over a long file.
                    element.clear()
                    root.clear()
        except (ParseError, DefusedXmlException) as exc:
            _report_xml_error(exc, parser, name, log)
    if frames:
        log.add(
            name,
            f"CVAT for video: {len(frames)} frames with shapes read as one item each",
            code="video_frames",
        )
    width, height = index.frame_size
    for frame, line in sorted(frames.items()):
        key = index.frames.get(frame)
        if key is None:
            log.add(
                name,
                f"frame {frame} has shapes but no image frame_{frame:06d}.*",
                line=line,
                code="missing_image",
            )
            continue
        yield model.ItemRecord(
            key=key, width=width, height=height, split="", source_ref=f"{name}:{line}", source_id=frame
        )


def _frame_number(text: str | None) -> int | None:
    """A frame (or track) number: 0 to 10^9, never a huge digit string turned into an int."""
    text = (text or "").strip()
    return int(text) if len(text) <= 9 and text.isdigit() and text.isascii() else None


def _track_frames(track: _LineElement, name: str, log: _ProblemLog) -> dict[int, int]:
    """Frame -> line of the first shape in it, for the track's shapes that are not outside."""
    frames: dict[int, int] = {}
    for shape in track:
        if shape.tag not in SHAPE_TAGS or shape.get("outside") == "1":
            continue
        frame = _frame_number(shape.get("frame"))
        if frame is None:
            log.add(name, f"<{shape.tag}> in a <track> needs a frame number (0 to 10^9)", line=shape.line)
            continue
        frames.setdefault(frame, shape.line)
    return frames


# --- labels -----------------------------------------------------------------------------------


def _iter_labels(
    source: model.Source,
    name: str,
    index: _ImageIndex,
    schema: dict[str, CvatCategory] | None,
    log: _ProblemLog,
) -> Iterator[model.LabelRecord]:
    checker = _ImageChecker(name, index, log)
    reader = _ShapeReader(name, schema, log)
    ordinal = 0
    with source.open(name) as stream:
        events, parser = _xml_events(stream)
        root = None
        image: _Image | None = None
        depth = 0  # element depth inside the current <image>; shapes are its direct children
        try:
            for event, element in events:
                if root is None:
                    root = element
                if event == "start":
                    if element.tag == "image":
                        image, depth = checker.check(element), 0
                    elif image is not None:
                        depth += 1
                    continue
                if element.tag == "track":
                    for label in _track_labels(element, index, reader, ordinal):
                        yield label
                    ordinal += sum(1 for shape in element if shape.tag in SHAPE_TAGS)
                if element.tag in ("image", "track"):
                    image = None
                    element.clear()
                    root.clear()
                    continue
                if image is None:
                    continue
                depth -= 1
                if depth != 0:
                    continue
                if element.tag in (*SHAPE_TAGS, "tag", *UNSUPPORTED_TAGS):
                    if image.key is not None:
                        label = reader.read(element, image, ordinal)
                        if label is not None:
                            yield label
                    ordinal += 1
                element.clear()
        except (ParseError, DefusedXmlException) as exc:
            _report_xml_error(exc, parser, name, log)


def _track_labels(
    track: _LineElement, index: _ImageIndex, reader: _ShapeReader, ordinal: int
) -> Iterator[model.LabelRecord]:
    """One label per shape of a video track that is not outside, on its frame's item."""
    width, height = index.frame_size
    track_id = track.get("id", "")
    for i, shape in enumerate(s for s in track if s.tag in SHAPE_TAGS):
        frame = _frame_number(shape.get("frame"))
        if shape.get("outside") == "1" or frame is None:
            continue
        key = index.frames.get(frame)
        if key is None:
            continue  # reported by the items pass
        for inherited in ("label", "source", "group_id"):
            if inherited in track.attrib and inherited not in shape.attrib:
                shape.set(inherited, track.get(inherited))
        image = _Image(frame, posixpath.basename(key), width, height, "", shape.line, key, {})
        label = reader.read(shape, image, ordinal + i)
        if label is not None:
            short = _frame_number(track_id)
            label.attributes["track_id"] = short if short is not None else track_id[:100]
            label.attributes["keyframe"] = shape.get("keyframe", "1") == "1"
            yield label


class _ShapeReader:
    """Turns one shape or tag element of an image into a LabelRecord, reporting what is wrong."""

    def __init__(self, name: str, schema: dict[str, CvatCategory] | None, log: _ProblemLog):
        self.name, self.log = name, log
        self.checked = schema is not None
        self.schema = schema or {}
        self.counted: dict[str, int] = {}
        self.first: dict[str, int] = {}

    def problem(self, element: _LineElement, message: str, code: str = "invalid") -> None:
        self.log.add(self.name, message, line=element.line, code=code)

    def problem_once(self, code: str, element: _LineElement, message: str) -> None:
        """A recoverable deviation: reported at its first place, with how many times it happened."""
        count = self.counted[code] = self.counted.get(code, 0) + 1
        if count == 1:
            before = len(self.log.sink)
            self.problem(element, message, code)
            self.first[code] = before if len(self.log.sink) > before else None
            return
        index = self.first.get(code)
        if index is not None:
            first = self.log.sink[index]
            self.log.sink[index] = model.Problem(
                first.file,
                f"{message} ({count} times; the first is located here)",
                line=first.line,
                code=code,
            )

    def read(self, element: _LineElement, image: _Image, ordinal: int) -> model.LabelRecord | None:
        tag = element.tag
        if tag in UNSUPPORTED_TAGS:
            self.problem(element, f"<{tag}> shapes are not supported; skipped", "unsupported_shape")
            return None
        label = element.get("label")
        if not label:
            self.problem(element, f"<{tag}> has no label")
            return None
        category = self.schema.get(label)
        if category is None and self.checked:
            self.problem(element, f"label {label!r} is not declared in <meta>", "unknown_label")
            return None
        result = self.geometry(element, image)
        if result is None:
            return None
        geometry_type, geometry, attributes = result
        errors = model.validate_geometry(geometry_type, geometry, image.width, image.height)
        for error in errors:
            self.problem(element, f"<{tag} label={label!r}>: {error}", "invalid_geometry")
        if errors:
            return None
        for attr_name, value in self.attributes(element, category).items():
            if attr_name in SHAPE_FLAGS:
                self.problem_once(
                    "attribute_renamed",
                    element,
                    f"a label attribute named like the shape's own {attr_name!r} flag is kept as "
                    f"'attribute:{attr_name}' beside it",
                )
                attr_name = f"attribute:{attr_name}"
            attributes[attr_name] = value
        return model.LabelRecord(
            item_key=image.key,
            category=label,
            geometry_type=geometry_type,
            geometry=geometry,
            attributes=attributes,
            provenance=self.provenance(element),
            source_ref=f"{self.name}:{element.line}",
            source_id=ordinal,
            # CVAT for images writes no shape id, and renumbers when it does (some pipelines add one):
            # kept for lineage, which checks that the ids are consistent before trusting them.
            stable_id=(element.get("id") or "").strip() or None,
        )

    # geometry

    def geometry(self, element: _LineElement, image: _Image) -> tuple[str, dict, dict] | None:
        tag, attributes = element.tag, {}
        if tag == "tag":
            return model.CLASSIFICATION, {}, attributes
        attributes["occluded"] = element.get("occluded", "0") == "1"
        attributes["z_order"] = self.int_attr(element, "z_order", 0)
        group = self.int_attr(element, "group_id", 0)
        if group:
            attributes["group_id"] = group
        if tag == "box":
            xtl, ytl, xbr, ybr = (self.float_attr(element, k) for k in ("xtl", "ytl", "xbr", "ybr"))
            if None in (xtl, ytl, xbr, ybr):
                return None
            rotation = self.float_attr(element, "rotation", 0.0)
            if rotation is None:
                return None
            if rotation % 360.0:
                attributes["rotation"] = rotation
                return model.POLYGON, {"polygons": [_rotated_box(xtl, ytl, xbr, ybr, rotation)]}, attributes
            return model.BBOX, {"bbox": [xtl, ytl, xbr - xtl, ybr - ytl]}, attributes
        if tag == "cuboid":
            corners = [self.float_attr(element, k) for k in CUBOID_CORNERS]
            if None in corners:
                return None
            return model.CUBOID_2D, {"cuboid": corners}, attributes
        if tag == "mask":
            rle = self.mask(element, image)
            return (model.MASK, {"rle": rle}, attributes) if rle is not None else None
        points = self.points(element)
        if points is None:
            return None
        if tag == "polygon":
            return model.POLYGON, {"polygons": [points]}, attributes
        if tag == "polyline":
            return model.POLYLINE, {"points": points}, attributes
        keypoints = []
        for i in range(0, len(points), 2):
            keypoints += [points[i], points[i + 1], 2]
        return model.KEYPOINTS, {"keypoints": keypoints}, attributes

    def float_attr(self, element: _LineElement, key: str, default: float | None = None) -> float | None:
        text = element.get(key)
        if text is None:
            if default is None:
                self.problem(element, f"<{element.tag}> has no {key}")
            return default
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            self.problem(element, f"<{element.tag}> {key}={text!r} is not a number")
            return None
        return value

    def int_attr(self, element: _LineElement, key: str, default: int) -> int:
        text = element.get(key)
        if text is None:
            return default
        if not _INT.fullmatch(text.strip()):
            self.problem(element, f"<{element.tag}> {key}={text!r} is not an integer")
            return default
        return int(text)

    def points(self, element: _LineElement) -> list[float] | None:
        text = element.get("points")
        if text is None:
            self.problem(element, f"<{element.tag}> has no points")
            return None
        flat: list[float] = []
        try:
            for pair in text.split(";"):
                x, y = pair.split(",")
                flat += [float(x), float(y)]
        except ValueError:
            self.problem(element, f"<{element.tag}> points must be 'x,y;x,y;...', got {text[:60]!r}")
            return None
        return flat

    def mask(self, element: _LineElement, image: _Image) -> dict | None:
        if image.width is None or image.height is None:
            self.problem(element, "a mask needs the image's width and height")
            return None
        if image.width * image.height > MAX_MASK_PIXELS:
            self.problem(element, f"a mask on a {image.width}x{image.height} image is too large to decode")
            return None
        box = {}
        for key in ("left", "top", "width", "height"):
            text = element.get(key, "")
            if not _INT.fullmatch(text.strip()):
                self.problem(element, f"<mask> {key}={text!r} is not an integer")
                return None
            box[key] = int(text)
        left, top, width, height = box["left"], box["top"], box["width"], box["height"]
        if width <= 0 or height <= 0 or left < 0 or top < 0:
            self.problem(
                element, f"<mask> box left={left} top={top} width={width} height={height} is not valid"
            )
            return None
        if left + width > image.width or top + height > image.height:
            self.problem(
                element,
                f"<mask> box ({left}, {top}, {width}x{height}) lies outside the {image.width}x{image.height} image",
                "invalid_geometry",
            )
            return None
        try:
            counts = np.array([int(c) for c in element.get("rle", "").split(",")], dtype=np.int64)
        except ValueError:
            self.problem(element, "<mask> rle must be comma-separated run lengths")
            return None
        if (counts < 0).any() or int(counts.sum()) != width * height:
            self.problem(
                element,
                f"<mask> rle covers {int(counts.sum())} pixels, its {width}x{height} box has {width * height}",
            )
            return None
        # Runs alternate background / foreground, starting with background, row-major in the box.
        region = np.repeat(np.arange(len(counts), dtype=np.uint8) % 2, counts).reshape(height, width)
        if not region.any():
            self.problem(element, "<mask> is empty", "invalid_geometry")
            return None
        canvas = np.zeros((image.height, image.width), dtype=np.uint8, order="F")
        canvas[top : top + height, left : left + width] = region
        rle = mask_utils.encode(canvas)
        return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}

    # attributes and provenance

    def attributes(self, element: _LineElement, category: CvatCategory | None) -> dict:
        specs = {s.name: s for s in category.attributes} if category else {}
        found = {}
        for child in element.findall("attribute"):
            attr_name = child.get("name", "")
            raw = child.text or ""
            spec = specs.get(attr_name)
            if spec is None:
                if self.checked:
                    self.log.add(
                        self.name,
                        f"attribute {attr_name!r} is not declared for label {element.get('label')!r}",
                        line=child.line,
                        code="unknown_attribute",
                    )
                found[attr_name] = raw
                continue
            value, error = _typed_value(raw, spec)
            if error:
                self.log.add(self.name, error, line=child.line, code="invalid_attribute")
            found[attr_name] = value
        return found

    def provenance(self, element: _LineElement) -> model.Provenance:
        provenance = model.Provenance()
        source = element.get("source")
        if source is not None:
            if source in CVAT_SOURCES:
                provenance.source, provenance.model_name = CVAT_SOURCES[source]
            else:
                self.problem(element, f"unknown CVAT source {source!r}", "unknown_source")
        annotator = element.get("annotator")
        if annotator:
            if looks_like_email(annotator):
                self.problem(
                    element, "annotator must be a pseudonymous id, not an e-mail address", "personal_data"
                )
            else:
                provenance.annotator = annotator
        for key, slot in (("created_at", "made_at"), ("updated_at", "updated_at")):
            text = element.get(key)
            if text is not None:
                try:
                    setattr(provenance, slot, parse_timestamp(text))
                except ValueError:
                    self.problem(element, f"{key}={text!r} is not an ISO-8601 date-time")
        if element.get("guideline_version"):
            provenance.guideline_version = element.get("guideline_version")
        if element.get("model_name"):
            provenance.model_name = element.get("model_name")
        if element.get("model_version"):
            provenance.model_version = element.get("model_version")
        return provenance


def _typed_value(raw: str, spec: AttributeSpec) -> tuple[object, str | None]:
    """The attribute's value typed by its spec, and an error message if it does not fit."""
    text = raw.strip()
    if spec.input_type == "checkbox":
        if text.lower() in ("true", "false"):
            return text.lower() == "true", None
        return raw, f"attribute {spec.name!r} is a checkbox, got {raw!r}"
    if spec.input_type == "number":
        try:
            value = int(text) if _INT.fullmatch(text) else float(text)
        except ValueError:
            return raw, f"attribute {spec.name!r} is a number, got {raw!r}"
        if not math.isfinite(value):
            return raw, f"attribute {spec.name!r} is a number, got {raw!r}"
        try:
            low, high = float(spec.values[0]), float(spec.values[1])
        except (IndexError, ValueError):
            return value, None
        if low > high:
            return value, None  # not a min;max;step range (datumaro lists example values)
        if not low <= value <= high:
            return value, f"attribute {spec.name!r}={value} is outside {low:g}..{high:g}"
        return value, None
    if spec.input_type in ("select", "radio") and spec.values and raw not in spec.values:
        return raw, f"attribute {spec.name!r}={raw!r} is not one of {spec.values}"
    return raw, None


def _rotated_box(xtl: float, ytl: float, xbr: float, ybr: float, degrees: float) -> list[float]:
    """The corners of a CVAT box rotated clockwise (y points down) by ``degrees`` about its centre."""
    cx, cy = (xtl + xbr) / 2, (ytl + ybr) / 2
    cos, sin = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    ring: list[float] = []
    for x, y in ((xtl, ytl), (xbr, ytl), (xbr, ybr), (xtl, ybr)):
        dx, dy = x - cx, y - cy
        ring += [cx + dx * cos - dy * sin, cy + dx * sin + dy * cos]
    return ring
