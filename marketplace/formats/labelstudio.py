"""Reader for Label Studio's JSON export (a list of tasks) of image annotation projects.

The export is read one task at a time (the top-level list is split incrementally, each task
parsed with the standard library), so a large export never sits in memory. ``items`` and
``labels`` each read the file again; without a ``label_config.xml`` in the delivery the
categories come from one more pass over the results. Problems are reported once, located by
JSON pointer (``/0/annotations/1/result/2/value/x``), at most 1000.

Items. A task's image is ``data["image"]``, or the first string value of ``data``. References
such as ``/data/upload/1/3f2a1b9c-abc.jpg``, ``/data/local-files/?d=set/abc.jpg``,
``s3://bucket/set/abc.jpg`` or ``/image1`` are looked up among the delivery's files by
basename, then (when the basename is ambiguous) by the longest matching path suffix, then with
Label Studio's 8-hex-digit upload prefix removed, then -- for a reference without an extension
-- by the image's name without extension. A task whose image is not delivered is a problem and
its labels are skipped. The item's size is the results' ``original_width``/``original_height``.

Labels. Coordinates are percentages of ``original_width``/``original_height``; a pixel value
is ``percent * original_size / 100``.

- ``rectanglelabels``: bbox ``[x, y, width, height]``; with a non-zero ``rotation`` (degrees,
  clockwise, about the top-left corner ``(x, y)`` -- Label Studio's stored anchor, see its
  "Object Detection with Bounding Boxes" template docs) a polygon of the four rotated corners,
  the angle kept as the ``rotation`` attribute.
- ``polygonlabels``: polygon; ``keypointlabels``: a keypoints label with one point, ``v=2``;
  ``choices``: one classification per choice; ``brushlabels`` with ``format: "rle"``: Label
  Studio's own brush RLE (label-studio-converter ``brush.decode_rle``: a bit stream of RGBA
  bytes, the mask being the alpha channel) -> full-image compressed COCO RLE.
- A result naming several labels gives one label per name. Other result types are reported
  (``unsupported_result``) and skipped.

Provenance. An annotation's ``completed_by`` (an id, or a user object with ``id``) becomes
the pseudonym ``ls-user-<id>`` -- an e-mail address is never read; ``created_at`` and
``updated_at`` become ``made_at``/``updated_at``. A result whose ``origin`` is ``prediction``
or ``prediction-changed`` has source ``model`` (``model_version`` from the prediction it came
from). Task ``predictions`` become candidate labels with source ``model`` and their
``model_version``. ``lead_time``, ``ground_truth``, ``from_name`` and a prediction's ``score``
are kept as attributes. ``uid`` and ``source_id`` are ``"<annotation id>:<result id>"``
(``"prediction-<id>:<result id>"`` for predictions), ``"#<n>"`` appended when one result names
several labels.

Final or candidate. Cancelled annotations (``was_cancelled``) are skipped, with an info-level
problem ``skipped_cancelled``. Of the others:

- the annotation marked ``ground_truth: true`` is final (``is_final=True``), every other
  annotation's labels are candidates (``is_final=False``);
- with no ground truth and exactly one annotation, its labels are final;
- with no ground truth and several annotations, all are candidates: the consensus step
  elsewhere makes the final labels. Several ground truths are a problem and all are candidates.
- predictions are always candidates.
"""

from __future__ import annotations

import codecs
import copy
import dataclasses
import json
import math
import posixpath
import re
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError, fromstring
from pycocotools import mask as mask_utils

from . import model, strict_json
from .provenance import parse_timestamp

FORMAT = "labelstudio_json"
MAX_PROBLEMS = 1000
MAX_TASK_CHARS = 256 * 1024 * 1024  # one task, brush masks included
MAX_CONFIG_BYTES = 1024 * 1024
# A brush mask is decoded onto a full-image canvas: refuse what Pillow itself would refuse as a
# decompression bomb (its default MAX_IMAGE_PIXELS).
MAX_MASK_PIXELS = 89_478_485
READ_CHUNK = 1024 * 1024

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif")
_UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-(.+)$")

