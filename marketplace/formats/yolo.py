"""Read YOLO labels (Ultralytics and darknet layouts) into the neutral model.

Layouts:

- Ultralytics: a ``data.yaml`` (or ``dataset.yaml``, or any top-level ``*.yaml`` with
  ``names``/``nc``) giving ``names`` (a list, or a dict index -> name with indices
  0..n-1), ``nc``, ``train``/``val``/``test`` (a folder of images, a ``.txt`` list of image
  paths, or a list of those; resolved inside the delivery relative to the YAML, and
  exports' ``../train/images`` or absolute paths are matched by their trailing
  components), and for pose ``kpt_shape: [K, 2|3]`` with an optional ``flip_idx``
  (a permutation of 0..K-1). The label of ``.../images/<split>/x.jpg`` is
  ``.../labels/<split>/x.txt`` (the last ``/images/`` replaced by ``/labels/``).
- darknet (CVAT's "YOLO 1.1"): ``obj.names`` (one name per line), ``obj.data``
  (``classes``, ``train``, ``valid``, ``names``), ``train.txt``/``valid.txt`` listing images,
  labels next to their image (``obj_train_data/x.jpg`` and ``obj_train_data/x.txt``); without
  lists or ``obj_<split>_data/`` folders, every image under ``images/`` (datumaro's layout).
- ``classes.txt`` (one name per line), as LabelImg writes it (``x.jpg`` beside ``x.txt``) and
  Label Studio's YOLO export (``images/x.jpg``, ``labels/x.txt``, ``notes.json``): every image
  of the delivery, its label beside it or under ``labels/``.
- DOTA ``labelTxt/`` (Roboflow's "YOLO OBB" export, DOTA itself): ``x1 y1 ... x4 y4 class
  [difficult]`` in pixels, one file per image (``images/x.png`` -> ``labelTxt/x.txt``), read as a
  4-point polygon with the attribute ``difficult``; ``imagesource:``/``gsd:`` header lines are
  skipped. Class names come from the ``data.yaml`` when there is one, else from the rows.

Rows: detect ``cls cx cy w h``; segment ``cls x1 y1 ... xn yn`` (3 points or more); pose
``cls cx cy w h`` then K keypoints of 2 or 3 values. All normalised to the image: pixels are
``x * width``, ``y * height``, with the image size from ``image_size(key) -> (w, h)``
(default: the header read by Pillow, limited to JPEG, PNG, BMP, WEBP and TIFF, with the
EXIF orientation applied to JPEGs as Ultralytics does). A box becomes
``[(cx - w/2) W, (cy - h/2) H, w W, h H]``. Keypoints with 2 values are visible (v=2)
unless a coordinate is negative (v=0), Ultralytics' rule.

Checks follow Ultralytics' ``verify_image_label``: a row is refused when a coordinate is
above 1.01 or any value below -0.01 (its 1% tolerance; values inside it are clamped to 0..1
and boxes clipped to the image, with a ``clipped`` problem if that moved an edge by more
than ``model.EDGE_TOLERANCE`` pixels), when its class is >= nc, or when the column count is
wrong (detect 5, pose 5 + K*D, segment an odd count of at least 7). As in Ultralytics, a
segment or OBB row (``cls x1 y1 ... x4 y4``) is range-checked on the box it spans (its points
may lie slightly outside 0..1, as in Ultralytics' own OBB sample data); the points are then
clamped to the image (``clipped``, a warning, when that moved one). Exact duplicate rows are
dropped with a ``duplicate_row`` problem (a warning: the first copy is kept). Images smaller
than 10 pixels or unreadable are refused with their labels.

Where we differ from Ultralytics, on purpose:

- every bad row is reported (with file and 1-based line) and the good rows of the file are
  kept; Ultralytics stops at the first error and drops the whole image;
- in a file that has segment rows, a 5-column row is read as the box it is (Roboflow writes
  such files) with a ``mixed_rows`` warning; Ultralytics reads it as a 2-point segment;
- the class must be a whole number, a pose row's box is range-checked like its keypoints,
  keypoint visibility must be 0, 1 or 2, and zero-size boxes are refused;
- duplicates are exact repeats of a row; Ultralytics compares segment rows by their
  bounding box, which drops distinct polygons that share one.
"""

from __future__ import annotations

import math
import posixpath
import re
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import yaml  # PyYAML arrives with drf-spectacular; read only through safe_yaml.
from PIL import Image

