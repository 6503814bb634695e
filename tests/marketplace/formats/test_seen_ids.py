"""COCO's duplicate-id check keeps a bitmap for small non-negative integer ids: same answers as a set."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from marketplace.formats.coco import SeenIds

ids = st.one_of(
    st.integers(min_value=0, max_value=5000),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 7, 8, SeenIds.BITMAP_LIMIT - 1, SeenIds.BITMAP_LIMIT, -1]),
    st.text(max_size=4),
    st.integers(min_value=0, max_value=50).map(str),
)


@settings(max_examples=500, deadline=None)
@given(st.lists(ids, max_size=200))
def test_seen_ids_answer_as_a_set_does(sequence):
    seen, reference = SeenIds(), set()
    for aid in sequence:
        assert (aid in seen) == (aid in reference), aid
        seen.add(aid)
        reference.add(aid)
    for aid in sequence:
        assert aid in seen


def test_half_a_million_dense_ids_take_a_bitmap_not_a_set():
    seen = SeenIds()
    for aid in range(1, 500_001):
        seen.add(aid)
    assert not seen.others and len(seen.bits) <= 2 * (500_001 // 8 + 1)
    assert 500_000 in seen and 500_001 not in seen and "1" not in seen
