"""Storing the images of a plan without duplicates keeps no set of keys, and stores the same files."""

import hashlib
import io

import pytest

from marketplace.blobs import blob_key
from marketplace.deliveries import service, write
from marketplace.formats.archive import ZipSource
from marketplace.models import Item

from . import ingest_support as support
from .ingest_support import coco_files, make_delivery, picture, storage_files, zip_bytes

media = support.media  # fixture


def _key(data: bytes) -> str:
    return blob_key(hashlib.sha256(data).hexdigest(), ".jpg")


@pytest.mark.parametrize("store", [write._store_generic, write._store_local], ids=["storage-api", "local"])
def test_distinct_pairs_store_every_file_once(media, store):
    files = {f"images/{i}.jpg": picture(20 + i, 10, i) for i in range(5)}
    pairs = [(k, _key(v)) for k, v in files.items()]
    stored = store(ZipSource(io.BytesIO(zip_bytes(files))), write.DistinctPairs(iter(pairs)))
    assert stored == 5
    assert storage_files(media) == {k for _, k in pairs}


def test_an_ingest_without_duplicates_hands_the_store_distinct_pairs(dataset, media, monkeypatch):
    seen = []
    real = write._copy_files

    def spy(delivery, pairs, *rest):
        seen.append(isinstance(pairs, write.DistinctPairs))
        return real(delivery, pairs, *rest)

    monkeypatch.setattr(write, "_copy_files", spy)
    result = service.ingest_delivery(delivery_id=make_delivery(dataset, coco_files(n_images=3)).pk)
    assert result.ok and seen == [True]
    keys = set(Item.objects.filter(version__dataset=dataset).values_list("storage_key", flat=True))
    assert len(keys) == 3 and keys <= storage_files(media)


def test_the_image_store_reads_the_archive_the_check_opened(dataset, media, monkeypatch):
    # Opening it again held a second index of every entry (and zipfile's copy of the central
    # directory while it was read) for the whole write.
    opened = []
    real = service.open_archive

    def counting(delivery):
        opened.append(delivery.pk)
        return real(delivery)

    monkeypatch.setattr(service, "open_archive", counting)
    monkeypatch.setattr(write, "open_archive", counting)
    result = service.ingest_delivery(delivery_id=make_delivery(dataset, coco_files(n_images=3)).pk)
    assert result.ok and len(opened) == 1
    keys = set(Item.objects.filter(version__dataset=dataset).values_list("storage_key", flat=True))
    assert len(keys) == 3 and keys <= storage_files(media)


def test_the_size_table_answers_as_a_dict_over_a_numbered_source_and_without_one():
    from marketplace.deliveries.plan import _pack_size, _SizeTable

    files = {f"images/{i}.jpg": b"x" for i in range(4)}
    source = ZipSource(io.BytesIO(zip_bytes(files)))
    for table in (_SizeTable(source), _SizeTable()):
        expected = {}
        for key, packed in (
            ("images/1.jpg", _pack_size(640, 480, True)),
            ("images/3.jpg", _pack_size(0, 0, False)),  # 0: kept apart, not taken for "absent"
            ("not/in/the/archive.jpg", _pack_size(2, 2, False)),
            ("images/2.jpg", _pack_size(2**40, 7, False)),  # too large for 63 bits: kept apart
        ):
            table[key] = packed
            expected[key] = packed
        for key in [*files, *expected, "nope"]:
            assert table.get(key) == expected.get(key)
            assert (key in table) == (key in expected)
