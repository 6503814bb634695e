"""Reading a large COCO file without loading it whole: ijson (its C backend, yajl2_c) over the stream.

``read_outline`` gives the file as the COCO reader needs it: a dict whose ``categories`` are built
and whose ``images`` and ``annotations`` are ``StreamedArray``s that parse their objects one at a
time each time they are iterated, so memory grows neither with the labels nor with the images'
objects. The file is read in several passes, each in C and in
bounded memory:

1. the guards, in 8 MiB pieces: the size cap and the nesting depth (``archive.JsonDepthScan``,
   the very scan ``safe_load_json`` runs), with ``safe_load_json``'s own messages and codes;
2. the whole file through yajl, its events counted, nothing built: a syntax error anywhere, the
   annotations included, is found before a single item is written; the top level's shape (is it
   an object? are ``images`` and ``annotations`` lists? is ``images`` there once?);
3. ``categories``, which may come after the annotations, as in COCO's own files;
4. the images and the annotations, when the reader walks them.

Known difference: a file with the ``annotations`` key twice streams both arrays (``json.loads`` keeps
the last one); ``images`` or ``categories`` twice go to the whole-file reader.

Where yajl refuses what ``json.loads`` reads or the other way round (a byte-order mark, NaN, a
syntax error, text that is not UTF-8), or where ``strict_json``'s scan of the raw bytes finds a
candidate it refuses (``1e400``, a lone surrogate or NUL escape; the scan runs on every piece), the file goes to ``safe_load_json``, so the outcome and the
located error (``line:column``) are exactly the whole-file reader's. Numbers: integers come back as
``int`` and the rest as ``float`` (``use_float``), as ``json.loads`` gives them.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import BinaryIO

import ijson

from . import strict_json
from .archive import JsonDepthScan, safe_load_json
from .model import FormatError, Problem

PIECE = 8 * 1024 * 1024
Opener = Callable[[], AbstractContextManager[BinaryIO]]


class StreamedArray:
    """A top-level array of a JSON file, parsed item by item each time it is iterated.

    ``may_hold_captions``: False when the file's bytes hold neither ``"caption"`` nor a ``\\u``
    escape, so no object in it can have a ``caption`` key; the reader then skips its pass over the
    annotations that looks for captions (a whole parse of the file, a third of the labels' cost).
    """

    def __init__(self, opener: Opener, key: str, *, may_hold_captions: bool = True):
        self.opener = opener
        self.key = key
        self.may_hold_captions = may_hold_captions

    def __iter__(self) -> Iterator:
        with self.opener() as stream:
            yield from ijson.items(stream, f"{self.key}.item", use_float=True)


class StreamedHead:
    """A top-level array that comes before ``annotations`` and holds ``length`` items, parsed item by
    item each time it is iterated, and only up to its last item: a walk over the images of a COCO
    file reads the images' bytes, not the annotations after them."""

    def __init__(self, opener: Opener, key: str, length: int):
        self.opener = opener
        self.key = key
        self.length = length

    def __iter__(self) -> Iterator:
        if not self.length:
            return
        with self.opener() as stream:
            yield from itertools.islice(ijson.items(stream, f"{self.key}.item", use_float=True), self.length)


class _Fallback(Exception):
    """yajl and json.loads might disagree on this file: read it whole, as before."""


# Bytes a strict_json candidate (``1e400``, ``\\ud800``, ``\\u0000``) is made of: a piece's tail of
# these is carried into the next piece's scan, so a candidate cut in two is still found.
_CANDIDATE_BYTES = frozenset(b"0123456789eE+-.\\uabcdefABCDEF")
_MAX_TAIL = 1 << 20


def _tail(piece: bytes) -> bytes | None:
    """The end of ``piece`` a candidate may continue from; None if absurdly long (then: the whole file)."""
    i = len(piece)
    while i > 0 and piece[i - 1] in _CANDIDATE_BYTES:
        i -= 1
        if len(piece) - i > _MAX_TAIL:
            return None
    return piece[i:]


# A "caption" key is written with these bytes, unless a \u escape spells a letter of it.
_CAPTION_KEY, _UNICODE_ESCAPE = b'"caption"', b"\\u"


def _guards(stream: BinaryIO, *, max_bytes: int, max_depth: int, name: str) -> tuple[bool, bool]:
    """Size and depth, with safe_load_json's refusals; then (must strict_json look at the whole file?,
    may an object of the file have a "caption" key?)."""
    scan = JsonDepthScan()
    total = 0
    strict = captions = False
    tail = before = b""  # before: the previous piece's end, for a marker cut in two
    while piece := stream.read(PIECE):
        if not captions:
            seam = before + piece
            captions = _CAPTION_KEY in seam or _UNICODE_ESCAPE in seam
            before = seam[-(len(_CAPTION_KEY) - 1) :]
        total += len(piece)
        if total > max_bytes:
            raise FormatError(
                [Problem(file=name, message=f"JSON larger than {max_bytes} bytes", code="too_large")]
            )
        scan.feed(piece)
        if not strict:
            strict = any(strict_json.scan(tail + piece))
            tail = _tail(piece)
            strict = strict or tail is None
    if scan.deepest > max_depth:
        raise FormatError(
            [
                Problem(
                    file=name,
                    message=f"JSON nested {scan.deepest} levels deep, more than {max_depth}",
                    code="too_deep",
                )
            ]
        )
    return strict, captions


def _only(stream: BinaryIO, prefix: str) -> tuple | None:
    """``(value,)`` at ``prefix``, or None if absent; the rest of the file is parsed too (syntax checked).

    A key given twice goes to the whole-file reader (``json.loads`` keeps the last).
    """
    found = None
    for value in ijson.items(stream, prefix, use_float=True):
        if found is not None:
            raise _Fallback
        found = (value,)
    return found


# The events that begin a value: each item of an array begins with exactly one of them at its prefix.
_VALUE_STARTS = frozenset(("start_map", "start_array", "string", "number", "boolean", "null"))


class _Shape:
    """What one walk over every event of the file (nothing built) says about its top level."""

    def __init__(self):
        self.is_object = False
        self.opens: dict[str, str] = {}  # top-level key -> the event that opens its first value
        self.counts: dict[str, int] = {}  # top-level key -> how many times it occurs
        self.order: list[str] = []  # top-level keys, first occurrences in file order
        self.images = 0  # items of the top-level "images" array


def _shape(stream: BinaryIO) -> _Shape:
    shape = _Shape()
    events = ijson.parse(stream, use_float=True)
    prefix, event, _ = next(events)
    if prefix != "" or event != "start_map":
        return shape
    shape.is_object = True
    key = None
    for prefix, event, value in events:
        if key is not None:
            shape.opens.setdefault(key, event)
            key = None
        if not prefix and event == "map_key":
            if value not in shape.counts:
                shape.order.append(value)
            shape.counts[value] = shape.counts.get(value, 0) + 1
            key = value
        elif prefix == "images.item" and event in _VALUE_STARTS:
            shape.images += 1
    return shape


def read_outline(opener: Opener, *, max_bytes: int, max_depth: int, name: str) -> object:
    """The parsed file, its ``annotations`` streamed (a ``StreamedArray``) when it is a COCO object.

    What is not a JSON object with ``images`` and ``annotations`` lists comes back as
    ``safe_load_json`` reads it (the reader then says what is missing).
    """
    with opener() as stream:
        strict, captions = _guards(stream, max_bytes=max_bytes, max_depth=max_depth, name=name)
    try:
        if strict:  # a float past 1e308, a surrogate or NUL escape: strict_json's refusals, as a whole
            raise _Fallback
        with opener() as stream:
            shape = _shape(stream)  # and every byte of the file through yajl
        if not shape.is_object or shape.opens.get("annotations") != "start_array":
            raise _Fallback
        if shape.counts.get("images") != 1 or shape.opens.get("images") != "start_array":
            raise _Fallback  # missing, not a list, or twice (json.loads keeps the last)
        images: StreamedHead | list
        if shape.order.index("images") < shape.order.index("annotations"):
            # Walked again each time the reader needs them, up to their end only: a list of the
            # images' objects held ~1 KB an image (file_name, coco_url, date_captured ...).
            images = StreamedHead(opener, "images", shape.images)
        else:  # after the annotations: a walk would parse them too, each time; built once instead
            with opener() as stream:
                images = _only(stream, "images")[0]  # type: ignore[index]
        with opener() as stream:
            categories = _only(stream, "categories")
    except (_Fallback, ijson.JSONError, UnicodeDecodeError, ValueError, StopIteration):
        with opener() as stream:
            return safe_load_json(stream, max_bytes=max_bytes, max_depth=max_depth, name=name)
    annotations = StreamedArray(opener, "annotations", may_hold_captions=captions)
    doc: dict = {"images": images, "annotations": annotations}
    if categories is not None:
        doc["categories"] = categories[0]
    return doc
