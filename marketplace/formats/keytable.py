"""Compact tables for what ingest keeps per image: a name -> integer map, a set of digests.

A dict of a delivery's 500,000 image keys to their ids holds ~200 bytes an entry (the key's str
object, the int, the slot); these hold the key's UTF-8 bytes and a few machine integers.
"""

from __future__ import annotations

import array
from collections.abc import Callable, Iterable

import numpy as np

# Keys are found by a 64-bit hash (Python's: stable within the process, unknown outside it), then
# compared, so a collision costs a comparison, never a wrong answer. A name here, so that a test
# can make every hash collide.
_hash = hash


class KeyTable:
    """An immutable map from distinct strings to integers, built once from ``(key, value)`` pairs.

    About ``len(key) + 28`` bytes an entry: the keys in one bytes blob, their ends, their hashes
    sorted with the positions they came from, and the values as 64-bit integers. Given a
    ``numbering`` (an object whose ``position(key)`` gives a key's place below ``count()``, or None:
    an open archive's names), a key with a place costs 8 bytes there instead, and no copy of it is kept.
    """

    def __init__(self, pairs: Iterable[tuple[str, int]], *, numbering=None):
        text = bytearray()
        ends, hashes, values = array.array("Q"), array.array("q"), array.array("q")
        self._numbering = numbering
        # Values by position, 4 bytes each as their distance from the first one (ids from a sequence:
        # an ingest's item ids), widened to 8 once one does not fit (_ABSENT_32 / _ABSENT: no value).
        self._dense = np.full(numbering.count() if numbering is not None else 0, _ABSENT_32, dtype=np.uint32)
        self._base: int | None = None
        self._in_dense = 0
        for key, value in pairs:
            position = numbering.position(key) if numbering is not None else None
            if position is not None and value != _ABSENT:
                if self._dense_at(position) is not None:
                    raise ValueError(f"key {key!r} given twice")
                self._put(position, value)
                self._in_dense += 1
                continue
            text += key.encode("utf-8", "surrogatepass")
            ends.append(len(text))
            hashes.append(_hash(key))
            values.append(value)
        self._text = bytes(text)
        del text
        self._ends = np.frombuffer(ends, dtype=np.uint64) if ends else np.empty(0, dtype=np.uint64)
        keyed = np.frombuffer(hashes, dtype=np.int64) if hashes else np.empty(0, dtype=np.int64)
        self._order = np.argsort(keyed, kind="stable").astype(np.uint32 if len(keyed) < 2**32 else np.int64)
        self._hashes = keyed[self._order]
        self._values = values

    def __len__(self) -> int:
        return len(self._values) + self._in_dense

    def _put(self, position: int, value: int) -> None:
        if self._dense.dtype == np.uint32:
            if self._base is None:
                self._base = value
            if 0 <= value - self._base < _ABSENT_32:
                self._dense[position] = value - self._base
                return
            wide = self._dense.astype(np.int64)
            absent = self._dense == _ABSENT_32
            wide += self._base if self._base is not None else 0
            wide[absent] = _ABSENT
            self._dense = wide
        self._dense[position] = value

    def _dense_at(self, position: int) -> int | None:
        """The value kept for a position, or None."""
        value = int(self._dense[position])
        if self._dense.dtype == np.uint32:
            return None if value == _ABSENT_32 else value + self._base
        return None if value == _ABSENT else value

    def _key(self, i: int) -> str:
        start = int(self._ends[i - 1]) if i else 0
        return self._text[start : int(self._ends[i])].decode("utf-8", "surrogatepass")

    def _find(self, key: str) -> int:
        h = _hash(key)
        at = int(np.searchsorted(self._hashes, h, side="left"))
        while at < len(self._hashes) and self._hashes[at] == h:
            i = int(self._order[at])
            if self._key(i) == key:
                return i
            at += 1
        return -1

    def _dense_value(self, key: str) -> int | None:
        if not self._in_dense:
            return None
        position = self._numbering.position(key)
        if position is None:
            return None
        return self._dense_at(position)

    def get(self, key: str, default=None):
        if not isinstance(key, str):
            return default
        value = self._dense_value(key)
        if value is not None:
            return value
        i = self._find(key)
        return self._values[i] if i >= 0 else default

    def __getitem__(self, key: str) -> int:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        return self.get(key) is not None  # type: ignore[arg-type]

    def values_of(self, keys: list[str]) -> list[int]:
        """``[self[k] for k in keys]``, the hashes looked up in one numpy call (a batch of labels)."""
        if not keys:
            return []
        if self._in_dense:
            # Numbered keys by their positions (one batch call when the numbering has one), the rest
            # one by one (a delivery's label names an image the archive has, or it was refused).
            positions = getattr(self._numbering, "positions", None)
            found = positions(keys) if positions is not None else [self._numbering.position(k) for k in keys]
            dense, base, absent = self._dense, 0, _ABSENT
            if dense.dtype == np.uint32:
                base, absent = self._base, _ABSENT_32
            out = []
            for key, position in zip(keys, found, strict=True):
                value = int(dense[position]) if position is not None else absent
                out.append(value + base if value != absent else self[key])
            return out
        return self._values_by_hash(keys)

    def values_at(self, positions: list[int | None], keys: list[str]) -> list[int]:
        """``values_of(keys)``, given each key's position in the numbering (None: it has none).

        The positions must be the numbering's own answers for these keys (``numbering.position(key)``,
        taken earlier): ingest's label pass has them, and looking each name up again here -- its hash,
        then its name read back from the archive's directory to compare -- cost ~2 us a label.
        """
        if not keys:
            return []
        if not self._in_dense:
            return self.values_of(keys)
        if len(positions) != len(keys):
            raise ValueError(f"{len(positions)} positions for {len(keys)} keys")
        dense, base, absent = self._dense, 0, _ABSENT
        if dense.dtype == np.uint32:  # distances from the first value (see _put)
            base, absent = self._base, _ABSENT_32
        if None not in positions:  # the usual batch: one numpy gather
            gathered = dense[np.fromiter(positions, dtype=np.int64, count=len(positions))]
            if not (gathered == absent).any():
                return (gathered.astype(np.int64) + base).tolist() if base else gathered.tolist()
        values = [int(dense[p]) if p is not None else absent for p in positions]
        # A key without a place in the numbering, or without a value there: kept with its text.
        return [v + base if v != absent else self[k] for k, v in zip(keys, values, strict=True)]

    def _values_by_hash(self, keys: list[str]) -> list[int]:
        wanted = np.fromiter((_hash(k) for k in keys), dtype=np.int64, count=len(keys))
        at = np.minimum(np.searchsorted(self._hashes, wanted, side="left"), max(len(self._hashes) - 1, 0))
        out = []
        for key, h, a in zip(keys, wanted.tolist(), at.tolist(), strict=True):
            i = int(self._order[a]) if len(self._hashes) and self._hashes[a] == h else -1
            if i < 0 or self._key(i) != key:
                out.append(self[key])  # a collision or an unknown key: the slow path decides
                continue
            out.append(self._values[i])
        return out