# Result type -> the geometry type it gives; the value key listing its label names is the type.
RESULT_TYPES = {
    "rectanglelabels": model.BBOX,
    "polygonlabels": model.POLYGON,
    "keypointlabels": model.KEYPOINTS,
    "brushlabels": model.MASK,
    "choices": model.CLASSIFICATION,
}
# Label config control tag (lower case) -> the geometry type of the labels it declares.
CONTROL_TAGS = {
    "rectanglelabels": model.BBOX,
    "polygonlabels": model.POLYGON,
    "keypointlabels": model.KEYPOINTS,
    "brushlabels": model.MASK,
    "choices": model.CLASSIFICATION,
    "labels": None,
    "ellipselabels": None,
}
ORIGINS = {"manual": model.HUMAN, "prediction": model.MODEL, "prediction-changed": model.MODEL}


def read_labelstudio(source: model.Source, *, json_name: str | None = None) -> model.Parsed:
    """Read a Label Studio JSON export into the neutral model, streaming items and labels."""
    name = json_name or _find_export(source)
    problems: list[model.Problem] = []
    log = _ProblemLog(problems)
    config_name = _find_config(source)
    categories = _read_label_config(source, config_name, log) if config_name else None
    declared = categories is not None
    if categories is None:
        categories = _categories_from_results(source, name, log)
    images = _ImageIndex([n for n in source.names() if n not in (name, config_name)])
    reader = _TaskReader(name, images, {c.name for c in categories} if declared else None, log)
    return model.Parsed(
        format=FORMAT,
        categories=categories,
        items=_iter_items(source, reader),
        labels=_iter_labels(source, reader),
        problems=problems,
    )


# --- problems and files -----------------------------------------------------------------------


class _ProblemLog:
    """Collects problems: at most MAX_PROBLEMS, each reported once however many passes see it."""

    # Recoverable deviations reported once, at their first place, with how many times they happened.
    COLLAPSED = frozenset({"model_name_from_version", "skipped_relation"})

    def __init__(self, sink: list[model.Problem]):
        self.sink = sink
        self.seen: set[tuple] = set()
        self.full = False
        self.collapsed: dict[str, list] = {}  # code -> [index in sink, count, first message]

    def add(
        self,
        file: str,
        message: str,
        *,
        pointer: str | None = None,
        line: int | None = None,
        code: str = "invalid",
    ) -> None:
        key = (file, pointer, line, code, message)
        if key in self.seen:
            return
        if code in self.collapsed:
            self.seen.add(key)
            entry = self.collapsed[code]
            entry[1] += 1
            first = self.sink[entry[0]]
            self.sink[entry[0]] = model.Problem(
                first.file,
                f"{entry[2]} ({entry[1]} times; the first is located here)",
                pointer=first.pointer,
                line=first.line,
                code=code,
            )
            return
        if code in self.COLLAPSED and len(self.sink) < MAX_PROBLEMS:
            self.collapsed[code] = [len(self.sink), 1, message]
        if len(self.sink) >= MAX_PROBLEMS:
            if not self.full:
                self.full = True
                message = f"more than {MAX_PROBLEMS} problems; the rest are not listed"
                self.sink.append(model.Problem(file, message, code="too_many_problems"))
            return
        self.seen.add(key)
        self.sink.append(model.Problem(file, message, line=line, pointer=pointer, code=code))


def _pointer(*parts) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def _find_export(source: model.Source) -> str:
    names = [n for n in source.names() if n.lower().endswith(".json")]
    if len(names) > 1:
        names = [n for n in names if "/" not in n] or names
    if len(names) != 1:
        found = ", ".join(sorted(names)[:5]) or "none"
        problem = model.Problem(
            "", f"cannot tell which JSON file is the export (found: {found})", code="missing_file"
        )
        raise model.FormatError([problem])
    return names[0]


def _find_config(source: model.Source) -> str | None:
    names = sorted(
        (n for n in source.names() if posixpath.basename(n) == "label_config.xml"), key=lambda n: n.count("/")
    )
    return names[0] if names else None


# --- label config -----------------------------------------------------------------------------


