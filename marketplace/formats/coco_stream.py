"""Reading a large COCO file without loading it whole: ijson (its C backend, yajl2_c) over the stream.

``read_outline`` gives the file as the COCO reader needs it: a dict whose ``categories`` are built
and whose ``images`` (a ``StreamedHead``) and ``annotations`` (a ``StreamedArray``) parse their
objects one at a time each time they are iterated, so memory grows neither with the labels nor with
the images' objects (a list of them held ~1 KB an image). The file is read once before that, in C
(yajl, numpy) and in bounded memory: yajl checks every byte's syntax, building nothing (the
annotations included: an error is found before a single item is written); on the bytes it reads, in
8 MiB pieces, run the guards: the size cap and the nesting depth (``archive.JsonDepthScan``, the
very scan ``safe_load_json`` runs, with its messages and codes), and the top level's outline
(``archive.JsonOutline``: its keys, the byte span of each nested value -- the images are then read
from theirs alone -- and the bytes of ``categories``, which may come after the annotations, as in
COCO's own files). Then the images and the annotations, when the reader walks them.

``images``, ``annotations`` or ``categories`` given twice go to the whole-file reader
(``json.loads`` keeps the last; before, a repeated ``annotations`` streamed both arrays).

Where yajl refuses what ``json.loads`` reads or the other way round (a byte-order mark, NaN, a
syntax error, text that is not UTF-8), or where ``strict_json``'s scan of the raw bytes finds a
candidate it refuses (``1e400``, a lone surrogate or NUL escape; the scan runs on every piece), the file goes to ``safe_load_json``, so the outcome and the
located error (``line:column``) are exactly the whole-file reader's. Numbers: integers come back as
``int`` and the rest as ``float`` (``use_float``), as ``json.loads`` gives them.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import BinaryIO

import ijson

from . import strict_json
from .archive import JsonDepthScan, JsonOutline, safe_load_json
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
    """A top-level array read from its byte span (``start``, ``end``: the outline's), item by item
    each time it is iterated: a walk over the images of a COCO file parses the images' bytes only,
    not the annotations before or after them (those bytes are inflated and skipped)."""

    def __init__(self, opener: Opener, span: tuple[int, int]):
        self.opener = opener
        self.span = span

    def __iter__(self) -> Iterator:
        with self.opener() as stream:
            yield from ijson.items(_Span(stream, *self.span), "item", use_float=True)


class _Span:
    """The bytes ``[start, end)`` of a stream, as a file for yajl (the bytes before are read and dropped)."""

    def __init__(self, stream: BinaryIO, start: int, end: int):
        self.stream, self.left = stream, end - start
        while start > 0 and (skipped := len(stream.read(min(start, PIECE)))):
            start -= skipped

    def read(self, size: int = -1) -> bytes:
        if self.left <= 0:
            return b""
        data = self.stream.read(self.left if size is None or size < 0 else min(size, self.left))
        self.left -= len(data)
        return data


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


class _Guarded:
    """The file as yajl reads it, the guards run on each piece on the way (one read for both).

    The guards: the size cap (refused as soon as it is passed, with safe_load_json's message), the
    nesting depth and the top level's outline (``JsonDepthScan``), strict_json's candidates (must
    the whole-file reader have the file?) and the captions marker (may an object have a "caption"
    key?).
    """

    def __init__(self, stream: BinaryIO, *, max_bytes: int, max_depth: int, name: str):
        self.stream, self.max_bytes, self.max_depth, self.name = stream, max_bytes, max_depth, name
        self.outline = JsonOutline(capture=frozenset({"categories"}))
        self.scan = JsonDepthScan(self.outline)
        self.total = 0
        self.strict = self.captions = False
        self._tail = self._before = b""  # _before: the previous piece's end, for a marker cut in two

    def read(self, size: int = -1) -> bytes:
        piece = self.stream.read(PIECE if size is None or size < 0 else size)
        self._check(piece)
        if self.scan.deepest > self.max_depth:
            # Not a byte of it to yajl, whose builder would nest as deep (a piece of "[" is 8
            # million lists): the file is refused once the guards have read it all (drain).
            raise _Fallback
        return piece

    def drain(self) -> None:
        """Run the guards on what yajl left (it stops at an error); refuse a file nested too deep."""
        while piece := self.stream.read(PIECE):
            self._check(piece)
        if self.scan.deepest > self.max_depth:
            raise FormatError(
                [
                    Problem(
                        file=self.name,
                        message=f"JSON nested {self.scan.deepest} levels deep, more than {self.max_depth}",
                        code="too_deep",
                    )
                ]
            )

    def _check(self, piece: bytes) -> None:
        if not piece:
            return
        if not self.captions:
            seam = self._before + piece
            self.captions = _CAPTION_KEY in seam or _UNICODE_ESCAPE in seam
            self._before = seam[-(len(_CAPTION_KEY) - 1) :]
        self.total += len(piece)
        if self.total > self.max_bytes:
            raise FormatError(
                [
                    Problem(
                        file=self.name, message=f"JSON larger than {self.max_bytes} bytes", code="too_large"
                    )
                ]
            )
        self.scan.feed(piece)
        if not self.strict:
            self.strict = any(strict_json.scan(self._tail + piece))
            tail = _tail(piece)
            self.strict = self.strict or tail is None
            self._tail = tail or b""


_READ = frozenset({"images", "annotations", "categories"})  # what the COCO reader takes of the top level


class _Members(list):
    """The top-level object's (key, value) pairs, in order, repeats kept."""


# A prefix no item of a JSON text has (a key holding NUL and "." cannot be reached by it): yajl checks
# the syntax of every byte and builds nothing.
_NOTHING = "\x00.\x00"


def _top_level(outline: JsonOutline) -> dict:
    """The top-level object's members from the outline: a nested value as its span's index in a list.

    One of ``_READ`` given twice goes to the whole-file reader (``json.loads`` keeps the last).
    """
    if outline.skeleton is None:
        raise _Fallback
    members = json.loads(outline.skeleton.decode("utf-8"), object_pairs_hook=_Members)
    if not isinstance(members, _Members):
        raise _Fallback
    keys = [key for key, _value in members if key in _READ]
    if len(set(keys)) != len(keys):
        raise _Fallback
    return dict(members)


def _only(stream: BinaryIO, prefix: str) -> tuple | None:
    """``(value,)`` at ``prefix``, or None if absent; the rest of the file is parsed too (syntax checked).

    A key given twice goes to the whole-file reader (``json.loads`` keeps the last).
    """
    found = None
    for value in ijson.items(stream, prefix, use_float=True, buf_size=PIECE):
        if found is not None:
            raise _Fallback
        found = (value,)
    return found


def _nested(outline: JsonOutline, value: object) -> tuple[int, int, int] | None:
    """The span of a member's value if the outline cut it out (``[i]`` in the skeleton), else None."""
    if isinstance(value, list) and len(value) == 1 and type(value[0]) is int:
        return outline.spans[value[0]]
    raise _Fallback


def read_outline(opener: Opener, *, max_bytes: int, max_depth: int, name: str) -> object:
    """The parsed file, its ``images`` and ``annotations`` streamed when it is a COCO object.

    What is not a JSON object with ``images`` and ``annotations`` lists comes back as
    ``safe_load_json`` reads it (the reader then says what is missing).
    """
    with opener() as stream:
        guarded = _Guarded(stream, max_bytes=max_bytes, max_depth=max_depth, name=name)
        try:
            # Every byte of the file through yajl, nothing built (no item has this prefix).
            for _ in ijson.items(guarded, _NOTHING, use_float=True, buf_size=PIECE):
                pass
            parsed = True
        except (_Fallback, ijson.JSONError, UnicodeDecodeError, ValueError):
            parsed = False
        guarded.drain()
    outline = guarded.outline
    try:
        # A float past 1e308, a surrogate or NUL escape: strict_json's refusals, as a whole. A file
        # yajl refuses: the whole-file reader's located error.
        if guarded.strict or not parsed:
            raise _Fallback
        top = _top_level(outline)
        if "annotations" not in top or _nested(outline, top["annotations"])[2] != ord("["):
            raise _Fallback
        if "images" not in top:
            raise _Fallback
        start, end, opening = _nested(outline, top["images"])
        if opening != ord("["):
            raise _Fallback
        images = StreamedHead(opener, (start, end))
        categories = None
        if "categories" in top:
            value = top["categories"]
            if isinstance(value, list):
                index = value[0]
                if index not in outline.captured:
                    raise _Fallback
                value = _only(io.BytesIO(outline.captured.pop(index)), "")[0]
            categories = (value,)
    except (_Fallback, ijson.JSONError, UnicodeDecodeError, ValueError, TypeError):
        with opener() as stream:
            return safe_load_json(stream, max_bytes=max_bytes, max_depth=max_depth, name=name)
    annotations = StreamedArray(opener, "annotations", may_hold_captions=guarded.captions)
    doc: dict = {"images": images, "annotations": annotations}
    if categories is not None:
        doc["categories"] = categories[0]
    return doc
