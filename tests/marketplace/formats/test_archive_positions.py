"""Issue #13: an open archive answers a name asked again without reading its directory again.

The COCO reader asks for each image's position a few times in a row (its file, its declaration, its
tables); each answer read the name back from the central directory to confirm the hash (~3 us).
"""

from __future__ import annotations

import io

from marketplace.formats import archive
from marketplace.formats.archive import ZipSource

from .builders import zip_bytes


def _source(monkeypatch, n: int = 6) -> tuple[ZipSource, list[str], list[int]]:
    names = [f"images/{i}.png" for i in range(n)]
    source = ZipSource(io.BytesIO(zip_bytes(dict.fromkeys(names, b"x"))))
    read = []
    real = ZipSource._name_of

    def counting(self, position):
        read.append(position)
        return real(self, position)

    monkeypatch.setattr(ZipSource, "_name_of", counting)
    return source, names, read


def test_a_name_found_once_is_found_again_without_reading_the_directory(monkeypatch):
    source, names, read = _source(monkeypatch)
    first = source.position("images/3.png")
    assert read == [first]
    assert [source.position("images/3.png") for _ in range(3)] == [first] * 3
    assert read == [first]
    assert source.name_at(first) == "images/3.png"


def test_the_remembered_answers_are_the_same_when_every_hash_collides(monkeypatch):
    monkeypatch.setattr(archive, "_hash", lambda name: 7)
    source, names, _ = _source(monkeypatch)
    for _ in range(2):
        assert [source.position(n) for n in names] == list(range(len(names)))
        assert source.position("images/99.png") is None
        assert source.positions([*names, "nope"]) == [*range(len(names)), None]


def test_the_remembered_names_are_bounded(monkeypatch):
    monkeypatch.setattr(archive, "_RECENT_NAMES", 4)
    source, names, _ = _source(monkeypatch, n=10)
    for n in names:
        source.position(n)
    assert len(source._recent) <= 4
    assert [source.position(n) for n in names] == list(range(10))
