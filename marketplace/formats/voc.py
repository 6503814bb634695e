"""Read Pascal VOC annotations (boxes, and instance masks when present) into the neutral model.

Layout: ``<root>/Annotations/<id>.xml``, images in ``<root>/JPEGImages/``, splits from
``<root>/ImageSets/Main/{train,val,test,trainval}.txt`` (``ImageSets/Segmentation/`` fills in
ids that Main does not list; an id only in ``trainval`` gets split "trainval"). ``<root>``
may be empty or any prefix such as ``VOCdevkit/VOC2012/``.

The image of ``<id>.xml`` is ``JPEGImages/<filename>``, or ``JPEGImages/<id>.jpg`` (the
devkit's own rule) when ``<filename>`` is absent or names a file that is not there.

Coordinates. VOC's top-left pixel is (1, 1) and ``xmax``/``ymax`` are inclusive, so the box
becomes 0-based COCO ``[x, y, w, h]`` by the VOC devkit rule::

    x = xmin - 1    y = ymin - 1    w = xmax - xmin + 1    h = ymax - ymin + 1

so ``xmin=1, xmax=width`` covers the whole image width. Corners must be integers
(``"48.0"`` is accepted, ``"48.5"`` is not), with ``1 <= xmin <= xmax <= width`` and the same
for y; anything else is a problem at the line of the offending element, and the object is not
yielded. ``name``, ``pose``, ``truncated``, ``difficult``, ``occluded`` and CVAT-style
``<attributes><attribute><name/><value/></attribute></attributes>`` become label attributes.

Instance masks. When ``SegmentationObject/<id>.png`` exists (a palette PNG whose pixel value
k is the k-th ``<object>`` of the XML, 0 background, 255 the void border), each value k
present becomes a ``mask`` label: the pixels equal to k (the void border is not part of any
instance), encoded as compressed COCO RLE with a ``bbox`` part from the mask. Its category is
the majority class among those pixels in ``SegmentationClass/<id>.png`` (ignoring 0 and 255),
named through the class palette order: ``labelmap.txt`` if the delivery has one (CVAT and
Datumaro write it; line order is the index, background first), else the 20 VOC classes in
devkit order (aeroplane = 1 ... tvmonitor = 20). Without a class PNG, or when its majority
index has no name, the category is the k-th object's ``<name>``. When both are known and
disagree, the class PNG wins for the mask label and the disagreement is a problem.

XML is parsed with defusedxml: a DTD, an entity declaration (entity bombs) or an external
reference is a problem for that file, never a crash or a hang.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import DefusedXMLParser, ParseError
from PIL import Image
from pycocotools import mask as mask_utils

from . import model
from .archive import MiB, ProblemLog
from .model import CategoryDef, FormatError, ItemRecord, LabelRecord, Parsed

VOC_CLASSES = (
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)
MAX_XML_BYTES = 16 * MiB
MAX_TEXT_BYTES = 64 * MiB
VOID = 255
_ANNOTATION = re.compile(r"^(?P<root>(?:.*/)?)Annotations/(?P<id>[^/]+)\.xml$")
_SPLITS = ("train", "val", "test")
_FLAGS = ("truncated", "difficult", "occluded")


class _Node:
    """An XML element that remembers the line its start tag is on."""

    __slots__ = ("tag", "line", "children", "parts")

    def __init__(self, tag: str, line: int):
        self.tag = tag
        self.line = line
        self.children: list[_Node] = []
        self.parts: list[str] = []

    @property
    def text(self) -> str:
        return "".join(self.parts).strip()

    def find(self, tag: str) -> _Node | None:
        return next((c for c in self.children if c.tag == tag), None)

    def findall(self, tag: str) -> list[_Node]:
        return [c for c in self.children if c.tag == tag]


class _LineTarget:
    """A parser target that builds _Node trees; expat tells it the line of each start tag."""

    def __init__(self):
        self.expat = None
        self.root: _Node | None = None
        self.stack: list[_Node] = []

    def start(self, tag, attrib):
        node = _Node(tag, self.expat.CurrentLineNumber)
        if self.stack:
            self.stack[-1].children.append(node)
        else:
            self.root = node
        self.stack.append(node)

    def end(self, tag):
        self.stack.pop()

    def data(self, text):
        if self.stack:
            self.stack[-1].parts.append(text)

    def close(self):
        return self.root


class _XmlError(Exception):
    def __init__(self, line: int | None, message: str, code: str):
        self.line, self.message, self.code = line, message, code


def parse_xml(data: bytes) -> _Node:
    """Parse an XML document with defusedxml into line-numbered nodes; raises _XmlError."""
    target = _LineTarget()
    parser = DefusedXMLParser(target=target, forbid_dtd=True)
    target.expat = parser.parser
    try:
        parser.feed(data)
        root = parser.close()
    except ParseError as exc:
        line, col = exc.position
        raise _XmlError(
            line, f"malformed XML at {line}:{col}: {str(exc).split(':')[0]}", "invalid_xml"
        ) from None
    except DefusedXmlException as exc:
        raise _XmlError(
            target.expat.CurrentLineNumber,
            f"refused XML: {exc} (DTDs and entities are not allowed)",
            "forbidden_xml",
        ) from None
    if root is None:
        raise _XmlError(None, "empty XML document", "invalid_xml")
    return root


def _read_capped(source: model.Source, name: str, cap: int) -> bytes | None:
    with source.open(name) as stream:
        data = stream.read(cap + 1)
    return None if len(data) > cap else data


def _int_text(node: _Node) -> int | None:
    text = node.text
    try:
        value = float(text)
    except ValueError:
        return None
    return int(value) if value.is_integer() else None


def _flag(text: str) -> bool | None:
    return {"0": False, "1": True, "false": False, "true": True}.get(text.lower())


@dataclass
class _Doc:
    xml: str  # file name of the XML
    voc_id: str
    root: str  # the VOC root prefix, "" or "VOC2012/"
    item: ItemRecord | None = None
    ok: bool = True  # False: the XML could not be read at all


@dataclass
class _Object:
    index: int  # 1-based position among <object> elements: the SegmentationObject value
    name: str | None
    line: int
    attributes: dict = field(default_factory=dict)
    bbox: list[int] | None = None


def _load_palette_png(source: model.Source, name: str) -> np.ndarray:
    with source.open(name) as stream, warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(stream, formats=("PNG",)) as img:
            if img.mode not in ("P", "L"):
                raise ValueError(f"expected a palette (P) or grey (L) PNG, not mode {img.mode}")
            img.load()
            return np.asarray(img)


class _Reader:
    def __init__(self, source: model.Source, problems: ProblemLog):
        self.source = source
        self.problems = problems
        self.names = source.names()
        self.name_set = set(self.names)
        self.docs: list[_Doc] = []
        self.splits: dict[tuple[str, str], str] = {}  # (root, id) -> split
        self.seen_names: list[str] = []
        self.class_names: dict[str, list[str]] = {}  # root -> palette index -> class name

    # -- discovery -------------------------------------------------------------------------

    def discover(self) -> None:
        for n in self.names:
            m = _ANNOTATION.match(n)
            if m:
                self.docs.append(_Doc(xml=n, voc_id=m.group("id"), root=m.group("root")))
        for root in sorted({d.root for d in self.docs}):
            ids = {d.voc_id for d in self.docs if d.root == root}
            self.read_splits(root, "ImageSets/Main", ids, conflicts=True)
            self.read_splits(root, "ImageSets/Segmentation", ids, conflicts=False)

    def read_splits(self, root: str, folder: str, ids: set[str], *, conflicts: bool) -> None:
        where: dict[str, str] = {}
        for split in (*_SPLITS, "trainval"):
            name = f"{root}{folder}/{split}.txt"
            if name not in self.name_set:
                continue
            data = _read_capped(self.source, name, MAX_TEXT_BYTES)
            if data is None:
                self.problems.add(name, f"split file larger than {MAX_TEXT_BYTES} bytes", code="too_large")
                continue
            for lineno, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
                tokens = line.split()
                if not tokens:
                    continue
                voc_id = tokens[0]
                if voc_id not in ids:
                    self.problems.add(
                        name, f"{voc_id!r} has no Annotations/{voc_id}.xml", line=lineno, code="missing_file"
                    )
                    continue
                key = (root, voc_id)
                current = self.splits.get(key)
                if split == "trainval":
                    if current is None:
                        self.splits[key] = "trainval"
                    elif current == "test" and conflicts:
                        self.problems.add(
                            name, f"{voc_id!r} is also in {where[voc_id]}", line=lineno, code="split_conflict"
                        )
                elif current is None:
                    self.splits[key] = split
                    where[voc_id] = f"{name}:{lineno}"
                elif current != split and conflicts and voc_id in where:
                    self.problems.add(
                        name, f"{voc_id!r} is also in {where[voc_id]}", line=lineno, code="split_conflict"
                    )

    # -- items (first pass) ----------------------------------------------------------------

    def parse(self, doc: _Doc, *, report: bool) -> _Node | None:
        data = _read_capped(self.source, doc.xml, MAX_XML_BYTES)
        if data is None:
            if report:
                self.problems.add(doc.xml, f"larger than {MAX_XML_BYTES} bytes", code="too_large")
            return None
        try:
            root = parse_xml(data)
        except _XmlError as exc:
            if report:
                self.problems.add(doc.xml, exc.message, line=exc.line, code=exc.code)
            return None
        if root.tag != "annotation":
            if report:
                self.problems.add(
                    doc.xml, f"root element is <{root.tag}>, expected <annotation>", line=root.line
                )
            return None
        return root

    def read_items(self) -> None:
        for doc in self.docs:
            root = self.parse(doc, report=True)
            if root is None:
                doc.ok = False
                continue
            doc.item = self.item(doc, root)
            for obj in root.findall("object"):
                name_node = obj.find("name")
                if name_node is not None and name_node.text and name_node.text not in self.seen_names:
                    self.seen_names.append(name_node.text)

    def item(self, doc: _Doc, root: _Node) -> ItemRecord | None:
        add = self.problems.add
        width = height = None
        size = root.find("size")
        if size is None:
            add(
                doc.xml,
                "no <size>: the image size is needed to check the boxes",
                line=root.line,
                code="missing_size",
            )
        else:
            dims = {}
            for tag in ("width", "height"):
                node = size.find(tag)
                value = _int_text(node) if node is not None else None
                if value is None or value <= 0:
                    add(
                        doc.xml,
                        f"<size> needs a positive integer <{tag}>",
                        line=(node or size).line,
                        code="missing_size",
                    )
                else:
                    dims[tag] = value
            width, height = dims.get("width"), dims.get("height")
            if width is None or height is None:
                width = height = None
        filename_node = root.find("filename")
        filename = filename_node.text if filename_node is not None else ""
        key = None
        for candidate in ([f"{doc.root}JPEGImages/{filename}"] if filename else []) + [
            f"{doc.root}JPEGImages/{doc.voc_id}.jpg"
        ]:
            if candidate in self.name_set:
                key = candidate
                break
        if key is None:
            shown = filename or f"{doc.voc_id}.jpg"
            add(
                doc.xml,
                f"image JPEGImages/{shown} is not in the delivery",
                line=(filename_node or root).line,
                code="missing_file",
            )
            return None
        attributes = {}
        segmented = root.find("segmented")
        if segmented is not None and _flag(segmented.text) is not None:
            attributes["segmented"] = _flag(segmented.text)
        return ItemRecord(
            key=key,
            width=width,
            height=height,
            split=self.splits.get((doc.root, doc.voc_id), ""),
            attributes=attributes,
            source_ref=doc.xml,
            source_id=doc.voc_id,
        )

    # -- categories ------------------------------------------------------------------------

    def read_labelmap(self, root: str) -> list[str] | None:
        name = f"{root}labelmap.txt"
        if name not in self.name_set:
            return None
        data = _read_capped(self.source, name, MAX_TEXT_BYTES)
        if data is None:
            self.problems.add(name, f"larger than {MAX_TEXT_BYTES} bytes", code="too_large")
            return None
        classes = []
        for line in data.decode("utf-8", errors="replace").splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                classes.append(line.split(":", 1)[0].strip())
        return classes

    def categories(self) -> list[CategoryDef]:
        roots = sorted({d.root for d in self.docs})
        labelmap = None
        for root in roots:
            labelmap = self.read_labelmap(root)
            if labelmap is not None:
                break
        if labelmap is not None:
            order = labelmap
        elif all(n in VOC_CLASSES for n in self.seen_names):
            order = ["background", *VOC_CLASSES]
        else:
            order = None
        for root in roots:
            self.class_names[root] = order or []
        if order is None:
            return [CategoryDef(name=n) for n in self.seen_names]
        declared = [
            CategoryDef(name=n, source_id=i) for i, n in enumerate(order) if i > 0 and n in self.seen_names
        ]
        if labelmap is not None:
            # labelmap.txt declares the schema even for classes no object uses yet.
            declared = [CategoryDef(name=n, source_id=i) for i, n in enumerate(order) if i > 0]
        known = {c.name for c in declared}
        return declared + [CategoryDef(name=n) for n in self.seen_names if n not in known]

    # -- labels (second pass) --------------------------------------------------------------

    def labels(self) -> Iterator[LabelRecord]:
        for doc in self.docs:
            if not doc.ok:
                continue
            root = self.parse(doc, report=False)
            if root is None:
                continue
            objects = [self.object(doc, i, node) for i, node in enumerate(root.findall("object"), 1)]
            if doc.item is None:
                continue
            for obj in objects:
                if obj.name is not None and obj.bbox is not None:
                    yield LabelRecord(
                        item_key=doc.item.key,
                        category=obj.name,
                        geometry_type=model.BBOX,
                        geometry={"bbox": obj.bbox},
                        attributes=obj.attributes,
                        source_ref=f"{doc.xml}:{obj.line}",
                        source_id=obj.index,
                    )
            yield from self.masks(doc, objects)

    def object(self, doc: _Doc, index: int, node: _Node) -> _Object:
        add = self.problems.add
        name_node = node.find("name")
        name = name_node.text if name_node is not None and name_node.text else None
        if name is None:
            add(doc.xml, "<object> has no <name>", line=node.line)
        obj = _Object(index=index, name=name, line=node.line)
        pose = node.find("pose")
        if pose is not None and pose.text:
            obj.attributes["pose"] = pose.text
        for tag in _FLAGS:
            flag_node = node.find(tag)
            if flag_node is None:
                continue
            value = _flag(flag_node.text)
            if value is None:
                add(doc.xml, f"<{tag}> must be 0 or 1, not {flag_node.text!r}", line=flag_node.line)
            else:
                obj.attributes[tag] = value
        attrs = node.find("attributes")
        for attr in attrs.findall("attribute") if attrs is not None else []:
            attr_name, attr_value = attr.find("name"), attr.find("value")
            if attr_name is not None and attr_name.text:
                obj.attributes[attr_name.text] = attr_value.text if attr_value is not None else ""
        obj.bbox = self.bbox(doc, node)
        return obj

    def bbox(self, doc: _Doc, node: _Node) -> list[int] | None:
        add = self.problems.add
        box = node.find("bndbox")
        if box is None:
            add(doc.xml, "<object> has no <bndbox>", line=node.line)
            return None
        width = doc.item.width if doc.item else None
        height = doc.item.height if doc.item else None
        values: dict[str, int] = {}
        ok = True
        for tag, limit in (("xmin", width), ("ymin", height), ("xmax", width), ("ymax", height)):
            corner = box.find(tag)
            if corner is None:
                add(doc.xml, f"<bndbox> has no <{tag}>", line=box.line)
                ok = False
                continue
            value = _int_text(corner)
            if value is None:
                add(doc.xml, f"<{tag}> must be an integer pixel index, not {corner.text!r}", line=corner.line)
                ok = False
            elif value < 1 or (limit is not None and value > limit):
                bound = f"1..{limit}" if limit is not None else ">= 1"
                add(
                    doc.xml,
                    f"<{tag}> {value} is outside the image ({bound}, VOC is 1-based)",
                    line=corner.line,
                )
                ok = False
            else:
                values[tag] = value
        for low, high in (("xmin", "xmax"), ("ymin", "ymax")):
            if low in values and high in values and values[high] < values[low]:
                add(
                    doc.xml,
                    f"<{high}> {values[high]} is less than <{low}> {values[low]}",
                    line=box.find(high).line,
                )
                ok = False
        if not ok:
            return None
        return [
            values["xmin"] - 1,
            values["ymin"] - 1,
            values["xmax"] - values["xmin"] + 1,
            values["ymax"] - values["ymin"] + 1,
        ]

    def masks(self, doc: _Doc, objects: list[_Object]) -> Iterator[LabelRecord]:
        object_png = f"{doc.root}SegmentationObject/{doc.voc_id}.png"
        class_png = f"{doc.root}SegmentationClass/{doc.voc_id}.png"
        if object_png not in self.name_set:
            return
        item = doc.item
        instances = self.load_mask(object_png, item)
        if instances is None:
            return
        classes = self.load_mask(class_png, item) if class_png in self.name_set else None
        if classes is not None and classes.shape != instances.shape:
            self.problems.add(
                class_png, f"size {classes.shape[::-1]} differs from {object_png}", code="invalid_mask"
            )
            classes = None
        palette = self.class_names.get(doc.root, [])
        for k in np.unique(instances):
            k = int(k)
            if k in (0, VOID):
                continue
            pixels = instances == k
            obj = objects[k - 1] if k <= len(objects) else None
            class_name = None
            if classes is not None:
                values = classes[pixels]
                values = values[(values != 0) & (values != VOID)]
                if values.size:
                    majority = int(np.bincount(values).argmax())
                    class_name = palette[majority] if majority < len(palette) else None
            object_name = obj.name if obj else None
            if class_name and object_name and class_name != object_name:
                self.problems.add(
                    class_png,
                    f"instance {k} is mostly {class_name!r} here but <object> {k} is {object_name!r}",
                    code="mask_class_mismatch",
                )
            category = class_name or object_name
            if category is None:
                self.problems.add(
                    object_png,
                    f"instance {k} has no <object> {k} and no class in SegmentationClass",
                    code="invalid_mask",
                )
                continue
            rle = mask_utils.encode(np.asfortranarray(pixels.astype(np.uint8)))
            yield LabelRecord(
                item_key=item.key,
                category=category,
                geometry_type=model.MASK,
                geometry={
                    "rle": {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")},
                    "bbox": [float(v) for v in mask_utils.toBbox(rle)],
                },
                attributes=dict(obj.attributes) if obj else {},
                source_ref=f"{object_png}#{k}",
                source_id=k,
            )

    def load_mask(self, name: str, item: ItemRecord) -> np.ndarray | None:
        try:
            arr = _load_palette_png(self.source, name)
        except (
            OSError,
            ValueError,
            SyntaxError,
            Image.DecompressionBombError,
            Image.DecompressionBombWarning,
        ) as exc:
            self.problems.add(name, f"cannot read the mask: {exc}", code="invalid_mask")
            return None
        except FormatError as exc:
            self.problems.extend_problems(exc.problems)
            return None
        if item.width is not None and arr.shape != (item.height, item.width):
            self.problems.add(
                name,
                f"mask is {arr.shape[1]}x{arr.shape[0]}, the image {item.width}x{item.height}",
                code="invalid_mask",
            )
            return None
        return arr


def read_voc(source: model.Source) -> Parsed:
    """Read a Pascal VOC delivery.

    A first pass reads every XML for the item records and the category names (the schema must
    be known before the first label); labels then stream, re-reading each XML rather than
    holding every object in memory.
    """
    problems = ProblemLog()
    reader = _Reader(source, problems)
    reader.discover()
    if not reader.docs:
        raise FormatError([model.Problem(file="", message="no Annotations/*.xml found", code="missing_file")])
    reader.read_items()
    categories = reader.categories()
    return Parsed(
        format="voc",
        categories=categories,
        items=(d.item for d in reader.docs if d.item is not None),
        labels=reader.labels(),
        problems=problems,
    )
