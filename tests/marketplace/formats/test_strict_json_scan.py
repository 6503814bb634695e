"""Issue 13: strict_json.scan, searched first for the exponent alone, flags what the one pattern flagged.

Every COCO file's bytes go through ``scan`` on the streamed path; its overflow flag now runs the full
pattern only where the digit-less part is found. Hypothesis draws bytes from the characters the
patterns are made of, so near misses (``e400`` with no digit before it, ``1e+0099``, ``1E40``) are common.
"""

import re

from hypothesis import example, given, settings
from hypothesis import strategies as st

from marketplace.formats import strict_json

# The patterns as they were, the oracle.
OVERFLOW = re.compile(rb"[0-9][eE][+]?0*[0-9]{3,}")
ESCAPE = re.compile(rb"\\u(?:[dD][89a-fA-F][0-9a-fA-F]{2}|0000)")

raw = st.lists(
    st.sampled_from([b"0", b"1", b"9", b"e", b"E", b"+", b"-", b".", b" ", b'"', b"\\u", b"d8", b"x"]),
    max_size=40,
).map(b"".join)


@settings(max_examples=3000, deadline=None)
@example(data=b"x e400 1e40 1E+099")
@example(data=b"[1e400]")
@example(data=b"e400 then 2E+0000308")
@given(data=st.one_of(raw, st.binary(max_size=40)))
def test_scan_flags_what_the_single_patterns_flag(data):
    assert strict_json.scan(data) == (OVERFLOW.search(data) is not None, ESCAPE.search(data) is not None)
    # the quick search finds a part of every candidate: it never hides one
    if OVERFLOW.search(data):
        assert strict_json._EXPONENT_CANDIDATE.search(data)


def test_an_exponent_without_a_digit_before_it_is_no_overflow_candidate():
    assert strict_json.scan(b'{"name": "frame e400"}') == (False, False)
    assert strict_json.scan(b'{"x": 1e400}') == (True, False)