from . import model, safe_yaml
from .archive import MiB, ProblemLog
from .model import CategoryDef, FormatError, ItemRecord, LabelRecord, Parsed
from .policy import Adjustments
from .quoting import clip, quote

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
PIL_FORMATS = ("JPEG", "PNG", "BMP", "WEBP", "TIFF")
MIN_IMAGE_SIDE = 10  # Ultralytics refuses images under 10 pixels a side
TOLERANCE = 0.01  # Ultralytics accepts coordinates in [-0.01, 1.01]
MAX_YAML_BYTES = 1 * MiB
MAX_TEXT_BYTES = 64 * MiB
# Limits on what data.yaml and a label row may declare; each far above real datasets
# (ImageNet-21k has 21,841 classes, COCO-WholeBody 133 keypoints) and each keeping the work
# a hostile file can ask for proportional to its size.
MAX_CLASSES = 50_000
MAX_NAME_CHARS = 256
MAX_KEYPOINTS = 1_000
MAX_SHAPE_POINTS = 20_000  # points in one segment row (x y pairs)
MAX_ROW_VALUES = 1 + 2 * MAX_SHAPE_POINTS  # also bounds a pose row: 5 + K*3 <= 3,005
_SPLIT_KEYS = ("train", "val", "test")
_EXIF_ORIENTATION = 274

ImageSize = Callable[[str], tuple[int, int]]


def read_image_size(source: model.Source, key: str) -> tuple[int, int]:
    """(width, height) of an image as Ultralytics sees it, from its header only."""
    with source.open(key) as stream, warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(stream, formats=PIL_FORMATS) as img:
            width, height = img.size
            # Ultralytics normalises against the EXIF-rotated JPEG (exif_size), so must we.
            if img.format == "JPEG" and img.getexif().get(_EXIF_ORIENTATION) in (6, 8):
                width, height = height, width
            return width, height


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def label_key_for(image_key: str) -> str:
    """Ultralytics' img2label_paths: the last /images/ becomes /labels/, the suffix .txt."""
    path = "/" + image_key
    head, sep, tail = path.rpartition("/images/")
    if sep:
        path = head + "/labels/" + tail
    return posixpath.splitext(path)[0][1:] + ".txt"


def dota_label_for(label_key: str) -> str:
    """The DOTA label file standing where Ultralytics' would be: ``.../labels/x.txt`` -> ``.../labelTxt/x.txt``."""
    head, sep, tail = ("/" + label_key).rpartition("/labels/")
    return (head + "/labelTxt/" + tail)[1:] if sep else label_key


def is_dota(label_key: str) -> bool:
    return "/labelTxt/" in "/" + label_key


def _duplicates(names: list[str]) -> list[str]:
    """The names given more than once (at most 10 of them, each cut to 100 characters), in linear time."""
    counts = Counter(names)
    return sorted(n[:100] for n, k in counts.items() if k > 1)[:10]


def _read_text(
    source: model.Source, name: str, problems: ProblemLog, cap: int = MAX_TEXT_BYTES
) -> str | None:
    with source.open(name) as stream:
        data = stream.read(cap + 1)
    if len(data) > cap:
        problems.add(name, f"larger than {cap} bytes", code="too_large")
        return None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        problems.add(name, f"not UTF-8 text (byte {exc.start})", code="invalid")
        return None


@dataclass
class _Schema:
    names: list[str]
    kpt_shape: tuple[int, int] | None = None
    kpt_names: list[str] | None = None


@dataclass
class _Image:
    key: str
    split: str
    label: str | None  # label file key, if the delivery has it
    ref: str = ""


