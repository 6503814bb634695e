"""KeyTable answers as the dict it replaces (ingest's item key -> id), whatever the hashes do."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketplace.formats import keytable
from marketplace.formats.keytable import KeyTable

_KEYS = st.text(alphabet=st.sampled_from("aAé/._\x00\ud800日"), max_size=6)


class _Numbering:
    """Some names numbered, as an open archive numbers its files (position, count, positions)."""

    def __init__(self, names: list[str]):
        self.names = list(dict.fromkeys(names))

    def count(self) -> int:
        return len(self.names)

    def position(self, name) -> int | None:
        return self.names.index(name) if name in self.names else None

    def positions(self, names) -> list[int | None]:
        return [self.position(n) for n in names]


def _same_as_dict(pairs: dict[str, int], probes: list[str], numbered: list[str] | None = None) -> None:
    table = KeyTable(pairs.items(), numbering=_Numbering(numbered) if numbered is not None else None)
    assert len(table) == len(pairs)
    for key in [*pairs, *probes]:
        assert (key in table) == (key in pairs)
        assert table.get(key) == pairs.get(key)
        if key in pairs:
            assert table[key] == pairs[key]
        else:
            with pytest.raises(KeyError):
                table[key]
    known = [k for k in [*probes, *pairs] if k in pairs]
    assert table.values_of(known) == [pairs[k] for k in known]
    unknown = [k for k in probes if k not in pairs]
    if unknown:
        with pytest.raises(KeyError):
            table.values_of([*known, unknown[0]])


@settings(max_examples=300, deadline=None)
@given(
    pairs=st.dictionaries(_KEYS, st.integers(-(2**63), 2**63 - 1), max_size=30),
    probes=st.lists(_KEYS, max_size=10),
)
def test_a_key_table_answers_as_a_dict(pairs, probes):
    _same_as_dict(pairs, probes)


@settings(max_examples=300, deadline=None)
@given(
    pairs=st.dictionaries(_KEYS, st.integers(-(2**63), 2**63 - 1), max_size=30),
    probes=st.lists(_KEYS, max_size=10),
    numbered=st.lists(_KEYS, max_size=30),
    collide=st.booleans(),
)
def test_a_key_table_over_numbered_keys_answers_as_a_dict(pairs, probes, numbered, collide):
    # Some keys have a position (kept by it, the minimum integer apart), some not, some numbered
    # names have no value: the answers are a dict's.
    with pytest.MonkeyPatch.context() as patch:
        if collide:
            patch.setattr(keytable, "_hash", lambda _: 7)
        _same_as_dict({**pairs, **dict.fromkeys(numbered[:1], -(2**63))}, probes, [*numbered, *pairs][::2])


def test_a_numbered_key_table_keeps_no_copy_of_a_numbered_key():
    names = [f"images/{i:06d}.png" for i in range(100)]
    table = KeyTable(((n, i) for i, n in enumerate(names)), numbering=_Numbering(names[:90]))
    assert len(table) == 100 and len(table._values) == 10
    assert table.values_of(names[::-3]) == list(range(99, -1, -3))


def test_a_numbered_key_table_of_sequence_ids_keeps_4_bytes_a_position_until_one_does_not_fit():
    # Item ids by position were 8 bytes each for the whole write: 4 MB at 500,000 images.
    names = [f"images/{i:06d}.png" for i in range(1000)]
    pairs = {n: 2**40 + 7 * i for i, n in enumerate(names)}
    table = KeyTable(pairs.items(), numbering=_Numbering(names))
    assert table._dense.itemsize == 4
    assert table.values_of(names[::-7]) == [pairs[n] for n in names[::-7]]
    pairs[names[-1]] = 2**40 - 1  # below the first value: widened, the same answers
    table = KeyTable(pairs.items(), numbering=_Numbering(names))
    assert table._dense.itemsize == 8
    assert table.values_of(names) == list(pairs.values()) and len(table) == 1000


@settings(max_examples=100, deadline=None)
@given(pairs=st.dictionaries(_KEYS, st.integers(0, 10**6), max_size=30), probes=st.lists(_KEYS, max_size=10))
def test_a_key_table_answers_as_a_dict_when_every_hash_collides(pairs, probes):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(keytable, "_hash", lambda _: 7)
        _same_as_dict(pairs, probes)


def test_a_key_table_of_many_image_keys_finds_each_one():
    pairs = {f"images/train2017/{i:012d}.jpg": 10_000 + i for i in range(50_000)}
    table = KeyTable(pairs.items())
    keys = list(pairs)[::-37]
    assert table.values_of(keys) == [pairs[k] for k in keys]
    assert "images/train2017/000000050000.jpg" not in table
    assert table.get(1) is None and 1 not in table  # not a string: not a key


# FirstByDigest: ingest's duplicate-content check (digest -> first image), against a dict.

_DIGESTS = st.binary(min_size=2, max_size=2).map(lambda b: b * 2)  # 4 bytes: few values, many repeats
_FIRSTS = st.one_of(st.integers(0, 40), st.text(alphabet="ab", max_size=3))


def _first_by_digest_as_a_dict(capacity: int, adds: list[tuple[bytes, object]], probes: list[bytes]) -> None:
    table = keytable.FirstByDigest(capacity, width=4)
    reference: dict[bytes, object] = {}
    used: set[int] = set()
    for digest, first in adds:
        if isinstance(first, int) and first < capacity and digest not in reference:
            if first in used:
                with pytest.raises(ValueError):
                    table.add(digest, first)
                continue
            used.add(first)
        table.add(digest, first)
        reference.setdefault(digest, first)
        assert table.get(digest) == reference[digest]
    assert len(table) == len(reference)
    for digest in [*reference, *probes]:
        assert table.get(digest) == reference.get(digest)


@settings(max_examples=300, deadline=None)
@given(
    capacity=st.integers(0, 30),
    adds=st.lists(st.tuples(_DIGESTS, _FIRSTS), max_size=40),
    probes=st.lists(st.binary(max_size=5), max_size=10),
)
def test_first_by_digest_answers_as_a_dict(capacity, adds, probes):
    _first_by_digest_as_a_dict(capacity, adds, probes)


@settings(max_examples=100, deadline=None)
@given(capacity=st.integers(0, 30), adds=st.lists(st.tuples(_DIGESTS, _FIRSTS), max_size=40))
def test_first_by_digest_answers_as_a_dict_when_every_hash_collides(capacity, adds):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(keytable, "_hash", lambda _: 7)
        _first_by_digest_as_a_dict(capacity, adds, [b"\0\0\0\0", b"zzzz"])


def test_first_by_digest_keeps_a_zero_digest_and_many_images():
    table = keytable.FirstByDigest(50_000)
    zero = bytes(32)
    table.add(zero, 0)
    assert table.get(zero) == 0
    digests = [hashlib.sha256(b"%d" % i).digest() for i in range(1, 50_000)]
    for position, digest in enumerate(digests, start=1):
        table.add(digest, position)
    table.add(digests[7], 12)  # a repeat keeps the first
    assert [table.get(d) for d in digests[::997]] == list(range(1, 50_000, 997))
    assert table.get(hashlib.sha256(b"new").digest()) is None and len(table) == 50_000


# Only 8 bytes kept and the rest confirmed by hashing the first copy again: digests that share their
# first 8 bytes (a supplier can make such images) must still be told apart.
_PREFIXES = st.sampled_from([b"\0" * 8, b"\1" * 8])
_LONG_DIGESTS = st.tuples(_PREFIXES, st.sampled_from([b"a", b"b", b"c"])).map(lambda t: t[0] + t[1] * 24)


@settings(max_examples=300, deadline=None)
@given(
    capacity=st.integers(0, 30),
    adds=st.lists(st.tuples(_LONG_DIGESTS, _FIRSTS), max_size=40),
    collide=st.booleans(),
)
def test_first_by_digest_confirming_its_matches_answers_as_a_dict(capacity, adds, collide):
    full: dict[int, bytes] = {}  # what hashing an entry again gives
    confirmed = []

    def confirm(position: int) -> bytes:
        confirmed.append(position)
        return full[position]

    with pytest.MonkeyPatch.context() as patch:
        if collide:
            patch.setattr(keytable, "_hash", lambda _: 7)
        table = keytable.FirstByDigest(capacity, confirm=confirm)
        reference: dict[bytes, object] = {}
        for digest, first in adds:
            if digest in reference:
                table.add(digest, first)
                continue
            if isinstance(first, int) and first < capacity:
                if first in full:
                    continue  # a position holds one digest (tested above)
                full[first] = digest
            table.add(digest, first)
            reference[digest] = first
        assert len(table) == len(reference)
        for digest in [*reference, b"\0" * 8 + b"z" * 24, b"\2" * 32]:
            assert table.get(digest) == reference.get(digest)
    assert table._digests.shape[1] == 8