def _read_label_config(source: model.Source, name: str, log: _ProblemLog) -> list[model.CategoryDef] | None:
    """Categories declared by the labelling config's <Label> and <Choice> tags (None if unreadable)."""
    with source.open(name) as stream:
        data = stream.read(MAX_CONFIG_BYTES + 1)
    if len(data) > MAX_CONFIG_BYTES:
        log.add(name, f"label config is larger than {MAX_CONFIG_BYTES} bytes; ignored", code="too_large")
        return None
    try:
        root = fromstring(data)
    except DefusedXmlException as exc:
        log.add(name, f"refused unsafe XML ({type(exc).__name__}); config ignored", code="unsafe_xml")
        return None
    except ParseError as exc:
        log.add(name, f"malformed XML: {exc}; config ignored", line=exc.position[0], code="xml_syntax")
        return None
    categories: dict[str, model.CategoryDef] = {}
    for control in root.iter():
        tag = str(control.tag).lower()
        if tag not in CONTROL_TAGS:
            continue
        geometry = CONTROL_TAGS[tag]
        for option in control.iter():
            if str(option.tag).lower() not in ("label", "choice") or not option.get("value"):
                continue
            category = categories.setdefault(option.get("value"), model.CategoryDef(name=option.get("value")))
            if geometry and geometry not in category.geometry_types:
                category.geometry_types.append(geometry)
            if geometry == model.KEYPOINTS and not category.keypoints:
                category.keypoints = [category.name]
            category.color = category.color or option.get("background", "")
    if not categories:
        log.add(
            name, "label config declares no labels; categories are taken from the results", code="no_schema"
        )
        return None
    return list(categories.values())


def _categories_from_results(source: model.Source, name: str, log: _ProblemLog) -> list[model.CategoryDef]:
    found: dict[str, model.CategoryDef] = {}
    for _, task in _iter_tasks(source, name, log):
        if not isinstance(task, dict):
            continue
        for key in ("annotations", "predictions"):
            entries = task.get(key)
            for entry in entries if isinstance(entries, list) else []:
                results = entry.get("result") if isinstance(entry, dict) else None
                for result in results if isinstance(results, list) else []:
                    kind = result.get("type") if isinstance(result, dict) else None
                    value = result.get("value") if isinstance(kind, str) and kind in RESULT_TYPES else None
                    names = value.get(kind) if isinstance(value, dict) else None
                    for label in names if isinstance(names, list) else []:
                        if not isinstance(label, str):
                            continue
                        category = found.setdefault(label, model.CategoryDef(name=label))
                        if RESULT_TYPES[kind] not in category.geometry_types:
                            category.geometry_types.append(RESULT_TYPES[kind])
                        if kind == "keypointlabels" and not category.keypoints:
                            category.keypoints = [label]
    return list(found.values())


# --- streaming the task list ------------------------------------------------------------------


def _iter_tasks(source: model.Source, name: str, log: _ProblemLog) -> Iterator[tuple[int, object]]:
    """(index, task) for each element of the export's top-level list, parsed one at a time."""
    decoder = strict_json.decoder()  # NaN, Infinity, 1e400 refused as they are parsed
    text = codecs.getincrementaldecoder("utf-8-sig")()
    with source.open(name) as stream:
        buffer, pos, line_base, eof = "", 0, 1, False
        want = READ_CHUNK

        def more() -> bool:
            nonlocal buffer, pos, line_base, eof, want
            if eof:
                return False
            if pos > READ_CHUNK:  # drop what has been parsed, keeping line numbers right
                line_base += buffer.count("\n", 0, pos)
                buffer, pos = buffer[pos:], 0
            raw = stream.read(want)
            try:
                buffer += text.decode(raw, final=not raw)
            except UnicodeDecodeError as exc:
                log.add(name, f"not UTF-8: {exc}", line=line_base + buffer.count("\n"), code="json_syntax")
                eof = True
                return False
            eof = not raw
            return bool(raw)

        def skip_space() -> str:
            """The next non-blank character ('' at the end of the file)."""
            nonlocal pos
            while True:
                while pos < len(buffer) and buffer[pos] in " \t\r\n":
                    pos += 1
                if pos < len(buffer):
                    return buffer[pos]
                if not more():
                    return ""

        def line() -> int:
            return line_base + buffer.count("\n", 0, pos)

        if skip_space() != "[":
            log.add(name, "a Label Studio JSON export is a list of tasks", line=line(), code="json_syntax")
            return
        pos += 1
        index = 0
        while True:
            head = skip_space()
            if head == "]" and index == 0:
                break
            if index > 0:
                if head == "]":
                    break
                if head != ",":
                    log.add(name, "expected ',' or ']' after a task", line=line(), code="json_syntax")
                    return
                pos += 1
                skip_space()
            # A task may straddle the buffer's end: read on until it parses, doubling the
            # read size so a large task is not re-parsed many times.
            while True:
                try:
                    task, end = decoder.raw_decode(buffer, pos)
                except json.JSONDecodeError as exc:
                    if len(buffer) - pos > MAX_TASK_CHARS:
                        log.add(name, f"task {index} is larger than {MAX_TASK_CHARS} characters", line=line())
                        return
                    if more():
                        want = min(want * 2, 64 * READ_CHUNK)
                        continue
                    where = line_base + buffer.count("\n", 0, exc.pos)
                    log.add(
                        name, f"not valid JSON in task {index}: {exc.msg}", line=where, code="json_syntax"
                    )
                    return
                except RecursionError:
                    log.add(name, f"task {index} is nested too deeply", line=line(), code="json_syntax")
                    return
                except ValueError as exc:  # StrictJSONError, or an integer past 4,300 digits
                    reason = (
                        str(exc) if isinstance(exc, strict_json.StrictJSONError) else "an integer is too long"
                    )
                    log.add(name, f"task {index}: {reason}", line=line(), code="invalid_json")
                    return
                if end == len(buffer) and more():
                    continue  # a number or literal may have been cut at the buffer's end
                break
            if buffer.find("\\u", pos, end) != -1:  # only an escape can make a NUL or lone surrogate
                try:
                    strict_json.check_strings(task)
                except strict_json.StrictJSONError as exc:
                    log.add(name, f"task {index}: {exc}", line=line(), code="invalid_json")
                    return
            want = READ_CHUNK
            pos = end
            yield index, task
            index += 1
        if skip_space() == "]":
            pos += 1
            if skip_space() == "":
                return
        log.add(name, "unexpected content after the list of tasks", line=line(), code="json_syntax")