class _Layout:
    """Where things are: the images per split and the label file of each image."""

    def __init__(self, source: model.Source, problems: ProblemLog):
        self.source = source
        self.problems = problems
        self.names = source.names()
        self.name_set = set(self.names)
        self.dirs = {""}
        for n in self.names:
            parent = posixpath.dirname(n)
            while parent not in self.dirs:
                self.dirs.add(parent)
                parent = posixpath.dirname(parent)
        self.images: list[_Image] = []
        self.seen: dict[str, tuple[str, str]] = {}  # image key -> (split, where it was listed)
        self.entries: dict[str, str] = {}  # split entry (folder or list file) -> the first split naming it

    def is_dir(self, path: str) -> bool:
        return path.rstrip("/") in self.dirs

    def locate(self, base: str, path: str) -> str | None:
        """The name (file or folder) in the delivery that a path from a config file means."""
        path = path.replace("\\", "/").strip()
        parts = [p for p in posixpath.normpath(path).split("/") if p not in ("", ".", "..")]
        # Longest match first: "data/obj_train_data/x.jpg" is "obj_train_data/x.jpg" here.
        for i in range(len(parts)):
            candidate = posixpath.join(base, *parts[i:]) if base else posixpath.join(*parts[i:])
            if candidate in self.name_set or self.is_dir(candidate):
                return candidate
        if not parts and (not base or self.is_dir(base)):
            return base
        return None

    def add_image(
        self, key: str, split: str, where: str, label: str | None, *, line: int | None = None
    ) -> None:
        ref = f"{where}:{line}" if line else where
        if key in self.seen:
            first_split, first_ref = self.seen[key]
            if first_split != split:
                self.problems.add(
                    where,
                    f"{key!r} is in {split} and already in {first_split} ({first_ref})",
                    line=line,
                    code="split_conflict",
                )
            return
        self.seen[key] = (split, ref)
        if label is not None and label not in self.name_set:
            label = dota_label_for(label)  # Roboflow's OBB export: labelTxt/ where labels/ would be
        self.images.append(
            _Image(key=key, split=split, label=label if label in self.name_set else None, ref=ref)
        )

    def add_split(self, base: str, split: str, entry: str, where: str, line: int | None, label_of) -> None:
        found = self.locate(base, entry)
        if found is None:
            # Roboflow and others always write train/val/test: a split not delivered has no images.
            self.problems.add(
                where,
                f"{split} path {quote(entry)} is not in the delivery: no images from it",
                line=line,
                code="missing_split",
            )
            return
        first = self.entries.setdefault(found, split)
        if first != split:
            # "val: images/train" when there is no val set (Ultralytics needs one): not a conflict.
            self.problems.add(
                where,
                f"{split} names the same {quote(found or '.')} as {first}: its images stay in {first}",
                line=line,
                code="split_reused",
            )
            return
        if found in self.name_set and found.lower().endswith(".txt"):
            text = _read_text(self.source, found, self.problems)
            for lineno, row in enumerate((text or "").splitlines(), 1):
                row = row.strip()
                if not row:
                    continue
                # Ultralytics: "./x" is relative to the list file; anything else we match by
                # its trailing components (lists often hold the exporter's absolute paths).
                if row.startswith("./"):
                    key = self.locate(posixpath.dirname(found), row[2:])
                else:
                    key = self.locate(base, row)
                if key is None or key not in self.name_set:
                    self.problems.add(
                        found, f"image {quote(row)} is not in the delivery", line=lineno, code="missing_file"
                    )
                    continue
                self.add_image(key, split, found, label_of(key), line=lineno)
        elif found in self.name_set:
            if _is_image(found):
                self.add_image(found, split, where, label_of(found), line=line)
        else:
            prefix = found.rstrip("/") + "/" if found else ""
            for n in self.names:
                if n.startswith(prefix) and _is_image(n):
                    self.add_image(n, split, where, label_of(n), line=line)


def _darknet_label(layout: _Layout):
    def label_of(key: str) -> str:
        beside = posixpath.splitext(key)[0] + ".txt"
        return beside if beside in layout.name_set else label_key_for(key)

    return label_of


def _yaml_lines(text: str) -> dict[str, int]:
    """1-based line of each top-level key, for problem locations."""
    try:
        node = safe_yaml.compose(text)
    except yaml.YAMLError:
        return {}
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {str(k.value): k.start_mark.line + 1 for k, _ in node.value}


def _duplicates(names: list[str]) -> list[str]:
    """Names given more than once, sorted; linear (names.count in a loop was quadratic)."""
    seen: set[str] = set()
    dupes: set[str] = set()
    for n in names:
        (dupes if n in seen else seen).add(n)
    return sorted(dupes)


