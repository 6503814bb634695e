"""Issue #13: the write finds each label's item id by the position its image had in the label pass.

Looking each label's image name up again in the write -- its hash, then the name read back from the
archive's directory to compare -- cost ~2 us a label (1 s of client CPU at 500,000 labels).
"""

from __future__ import annotations

import pytest
from django.db import connection

from marketplace.deliveries import service
from marketplace.deliveries.plan import LabelSpool
from marketplace.formats.archive import ZipSource
from marketplace.formats.keytable import KeyTable
from marketplace.models import Label

from . import ingest_support as support
from .ingest_support import coco_files, make_delivery
from .test_label_spool import _row

media = support.media  # fixture

pytestmark = pytest.mark.django_db


def test_the_write_does_not_look_the_labels_image_names_up_again(dataset, media, monkeypatch):
    if connection.vendor != "postgresql":
        pytest.skip("the labels' COPY rows (PostgreSQL); SQLite's bulk_create looks each key up")
    looked_up = []
    real_positions, real_write = ZipSource.positions, service.write_version
    in_write = []

    def positions(self, names):
        if in_write:
            looked_up.append(len(names))
        return real_positions(self, names)

    def write_version(**kwargs):
        in_write.append(True)
        return real_write(**kwargs)

    monkeypatch.setattr(ZipSource, "positions", positions)
    monkeypatch.setattr(service, "write_version", write_version)
    result = service.ingest_delivery(delivery_id=make_delivery(dataset, coco_files(n_images=4)).pk)
    assert result.ok and in_write
    assert looked_up == []
    # Each label still names its own image.
    rows = Label.objects.filter(version__dataset=dataset).values_list("item__key", "source_ref")
    by_ref = {ref.split("#")[1]: key for key, ref in rows}
    assert by_ref == {
        "/annotations/0": "images/train/0000.jpg",
        "/annotations/1": "images/train/0001.jpg",
        "/annotations/2": "images/train/0002.jpg",
        "/annotations/3": "images/train/0003.jpg",
        "/annotations/4": "images/train/0000.jpg",
    }


class _Numbering:
    def __init__(self, names: list[str]):
        self.names = names

    def count(self) -> int:
        return len(self.names)

    def position(self, name) -> int | None:
        return self.names.index(name) if name in self.names else None


def test_values_at_answers_as_values_of_with_and_without_positions():
    names = ["a.png", "b.png", "c.png"]
    table = KeyTable([("c.png", 30), ("a.png", 10), ("elsewhere.png", 99)], numbering=_Numbering(names))
    keys = ["a.png", "elsewhere.png", "c.png", "a.png"]
    assert table.values_at([0, None, 2, 0], keys) == table.values_of(keys) == [10, 99, 30, 10]
    assert table.values_at([0, 2], ["a.png", "c.png"]) == [10, 30]
    with pytest.raises(KeyError):
        table.values_at([1], ["b.png"])  # a place in the numbering, but no value: as values_of
    with pytest.raises(ValueError):
        table.values_at([0], ["a.png", "c.png"])
    unnumbered = KeyTable([("a.png", 1), ("b.png", 2)])
    assert unnumbered.values_at([None, None], ["b.png", "a.png"]) == [2, 1]
    # Values kept as 4-byte distances from the first one, and widened to 8 bytes past 2**32 - 1 away.
    narrow = KeyTable([("a.png", 2**40), ("c.png", 2**40 + 7)], numbering=_Numbering(names))
    assert narrow._dense.itemsize == 4
    assert (
        narrow.values_at([0, 2], ["a.png", "c.png"])
        == narrow.values_of(["a.png", "c.png"])
        == [2**40, 2**40 + 7]
    )
    wide = KeyTable([("c.png", 5), ("a.png", 2**40)], numbering=_Numbering(names))
    assert wide.values_at([2, 0], ["c.png", "a.png"]) == wide.values_of(["c.png", "a.png"]) == [5, 2**40]


def test_the_label_spool_gives_back_each_rows_position():
    spool = LabelSpool()
    try:
        from marketplace.deliveries.report import label_uid

        pairs = [(label_uid(7, None), _row(n)) for n in range(5)]
        for n, pair in enumerate(pairs):
            spool.add(pair, None if n == 3 else n * 10)
        triples = [t for batch in spool.batches_with_positions() for t in batch]
        assert [(u, r) for u, r, _ in triples] == pairs
        assert [p for _, _, p in triples] == [0, 10, 20, None, 40]
        assert [pair for batch in spool.batches() for pair in batch] == pairs
    finally:
        spool.close()
