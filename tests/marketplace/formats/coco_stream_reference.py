"""A frozen copy of ``coco_stream.read_outline`` as it was before the guards pass learnt the top level.

The reference the property test holds the new reader to (five passes over the file: the guards,
the shape, ``images`` with the whole-file syntax check, ``categories``); bench/ingest/passes.py
times it pass by pass against the new one. Not used by the application.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import BinaryIO

import ijson

from marketplace.formats import strict_json
from marketplace.formats.archive import JsonDepthScan, safe_load_json
from marketplace.formats.coco_stream import StreamedArray
from marketplace.formats.model import FormatError, Problem

PIECE = 8 * 1024 * 1024
Opener = Callable[[], AbstractContextManager[BinaryIO]]


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
