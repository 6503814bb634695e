"""KeyTable answers as the dict it replaces (ingest's item key -> id), whatever the hashes do."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marketplace.formats import keytable
from marketplace.formats.keytable import KeyTable

_KEYS = st.text(alphabet=st.sampled_from("aAé/._\x00\ud800日"), max_size=6)


def _same_as_dict(pairs: dict[str, int], probes: list[str]) -> None:
    table = KeyTable(pairs.items())
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