def _names_from(data: dict, name: str, lines: dict, problems: ProblemLog) -> list[str] | None:
    names, nc = data.get("names"), data.get("nc")
    if nc is not None and not (isinstance(nc, int) and not isinstance(nc, bool) and nc > 0):
        problems.add(name, f"nc must be a positive integer, not {quote(nc)}", line=lines.get("nc"))
        return None
    if nc is not None and nc > MAX_CLASSES:
        problems.add(
            name, f"nc is {nc}: at most {MAX_CLASSES} classes", line=lines.get("nc"), code="too_large"
        )
        return None
    if isinstance(names, (list, dict)) and len(names) > MAX_CLASSES:
        problems.add(
            name,
            f"{len(names)} names: at most {MAX_CLASSES} classes",
            line=lines.get("names"),
            code="too_large",
        )
        return None
    if names is None:
        if nc is None:
            problems.add(name, "needs 'names' (or 'nc')", code="missing_schema")
            return None
        return [f"class_{i}" for i in range(nc)]  # what Ultralytics does without names
    if isinstance(names, dict):
        try:
            by_index = {int(k): v for k, v in names.items()}
        except (TypeError, ValueError):
            problems.add(name, "names keys must be class indices", line=lines.get("names"))
            return None
        if sorted(by_index) != list(range(len(by_index))):
            problems.add(
                name,
                f"names indices must be 0..{len(by_index) - 1}, got {quote(sorted(by_index))}",
                line=lines.get("names"),
            )
            return None
        names = [by_index[i] for i in range(len(by_index))]
    if not (isinstance(names, list) and names and all(isinstance(n, (str, int)) for n in names)):
        problems.add(
            name, "names must be a list of class names or a dict index -> name", line=lines.get("names")
        )
        return None
    names = [str(n) for n in names]
    too_long = next((n for n in names if len(n) > MAX_NAME_CHARS), None)
    if too_long is not None:
        problems.add(
            name,
            f"class name {clip(too_long, 40)!r} is longer than {MAX_NAME_CHARS} characters",
            line=lines.get("names"),
            code="too_large",
        )
        return None
    if nc is not None and nc != len(names):
        problems.add(name, f"nc is {nc} but {len(names)} names are given", line=lines.get("nc"))
        return None
    dupes = _duplicates(names)
    if dupes:
        problems.add(
            name, f"duplicate class names {quote(dupes)}", line=lines.get("names"), code="duplicate_name"
        )
        return None
    return names


def _read_ultralytics(layout: _Layout, name: str, problems: ProblemLog) -> _Schema:
    text = _read_text(layout.source, name, problems, MAX_YAML_BYTES)
    if text is None:
        raise FormatError(list(problems))
    try:
        data = safe_yaml.load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        code = "unsafe_yaml" if isinstance(exc, safe_yaml.UnsafeYAML) else "invalid"
        raise FormatError(
            [
                model.Problem(
                    file=name,
                    message=f"invalid YAML: {clip(str(exc), 300)}",
                    line=mark.line + 1 if mark else None,
                    code=code,
                )
            ]
        ) from None
    if not isinstance(data, dict):
        raise FormatError([model.Problem(file=name, message="data.yaml must be a mapping")])
    lines = _yaml_lines(text)
    names = _names_from(data, name, lines, problems)
    if names is None:
        raise FormatError(list(problems))
    schema = _Schema(names=names)
    kpt = data.get("kpt_shape")
    if kpt is not None:
        if (
            isinstance(kpt, list)
            and len(kpt) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) for v in kpt)
            and 0 < kpt[0] <= MAX_KEYPOINTS
            and kpt[1] in (2, 3)
        ):
            schema.kpt_shape = (kpt[0], kpt[1])
        else:
            raise FormatError(
                [
                    model.Problem(
                        file=name,
                        message=f"kpt_shape must be [K, 2 or 3] with K at most {MAX_KEYPOINTS}, not {quote(kpt)}",
                        line=lines.get("kpt_shape"),
                    )
                ]
            )
        flip = data.get("flip_idx")
        if flip is not None and not (isinstance(flip, list) and sorted(flip) == list(range(kpt[0]))):
            problems.add(
                name, f"flip_idx must be a permutation of 0..{kpt[0] - 1}", line=lines.get("flip_idx")
            )
        kpt_names = data.get("kpt_names")
        if isinstance(kpt_names, dict) and kpt_names:
            kpt_names = next(iter(kpt_names.values()))  # {class: [names]}: one skeleton for all
        if isinstance(kpt_names, list) and len(kpt_names) == kpt[0]:
            schema.kpt_names = [str(k) for k in kpt_names]
    base = posixpath.dirname(name)
    root = data.get("path")
    if isinstance(root, str) and root and not root.startswith(("/", "..")):
        # A relative `path` inside the delivery is honoured; an absolute one (or "../x")
        # names the exporter's disk, not ours, and the split paths are matched without it.
        joined = posixpath.normpath(posixpath.join(base, root))
        joined = "" if joined == "." else joined
        if layout.is_dir(joined):
            base = joined
    declared = False
    for split in _SPLIT_KEYS:
        value = data.get(split)
        if value is None:
            continue
        declared = True
        for entry in value if isinstance(value, list) else [value]:
            if isinstance(entry, str):
                layout.add_split(base, split, entry, name, lines.get(split), label_key_for)
            else:
                problems.add(name, f"{split} must be a path or a list of paths", line=lines.get(split))
    if not declared:
        _fallback_images(layout, label_key_for)
    return schema


