"""The export's fast JSON (orjson) reads and writes the very values the standard library does.

The stdlib is the reference: ``records._json`` must decode every stored text to what ``json.loads``
gives (types included: an integer beyond 64 bits stays an int, orjson alone would make it a float),
and ``coco_writer._dumpb`` must write JSON that ``json.loads`` reads back to the value given.
"""

import json
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from marketplace.exports import records
from marketplace.formats import coco_writer

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=30,
)


def same(a, b) -> bool:
    """Equal, with the same types all the way down (1 and 1.0 and True differ)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    return a == b


@settings(max_examples=400, deadline=None)
@given(values)
def test_stored_json_text_decodes_to_the_stdlib_value(value):
    for text in (json.dumps(value), json.dumps(value, ensure_ascii=False), json.dumps(value, indent=1)):
        if text == "{}":
            continue
        assert same(records._json(text), json.loads(text)), text


def test_awkward_texts_decode_as_the_stdlib_does():
    for text in (
        '{"n": 123456789012345678901234567890}',
        '{"n": -9223372036854775809, "m": 18446744073709551616}',
        '{"x": 1e400}',
        '{"s": "\\ud800"}',
        '{"x": 0.1, "y": 1e-7, "z": 5e-324}',
        '{"a": 1, "a": 2}',
        '[1.0, 2, true, null, "é"]',
    ):
        assert same(records._json(text), json.loads(text)), text


@settings(max_examples=400, deadline=None)
@given(values)
def test_written_entries_read_back_to_the_value_written(value):
    entry = {"id": 1, "attributes": value}
    assert same(json.loads(coco_writer._dumpb(entry)), entry)