# --- images -----------------------------------------------------------------------------------


class _ImageIndex:
    """Finds the delivered file a task's image reference points at."""

    def __init__(self, names: list[str]):
        self.by_basename: dict[str, list[str]] = {}
        self.by_stem: dict[str, list[str]] = {}
        for n in names:
            base = posixpath.basename(n)
            self.by_basename.setdefault(base, []).append(n)
            stem, ext = posixpath.splitext(base)
            if ext.lower() in IMAGE_EXTENSIONS:
                self.by_stem.setdefault(stem, []).append(n)

    def find(self, reference: str) -> tuple[str | None, str]:
        """The file, or None and why not."""
        path = _reference_path(reference)
        base = posixpath.basename(path)
        if not base:
            return None, f"image reference {reference!r} names no file"
        matches = self.by_basename.get(base, [])
        if not matches:
            upload = _UPLOAD_PREFIX.match(base)
            if upload:
                matches = self.by_basename.get(upload.group(1), [])
        if not matches and not posixpath.splitext(base)[1]:
            matches = self.by_stem.get(base, [])
        if len(matches) > 1:
            matches = _longest_suffix(path, matches)
        if len(matches) == 1:
            return matches[0], ""
        if matches:
            return (
                None,
                f"image reference {reference!r} matches several files: {', '.join(sorted(matches)[:3])}",
            )
        return None, f"image {reference!r} is not in the delivery"


def _reference_path(reference: str) -> str:
    """The file path inside an image reference (URL, storage URI, Label Studio data path)."""
    parts = urlsplit(reference.strip())
    local = parse_qs(parts.query).get("d")  # /data/local-files/?d=folder/image.jpg
    if local:
        return local[0].lstrip("/")
    path = unquote(parts.path)
    return path.lstrip("/")


def _longest_suffix(path: str, names: list[str]) -> list[str]:
    """The names sharing the most trailing path components with ``path``."""
    wanted = path.split("/")

    def shared(name: str) -> int:
        n = 0
        for a, b in zip(reversed(wanted), reversed(name.split("/")), strict=False):
            if a != b:
                break
            n += 1
        return n

    best = max(shared(n) for n in names)
    return [n for n in names if shared(n) == best]


# --- tasks ------------------------------------------------------------------------------------


@dataclass
class _Task:
    index: int
    id: object
    key: str
    width: int | None
    height: int | None


