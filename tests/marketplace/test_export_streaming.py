"""An export's rows come from a server-side cursor fetched ahead by a helper thread (PostgreSQL)."""

import pytest

from marketplace.exports import records
from marketplace.models import Item, Label
from tests.conftest import build_version

pytestmark = pytest.mark.django_db


@pytest.fixture
def small_fetches(monkeypatch):
    monkeypatch.setattr(records, "FETCH_ROWS", 2)  # many fetches, each overlapping the previous chunk's use


def test_the_rows_are_the_query_rows_in_order(dataset, small_fetches):
    version = build_version(dataset, items=5, publish=False)
    query = Label.objects.filter(version=version).order_by("item__key", "id").values_list("id", "item__key")
    assert list(records._streamed(query)) == list(query)


def test_two_streams_interleaved_on_one_connection(dataset, small_fetches):
    version = build_version(dataset, items=5, publish=False)
    items = Item.objects.filter(version=version).order_by("key").values_list("pk", flat=False)
    labels = Label.objects.filter(version=version).order_by("item__key", "id").values_list("item_id", "id")
    got_items, got_labels = records._streamed(items), records._streamed(labels)
    pairs = [(next(got_items), next(got_labels), next(got_labels)) for _ in range(5)]
    assert [p[0][0] for p in pairs] == [pk for (pk,) in items]
    assert [row for p in pairs for row in p[1:]] == list(labels)


def test_a_stream_left_early_leaves_the_connection_usable(dataset, small_fetches):
    version = build_version(dataset, items=5, publish=False)
    stream = records._streamed(Label.objects.filter(version=version).order_by("id").values_list("id"))
    next(stream)
    stream.close()  # waits for the fetch in flight, then closes the cursor
    assert Label.objects.filter(version=version).count() == 10