def _fallback_images(layout: _Layout, label_of) -> None:
    """No split declared: every image under an images/ folder; the folder below it is the split."""
    for n in layout.names:
        if not _is_image(n):
            continue
        parts = n.split("/")
        if "images" in parts[:-1]:
            i = len(parts) - 2 - parts[:-1][::-1].index("images")
            split = parts[i + 1] if i + 2 < len(parts) else ""
            layout.add_image(n, split, n, label_of(n))


def _read_darknet(
    layout: _Layout, names_file: str | None, data_file: str | None, problems: ProblemLog
) -> _Schema:
    base = posixpath.dirname(names_file or data_file or "")
    config: dict[str, tuple[str, int]] = {}
    if data_file:
        for lineno, row in enumerate((_read_text(layout.source, data_file, problems) or "").splitlines(), 1):
            key, sep, value = row.partition("=")
            if sep:
                config[key.strip()] = (value.strip(), lineno)
        if names_file is None and "names" in config:
            names_file = layout.locate(base, config["names"][0])
    if names_file is None:
        raise FormatError(
            [model.Problem(file=data_file or "", message="no obj.names", code="missing_schema")]
        )
    names = [
        n.strip() for n in (_read_text(layout.source, names_file, problems) or "").splitlines() if n.strip()
    ]
    if not names:
        raise FormatError([model.Problem(file=names_file, message="no class names", code="missing_schema")])
    dupes = _duplicates(names)
    if dupes:
        problems.add(names_file, f"duplicate class names {quote(dupes)}", code="duplicate_name")
    if "classes" in config:
        value, lineno = config["classes"]
        if value != str(len(names)):
            problems.add(data_file, f"classes = {value} but {names_file} has {len(names)} names", line=lineno)
    label_of = _darknet_label(layout)
    declared = False
    for split, keys in (("train", ("train",)), ("val", ("valid", "val")), ("test", ("test",))):
        for key in keys:
            if key in config:
                value, lineno = config[key]
                layout.add_split(base, split, value, data_file, lineno, label_of)
                declared = True
                break
        else:
            for candidate in (f"{split}.txt", "valid.txt" if split == "val" else None):
                if candidate and posixpath.join(base, candidate) in layout.name_set:
                    layout.add_split(base, split, candidate, posixpath.join(base, candidate), None, label_of)
                    declared = True
                    break
    if not declared:
        for n in layout.names:
            m = re.search(r"(?:^|/)obj_(?P<split>[^/]+)_data/", n)
            if m and _is_image(n):
                split = {"valid": "val", "validation": "val"}.get(m.group("split"), m.group("split"))
                layout.add_image(n, split, n, label_of(n))
    if not layout.images:
        _fallback_images(layout, label_of)  # datumaro: obj.names with images/<split>/, labels/<split>/
    return _Schema(names=names)


def _all_images(layout: _Layout, label_of) -> None:
    """Every image; the folder below an ``images/`` folder, if any, is its split."""
    _fallback_images(layout, label_of)
    for n in layout.names:
        if _is_image(n) and n not in layout.seen:
            layout.add_image(n, "", n, label_of(n))


def _read_classes_txt(layout: _Layout, classes_file: str, problems: ProblemLog) -> _Schema:
    """LabelImg's and Label Studio's YOLO layout: ``classes.txt``, labels beside or under labels/."""
    names = [
        n.strip() for n in (_read_text(layout.source, classes_file, problems) or "").splitlines() if n.strip()
    ]
    if not names:
        raise FormatError([model.Problem(file=classes_file, message="no class names", code="missing_schema")])
    dupes = _duplicates(names)
    if dupes:
        problems.add(classes_file, f"duplicate class names {dupes}", code="duplicate_name")
    _all_images(layout, _darknet_label(layout))
    return _Schema(names=names)


_DOTA_HEADER = re.compile(r"^\s*(imagesource|gsd)\s*:", re.IGNORECASE)


def _dota_rows(text: str) -> Iterator[tuple[int, list[str]]]:
    """(line, tokens) of each DOTA row, header lines and blank lines skipped."""
    for lineno, line in enumerate(text.splitlines(), 1):
        tokens = line.split()
        if tokens and not _DOTA_HEADER.match(line):
            yield lineno, tokens


def _read_dota(layout: _Layout, problems: ProblemLog) -> _Schema:
    """DOTA without a data.yaml: class names from the rows, in order of first use."""
    names: dict[str, None] = {}
    for n in layout.names:
        if is_dota(n) and n.endswith(".txt"):
            for _, tokens in _dota_rows(_read_text(layout.source, n, problems) or ""):
                if len(tokens) in (9, 10):
                    names.setdefault(tokens[8])
    if not names:
        raise FormatError(
            [model.Problem(file="", message="no class names in labelTxt/", code="missing_schema")]
        )

    def label_of(key: str) -> str:
        return dota_label_for(label_key_for(key))

    _all_images(layout, label_of)
    return _Schema(names=list(names))


