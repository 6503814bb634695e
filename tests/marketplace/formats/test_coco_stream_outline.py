"""The streamed COCO reader's one pass (guards, outline and yajl together) against the whole-file reader.

For random COCO-like texts (keys in any order, spelt with escapes or given twice, whitespace,
escapes and brackets in strings, categories before or after the annotations, scalars where arrays
belong) and random damage (cut short, a byte changed, bytes appended), ``read_outline`` must give
what ``safe_load_json`` gives: the same document (its annotations read out of the stream) or the
same refusal, message and code. The frozen five-pass reader (coco_stream_reference) shows the one
outcome that changed: a repeated ``annotations`` key.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import tracemalloc
from unittest import mock

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from marketplace.formats import coco_stream
from marketplace.formats.archive import JsonOutline, safe_load_json
from marketplace.formats.model import FormatError

from . import coco_stream_reference

LIMITS = {"max_bytes": 1 << 20, "max_depth": 12, "name": "instances.json"}
COCO_KEYS = ("images", "annotations", "categories")

texts = st.lists(
    st.sampled_from(
        ["a", "é", '"', "\\", "[", "]", "{", "}", ":", ",", " ", "\n", "\u2028", "😀", "caption"]
    ),
    max_size=6,
).map("".join)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**62), 2**62),
    st.floats(-1e6, 1e6),
    texts,
)
# yajl refuses an integer past 64 bits, strict_json's scan flags 1e+300: the whole-file reader's
wide_numbers = st.integers(-(10**20), 10**20) | st.floats(allow_nan=False, allow_infinity=False)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=8,
)
records = st.dictionaries(
    st.sampled_from(["id", "image_id", "bbox", "caption", "name", "x"]), values, max_size=4
)
member_values = st.one_of(
    st.lists(records, max_size=4),
    records,
    scalars,
    st.lists(wide_numbers, min_size=1, max_size=2),
)
keys = st.sampled_from([*COCO_KEYS, "info", "licenses", "x", "images ", "cat\u00e9gories", "[", "", "\\"])


def _spell(key: str, escape: bool) -> str:
    """A key as JSON text; with ``escape``, its first letter as a \\u escape."""
    if escape and key:
        return f'"\\u{ord(key[0]):04x}' + json.dumps(key)[2:]
    return json.dumps(key)


often = st.sampled_from([True] * 5 + [False])


@st.composite
def documents(draw) -> bytes:
    """A COCO-like text: the three lists usually there, in any order, with company and repeats."""
    members = [(k, draw(st.lists(records, max_size=4))) for k in COCO_KEYS if draw(often)]
    members += draw(st.lists(st.tuples(keys, member_values), max_size=draw(st.sampled_from([1, 1, 3]))))
    members = draw(st.permutations(members))
    space = draw(st.sampled_from(["", " ", "\n  ", "\t"]))
    indent = draw(st.sampled_from([None, 0, 1]))
    ascii_only = not draw(often)  # then 😀 is a surrogate pair of escapes: strict_json's
    parts = [
        space
        + _spell(key, draw(st.booleans()))
        + space
        + ":"
        + space
        + json.dumps(value, indent=indent, ensure_ascii=ascii_only)
        for key, value in members
    ]
    text = ("{" + ",".join(parts) + space + "}").encode("utf-8")
    if not draw(often):
        text = b"[" + text + b"]"
    damage = draw(st.sampled_from(["none", "none", "none", "cut", "byte", "append"]))
    if damage == "cut" and text:
        text = text[: draw(st.integers(0, len(text) - 1))]
    elif damage == "byte" and text:
        at = draw(st.integers(0, len(text) - 1))
        byte = draw(st.sampled_from([*b'{}[]",:\\ 0a', 0xC3, 0xFF]))
        text = text[:at] + bytes([byte]) + text[at + 1 :]
    elif damage == "append":
        text += draw(st.sampled_from([b" ", b"x", b"}", b",", b" {}", b"\n]"]))
    return text


def outcome(read) -> tuple:
    """The document a reader gives (the annotations read out of their stream), or its refusal."""
    try:
        doc = read()
    except FormatError as exc:
        return ("refused", [dataclasses.asdict(p) for p in exc.problems])
    if isinstance(doc, dict) and isinstance(doc.get("annotations"), coco_stream.StreamedArray):
        images = doc["images"]  # streamed from its span, or a list (the frozen reference)
        return ("streamed", {**doc, "images": list(images), "annotations": list(doc["annotations"])})
    return ("whole", doc)


def expected(text: bytes, limits: dict = LIMITS) -> tuple:
    """The whole-file reader's outcome."""
    return outcome(lambda: safe_load_json(io.BytesIO(text), **limits))


