"""Streaming COCO (formats.coco_stream): the whole-file reader's outcomes, in memory that does not grow.

Every test of test_coco runs again here with every file above the streaming threshold, so each
annotation is parsed by ijson one at a time; then the cases where yajl and ``json.loads`` could
disagree are compared outcome for outcome with the whole-file reader, and the labels' peak memory
is measured against the file's own parse.
"""

from __future__ import annotations

import dataclasses
import json
import tracemalloc

import pytest

from marketplace.formats import coco, coco_stream
from marketplace.formats.coco import read_coco
from marketplace.formats.model import FormatError

from .builders import image_bytes, zip_source
from .test_coco import *  # noqa: F403  (every reader test, collected again in streaming mode)


@pytest.fixture(autouse=True)
def streaming(monkeypatch, request):
    if "whole_file" not in request.fixturenames:
        monkeypatch.setattr(coco, "STREAM_ABOVE_BYTES", -1)


@pytest.fixture
def whole_file():
    return None


def outcome(source) -> tuple:
    """What read_coco gives, made comparable: problems and every record, or the refusal."""
    try:
        parsed = read_coco(source)
    except FormatError as exc:
        return ("refused", [dataclasses.asdict(p) for p in exc.problems])
    items = [dataclasses.asdict(i) for i in parsed.items]
    labels = [dataclasses.asdict(label) for label in parsed.labels]
    problems = [dataclasses.asdict(p) for p in parsed.problems]
    return ("read", [dataclasses.asdict(c) for c in parsed.categories], items, labels, problems)


def both_ways(monkeypatch, files: dict) -> tuple:
    monkeypatch.setattr(coco, "STREAM_ABOVE_BYTES", 1 << 40)
    whole = outcome(zip_source(files))
    monkeypatch.setattr(coco, "STREAM_ABOVE_BYTES", -1)
    streamed = outcome(zip_source(files))
    monkeypatch.setattr(coco_stream, "PIECE", 5)  # every candidate cut across pieces somewhere
    in_small_pieces = outcome(zip_source(files))
    assert in_small_pieces == streamed
    return whole, streamed


def _doc(n_annotations: int = 3) -> dict:
    return {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48}],
        "annotations": [
            {
                "id": i + 1,
                "image_id": 1,
                "category_id": 1,
                "bbox": [1.5, 2, 10, 10.25],
                "area": 103.0,
                "iscrowd": 0,
            }
            for i in range(n_annotations)
        ],
        "categories": [{"id": 1, "name": "car", "supercategory": "vehicle"}],
    }


AWKWARD = {
    "categories after the annotations, as in COCO's files": lambda: json.dumps(
        {k: _doc()[k] for k in ("images", "annotations", "categories")}
    ),
    "a byte-order mark": lambda: "\ufeff" + json.dumps(_doc()),
    "NaN in an annotation (json.loads reads it)": lambda: json.dumps(_doc()).replace("103.0", "NaN"),
    "a syntax error deep in the annotations": lambda: json.dumps(_doc(50), indent=1).replace('"iscrowd": 0\n  }', '"iscrowd": 0,\n  }', 1),
    "the top level is a list": lambda: json.dumps([_doc()]),
    "annotations is not a list": lambda: json.dumps({**_doc(), "annotations": {"0": {}}}),
    "images given twice": lambda: '{"images": [], ' + json.dumps(_doc())[1:],
    "categories null": lambda: json.dumps({**_doc(), "categories": None}),
    "big integers and unicode": lambda: json.dumps(
        {**_doc(), "annotations": [{**_doc()["annotations"][0], "attributes": {"n": 10**30, "é": "ü"}}]}
    ),
    "not UTF-8": lambda: json.dumps(_doc()).replace('"car"', '"c\xe9r"').encode("latin-1"),
    "too deep": lambda: json.dumps({**_doc(), "x": "[" * 70 + "]" * 70}).replace('"' + "[" * 70 + "]" * 70 + '"', "[" * 70 + "]" * 70),
    "empty": lambda: "",
    "a float past 1e308 (strict_json refuses it)": lambda: json.dumps(_doc()).replace("103.0", "1e400"),
    "a lone surrogate escape": lambda: json.dumps(_doc()).replace('"vehicle"', '"veh\\ud800icle"'),
    "a NUL escape": lambda: json.dumps(_doc()).replace('"vehicle"', '"veh\\u0000icle"'),
    "an integer of 5,000 digits": lambda: json.dumps(_doc()).replace("103.0", "7" * 5000),
    "a caption among the annotations": lambda: json.dumps(
        {**_doc(), "annotations": [*_doc()["annotations"], {"id": 9, "image_id": 1, "caption": "a red car"}]}
    ),
    "a caption key spelt with an escape": lambda: json.dumps(
        {**_doc(), "annotations": [*_doc()["annotations"], {"id": 9, "image_id": 1, "caption": "a red car"}]}
    ).replace('"caption"', '"\\u0063aption"'),
}  # fmt: skip