class _TaskReader:
    """Everything the items and labels passes share: locating images, sizes, problems."""

    def __init__(self, name: str, images: _ImageIndex, declared: set[str] | None, log: _ProblemLog):
        self.name, self.images, self.declared, self.log = name, images, declared, log
        self.seen_keys: dict[str, int] = {}

    def problem(self, message: str, *parts, code: str = "invalid") -> None:
        self.log.add(self.name, message, pointer=_pointer(*parts), code=code)

    def task(self, index: int, task: object) -> _Task | None:
        """The task's image and size, or None (reported) when its labels cannot be placed."""
        if not isinstance(task, dict):
            self.problem("a task must be a JSON object", index)
            return None
        data = task.get("data")
        if not isinstance(data, dict):
            self.problem("task has no 'data' object", index)
            return None
        key_name = "image" if isinstance(data.get("image"), str) else None
        if key_name is None:
            key_name = next((k for k, v in data.items() if isinstance(v, str)), None)
        if key_name is None:
            self.problem("task data has no image reference", index, "data")
            return None
        key, why = self.images.find(data[key_name])
        if key is None:
            self.problem(why, index, "data", key_name, code="missing_image")
            return None
        first = self.seen_keys.setdefault(key, index)
        if first != index:
            self.problem(
                f"image {key!r} is also the image of task {first}",
                index,
                "data",
                key_name,
                code="duplicate_image",
            )
        width, height = self.size(index, task)
        return _Task(index, task.get("id"), key, width, height)

    def size(self, index: int, task: dict) -> tuple[int | None, int | None]:
        """The image size the task's results agree on."""
        size = None
        for kind in ("annotations", "predictions"):
            entries = task.get(kind)
            for j, entry in enumerate(entries if isinstance(entries, list) else []):
                results = entry.get("result") if isinstance(entry, dict) else None
                for k, result in enumerate(results if isinstance(results, list) else []):
                    if not isinstance(result, dict) or "original_width" not in result:
                        continue
                    w, h = result.get("original_width"), result.get("original_height")
                    if not (_is_int(w) and _is_int(h) and w > 0 and h > 0):
                        self.problem(
                            "original_width/original_height must be positive integers",
                            index,
                            kind,
                            j,
                            "result",
                            k,
                        )
                        continue
                    if size is None:
                        size = (w, h)
                    elif size != (w, h):
                        self.problem(
                            f"original size {w}x{h} differs from {size[0]}x{size[1]} elsewhere in the task",
                            index,
                            kind,
                            j,
                            "result",
                            k,
                        )
        return size if size else (None, None)

    def is_first(self, task: _Task) -> bool:
        return self.seen_keys.get(task.key) == task.index


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _iter_items(source: model.Source, reader: _TaskReader) -> Iterator[model.ItemRecord]:
    for index, raw in _iter_tasks(source, reader.name, reader.log):
        task = reader.task(index, raw)
        if task is None or not reader.is_first(task):
            continue
        yield model.ItemRecord(
            key=task.key,
            width=task.width,
            height=task.height,
            source_ref=f"{reader.name}#{_pointer(index)}",
            source_id=task.id,
        )


def _iter_labels(source: model.Source, reader: _TaskReader) -> Iterator[model.LabelRecord]:
    for index, raw in _iter_tasks(source, reader.name, reader.log):
        task = reader.task(index, raw)
        if task is None:
            continue
        yield from _task_labels(reader, task, raw)


