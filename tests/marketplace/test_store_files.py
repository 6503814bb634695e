"""Storing a delivery's images before its rows: complete files under their hash, or nothing (deliveries.write)."""

import hashlib
import io
import multiprocessing
import os
import posixpath
import signal
import stat
import tracemalloc
from datetime import timedelta

import pytest
from django.core.files.storage import default_storage
from django.utils import timezone
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from marketplace.blobs import blob_key
from marketplace.deliveries import image_pool, sweeping, write
from marketplace.formats.archive import ZipSource
from marketplace.models import Item

from . import ingest_support as support
from .ingest_support import coco_files, make_delivery, picture, storage_files, zip_bytes

media, run = support.media, support.run  # fixtures


def _archive(files: dict[str, bytes]) -> ZipSource:
    return ZipSource(io.BytesIO(zip_bytes(files)))


def _key(data: bytes, suffix: str = ".jpg") -> str:
    return blob_key(hashlib.sha256(data).hexdigest(), suffix)


def _store_generic(source, pairs):
    return write._store_generic(source, iter(pairs))


def _store_local(source, pairs):
    return write._store_local(source, iter(pairs))


def _images() -> dict[str, bytes]:
    files = {f"images/{i}.jpg": picture(20 + i, 10, i) for i in range(6)}
    files["images/again.jpg"] = files["images/0.jpg"]  # one blob for two entries
    return files


def _tree(root) -> dict[str, tuple]:
    """Every file and folder under root: its bytes (files) and its permission bits."""
    return {
        p.relative_to(root).as_posix(): (
            p.read_bytes() if p.is_file() else None,
            stat.S_IMODE(p.stat().st_mode),
        )
        for p in root.rglob("*")
    }


@pytest.mark.parametrize("permissions", [None, (0o640, 0o750)], ids=["umask", "upload-permissions"])
def test_the_local_fast_path_leaves_what_the_storage_api_leaves(tmp_path, settings, permissions):
    if permissions:
        settings.FILE_UPLOAD_PERMISSIONS, settings.FILE_UPLOAD_DIRECTORY_PERMISSIONS = permissions
    files = _images()
    pairs = [(k, _key(v)) for k, v in files.items()]
    trees = {}
    for name, store in (("api", _store_generic), ("local", _store_local)):
        settings.MEDIA_ROOT = str(tmp_path / name)
        assert store(_archive(files), pairs) == 6
        trees[name] = _tree(tmp_path / name)
    assert write._LocalBlobWriter.applies_to(default_storage)
    assert trees["local"] == trees["api"]
    assert {k for k, (data, _) in trees["local"].items() if data is not None} == {k for _, k in pairs}
    if permissions:
        assert {mode for data, mode in trees["local"].values() if data is not None} == {0o640}