@pytest.mark.parametrize("case", list(AWKWARD))
def test_streaming_gives_the_whole_file_readers_outcome(case, monkeypatch, whole_file):
    files = {"annotations/instances_train.json": AWKWARD[case](), "images/train/a.jpg": image_bytes(64, 48)}
    whole, streamed = both_ways(monkeypatch, files)
    assert streamed == whole


def test_a_syntax_error_in_the_annotations_is_found_before_any_record(monkeypatch, whole_file):
    text = json.dumps(_doc(50), indent=1)
    broken = text.replace('"iscrowd": 0\n  }', '"iscrowd": 0,\n  }', 1)
    monkeypatch.setattr(coco, "STREAM_ABOVE_BYTES", -1)
    with pytest.raises(FormatError) as caught:
        read_coco(
            zip_source(
                {"annotations/instances_train.json": broken, "images/train/a.jpg": image_bytes(64, 48)}
            )
        )
    assert caught.value.problems[0].code == "invalid_json" and caught.value.problems[0].line is not None


def test_the_labels_stream_in_memory_that_does_not_grow_with_them(monkeypatch, whole_file):
    doc = _doc(20_000)
    for a in doc["annotations"]:
        a["segmentation"] = [[float(v) for v in range(40)]]
    text = json.dumps(doc).encode()
    files = {"annotations/instances_train.json": text, "images/train/a.jpg": image_bytes(64, 48)}

    def peak_of(fn) -> int:
        tracemalloc.start()
        try:
            fn()
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    whole_parse = peak_of(lambda: json.loads(text))
    monkeypatch.setattr(coco, "STREAM_ABOVE_BYTES", -1)
    monkeypatch.setattr(coco_stream, "PIECE", 64 * 1024)
    source = zip_source(files)
    parsed = read_coco(source)
    list(parsed.items)
    count = 0

    def read_labels():
        nonlocal count
        for _ in parsed.labels:
            count += 1

    streamed = peak_of(read_labels)
    assert count == 20_000
    assert streamed < whole_parse / 10, (streamed, whole_parse)


def test_a_file_without_the_word_caption_is_not_parsed_again_for_captions(monkeypatch, whole_file):
    passes = []
    real_iter = coco_stream.StreamedArray.__iter__
    monkeypatch.setattr(
        coco_stream.StreamedArray, "__iter__", lambda self: passes.append(1) or real_iter(self)
    )
    monkeypatch.setattr(coco, "STREAM_ABOVE_BYTES", -1)
    files = {
        "annotations/instances_train.json": json.dumps(_doc()),
        "images/train/a.jpg": image_bytes(64, 48),
    }

    parsed = read_coco(zip_source(files))
    items, labels = list(parsed.items), list(parsed.labels)

    assert len(items) == 1 and len(labels) == 3
    assert len(passes) == 1  # the labels' own pass only


@pytest.mark.parametrize("piece", [2, 3, 4, 5, 6, 7, 8, 9, 10, 64])
def test_a_caption_cut_across_pieces_is_still_kept(monkeypatch, whole_file, piece):
    doc = {
        **_doc(),
        "annotations": [*_doc()["annotations"], {"id": 9, "image_id": 1, "caption": "a red car"}],
    }
    files = {"annotations/instances_train.json": json.dumps(doc), "images/train/a.jpg": image_bytes(64, 48)}
    monkeypatch.setattr(coco, "STREAM_ABOVE_BYTES", -1)
    monkeypatch.setattr(coco_stream, "PIECE", piece)

    parsed = read_coco(zip_source(files))

    assert [i.attributes.get("captions") for i in parsed.items] == [["a red car"]]
