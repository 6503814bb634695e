"""Read Pascal VOC annotations (boxes, and instance masks when present) into the neutral model.

Layout: ``<root>/Annotations/<id>.xml``, images in ``<root>/JPEGImages/``, splits from
``<root>/ImageSets/Main/{train,val,test,trainval}.txt`` (``ImageSets/Segmentation/`` fills in
ids that Main does not list; an id only in ``trainval`` gets split "trainval"). ``<root>``
may be empty or any prefix such as ``VOCdevkit/VOC2012/``.

The image of ``<id>.xml`` is ``JPEGImages/<filename>``, or ``JPEGImages/<id>.jpg`` (the
devkit's own rule) when ``<filename>`` is absent or names a file that is not there.

Layouts. Besides the devkit layout, when there is no ``Annotations/`` folder, every XML whose
root is ``<annotation>`` is read with its image beside it (Roboflow, LabelImg: ``train/a.xml``
next to ``train/a.jpg``; the split is the folder's name). A split list may name an image that has
no XML: it is an item without labels (its image must be there). ``#`` lines in split lists are
comments (datumaro writes them).

Coordinates, decided per file (issue #17) and stated in the report as a warning:

* the devkit's own convention: VOC's top-left pixel is (1, 1) and ``xmax``/``ymax`` are
  inclusive, so the box becomes 0-based COCO ``[x, y, w, h]`` by the VOC devkit rule::

      x = xmin - 1    y = ymin - 1    w = xmax - xmin + 1    h = ymax - ymin + 1

  so ``xmin=1, xmax=width`` covers the whole image width; ``1 <= xmin <= xmax <= width``.
* 0-based decimal corners, as CVAT and datumaro write them (a corner written with a decimal
  point, ``87.5`` or ``2.0``, anywhere in the file's boxes): ``x = xmin``, ``w = xmax - xmin``,
  ``0 <= xmin <= xmax <= width`` (code ``voc_zero_based_decimal``).
* 0-based integer corners, as Roboflow writes them (``<database>`` naming roboflow, or a corner
  equal to 0): the same rule in integers (code ``voc_zero_based_integer``).

Anything outside its convention's range is a problem at the line of the offending element, and
the object is not yielded. ``<part>`` boxes are kept as the label attribute ``parts`` (a list of
``{"name", "bbox"}`` in the file's convention, made 0-based), ``<actions>`` as ``actions``
(``{action: bool}``).

A file without ``<size>`` takes the image's own size (warning ``size_from_image``). ``name``, ``pose``, ``truncated``, ``difficult``, ``occluded`` and CVAT-style
``<attributes><attribute><name/><value/></attribute></attributes>`` become label attributes.

Instance masks. When ``SegmentationObject/<id>.png`` exists (a palette PNG whose pixel value
k is the k-th ``<object>`` of the XML, 0 background, 255 the void border), each value k
present becomes a ``mask`` label: the pixels equal to k (the void border is not part of any
instance), encoded as compressed COCO RLE with a ``bbox`` part from the mask. Its category is
the majority class among those pixels in ``SegmentationClass/<id>.png`` (ignoring 0 and 255;
colour (RGB) masks, as datumaro's VOC exporter writes them, are read back to indices through
the VOC colour map, or for the class mask through ``labelmap.txt``'s colours when it gives them),
named through the class palette order: ``labelmap.txt`` if the delivery has one (CVAT and
Datumaro write it; line order is the index, background first), else the 20 VOC classes in
devkit order (aeroplane = 1 ... tvmonitor = 20). Without a class PNG, or when its majority
index has no name, the category is the k-th object's ``<name>``. When both are known and
disagree, the class PNG wins for the mask label and the disagreement is a problem.

XML is parsed with defusedxml: a DTD, an entity declaration (entity bombs) or an external
reference is a problem for that file, never a crash or a hang.
"""

from __future__ import annotations