def streamed(reader, text: bytes, limits: dict = LIMITS) -> tuple:
    @contextlib.contextmanager
    def opener():
        yield io.BytesIO(text)

    return outcome(lambda: reader(opener, **limits))


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=documents(), piece=st.sampled_from([1, 2, 3, 5, 8, 13, 64, 1 << 20]))
@example(text=b'{"images": [], "annotations": [], "annotations": [{"id": 1}]}', piece=8)
@example(text=b'{"images": [], "annotations": [], "categories": [], "categories": 0}', piece=8)
@example(text=b'{"images": [], "annotations": [], "c\\u0061tegories": [{"id": 1}]}', piece=3)
@example(text=b'{"images": [], "annotations": []} x', piece=1 << 20)
@example(text=b'{"images": [], "annotations": [{"id": 1}', piece=4)
def test_one_pass_gives_the_whole_file_readers_outcome(text, piece):
    want = expected(text)
    with mock.patch.object(coco_stream, "PIECE", piece):
        got = streamed(coco_stream.read_outline, text)
    event(got[0])  # how many took the one pass ("streamed") shows in --hypothesis-show-statistics
    assert normalised(got) == normalised(want)
    # And it streams exactly where the five passes did (no silent retreat to the whole-file
    # reader), except for a repeated "annotations", which now goes there.
    with mock.patch.object(coco_stream_reference, "PIECE", piece):
        old = streamed(coco_stream_reference.read_outline, text)
    if repeats_annotations(text):
        assert got[0] != "streamed"
    else:
        assert normalised(old) == normalised(want)
        assert got[0] == old[0]


def repeats_annotations(text: bytes) -> bool:
    try:
        members = json.loads(text, object_pairs_hook=Pairs)
    except ValueError:
        return False
    return isinstance(members, Pairs) and [key for key, _ in members].count("annotations") > 1


class Pairs(list):
    """An object's members, repeats kept."""


def normalised(result: tuple) -> tuple:
    """What the COCO reader uses of an outcome: of a COCO object, its three lists (read_outline keeps
    only those when it streams, the whole document when the file went to the whole-file reader)."""
    kind, body = result
    if kind != "refused":
        kind = "read"
        if isinstance(body, dict) and all(isinstance(body.get(k), list) for k in COCO_KEYS[:2]):
            body = {k: body[k] for k in COCO_KEYS if k in body}
    return (kind, json.dumps(body, sort_keys=True, default=repr))


def test_the_old_reader_streamed_both_arrays_of_a_repeated_annotations_key():
    """The difference the one pass removes: json.loads (and now read_outline) keeps the last array."""
    text = b'{"images": [], "annotations": [{"id": 1}], "annotations": [{"id": 2}]}'
    old = streamed(coco_stream_reference.read_outline, text)
    new = streamed(coco_stream.read_outline, text)
    assert old[1]["annotations"] == [{"id": 1}, {"id": 2}]
    assert new[1]["annotations"] == [{"id": 2}] == json.loads(text)["annotations"]


@pytest.mark.parametrize("piece", [1, 2, 7, 1 << 20])
def test_the_outline_cuts_out_each_nested_value_with_its_key(piece):
    text = b'{"a" : 1, "k\\"[" :{"x": "]}"}, "categories":\n[{"id": 2}], "s": "[", "l": [[], {}]}'
    outline = JsonOutline(capture=frozenset({"categories", 'k"['}))
    scan = coco_stream.JsonDepthScan(outline)
    for start in range(0, len(text), piece):
        scan.feed(text[start : start + piece])
    members = json.loads(outline.skeleton.decode())
    assert list(members) == ["a", 'k"[', "categories", "s", "l"]
    spans = {key: outline.spans[value[0]] for key, value in members.items() if isinstance(value, list)}
    for key, (start, end, opening) in spans.items():
        assert json.loads(text[start:end]) == json.loads(text)[key]
        assert text[start] == opening
    captured = {i: json.loads(bytes(b)) for i, b in outline.captured.items()}
    assert captured == {members["categories"][0]: [{"id": 2}], members['k"['][0]: {"x": "]}"}}


def test_a_file_nested_too_deep_is_refused_before_yajl_builds_it(monkeypatch):
    """Given 100,000 "[" in the images, the guards refuse the piece before yajl sees it: its builder
    takes gigabytes for them (the five passes ran the guards first; the one pass must not lose that).
    What is left is the depth scan's numpy arrays, some 50 bytes per bracket."""
    text = b'{"images": ' + b"[" * 100_000 + b"]" * 100_000 + b', "annotations": []}'
    monkeypatch.setattr(coco_stream, "PIECE", 1 << 20)
    limits = {**LIMITS, "max_bytes": 4 * len(text)}
    tracemalloc.start()
    try:
        refused = streamed(coco_stream.read_outline, text, limits)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert refused == expected(text, limits)
    assert refused[1][0]["code"] == "too_deep"
    assert peak < 128 * len(text), peak