# The dense table's "no value here": a value equal to it is kept with the unnumbered keys.
_ABSENT = np.iinfo(np.int64).min
_ABSENT_32 = np.iinfo(np.uint32).max  # the same in the 4-byte table (distances from the first value)


class FirstByDigest:
    """Content digest (bytes, e.g. SHA-256's 32) -> the first entry that had it: ingest's duplicate-image check.

    A dict of 500,000 ``bytes`` keys holds ~140 bytes an image (the key object, the value, the slot) and
    leaves its small objects scattered through the heap after it is gone. Entries that have a
    position (a number below ``capacity``: an image's place among the archive's names) cost
    ``width`` + 1 bytes in dense arrays by position, plus 8-16 bytes of open-addressing slots holding
    positions; the digest is confirmed against the dense array, so a slot collision costs a
    comparison, never a wrong answer. Given ``confirm`` (position -> that entry's full digest, computed
    again: the image hashed again), only the digest's first 8 bytes are kept (~20 bytes an image in
    all), and a match on them is confirmed by it: a real duplicate costs one more hash of its first
    copy, a collision of 8 bytes (which a supplier can make) no wrong answer. Entries without a
    position (a key the source does not number) go to a dict, as before.
    """

    def __init__(
        self, capacity: int, *, width: int = 32, confirm: Callable[[int], bytes | None] | None = None
    ):
        self.width = width
        self._confirm = confirm
        self._kept = width if confirm is None else min(width, 8)
        self._digests = np.zeros((capacity, self._kept), dtype=np.uint8)
        self._taken = np.zeros(capacity, dtype=bool)  # a position holds one digest, never two
        size = 8
        while size < 2 * capacity:  # load factor at most 1/2: short probe runs
            size *= 2
        self._mask = size - 1
        self._slots = np.full(size, -1, dtype=np.int32 if capacity < 2**31 else np.int64)
        self._count = 0
        self._other: dict[bytes, object] = {}

    def __len__(self) -> int:
        return self._count + len(self._other)

    def _probe(self, digest: bytes) -> tuple[int, int]:
        """(slot, position) for ``digest``: its position if present, else -1 and the free slot to use."""
        # The slot from Python's hash (keyed per process), not the digest's own bytes: a supplier
        # can make images whose digests share low bits, not ones whose hashes here collide.
        slot = _hash(digest) & self._mask
        kept = digest[: self._kept]
        while True:
            position = int(self._slots[slot])
            if position < 0:
                return slot, position
            if self._digests[position].tobytes() == kept and (
                self._confirm is None or self._confirm(position) == digest
            ):
                return slot, position
            slot = (slot + 1) & self._mask

    def get(self, digest: bytes):
        """The position (an int) or key (as added) of the first entry with this digest, or None."""
        if len(digest) == self.width and self._count:
            _, position = self._probe(digest)
            if position >= 0:
                return position
        return self._other.get(digest)

    def add(self, digest: bytes, first) -> None:
        """Remember ``first`` (a position below ``capacity``, or any other key) for ``digest``, if new."""
        if self.get(digest) is not None:
            return
        if isinstance(first, int) and 0 <= first < len(self._digests) and len(digest) == self.width:
            if self._taken[first]:
                raise ValueError(f"position {first} already holds a digest")
            self._taken[first] = True
            slot, _ = self._probe(digest)
            self._digests[first] = np.frombuffer(digest[: self._kept], dtype=np.uint8)
            self._slots[slot] = first
            self._count += 1
        else:
            self._other[digest] = first