class _DyingSource:
    """Hands out the first half of an entry, then SIGKILLs its process: no finally, no cleanup runs."""

    def __init__(self, data: bytes):
        self.data = data

    def open(self, key: str):
        source = self

        class Stream(io.RawIOBase):
            calls = 0

            def read(self, size=-1):
                self.calls += 1
                if self.calls == 1:
                    return source.data[: len(source.data) // 2]
                os.kill(os.getpid(), signal.SIGKILL)

        return Stream()


def _store_then_die(data: bytes, storage_key: str) -> None:
    write._LocalBlobWriter(default_storage, _DyingSource(data)).put("images/big.jpg", storage_key)
    os._exit(0)  # not reached


def _killed_mid_write(data: bytes, key: str) -> None:
    child = multiprocessing.get_context("fork").Process(target=_store_then_die, args=(data, key))
    child.start()
    child.join(60)
    assert child.exitcode == -signal.SIGKILL


def test_a_process_killed_mid_write_leaves_no_partial_file_under_the_key(media):
    data = os.urandom(300_000)
    key = _key(data)
    _killed_mid_write(data, key)

    assert not (media / key).exists()  # else every later run would take it as stored
    (leftover,) = storage_files(media)  # the half-written temporary file, for the orphan sweep
    assert leftover.endswith(".part") and (media / leftover).stat().st_size == len(data) // 2

    write._LocalBlobWriter(default_storage, _archive({"images/big.jpg": data})).put("images/big.jpg", key)
    assert (media / key).read_bytes() == data


@pytest.mark.django_db
def test_the_orphan_sweep_removes_what_a_killed_write_left(media):
    data = os.urandom(300_000)
    _killed_mid_write(data, _key(data))
    assert len(storage_files(media)) == 1

    swept = sweeping.sweep_orphan_blobs(grace_seconds=60, now=timezone.now() + timedelta(hours=1))
    assert swept["deleted"] == 1 and storage_files(media) == set()


@pytest.mark.parametrize("store", [_store_generic, _store_local], ids=["storage-api", "local"])
def test_an_entry_that_no_longer_has_its_checked_hash_is_not_stored(media, store):
    files = {"images/a.jpg": b"the bytes now in the archive"}
    with pytest.raises(write.ChangedContentError):
        store(_archive(files), [("images/a.jpg", _key(b"the bytes that were checked"))])
    assert storage_files(media) == set()  # nothing under the key, and no temporary file


class _Unreadable:
    def open(self, key: str):
        raise AssertionError(f"{key} was read although its blob is stored")


@pytest.mark.parametrize("store", [_store_generic, _store_local], ids=["storage-api", "local"])
def test_an_image_whose_blob_is_stored_is_not_read_again(media, store):
    files = _images()
    pairs = [(k, _key(v)) for k, v in files.items()]
    store(_archive(files), pairs)
    before = _tree(media)
    assert store(_Unreadable(), pairs) == 6
    assert _tree(media) == before


@pytest.mark.django_db
def test_a_delivery_into_s3_stores_every_image_under_its_hash(
    s3_storage, dataset, monkeypatch, settings, run
):
    monkeypatch.setattr(image_pool, "MIN_IMAGES", 1)
    settings.IMAGE_CHECK_WORKERS = 2  # the archive is a temporary copy: the workers read it by /proc/self/fd
    assert not write._LocalBlobWriter.applies_to(default_storage)
    files = coco_files(n_images=8)
    result = run(make_delivery(dataset, files))

    assert result.ok, result.problems
    client, bucket = s3_storage["client"], s3_storage["bucket"]
    stored = set(Item.objects.filter(version__dataset=dataset).values_list("storage_key", flat=True))
    assert len(stored) == 8
    for key in stored:
        body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert _key(body) == key


_FOLDER_KEYS = st.one_of(
    st.builds(
        lambda a, b, name: f"blobs/{a}/{b}/{name}",
        st.sampled_from(["00", "0a", "ab", "ff"]),
        st.sampled_from(["00", "cd", "fe"]),
        st.sampled_from(["x.jpg", "y.png", "abcd.jpg"]),
    ),
    st.sampled_from(["blobs/AB/cd/x.jpg", "blobs/abc/d/x", "other/x.jpg", "x.jpg", "blobs/ab/x.jpg"]),
)


@hypothesis_settings(max_examples=200, deadline=None)
@given(steps=st.lists(st.tuples(_FOLDER_KEYS, st.booleans()), max_size=30))
def test_the_made_folders_answer_as_a_set_of_their_paths(steps):
    made, model = write.MadeFolders(), set()
    for key, add in steps:
        folder = "/media/" + posixpath.dirname(key)
        assert made.made(key, folder) == (folder in model)
        if add:
            made.add(key, folder)
            model.add(folder)


def test_every_blob_folder_made_is_remembered_in_a_bitmap_not_a_set_of_paths():
    # A 500,000-image delivery makes all 65,536 blob folders: their paths in a set held ~10 MB.
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        made = write.MadeFolders()
        for slot in range(1 << 16):
            key = blob_key(f"{slot:04x}" + "0" * 60, ".jpg")
            made.add(key, "/srv/media/" + posixpath.dirname(key))
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held < 200_000
    assert made.made(blob_key("ffff" + "1" * 60, ".png"), "/srv/media/blobs/ff/ff")
