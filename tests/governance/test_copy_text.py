"""COPY's text format: the escaping of ``chain.copy_text`` and ``copy_texts`` against a plain reference."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from governance.ledger.chain import copy_text, copy_texts

_TEXT = st.text(alphabet=st.sampled_from('ab\\\t\n\r\x0b\x0c"{}:,0é\u2028'), max_size=12) | st.text(
    max_size=12
)


def _reference(value: str) -> str:
    """COPY FROM's text format, as PostgreSQL's documentation states it: these four escaped."""
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


@given(_TEXT)
def test_copy_text_escapes_exactly_backslash_tab_and_line_breaks(value):
    assert copy_text(value) == _reference(value)


@given(st.lists(_TEXT, max_size=6))
def test_copy_texts_is_copy_text_of_each(values):
    assert copy_texts(tuple(values)) == tuple(_reference(v) for v in values)