def _shallowest(names: list[str], pattern: str) -> str | None:
    found = [n for n in names if re.fullmatch(pattern, n)]
    return min(found, key=lambda n: (n.count("/"), n)) if found else None


class _Reader:
    def __init__(
        self, source: model.Source, layout: _Layout, schema: _Schema, image_size: ImageSize, problems
    ):
        self.source = source
        self.layout = layout
        self.schema = schema
        self.image_size = image_size
        self.problems = problems
        self.adjusted = Adjustments()
        self.sizes: dict[str, tuple[int, int] | None] = {}

    def size(self, key: str) -> tuple[int, int] | None:
        if key not in self.sizes:
            try:
                width, height = self.image_size(key)
            except FormatError as exc:
                self.problems.extend_problems(exc.problems)
                self.sizes[key] = None
                return None
            except Exception as exc:  # noqa: BLE001 - the caller's callable: any failure is this image's problem
                self.problems.add(
                    key, f"cannot read the image size ({exc}); its labels are skipped", code="bad_image"
                )
                self.sizes[key] = None
                return None
            if width < MIN_IMAGE_SIDE or height < MIN_IMAGE_SIDE:
                self.problems.add(
                    key, f"image is {width}x{height}, under {MIN_IMAGE_SIDE} pixels a side", code="bad_image"
                )
                self.sizes[key] = None
            else:
                self.sizes[key] = (int(width), int(height))
        return self.sizes[key]

    def items(self) -> Iterator[ItemRecord]:
        for img in self.layout.images:
            size = self.size(img.key)
            if size is None:
                continue
            yield ItemRecord(
                key=img.key,
                width=size[0],
                height=size[1],
                split=img.split,
                source_ref=img.ref,
            )

    def labels(self) -> Iterator[LabelRecord]:
        for img in self.layout.images:
            if img.label is None or self.size(img.key) is None:
                continue
            yield from self.read_label_file(img)
        self.adjusted.flush_into(self.problems)

    def read_label_file(self, img: _Image) -> Iterator[LabelRecord]:
        name = img.label
        text = _read_text(self.source, name, self.problems)
        if text is None:
            return
        if is_dota(name):
            yield from self.read_dota_file(img, name, text)
            return
        rows: list[tuple[int, list[float]]] = []
        for lineno, line in enumerate(text.splitlines(), 1):
            tokens = line.split()
            if not tokens:
                continue
            if len(tokens) > MAX_ROW_VALUES:
                self.problems.add(
                    name,
                    f"{len(tokens)} values in one row: at most {MAX_ROW_VALUES} ({MAX_SHAPE_POINTS} points)",
                    line=lineno,
                    code="too_large",
                )
                continue
            try:
                values = [float(t) for t in tokens]
            except ValueError:
                self.problems.add(name, f"not a number in {quote(line.strip(), 120)}", line=lineno)
                continue
            if not all(math.isfinite(v) for v in values):
                self.problems.add(name, "values must be finite numbers", line=lineno)
                continue
            rows.append((lineno, values))
        pose = self.schema.kpt_shape
        segment_file = pose is None and any(len(v) > 6 for _, v in rows)
        seen: dict[tuple, int] = {}
        for lineno, values in rows:
            key = tuple(values)
            if key in seen:
                self.problems.add(
                    name, f"duplicate of line {seen[key]}; dropped", line=lineno, code="duplicate_row"
                )
                continue
            seen[key] = lineno
            label = self.row(img, name, lineno, values, segment_file)
            if label is not None:
                yield label

    def row(
        self, img: _Image, name: str, lineno: int, values: list[float], segment_file: bool
    ) -> LabelRecord | None:
        add = self.problems.add
        pose = self.schema.kpt_shape
        n = len(values)
        if pose is not None:
            expected = 5 + pose[0] * pose[1]
            if n != expected:
                add(
                    name,
                    f"pose rows need {expected} columns (5 + {pose[0]}x{pose[1]}), found {n}",
                    line=lineno,
                )
                return None
        elif segment_file and n == 5:
            self.adjusted.note(
                "mixed_rows",
                name,
                "box rows in a file of segment rows read as boxes (Ultralytics reads them as 2-point segments)",
                line=lineno,
            )
            segment_file = False
        elif segment_file:
            if n < 7 or n % 2 == 0:
                add(
                    name, f"segment rows need a class and 3 or more x y pairs, found {n} columns", line=lineno
                )
                return None
        elif n != 5:
            add(name, f"labels require 5 columns, {n} columns detected", line=lineno)
            return None
        ok = True
        cls = values[0]
        nc = len(self.schema.names)
        if not cls.is_integer() or cls < 0:
            add(name, f"class must be a non-negative whole number, not {cls:g}", line=lineno)
            ok = False
        elif cls >= nc:
            add(name, f"class {int(cls)} exceeds the dataset's class count {nc} (0-{nc - 1})", line=lineno)
            ok = False
        coords = values[1:]
        if pose is not None:
            kp = values[5:]
            points = values[1:5] + [v for i, v in enumerate(kp) if i % pose[1] < 2]
        elif segment_file:
            # Ultralytics checks the box a segment (or OBB) spans, not its points.
            xs, ys = coords[0::2], coords[1::2]
            w, h = max(xs) - min(xs), max(ys) - min(ys)
            points = [min(xs) + w / 2, min(ys) + h / 2, w, h]
        else:
            points = coords
        over = [v for v in points if v > 1 + TOLERANCE]
        if over:
            add(name, f"non-normalized or out of bounds coordinates {over}", line=lineno)
            ok = False
        under = [v for v in (points if segment_file else coords) if v < -TOLERANCE]
        if under:
            add(name, f"negative coordinates {under}", line=lineno)
            ok = False
        if not ok:
            return None
        width, height = self.sizes[img.key]
        category = self.schema.names[int(cls)]
        ref = f"{name}:{lineno}"
        if pose is None and segment_file:
            ring = []
            for i in range(0, len(coords), 2):
                ring += [_px(coords[i], width), _px(coords[i + 1], height)]
            moved = max(
                max(abs(coords[i] * width - ring[i]), abs(coords[i + 1] * height - ring[i + 1]))
                for i in range(0, len(coords), 2)
            )
            if moved > model.EDGE_TOLERANCE:
                add(
                    name,
                    f"a point {moved:.1f} px beyond the image; clamped to it",
                    line=lineno,
                    code="clipped",
                )
            geometry, geometry_type = {"polygons": [ring]}, model.POLYGON
        else:
            bbox = self.box(name, lineno, coords[:4], width, height)
            if bbox is None:
                return None
            geometry, geometry_type = {"bbox": bbox}, model.BBOX
            if pose is not None:
                keypoints = self.keypoints(name, lineno, values[5:], pose, width, height)
                if keypoints is None:
                    return None
                geometry["keypoints"] = keypoints
                geometry_type = model.KEYPOINTS
        errors = model.validate_geometry(geometry_type, geometry, width, height)
        for e in errors:
            add(name, e, line=lineno, code="invalid_geometry")
        if errors:
            return None
        return LabelRecord(
            item_key=img.key,
            category=category,
            geometry_type=geometry_type,
            geometry=geometry,
            source_ref=ref,
            source_id=lineno,
        )

    def read_dota_file(self, img: _Image, name: str, text: str) -> Iterator[LabelRecord]:
        """DOTA rows: ``x1 y1 x2 y2 x3 y3 x4 y4 class [difficult]`` in pixels."""
        add = self.problems.add
        width, height = self.sizes[img.key]
        index = {n: i for i, n in enumerate(self.schema.names)}
        seen: dict[tuple, int] = {}
        for lineno, tokens in _dota_rows(text):
            if len(tokens) not in (9, 10):
                add(
                    name,
                    f"DOTA rows need 8 coordinates, a class and a difficulty, found {len(tokens)} columns",
                    line=lineno,
                )
                continue
            try:
                ring = [float(t) for t in tokens[:8]]
            except ValueError:
                add(name, "the 8 coordinates must be numbers", line=lineno)
                continue
            if not all(math.isfinite(v) for v in ring):
                add(name, "values must be finite numbers", line=lineno)
                continue
            category = tokens[8]
            if category not in index:
                add(
                    name,
                    f"class {category[:100]!r} is not in the class names",
                    line=lineno,
                    code="unknown_category",
                )
                continue
            difficult = tokens[9] if len(tokens) == 10 else "0"
            if difficult not in ("0", "1"):
                add(name, f"difficulty must be 0 or 1, not {difficult[:20]!r}", line=lineno)
                continue
            key = tuple(tokens)
            if key in seen:
                add(name, f"duplicate of line {seen[key]}; dropped", line=lineno, code="duplicate_row")
                continue
            seen[key] = lineno
            geometry = {"polygons": [ring]}
            errors = model.validate_geometry(model.POLYGON, geometry, width, height)
            for e in errors:
                add(name, e, line=lineno, code="invalid_geometry")
            if errors:
                continue
            yield LabelRecord(
                item_key=img.key,
                category=category,
                geometry_type=model.POLYGON,
                geometry=geometry,
                attributes={"difficult": difficult == "1"},
                source_ref=f"{name}:{lineno}",
                source_id=lineno,
            )

    def box(self, name: str, lineno: int, box: list[float], width: int, height: int) -> list[float] | None:
        cx, cy, w, h = box
        x1, y1 = (cx - w / 2) * width, (cy - h / 2) * height
        x2, y2 = (cx + w / 2) * width, (cy + h / 2) * height
        cx1, cy1 = min(max(x1, 0.0), width), min(max(y1, 0.0), height)
        cx2, cy2 = min(max(x2, 0.0), width), min(max(y2, 0.0), height)
        moved = max(abs(cx1 - x1), abs(cy1 - y1), abs(cx2 - x2), abs(cy2 - y2))
        if moved > model.EDGE_TOLERANCE:
            self.problems.add(
                name,
                f"box extends {moved:.1f} px beyond the image; clipped to it",
                line=lineno,
                code="clipped",
            )
        return [round(cx1, 6), round(cy1, 6), round(cx2 - cx1, 6), round(cy2 - cy1, 6)]

    def keypoints(
        self, name: str, lineno: int, values: list[float], pose: tuple[int, int], width: int, height: int
    ) -> list[float] | None:
        k, dims = pose
        out: list[float] = []
        for i in range(k):
            x, y = values[i * dims], values[i * dims + 1]
            if dims == 3:
                v = values[i * dims + 2]
                if v not in (0, 1, 2):
                    self.problems.add(
                        name, f"keypoint {i} visibility must be 0, 1 or 2, not {v:g}", line=lineno
                    )
                    return None
            else:
                v = 0 if x < 0 or y < 0 else 2
            out += [_px(x, width), _px(y, height), int(v)]
        return out