import itertools
import posixpath
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
from .detect import peek, xml_root
from .model import CategoryDef, FormatError, ItemRecord, LabelRecord, Parsed
from .policy import Adjustments
from .yolo import IMAGE_EXTENSIONS, read_image_size

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


DEVKIT, ZERO_DECIMAL, ZERO_INTEGER = "devkit", "zero_based_decimal", "zero_based_integer"
CONVENTION_MESSAGES = {
    ZERO_DECIMAL: "corners written as decimals (as CVAT and datumaro write them) read as 0-based: "
    "x = xmin, w = xmax - xmin",
    ZERO_INTEGER: "corners from Roboflow or with a 0 corner read as 0-based integers: x = xmin, w = xmax - xmin",
}


def voc_colormap() -> np.ndarray:
    """The PASCAL VOC colour map: index k -> (r, g, b), the devkit's bit-interleaving rule."""
    colours = np.zeros((256, 3), dtype=np.uint8)
    for k in range(256):
        r = g = b = 0
        c = k
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        colours[k] = (r, g, b)
    return colours


def _rgb_to_index(rgb: np.ndarray, colours: dict[tuple[int, int, int], int]) -> np.ndarray:
    """Indices for an RGB mask through a colour -> index table; an unknown colour is a ValueError."""
    codes = (rgb[..., 0].astype(np.uint32) << 16) | (rgb[..., 1].astype(np.uint32) << 8) | rgb[..., 2]
    table = {(r << 16) | (g << 8) | b: k for (r, g, b), k in colours.items()}
    keys = np.array(sorted(table), dtype=np.uint32)
    values = np.array([table[int(k)] for k in keys], dtype=np.int64)
    where = np.clip(np.searchsorted(keys, codes), 0, len(keys) - 1)
    unknown = keys[where] != codes
    if unknown.any():
        y, x = (int(v) for v in np.argwhere(unknown)[0])
        raise ValueError(f"colour {tuple(int(v) for v in rgb[y, x])} at ({x}, {y}) is not in the colour map")
    return values[where].astype(np.uint8)


_VOC_COLOURS = {tuple(int(v) for v in c): k for k, c in enumerate(voc_colormap())}


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


def _number(node: _Node) -> float | None:
    try:
        value = float(node.text)
    except ValueError:
        return None
    return value if np.isfinite(value) else None


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
    root: str  # the VOC root prefix, "" or "VOC2012/"; for an XML beside its image, its folder
    item: ItemRecord | None = None
    ok: bool = True  # False: the XML could not be read at all
    beside: bool = False  # Roboflow / LabelImg: the XML beside its image, no Annotations/
    convention: str = DEVKIT


@dataclass
class _Object:
    index: int  # 1-based position among <object> elements: the SegmentationObject value
    name: str | None
    line: int
    attributes: dict = field(default_factory=dict)
    bbox: list | None = None


def _load_palette_png(source: model.Source, name: str, colours=None) -> np.ndarray:
    """Indices of a palette or grey PNG; an RGB(A) PNG goes through a colour table (VOC's by default)."""
    with source.open(name) as stream, warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(stream, formats=("PNG",)) as img:
            if img.mode in ("RGB", "RGBA"):
                img.load()
                return _rgb_to_index(np.asarray(img.convert("RGB")), colours or _VOC_COLOURS)
            if img.mode not in ("P", "L"):
                raise ValueError(f"expected a palette (P), grey (L) or RGB PNG, not mode {img.mode}")
            img.load()
            return np.asarray(img)