def _task_labels(reader: _TaskReader, task: _Task, raw: dict) -> Iterator[model.LabelRecord]:
    annotations = raw.get("annotations") or []
    predictions = raw.get("predictions") or []
    if not isinstance(annotations, list):
        reader.problem("'annotations' must be a list", task.index, "annotations")
        annotations = []
    if not isinstance(predictions, list):
        reader.problem("'predictions' must be a list", task.index, "predictions")
        predictions = []

    active = []
    for j, annotation in enumerate(annotations):
        if not isinstance(annotation, dict):
            reader.problem("an annotation must be a JSON object", task.index, "annotations", j)
        elif annotation.get("was_cancelled") is True:
            reader.problem(
                "cancelled annotation skipped", task.index, "annotations", j, code="skipped_cancelled"
            )
        else:
            active.append(j)
    truths = [j for j in active if annotations[j].get("ground_truth") is True]
    if len(truths) > 1:
        reader.problem(
            f"annotations {truths} are all marked ground_truth; all are kept as candidates",
            task.index,
            "annotations",
            code="several_ground_truths",
        )
    if len(truths) == 1:
        final = truths[0]
    elif not truths and len(active) == 1:
        final = active[0]
    else:
        final = None  # several annotators and no ground truth: consensus decides later

    by_id = {p["id"]: p for p in predictions if isinstance(p, dict) and _is_int(p.get("id"))}
    for j in active:
        annotation = annotations[j]
        base = _annotation_provenance(reader, annotation, task.index, j)
        parent = annotation.get("prediction")
        if not (isinstance(parent, dict) and parent) and _is_int(annotation.get("parent_prediction")):
            parent = by_id.get(annotation["parent_prediction"])
        context = _Context(
            reader=reader,
            task=task,
            pointer=(task.index, "annotations", j),
            id_prefix=str(annotation.get("id", f"annotation-{j}")),
            is_final=(j == final),
            is_prediction=False,
            provenance=base,
            model_version=str(parent.get("model_version") or "") if isinstance(parent, dict) else "",
            attributes={"ground_truth": annotation.get("ground_truth") is True}
            | ({"lead_time": annotation["lead_time"]} if _is_number(annotation.get("lead_time")) else {}),
        )
        yield from _results(context, annotation.get("result"))

    for p, prediction in enumerate(predictions):
        if not isinstance(prediction, dict):
            reader.problem("a prediction must be a JSON object", task.index, "predictions", p)
            continue
        provenance = model.Provenance(
            source=model.MODEL, model_version=str(prediction.get("model_version") or "")
        )
        if provenance.model_version and not prediction.get("model_name"):
            # Label Studio predictions name their model by model_version only.
            provenance.model_name = provenance.model_version
            reader.problem(
                "predictions name their model by model_version only: model_name taken from it",
                task.index,
                "predictions",
                p,
                "model_version",
                code="model_name_from_version",
            )
        provenance.made_at = _timestamp(reader, prediction, "created_at", task.index, "predictions", p)
        provenance.updated_at = _timestamp(reader, prediction, "updated_at", task.index, "predictions", p)
        context = _Context(
            reader=reader,
            task=task,
            pointer=(task.index, "predictions", p),
            id_prefix=f"prediction-{prediction.get('id', p)}",
            is_final=False,
            is_prediction=True,
            provenance=provenance,
            model_version=provenance.model_version,
            attributes={"score": prediction["score"]} if _is_number(prediction.get("score")) else {},
        )
        yield from _results(context, prediction.get("result"))


def _annotation_provenance(reader: _TaskReader, annotation: dict, index: int, j: int) -> model.Provenance:
    provenance = model.Provenance()
    who = annotation.get("completed_by")
    user_id = who.get("id") if isinstance(who, dict) else who
    if _is_int(user_id) or (isinstance(user_id, str) and user_id.isdigit()):
        provenance.annotator = f"ls-user-{user_id}"
    elif who is not None:
        # A user object without an id: its e-mail must not become the pseudonym.
        reader.problem("completed_by has no user id", index, "annotations", j, "completed_by")
    provenance.made_at = _timestamp(reader, annotation, "created_at", index, "annotations", j)
    provenance.updated_at = _timestamp(reader, annotation, "updated_at", index, "annotations", j)
    return provenance


def _timestamp(reader: _TaskReader, entry: dict, key: str, *parts):
    text = entry.get(key)
    if text is None:
        return None
    try:
        return parse_timestamp(text)
    except (TypeError, ValueError):
        reader.problem(f"{key}={text!r} is not an ISO-8601 date-time", *parts, key)
        return None


# --- results ----------------------------------------------------------------------------------


@dataclass
class _Context:
    reader: _TaskReader
    task: _Task
    pointer: tuple
    id_prefix: str
    is_final: bool
    is_prediction: bool
    provenance: model.Provenance
    model_version: str
    attributes: dict


