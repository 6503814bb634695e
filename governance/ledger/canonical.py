"""The ledger's canonical JSON, fast: orjson where it gives the very bytes of the documented rule.

The rule (``verify_offline.canonical_json``, which stays the reference and what auditors run) is::

    json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()

orjson with ``OPT_SORT_KEYS`` writes the same bytes for plain JSON values (str, int, float, bool, None,
list, dict with str keys) except in these cases, each of which falls back to the reference encoder:

- floats with ``0 < |x| < 1e-4``: Python prints ``1e-05``, orjson ``0.00001`` or ``1e-7``. Both of
  orjson's forms are found in its output (a number token starting ``0.0000`` or holding ``e-``);
- NaN and infinities: orjson writes ``null``, the rule refuses them. Any ``null`` in the output sends
  the value to the reference, which raises for NaN and writes the same ``null`` for None;
- what orjson refuses (integers beyond 64 bits, non-str keys, lone surrogates, nesting deeper than 255,
  subclasses of str/int/dict/list, dataclasses, dates): the reference encodes or refuses it.

Sorting agrees: orjson sorts keys by their UTF-8 bytes, which is code point order, as Python's ``sorted``.
``tests/governance/test_canonical.py`` holds the proof as a Hypothesis property over random payloads.

Precondition, not checked (a check would cost what the fast path saves): the value holds only JSON's
own types. orjson also encodes ``uuid.UUID`` and plain ``Enum`` members, which the reference refuses;
the ledger's documents never hold either (``ledger._plain`` and ``ledger._document`` make them plain).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import orjson

from ..verify_offline import _HEX64
from ..verify_offline import canonical_json as reference_canonical_json

__all__ = [
    "canonical_event",
    "canonical_json",
    "canonical_json_finite",
    "document_json",
    "dumps_text",
    "event_hash",
    "loads_text",
    "plain_json",
    "plain_json_text",
    "reference_canonical_json",
]

_OPTIONS = (
    orjson.OPT_SORT_KEYS
    | orjson.OPT_PASSTHROUGH_SUBCLASS
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
)
# orjson prints a float below 1e-4 as a number token (after ":", "," or "[", or alone) that starts
# "0.0000" or has a negative exponent "e-"; Python prints neither form. The same bytes inside a string
# (a uuid segment ending in "e", say) only cost a fallback.
_DIGITS_AND_POINT = frozenset(b"0123456789.")
_dumps = orjson.dumps
_Error = orjson.JSONEncodeError
_Fragment = orjson.Fragment


def _fast(obj: Any, *, nan_possible: bool = True) -> bytes | None:
    """orjson's bytes of ``obj`` where they are the rule's, else None (the caller takes the reference).

    ``nan_possible``: orjson writes NaN as ``null``, so any ``null`` needs the reference, unless the
    caller knows its values hold no NaN.
    """
    try:
        out = _dumps(obj, option=_OPTIONS)
    except _Error:
        return None
    if (nan_possible and b"null" in out) or _may_hold_a_small_float(out):
        return None
    return out


def canonical_json(obj: Any) -> bytes:
    """The canonical UTF-8 JSON of a plain JSON value, byte for byte ``verify_offline.canonical_json``."""
    out = _fast(obj)
    return reference_canonical_json(obj) if out is None else out


def canonical_event(document: dict) -> bytes:
    """``canonical_json`` of an event document, checking only its payload for the reference's cases.

    Precondition, not checked: every value but ``document["payload"]`` is a str, an int of 64 bits or
    None, as the ledger's columns are (the verifier reads them so). Those orjson writes as the rule does
    (a ``null`` there is None's own), so only the payload can need the reference: it is encoded on its
    own and spliced in as an ``orjson.Fragment`` (set in ``document`` while it is encoded, then put back). The whole-document scan of ``canonical_json`` trips
    on every uuid holding ``e-`` (a fallback check per hit); the payload's own scan rarely does.
    """
    try:
        inner = _dumps(document["payload"], option=_OPTIONS)
    except _Error:
        return reference_canonical_json(document)
    # Both forms of a small float hold "0.0000" or "e-": one scan each before the exact check.
    if b"null" in inner or ((b"0.0000" in inner or b"e-" in inner) and _may_hold_a_small_float(inner)):
        return reference_canonical_json(document)
    payload = document["payload"]
    document["payload"] = _Fragment(inner)  # in place, put back below: a copy of the dict costs more
    try:
        return _dumps(document, option=_OPTIONS)
    except _Error:
        document["payload"] = payload
        return reference_canonical_json(document)
    finally:
        document["payload"] = payload


def _may_hold_a_small_float(out: bytes) -> bool:
    """True when orjson's output may hold a float below 1e-4 (printed unlike Python); never a miss."""
    if b"0.0000" in out and (
        b":0.0000" in out
        or b",0.0000" in out
        or b"[0.0000" in out
        or b"-0.0000" in out
        or out.startswith(b"0.0000")
    ):
        return True
    # Substring scans, not a regex: a regex over the whole output costs as much as the encoding.
    at = out.find(b"e-")
    while at != -1:
        start = at
        while start > 0 and out[start - 1] in _DIGITS_AND_POINT:
            start -= 1
        if start < at:
            if start and out[start - 1] == 0x2D:  # a minus sign: look before it
                start -= 1
            if start == 0 or out[start - 1] in b":,[":
                return True
        at = out.find(b"e-", at + 2)
    return False


def plain_json(value: Any) -> bytes | None:
    """The canonical JSON of ``value`` if ``chain._plain`` would leave it as it is, else None.

    For the ledger's hot path (a million label events): ``_plain`` walks every number of every payload
    to normalise the few that jsonb would give back otherwise (-0.0, floats from 1e16 up, NaN, tuples
    are the same JSON as lists). orjson's output shows each of those cases, and the small floats it prints
    unlike Python, by a marker: ``null`` (NaN, or a None that costs only the slow path), ``e+`` (from 1e16
    up), ``-0.0`` not followed by a digit, and the small-float forms of ``canonical_json``. When none is
    there, the bytes are the rule's bytes of ``_plain(value)``; otherwise None sends the caller to
    ``_plain`` and the reference. ``tests/governance/test_canonical.py`` holds the proof.

    Precondition, as ``canonical_json``'s: only JSON's own types (orjson writes a ``uuid.UUID`` or an
    ``Enum`` member where ``_plain`` refuses them): for values read from a delivery or a database.
    ``value`` may hold ``orjson.Fragment`` s of bytes this function returned.
    """
    out = _fast(value)
    if out is None or b"e+" in out or _may_hold_a_negative_zero(out):
        return None
    return out


def plain_json_text(value: Any) -> str | None:
    """``plain_json`` as text, for values kept by the thousand (a batch of events or label rows).

    orjson's bytes keep the buffer they were written into, several KB whatever their length: 7,000 of
    them held 32 MB at the bench's 50k labels. The decoded text is the size it says.
    """
    out = plain_json(value)
    return None if out is None else out.decode()


def _may_hold_a_negative_zero(out: bytes) -> bool:
    at = out.find(b"-0.0")
    while at != -1:
        if at + 4 == len(out) or out[at + 4] not in _DIGITS_AND_POINT:
            return True
        at = out.find(b"-0.0", at + 4)
    return False


def document_json(document: dict, payload_json: str | bytes) -> bytes:
    """``canonical_json(document)`` where ``document["payload"]`` has ``payload_json`` (from ``plain_json``).

    The payload's bytes are spliced in (``orjson.Fragment``), not encoded a second time. The other fields
    are strings, integers and None, whose bytes orjson writes as the rule does; what it refuses (a lone
    surrogate) goes to the reference with the payload decoded.
    """
    try:
        return _dumps({**document, "payload": orjson.Fragment(payload_json)}, option=_OPTIONS)
    except _Error:
        return reference_canonical_json({**document, "payload": orjson.loads(payload_json)})


def event_hash(event: dict, prev_hash: str) -> str:
    """``verify_offline.event_hash`` with the fast encoder: SHA-256(canonical JSON + prev_hash), hex."""
    if not isinstance(prev_hash, str) or not _HEX64.fullmatch(prev_hash):
        raise ValueError("prev_hash must be 64 lowercase hex characters")
    if "hash" in event or "prev_hash" in event:
        event = {key: value for key, value in event.items() if key not in ("hash", "prev_hash")}
    return hashlib.sha256(canonical_json(event) + bytes.fromhex(prev_hash)).hexdigest()


_LONG_DIGITS = re.compile(r"\d{19}")


def dumps_text(obj: Any) -> str:
    """JSON text for storage (jsonb), not hashing: orjson, or the standard library beyond 64-bit ints."""
    try:
        return _dumps(obj).decode()
    except _Error:
        import json

        return json.dumps(obj, ensure_ascii=False)


def loads_text(text: str) -> Any:
    """Parse stored JSON text: orjson, or the standard library where a number has 19+ digits.

    orjson reads integers beyond 64 bits as floats, which would change what is hashed.
    """
    if not _LONG_DIGITS.search(text):
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass  # the standard library reads what it reads (lone surrogates) or raises its own error
    import json

    return json.loads(text)


def canonical_json_finite(obj: Any) -> bytes:
    """``canonical_json`` for a value the caller knows holds no NaN and no infinity.

    ``canonical_json`` sends every output with a ``null`` to the reference, because orjson writes NaN
    as ``null``; a caller whose values cannot hold NaN (the content rows: ``content._plain_parsed``
    refuses it) keeps the fast path for its ``None`` values. Same bytes otherwise (same proof).
    """
    out = _fast(obj, nan_possible=False)
    return reference_canonical_json(obj) if out is None else out
