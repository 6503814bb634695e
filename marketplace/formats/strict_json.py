"""What Python's json accepts but a delivery must not carry, found cheaply and named clearly.

``json.loads`` takes ``NaN``/``Infinity`` (not JSON, RFC 8259), turns ``1e400`` into ``inf``,
keeps lone UTF-16 surrogates (``"\\ud800"``: no UTF-8 encoding, so saving it fails later) and
``"\\u0000"`` (PostgreSQL refuses NUL in text and jsonb), and raises a bare ValueError for an
integer of more than 4,300 digits. Each used to end as ``internal_error`` deep in ingest.

Cost: the common document pays one regular-expression scan of the raw bytes; only a document
where that scan finds a candidate is walked value by value to confirm it.
"""

from __future__ import annotations

import json
import math
import re

_OVERFLOW_CANDIDATE = re.compile(rb"[0-9][eE][+]?0*[0-9]{3,}")  # 1e400: floats past 1.8e308
# What every overflow candidate holds, without its leading digit: found in about half the time, as
# the search then tries only at each "e" and not at each digit (most of a COCO file's bytes).
_EXPONENT_CANDIDATE = re.compile(rb"[eE][+]?0*[0-9]{3,}")
_ESCAPE_CANDIDATE = re.compile(rb"\\u(?:[dD][89a-fA-F][0-9a-fA-F]{2}|0000)")
_BAD_CHAR = re.compile(r"[\ud800-\udfff\x00]")


class StrictJSONError(ValueError):
    """A value that is not acceptable in a delivery; ``str()`` says which, without echoing it."""


def refuse_constant(name: str):
    """``parse_constant`` for json.loads: NaN, Infinity and -Infinity are not JSON numbers."""
    raise StrictJSONError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise StrictJSONError(f"the number {text[:40]} is out of range")
    return value


def scan(raw: bytes) -> tuple[bool, bool]:
    """(may overflow a float, may hold a surrogate or NUL escape): run on the raw bytes.

    The overflow pattern runs only where its digit-less part is found (a file with no big exponent
    anywhere, the usual, is searched once, quickly): the same answer, as any match holds that part.
    """
    overflow = _EXPONENT_CANDIDATE.search(raw) is not None and _OVERFLOW_CANDIDATE.search(raw) is not None
    return overflow, _ESCAPE_CANDIDATE.search(raw) is not None


def loads(text: str, flags: tuple[bool, bool] | None = None):
    """json.loads with the refusals above; raises StrictJSONError, or json.JSONDecodeError.

    ``flags`` is ``scan(raw)`` when the caller has the raw bytes (and wants to free them first).
    """
    overflow, escapes = flags if flags is not None else scan(text.encode("utf-8", "surrogatepass"))
    try:
        if overflow:
            value = json.loads(text, parse_constant=refuse_constant, parse_float=_finite_float)
        else:
            value = json.loads(text, parse_constant=refuse_constant)
    except StrictJSONError:
        raise
    except ValueError as exc:
        if "digits" in str(exc) and not hasattr(exc, "lineno"):  # int() past sys.get_int_max_str_digits
            raise StrictJSONError("an integer has more than 4300 digits") from None
        raise
    if escapes:
        check_strings(value)
    return value


def check_strings(value) -> None:
    """Raise StrictJSONError if any string (key or value) holds a lone surrogate or a NUL."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            bad = _BAD_CHAR.search(item)
            if bad:
                what = "a NUL character" if bad.group() == "\x00" else "a lone UTF-16 surrogate"
                raise StrictJSONError(f"a string holds {what}")
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def decoder() -> json.JSONDecoder:
    """A JSONDecoder (for ``raw_decode`` over a stream) that refuses NaN, Infinity and 1e400.

    Strings are the caller's to check with :func:`check_strings` when the text had a ``\\u``
    escape; an integer past 4,300 digits raises ValueError("...digits..."), see :func:`loads`.
    """
    return json.JSONDecoder(parse_constant=refuse_constant, parse_float=_finite_float)