def _results(context: _Context, results) -> Iterator[model.LabelRecord]:
    reader = context.reader
    if results is None:
        return
    if not isinstance(results, list):
        reader.problem("'result' must be a list", *context.pointer, "result")
        return
    for k, result in enumerate(results):
        where = (*context.pointer, "result", k)
        if not isinstance(result, dict):
            reader.problem("a result must be a JSON object", *where)
            continue
        kind = result.get("type")
        if kind == "relation":
            # A link between two regions, not a label of its own: noted, never a refusal.
            reader.problem(
                "relation results (links between regions) are not stored",
                *where,
                "type",
                code="skipped_relation",
            )
            continue
        if not isinstance(kind, str) or kind not in RESULT_TYPES:
            reader.problem(
                f"result type {str(kind)[:40]!r} cannot be read", *where, "type", code="unsupported_result"
            )
            continue
        value = result.get("value")
        if not isinstance(value, dict):
            reader.problem("result has no 'value' object", *where, "value")
            continue
        names = value.get(kind)
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            reader.problem(f"value.{kind} must be a non-empty list of label names", *where, "value", kind)
            continue
        geometry = _geometry(context, result, value, kind, where)
        if geometry is None:
            continue
        geometry_type, parts, extra = geometry
        errors = model.validate_geometry(geometry_type, parts, context.task.width, context.task.height)
        for error in errors:
            reader.problem(error, *where, "value", code="invalid_geometry")
        if errors:
            continue
        yield from _labels_of_result(context, result, k, names, geometry_type, parts, extra)


def _labels_of_result(context, result, k, names, geometry_type, parts, extra) -> Iterator[model.LabelRecord]:
    reader = context.reader
    where = (*context.pointer, "result", k)
    origin = result.get("origin", "manual")
    provenance = dataclasses.replace(context.provenance)
    if context.is_prediction:
        pass  # a prediction's provenance is already the model's
    elif isinstance(origin, str) and origin in ORIGINS:
        provenance.source = ORIGINS[origin]
        if provenance.source == model.MODEL:
            provenance.model_version = context.model_version
    else:
        reader.problem(f"unknown origin {origin!r}; taken as manual", *where, "origin", code="unknown_origin")
    attributes = dict(context.attributes)
    attributes.update(extra)
    if result.get("from_name"):
        attributes["from_name"] = result["from_name"]
    if _is_number(result.get("score")):
        attributes["score"] = result["score"]
    base_id = f"{context.id_prefix}:{result.get('id', f'#{k}')}"
    for n, label in enumerate(names):
        if reader.declared is not None and label not in reader.declared:
            reader.problem(
                f"label {label!r} is not declared in label_config.xml",
                *where,
                "value",
                result["type"],
                n,
                code="unknown_label",
            )
            continue
        uid = base_id if len(names) == 1 else f"{base_id}#{n}"
        yield model.LabelRecord(
            item_key=context.task.key,
            category=label,
            geometry_type=geometry_type,
            geometry=parts if n == 0 else copy.deepcopy(parts),
            attributes=attributes if n == 0 else dict(attributes),
            uid=uid,
            is_final=context.is_final,
            provenance=provenance if n == 0 else dataclasses.replace(provenance),
            source_ref=f"{reader.name}#{_pointer(*where)}",
            source_id=uid,
            stable_id=uid,
        )