class _Reader:
    def __init__(self, source: model.Source, problems: ProblemLog, image_size=None):
        self.source = source
        self.problems = problems
        self.adjusted = Adjustments()
        self.image_size = image_size or (lambda key: read_image_size(source, key))
        self.names = source.names()
        self.name_set = set(self.names)
        self.folded: dict[str, str] = {}  # lower-cased name -> name, for file names in another case
        for n in self.names:
            self.folded.setdefault(n.lower(), n)
        self.listed: list[tuple[str, str, str, int]] = []  # root, id, list file, line
        self.label_colours: dict[str, dict] = {}  # root -> labelmap colour -> index
        self.declared: set[str] = set()  # category names of the schema (after categories())
        self.docs: list[_Doc] = []
        self.splits: dict[tuple[str, str], str] = {}  # (root, id) -> split
        self.seen_names: list[str] = []
        self.seen_set: set[str] = set()  # the same names, for membership in constant time
        self.class_names: dict[str, list[str]] = {}  # root -> palette index -> class name

    # -- discovery -------------------------------------------------------------------------

    def discover(self) -> None:
        for n in self.names:
            m = _ANNOTATION.match(n)
            if m:
                self.docs.append(_Doc(xml=n, voc_id=m.group("id"), root=m.group("root")))
        if not self.docs:
            # Roboflow / LabelImg: one XML with an <annotation> root beside each image.
            for n in self.names:
                if n.lower().endswith(".xml") and xml_root(peek(self.source, n)) == "voc":
                    folder, base = posixpath.split(n)
                    root = f"{folder}/" if folder else ""
                    voc_id = posixpath.splitext(base)[0]
                    self.docs.append(_Doc(xml=n, voc_id=voc_id, root=root, beside=True))
            return
        for root in sorted({d.root for d in self.docs}):
            ids = {d.voc_id for d in self.docs if d.root == root}
            self.read_splits(root, "ImageSets/Main", ids, conflicts=True)
            self.read_splits(root, "ImageSets/Segmentation", ids, conflicts=False)

    def read_splits(self, root: str, folder: str, ids: set[str], *, conflicts: bool) -> None:
        where: dict[str, str] = {}
        # Any other list without "_" (class lists are <class>_<split>.txt) is a subset of its own
        # name, as CVAT writes ImageSets/Main/default.txt and datumaro reads it.
        prefix = f"{root}{folder}/"
        others = sorted(
            posixpath.basename(n)[:-4]
            for n in self.names
            if n.startswith(prefix)
            and n.endswith(".txt")
            and "/" not in n[len(prefix) :]
            and "_" not in n[len(prefix) :]
        )
        for split in dict.fromkeys((*_SPLITS, "trainval", *others)):
            name = f"{root}{folder}/{split}.txt"
            if name not in self.name_set:
                continue
            data = _read_capped(self.source, name, MAX_TEXT_BYTES)
            if data is None:
                self.problems.add(name, f"split file larger than {MAX_TEXT_BYTES} bytes", code="too_large")
                continue
            for lineno, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
                tokens = line.split()
                if not tokens or tokens[0].startswith("#"):
                    continue
                voc_id = tokens[0]
                key = (root, voc_id)
                if voc_id not in ids and key not in self.splits:
                    # An image without an XML: an item without labels (read_items finds its image).
                    self.listed.append((root, voc_id, name, lineno))
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

    def find_image(self, folder: str, filename: str, voc_id: str) -> str | None:
        """The image of an XML: ``<folder><filename>``, else ``<folder><id>.<ext>``, in any case."""
        candidates = [f"{folder}{filename}"] if filename else []
        candidates += [f"{folder}{voc_id}{ext}" for ext in IMAGE_EXTENSIONS]
        for candidate in candidates:
            if candidate in self.name_set:
                return candidate
        for candidate in candidates:
            found = self.folded.get(candidate.lower())
            if found is not None:
                return found
        return None

    def listed_items(self) -> Iterator[ItemRecord]:
        """Items that a split list names and no XML describes: images without labels."""
        for root, voc_id, list_file, line in self.listed:
            key = self.find_image(f"{root}JPEGImages/", "", voc_id)
            if key is None:
                self.problems.add(
                    list_file,
                    f"{voc_id!r} has neither Annotations/{voc_id}.xml nor an image in JPEGImages/",
                    line=line,
                    code="missing_file",
                )
                continue
            yield ItemRecord(
                key=key,
                width=None,
                height=None,
                split=self.splits.get((root, voc_id), ""),
                source_ref=f"{list_file}:{line}",
                source_id=voc_id,
            )

    def read_items(self) -> None:
        for doc in self.docs:
            root = self.parse(doc, report=True)
            if root is None:
                doc.ok = False
                continue
            doc.convention = self.convention(doc, root)
            doc.item = self.item(doc, root)
            for obj in root.findall("object"):
                name_node = obj.find("name")
                if name_node is not None and name_node.text and name_node.text not in self.seen_set:
                    self.seen_set.add(name_node.text)
                    self.seen_names.append(name_node.text)

    def convention(self, doc: _Doc, root: _Node) -> str:
        """Which corner convention this file follows (the module docstring says how it is told)."""
        corners = [
            corner
            for obj in root.findall("object")
            for holder in (obj, *obj.findall("part"))
            for box in holder.findall("bndbox")
            for corner in box.children
        ]
        if any("." in c.text for c in corners):
            convention = ZERO_DECIMAL
        else:
            source = root.find("source")
            database = source.find("database") if source is not None else None
            roboflow = database is not None and "roboflow" in database.text.lower()
            zero = any(c.tag in ("xmin", "ymin") and _int_text(c) == 0 for c in corners)
            convention = ZERO_INTEGER if roboflow or zero else DEVKIT
        if convention != DEVKIT:
            self.adjusted.note(f"voc_{convention}", doc.xml, CONVENTION_MESSAGES[convention], line=root.line)
        return convention

    def item(self, doc: _Doc, root: _Node) -> ItemRecord | None:
        add = self.problems.add
        width = height = None
        size = root.find("size")
        if size is None:
            pass  # the image gives it, below
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
        folder = doc.root if doc.beside else f"{doc.root}JPEGImages/"
        key = self.find_image(folder, posixpath.basename(filename), doc.voc_id)
        if key is None:
            shown = filename or f"{doc.voc_id}.jpg"
            add(
                doc.xml,
                f"image {folder.removeprefix(doc.root)}{shown} is not in the delivery",
                line=(filename_node or root).line,
                code="missing_file",
            )
            return None
        if size is None:
            try:
                width, height = self.image_size(key)
            except FormatError as exc:
                self.problems.extend_problems(exc.problems)
            except Exception as exc:  # noqa: BLE001 - any failure to read the size is this image's problem
                add(key, f"cannot read the image size ({type(exc).__name__})", code="bad_image")
            else:
                self.adjusted.note(
                    "size_from_image", doc.xml, "no <size>: the image's own size was taken", line=root.line
                )
        attributes = {}
        segmented = root.find("segmented")
        if segmented is not None and _flag(segmented.text) is not None:
            attributes["segmented"] = _flag(segmented.text)
        split = self.splits.get((doc.root, doc.voc_id), "")
        if doc.beside and not split and doc.root:
            split = posixpath.basename(doc.root.rstrip("/"))  # Roboflow: train/, valid/, test/
        return ItemRecord(
            key=key,
            width=width,
            height=height,
            split=split,
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
        colours = {}
        for line in data.decode("utf-8", errors="replace").splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                fields = line.split(":")
                classes.append(fields[0].strip())
                rgb = fields[1].split(",") if len(fields) > 1 else []
                if len(rgb) == 3 and all(v.strip().isdigit() and int(v) < 256 for v in rgb):
                    colours.setdefault(tuple(int(v) for v in rgb), len(classes) - 1)
        if colours:
            self.label_colours[root] = colours
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
            self.declared = set(self.seen_names)
            return [CategoryDef(name=n) for n in self.seen_names]
        declared = [
            CategoryDef(name=n, source_id=i) for i, n in enumerate(order) if i > 0 and n in self.seen_set
        ]
        if labelmap is not None:
            # labelmap.txt declares the schema even for classes no object uses yet.
            declared = [CategoryDef(name=n, source_id=i) for i, n in enumerate(order) if i > 0]
        known = {c.name for c in declared}
        self.declared = known | set(self.seen_names)
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
        parts = []
        for part in node.findall("part"):
            part_name = part.find("name")
            box = self.bbox(doc, part)
            if box is not None:
                parts.append({"name": part_name.text if part_name is not None else "", "bbox": box})
        if parts:
            obj.attributes["parts"] = parts
        actions_node = node.find("actions")
        if actions_node is not None:
            actions = {}
            for action in actions_node.children:
                value = _flag(action.text)
                if value is None:
                    add(
                        doc.xml,
                        f"<{action.tag[:50]}> must be 0 or 1, not {action.text[:50]!r}",
                        line=action.line,
                    )
                else:
                    actions[action.tag] = value
            obj.attributes["actions"] = actions
        return obj

    def bbox(self, doc: _Doc, node: _Node) -> list | None:
        add = self.problems.add
        box = node.find("bndbox")
        if box is None:
            add(doc.xml, f"<{node.tag}> has no <bndbox>", line=node.line)
            return None
        width = doc.item.width if doc.item else None
        height = doc.item.height if doc.item else None
        devkit = doc.convention == DEVKIT
        first = 1 if devkit else 0
        values: dict[str, float] = {}
        ok = True
        for tag, limit in (("xmin", width), ("ymin", height), ("xmax", width), ("ymax", height)):
            corner = box.find(tag)
            if corner is None:
                add(doc.xml, f"<bndbox> has no <{tag}>", line=box.line)
                ok = False
                continue
            value = _number(corner) if doc.convention == ZERO_DECIMAL else _int_text(corner)
            if value is None:
                add(
                    doc.xml, f"<{tag}> must be a pixel coordinate, not {corner.text[:50]!r}", line=corner.line
                )
                ok = False
            elif value < first or (limit is not None and value > limit):
                bound = f"{first}..{limit}" if limit is not None else f">= {first}"
                rule = "VOC is 1-based" if devkit else "read as 0-based"
                add(
                    doc.xml,
                    f"<{tag}> {value} is outside the image ({bound}, {rule})",
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
        if not devkit:
            return [
                values["xmin"],
                values["ymin"],
                values["xmax"] - values["xmin"],
                values["ymax"] - values["ymin"],
            ]
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
        classes = (
            self.load_mask(class_png, item, self.label_colours.get(doc.root))
            if class_png in self.name_set
            else None
        )
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
                undeclared = class_name not in self.declared
                self.problems.add(
                    class_png,
                    f"instance {k} is mostly {class_name!r} here but <object> {k} is {object_name!r}"
                    + (
                        f"; {class_name!r} is not a class of this delivery, the XML's name is kept"
                        if undeclared
                        else ""
                    ),
                    code="mask_class_mismatch",
                )
                if undeclared:
                    class_name = None
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

    def load_mask(self, name: str, item: ItemRecord, colours=None) -> np.ndarray | None:
        try:
            arr = _load_palette_png(self.source, name, colours)
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


def read_voc(source: model.Source, *, image_size=None) -> Parsed:
    """Read a Pascal VOC delivery.

    A first pass reads every XML for the item records and the category names (the schema must
    be known before the first label); labels then stream, re-reading each XML rather than
    holding every object in memory.
    """
    problems = ProblemLog()
    reader = _Reader(source, problems, image_size)
    reader.discover()
    if not reader.docs:
        raise FormatError(
            [
                model.Problem(
                    file="",
                    message="no Annotations/*.xml nor VOC XML beside the images found",
                    code="missing_file",
                )
            ]
        )
    reader.read_items()
    reader.adjusted.flush_into(problems)
    categories = reader.categories()
    listed = list(reader.listed_items())
    return Parsed(
        format="voc",
        categories=categories,
        items=itertools.chain((d.item for d in reader.docs if d.item is not None), listed),
        labels=reader.labels(),
        problems=problems,
    )
