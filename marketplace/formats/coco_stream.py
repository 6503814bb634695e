"""Reading a large COCO file without loading it whole: ijson (its C backend, yajl2_c) over the stream.

``read_outline`` gives the file as the COCO reader needs it: a dict whose ``images`` and
``categories`` are built (they grow with the images, not the labels) and whose ``annotations`` is a
``StreamedArray`` that parses the annotations one at a time each time it is iterated, so memory
does not grow with the number of labels. The file is read in several passes, each in C and in
bounded memory:

1. the guards, in 8 MiB pieces: the size cap and the nesting depth (``archive.JsonDepthScan``,
   the very scan ``safe_load_json`` runs), with ``safe_load_json``'s own messages and codes;
2. the whole file through yajl (``images`` built on the way): a syntax error anywhere, the
   annotations included, is found before a single item is written;
3. ``categories``, and the top level's shape up to ``annotations`` (is it an object? is
   ``annotations`` a list?); categories may come after the annotations, as in COCO's own files;
4. the annotations, when the labels are read.

Known difference: a file with the ``annotations`` key twice streams both arrays (``json.loads`` keeps
the last one); ``images`` or ``categories`` twice go to the whole-file reader.

Where yajl refuses what ``json.loads`` reads or the other way round (a byte-order mark, NaN, a
syntax error, text that is not UTF-8), or where ``strict_json``'s scan of the raw bytes finds a
candidate it refuses (``1e400``, a lone surrogate or NUL escape; the scan runs on every piece), the file goes to ``safe_load_json``, so the outcome and the
located error (``line:column``) are exactly the whole-file reader's. Numbers: integers come back as
``int`` and the rest as ``float`` (``use_float``), as ``json.loads`` gives them.
"""

from __future__ import annotations

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


def _shape(stream: BinaryIO) -> tuple[bool, str | None]:
    """(is the top level an object?, the event that opens ``annotations``), read up to that event."""
    events = ijson.parse(stream, use_float=True)
    prefix, event, _ = next(events)
    if prefix != "" or event != "start_map":
        return False, None
    for prefix, event, _value in events:
        if prefix == "annotations":
            return True, event
    return True, None


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
            is_object, opens = _shape(stream)
        if not is_object or opens != "start_array":
            raise _Fallback
        with opener() as stream:
            images = _only(stream, "images")  # and every byte of the file through yajl
        if images is None or not isinstance(images[0], list):
            raise _Fallback
        with opener() as stream:
            categories = _only(stream, "categories")
    except (_Fallback, ijson.JSONError, UnicodeDecodeError, ValueError, StopIteration):
        with opener() as stream:
            return safe_load_json(stream, max_bytes=max_bytes, max_depth=max_depth, name=name)
    annotations = StreamedArray(opener, "annotations", may_hold_captions=captions)
    doc: dict = {"images": images[0], "annotations": annotations}
    if categories is not None:
        doc["categories"] = categories[0]
    return doc