def _px(value: float, size: int) -> float:
    """Normalised to pixels, clamping what Ultralytics' 1% tolerance let through."""
    return round(min(max(value, 0.0), 1.0) * size, 6)


def read_yolo(source: model.Source, *, image_size: ImageSize | None = None) -> Parsed:
    """Read an Ultralytics or darknet YOLO delivery; labels stream one label file at a time."""
    problems = ProblemLog()
    layout = _Layout(source, problems)
    names = layout.names
    yaml_file = (
        _shallowest(names, r"(?:[^/]+/)?data\.ya?ml")
        or _shallowest(names, r"(?:[^/]+/)?dataset\.ya?ml")
        or _shallowest(names, r"[^/]+\.ya?ml")
    )
    names_file = _shallowest(names, r"(?:.*/)?obj\.names")
    data_file = _shallowest(names, r"(?:.*/)?obj\.data")
    classes_file = _shallowest(names, r"(?:.*/)?classes\.txt")
    if yaml_file is not None:
        schema = _read_ultralytics(layout, yaml_file, problems)
        fmt = "yolo"
    elif names_file or data_file:
        schema = _read_darknet(layout, names_file, data_file, problems)
        fmt = "yolo_darknet"
    elif classes_file:
        schema = _read_classes_txt(layout, classes_file, problems)
        fmt = "yolo"
    elif any(is_dota(n) for n in names):
        schema = _read_dota(layout, problems)
        fmt = "yolo"
    else:
        raise FormatError(
            [
                model.Problem(
                    file="",
                    message="no data.yaml, obj.names, classes.txt or labelTxt/ found",
                    code="missing_schema",
                )
            ]
        )
    listed = {img.label for img in layout.images if img.label}
    for n in names:
        if ("/labels/" in "/" + n or is_dota(n)) and n.endswith(".txt") and n not in listed:
            problems.add(n, "label file has no image", code="orphan_label")
    keypoint_names = []
    if schema.kpt_shape is not None:
        keypoint_names = schema.kpt_names or [str(i) for i in range(schema.kpt_shape[0])]
    categories = [
        CategoryDef(name=n, source_id=i, keypoints=list(keypoint_names)) for i, n in enumerate(schema.names)
    ]
    reader = _Reader(
        source, layout, schema, image_size or (lambda key: read_image_size(source, key)), problems
    )
    return Parsed(
        format=fmt, categories=categories, items=reader.items(), labels=reader.labels(), problems=problems
    )
