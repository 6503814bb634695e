"""Issue #13: the label spool writes plain tuples, and gives back the (uid, LabelRow) pairs it was given."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from marketplace.deliveries.plan import LabelRow, LabelSpool
from marketplace.deliveries.report import SPOOL_BATCH, label_uid


def _row(n: int) -> LabelRow:
    return LabelRow(
        item=f"images/{n % 7}.png",
        category=["cat", "dog"][n % 2],
        geometry_type="polygon",
        geometry={"bbox": [n, 1.5, 2, 3.25], "polygons": [[0, 0, n, 0.5, 1e-9, 2]]},
        attributes={"occluded": bool(n % 3), "note": "é" * (n % 4)},
        iscrowd=n % 5 == 0,
        is_final=n % 4 != 0,
        annotator="" if n % 2 else f"ann-{n}",
        guideline_version=None if n % 3 else n,
        source=["human", "model", "consensus"][n % 3],
        model_name="",
        model_version="",
        made_at=None if n % 2 else datetime(2024, 1, 1, 12, n % 60, tzinfo=UTC),
        source_ref=f"a.json#/annotations/{n}",
        source_id=str(n) if n % 6 else "",
    )


def test_the_spooled_pairs_come_back_equal_in_order_and_of_the_same_types():
    pairs = [
        (label_uid(7, [None, "41", str(uuid.uuid4())][n % 3]), _row(n)) for n in range(2 * SPOOL_BATCH + 17)
    ]
    spool = LabelSpool()
    try:
        for pair in pairs:
            spool.add(pair)
        back = [pair for batch in spool.batches() for pair in batch]
        again = [pair for batch in spool.batches() for pair in batch]  # lineage reads it twice
    finally:
        spool.close()
    assert spool.count == len(pairs)
    assert back == pairs and again == pairs
    assert all(type(u) is uuid.UUID and type(r) is LabelRow for u, r in back)
    assert [u.version for u, _ in back[:3]] == [4, 5, 4]


def test_a_reader_apart_keeps_its_own_position_while_batches_are_read():
    """The image store reads the item spool in a thread while the write reads it too (StoreAlongside)."""
    from marketplace.deliveries.plan import Spool

    spool = Spool()
    rows = [(n, f"images/{n}.png") for n in range(2 * SPOOL_BATCH + 17)]
    for row in rows:
        spool.add(row)
    try:
        apart, together = spool.batches_apart(), spool.batches()
        seen_apart, seen = [], []
        for batch in together:  # interleaved: each reader must see every batch, in order
            seen.extend(batch)
            seen_apart.extend(next(apart))
        seen_apart.extend(row for batch in apart for row in batch)
        assert seen == rows and seen_apart == rows
    finally:
        spool.close()


def test_a_reader_apart_writes_the_pending_rows_before_its_thread_starts():
    """The store thread writing the last batch while the write's ``batches()`` wrote it too made it twice."""
    from marketplace.deliveries.plan import Spool

    spool = Spool()
    rows = [(n, f"images/{n}.png") for n in range(SPOOL_BATCH + 17)]
    for row in rows:
        spool.add(row)
    try:
        apart = spool.batches_apart()  # not started yet: what a thread is handed
        assert spool.batch == []  # nothing left for that thread to write
        seen = [row for batch in spool.batches() for row in batch]
        assert seen == rows and [row for batch in apart for row in batch] == rows
    finally:
        spool.close()


def _typed(value):
    """A value with the type of each part, NaN comparable: what a round trip must give back exactly."""
    if isinstance(value, dict):
        return (type(value), [(_typed(k), _typed(v)) for k, v in value.items()])
    if isinstance(value, (list, tuple)):
        return (type(value), [_typed(v) for v in value])
    return (type(value), repr(value))


class _Float(float):
    pass


def _first_codec(spool) -> bytes:
    spool._flush()
    spool.file.seek(8)  # past the first batch's length
    return spool.file.read(1)


def test_plain_label_rows_are_marshalled_and_come_back_with_the_same_types_and_values():
    hostile = {"z": -0.0, "nan": float("nan"), "big": 2**200, "s": "\ud800\x00é", "t": (1, True), "n": None}
    pairs = [
        (label_uid(7, None), _row(n)._replace(made_at=None, attributes={**hostile, "n": n}))
        for n in range(SPOOL_BATCH + 5)
    ]
    spool = LabelSpool()
    try:
        for pair in pairs:
            spool.add(pair)
        assert _first_codec(spool) == b"M"
        back = [pair for batch in spool.batches() for pair in batch]
    finally:
        spool.close()
    assert [(u, _typed(tuple(r))) for u, r in back] == [(u, _typed(tuple(r))) for u, r in pairs]


def test_a_batch_marshal_refuses_is_pickled_and_comes_back_the_same():
    """A datetime (a label's own time), a float subclass (numpy's float64 is one), a named tuple."""
    from marketplace.deliveries.plan import Spool

    rows = [(n, datetime(2024, 1, 1, tzinfo=UTC), _Float(1.5), _row(n)) for n in range(5)]
    spool = Spool()
    try:
        for row in rows:
            spool.add(row)
        assert _first_codec(spool) == b"P"
        back = [row for batch in spool.batches() for row in batch]
    finally:
        spool.close()
    assert back == rows
    assert [_typed(r) for r in back] == [_typed(r) for r in rows]


def test_a_spooled_uid_comes_back_as_a_whole_uuid():
    """Rebuilt without UUID's constructor: every attribute, pickling, hashing and text as the original's."""
    import pickle

    uid = label_uid(7, None)
    spool = LabelSpool()
    try:
        spool.add((uid, _row(1)))
        ((back, _),) = next(iter(spool.batches()))
    finally:
        spool.close()
    assert (back, hash(back), str(back), back.is_safe, back.version) == (
        uid,
        hash(uid),
        str(uid),
        uid.is_safe,
        uid.version,
    )
    assert pickle.loads(pickle.dumps(back)) == uid  # noqa: S301 - our own bytes
    assert {back: 1}[uid] == 1
