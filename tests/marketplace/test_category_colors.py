"""Delivered class colours fit the schema's column on every database (SQLite does not check lengths)."""

import pytest

from marketplace.deliveries.schema import stored_color
from marketplace.models import Category


@pytest.mark.parametrize(
    ("delivered", "stored"),
    [
        ("#FFA39E", "#FFA39E"),
        ("#abc", "#aabbcc"),
        ("#FF0000FF", ""),  # with alpha: longer than the column
        ("rgba(255, 0, 0, 0.5)", ""),
        ("red", ""),
        ("", ""),
        (None, ""),
    ],
)
def test_a_delivered_colour_is_kept_only_as_rrggbb(delivered, stored):
    assert stored_color(delivered) == stored
    assert len(stored_color(delivered)) <= Category._meta.get_field("color").max_length