def _geometry(context: _Context, result: dict, value: dict, kind: str, where: tuple):
    """(geometry type, parts, extra attributes) of a result in pixels, or None (reported)."""
    reader = context.reader
    if kind == "choices":
        return model.CLASSIFICATION, {}, {}
    width, height = result.get("original_width"), result.get("original_height")
    if not (_is_int(width) and _is_int(height) and width > 0 and height > 0):
        reader.problem("result has no usable original_width/original_height", *where)
        return None
    if result.get("image_rotation") not in (None, 0):
        # Which frame the coordinates are in once the image was turned in the editor is not
        # documented: refuse rather than place the shape wrongly.
        reader.problem("results on a rotated image (image_rotation) are not read", *where, "image_rotation")
        return None

    def number(key: str) -> float | None:
        v = value.get(key)
        if not _is_number(v):
            reader.problem(f"value.{key} must be a number", *where, "value", key)
            return None
        return v

    if kind == "rectanglelabels":
        x, y, w, h = (number(k) for k in ("x", "y", "width", "height"))
        if None in (x, y, w, h):
            return None
        rotation = value.get("rotation", 0) or 0
        if not _is_number(rotation):
            reader.problem("value.rotation must be a number", *where, "value", "rotation")
            return None
        px, py, pw, ph = x * width / 100, y * height / 100, w * width / 100, h * height / 100
        if rotation % 360:
            ring = _rotated_rectangle(px, py, pw, ph, rotation)
            return model.POLYGON, {"polygons": [ring]}, {"rotation": rotation}
        return model.BBOX, {"bbox": [px, py, pw, ph]}, {}
    if kind == "keypointlabels":
        x, y = number("x"), number("y")
        if x is None or y is None:
            return None
        return model.KEYPOINTS, {"keypoints": [x * width / 100, y * height / 100, 2]}, {}
    if kind == "polygonlabels":
        points = value.get("points")
        if not isinstance(points, list) or not all(
            isinstance(p, list) and len(p) == 2 and _is_number(p[0]) and _is_number(p[1]) for p in points
        ):
            reader.problem("value.points must be a list of [x, y] percentages", *where, "value", "points")
            return None
        ring = []
        for px, py in points:
            ring += [px * width / 100, py * height / 100]
        return model.POLYGON, {"polygons": [ring]}, {}
    # brushlabels
    if value.get("format") != "rle":
        reader.problem(
            f"brush format {value.get('format')!r} is not read (only 'rle')", *where, "value", "format"
        )
        return None
    if width * height > MAX_MASK_PIXELS:
        reader.problem(f"a brush mask on a {width}x{height} image is too large to decode", *where)
        return None
    rle = value.get("rle")
    if not isinstance(rle, list) or not all(_is_int(b) and 0 <= b <= 255 for b in rle):
        reader.problem("value.rle must be a list of bytes (0..255)", *where, "value", "rle")
        return None
    try:
        mask = decode_brush_rle(rle, width=width, height=height)
    except ValueError as exc:
        reader.problem(f"brush RLE cannot be decoded: {exc}", *where, "value", "rle")
        return None
    if not mask.any():
        reader.problem("brush mask is empty", *where, "value", "rle", code="invalid_geometry")
        return None
    encoded = mask_utils.encode(np.asfortranarray(mask))
    return model.MASK, {"rle": {"size": [height, width], "counts": encoded["counts"].decode("ascii")}}, {}


def _rotated_rectangle(x: float, y: float, w: float, h: float, degrees: float) -> list[float]:
    """The corners of a rectangle rotated clockwise (y points down) by ``degrees`` about (x, y)."""
    cos, sin = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    ring: list[float] = []
    for dx, dy in ((0.0, 0.0), (w, 0.0), (w, h), (0.0, h)):
        ring += [x + dx * cos - dy * sin, y + dx * sin + dy * cos]
    return ring


def decode_brush_rle(rle: list[int], *, width: int, height: int) -> np.ndarray:
    """Label Studio's brush RLE as a (height, width) uint8 mask of its alpha channel.

    The encoding (label-studio-converter ``brush.decode_rle``, after thi-ng's rle-pack): a
    big-endian bit stream holding a 32-bit count of values (``width * height * 4`` RGBA bytes,
    row-major), a 5-bit word size minus one, four 4-bit run-length field sizes minus one, then
    groups: 1 bit "repeat", 2 bits choosing a field size, that many bits of length minus one,
    and either one word repeated or that many literal words. Only the alpha byte of each pixel
    is kept, so the mask never needs the four-bytes-a-pixel buffer.
    """
    bits = "".join(f"{byte:08b}" for byte in rle)
    pos = 0

    def read(size: int) -> int:
        nonlocal pos
        if pos + size > len(bits):
            raise ValueError("the bit stream ends early")
        value = int(bits[pos : pos + size], 2)
        pos += size
        return value

    count = read(32)
    if count != width * height * 4:
        raise ValueError(f"it holds {count} values, a {width}x{height} RGBA image has {width * height * 4}")
    word_size = read(5) + 1
    field_sizes = [read(4) + 1 for _ in range(4)]
    alpha = np.zeros(width * height, dtype=np.uint8)
    i = 0
    while i < count:
        repeat = read(1)
        j = i + 1 + read(field_sizes[read(2)])
        if j > count:
            raise ValueError("a run goes past the end of the image")
        if repeat:
            if read(word_size):
                # Values i..j-1 all hold this word; the alpha bytes among them are 4k+3.
                alpha[i // 4 : j // 4] = 1
            i = j
        else:
            for position in range(i, j):
                if read(word_size) and position % 4 == 3:
                    alpha[position // 4] = 1
            i = j
    return alpha.reshape(height, width)
