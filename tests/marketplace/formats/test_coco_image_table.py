"""The COCO reader's image table (coco._ImageTable) answers as the dict of _Image it replaces."""

from __future__ import annotations

import io
import json
import zipfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketplace.formats import coco
from marketplace.formats.archive import ZipSource

_FILES = [f"images/{i}.jpg" for i in range(6)]


def _source() -> ZipSource:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name in _FILES:
            zf.writestr(name, b"x")
    return ZipSource(io.BytesIO(buf.getvalue()))


_IDS = st.one_of(
    st.integers(-3, 40),
    st.integers(0, 2**40),  # far past the dense table's limit: a dict, never a huge array
    st.text(max_size=3),
    st.sampled_from([1.0, 2.5, True, False, float("inf")]),
)
_SIDES = st.one_of(st.none(), st.integers(1, 5000), st.integers(2**31, 2**40))
_IMAGES = st.one_of(
    st.none(), st.builds(coco._Image, key=st.sampled_from(_FILES), width=_SIDES, height=_SIDES)
)


@settings(max_examples=300, deadline=None)
@given(
    entries=st.lists(st.tuples(st.integers(-3, 40) | st.integers(0, 2**40) | st.text(max_size=3), _IMAGES)),
    probes=st.lists(_IDS, max_size=10),
)
def test_the_image_table_answers_as_a_dict(entries, probes):
    source = _source()
    table, expected = coco._ImageTable(source), {}
    for iid, image in entries:
        if iid in expected:
            continue  # the reader never declares an id twice (it reports the duplicate)
        table[iid] = image
        expected[iid] = image
    for iid in [*expected, *probes]:
        assert (iid in table) == (iid in expected)
        assert table.get(iid) == expected.get(iid)
        assert table.lookup(iid) == (iid in expected, expected.get(iid))
        if iid in expected:
            assert table[iid] == expected[iid]
        else:
            with pytest.raises(KeyError):
                table[iid]
    assert table.position.size <= coco._DENSE_PER_FILE * len(_FILES) + coco._DENSE_MARGIN


def test_a_hostile_image_id_does_not_allocate_a_huge_table():
    table = coco._ImageTable(_source())
    table[10**9] = coco._Image(_FILES[0], 4, 3)
    assert table.position.size == 0 and table.get(10**9) == coco._Image(_FILES[0], 4, 3)


def test_usual_coco_ids_take_twelve_bytes_an_image():
    table = coco._ImageTable(_source())
    for iid in range(1, 6):
        table[iid] = coco._Image(_FILES[iid], 640, 480)
    assert not table.other and table.get(3) == coco._Image(_FILES[3], 640, 480)


def test_the_dense_table_never_grows_past_its_limit():
    """Doubling from 32,781 slots would give 65,562, past the limit of 65,560 for six files."""
    table = coco._ImageTable(_source())
    for iid in (32_780, table.limit - 1):
        table[iid] = coco._Image(_FILES[0], 4, 3)
        assert table.position.size <= table.limit
    assert table.get(table.limit - 1) == coco._Image(_FILES[0], 4, 3)


def test_the_label_pass_holds_no_table_of_where_each_image_was_declared():
    # At ten times the images the read peaks in the label pass: the duplicate-declaration table
    # (8 bytes an archive entry) and 8-byte kept positions were held there, needed before it only.
    doc = {
        "images": [{"id": i + 1, "file_name": f"{i}.jpg", "width": 4, "height": 4} for i in range(6)],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1]}],
        "categories": [{"id": 1, "name": "a"}],
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name in _FILES:
            zf.writestr(name, b"x")
        zf.writestr("annotations/instances.json", json.dumps(doc))
    parsed = coco.read_coco(ZipSource(io.BytesIO(buf.getvalue())))
    reader = parsed.labels.gi_frame.f_locals["self"]
    assert reader.declared is None
    assert [f.keep.itemsize for f in reader.files] == [4]
    assert [label.item_key for label in parsed.labels] == ["images/0.jpg"]
    assert [item.key for item in parsed.items] == _FILES
