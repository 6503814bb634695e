"""JSON request bodies with a size and a depth limit: a hostile body answers 400 with a code.

DRF's JSONParser hands the body to ``json.load``; 100,000 nested brackets raise RecursionError
(a 500 on every JSON endpoint, the anonymous token endpoint included). The depth is measured on
the raw text first, in one linear pass that skips strings, so nothing deep is ever parsed.
NaN, Infinity, 5,000-digit integers, lone surrogates and NUL are refused too
(marketplace.formats.strict_json), each a 400 ``invalid_json``.
"""

from __future__ import annotations

import json
import re

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from ..errors import ErrorCode
from ..formats import strict_json

_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]')


class JSONBodyError(ParseError):
    def __init__(self, detail: str, code: str):
        super().__init__(detail, code=code)
        self.default_code = code


def json_depth(data: bytes) -> int:
    """The deepest nesting of arrays and objects in ``data``, ignoring brackets inside strings."""
    depth = deepest = 0
    for match in _TOKENS.finditer(data):
        token = match.group()
        if token in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        elif token in (b"]", b"}"):
            depth -= 1
    return deepest


def parse_limited_json(data: bytes, *, max_bytes: int, max_depth: int):
    """Parse a JSON body, refusing what is too big, too deep, or not strictly JSON."""
    if len(data) > max_bytes:
        raise JSONBodyError(f"the JSON body is larger than {max_bytes} bytes", code=ErrorCode.JSON_TOO_LARGE)
    if json_depth(data) > max_depth:
        raise JSONBodyError(
            f"the JSON body is nested deeper than {max_depth} levels", code=ErrorCode.JSON_TOO_DEEP
        )
    try:
        return strict_json.loads(data.decode("utf-8"), strict_json.scan(data))
    except UnicodeDecodeError:
        raise JSONBodyError("the JSON body is not UTF-8", code=ErrorCode.INVALID_JSON) from None
    except strict_json.StrictJSONError as exc:
        raise JSONBodyError(f"the JSON body is refused: {exc}", code=ErrorCode.INVALID_JSON) from None
    except json.JSONDecodeError as exc:
        raise JSONBodyError(
            f"JSON parse error at {exc.lineno}:{exc.colno}: {exc.msg}", code=ErrorCode.INVALID_JSON
        ) from None


class LimitedJSONParser(JSONParser):
    """DRF's JSON parser with ``API_JSON_MAX_BYTES`` and ``API_JSON_MAX_DEPTH``."""

    def parse(self, stream, media_type=None, parser_context=None):
        max_bytes = settings.API_JSON_MAX_BYTES
        data = stream.read(max_bytes + 1) if stream is not None else b""
        return parse_limited_json(data, max_bytes=max_bytes, max_depth=settings.API_JSON_MAX_DEPTH)
