"""Image checks in a pool of processes give the very outcomes of the one-process checks, in order."""

import io
import os
import tempfile

import pytest

from marketplace.deliveries import image_pool
from marketplace.deliveries.images import ImageChecker
from marketplace.formats.archive import ZipSource
from marketplace.models import Item

from . import ingest_support as support
from .ingest_support import coco_files, make_delivery, picture, png_with_size, zip_bytes

media, run = support.media, support.run  # fixtures


def hostile_and_good_images() -> dict[str, bytes]:
    files = {f"images/{i:03d}.jpg": picture(40 + i, 30, i) for i in range(40)}
    files["images/014.jpg"] = picture(40, 30, 14)[:200]  # truncated: cannot be decoded
    files["images/020.jpg"] = b"not an image at all"
    files["images/025.png"] = picture(33, 22, 3, fmt="PNG")  # a PNG named as one
    files["images/030.png"] = png_with_size(100_000, 100_000)  # a decompression bomb's header
    files["images/031.jpg"] = files["images/000.jpg"]  # same content as another image
    return files


def outcomes(checker, keys):
    results = []
    for key in keys:
        outcome = checker.check(key)
        if isinstance(outcome, Exception):
            results.append(("error", [(p.file, p.code, p.message) for p in outcome.problems]))
        else:
            results.append(("ok", outcome))
    return results


class Record:
    def __init__(self, key):
        self.key = key


@pytest.mark.parametrize(
    "where",
    ["path", "temporary-file", "memory"],
    ids=["workers-read-the-zip", "workers-read-the-temporary-copy", "bytes-sent-to-workers"],
)
def test_the_pool_gives_the_one_process_outcome_for_every_image(tmp_path, where):
    files = hostile_and_good_images()
    keys = [*files, "images/missing.jpg"]
    if where == "path":
        archive = tmp_path / "delivery.zip"
        archive.write_bytes(zip_bytes(files))
        source = ZipSource(archive)
    elif where == "temporary-file":  # the local copy of an archive in object storage (deliveries.archive)
        copy = tempfile.TemporaryFile()  # noqa: SIM115 - open as long as the source
        copy.write(zip_bytes(files))
        copy.seek(0)
        source = ZipSource(copy)
    else:
        source = ZipSource(io.BytesIO(zip_bytes(files)))

    pooled = image_pool.PooledImageChecker(source, workers=2)
    assert (pooled.path is not None) is (where != "memory")
    seen = []
    for record in pooled.ahead(Record(k) for k in keys):
        seen.append(record.key)
        outcome = outcomes(pooled, [record.key])[0]
        assert outcome == outcomes(ImageChecker(source), [record.key])[0], record.key
    assert seen == keys  # in the delivery's order
    assert pooled.pool is None  # shut down when the items ran out


def test_the_window_bounds_what_is_in_flight(monkeypatch):
    files = {f"images/{i:03d}.jpg": picture(20, 20, i) for i in range(60)}
    source = ZipSource(io.BytesIO(zip_bytes(files)))
    monkeypatch.setattr(image_pool, "WINDOW_PER_WORKER", 3)
    pooled = image_pool.PooledImageChecker(source, workers=2)

    most = 0
    for record in pooled.ahead(Record(k) for k in files):
        most = max(most, len(pooled.pending))
        pooled.check(record.key)
        pooled.forget(record.key)
    assert most <= 2 * 3 + 1


def test_a_small_delivery_or_one_worker_checks_in_process(settings):
    source = ZipSource(io.BytesIO(zip_bytes({f"{i}.jpg": picture(8, 8, i) for i in range(3)})))
    settings.IMAGE_CHECK_WORKERS = 4
    assert type(image_pool.checker_for(source)) is ImageChecker  # fewer than MIN_IMAGES
    settings.IMAGE_CHECK_WORKERS = 1
    many = ZipSource(io.BytesIO(zip_bytes({f"{i}.jpg": picture(8, 8, i) for i in range(70)})))
    assert type(image_pool.checker_for(many)) is ImageChecker


@pytest.mark.django_db
def test_an_ingest_with_the_pool_reports_and_writes_what_one_process_does(
    dataset, settings, monkeypatch, media, run
):
    monkeypatch.setattr(image_pool, "MIN_IMAGES", 1)
    files = coco_files(n_images=12)
    files["images/train/0005.jpg"] = b"garbage"
    results = {}
    for workers in (1, 2):
        settings.IMAGE_CHECK_WORKERS = workers
        result = run(make_delivery(dataset, files))
        results[workers] = (result.ok, [(p["file"], p["code"]) for p in result.problems])
    assert results[2] == results[1]
    assert ("images/train/0005.jpg", "corrupt_image") in results[2][1] or (
        "images/train/0005.jpg",
        "not_an_image",
    ) in results[2][1]


@pytest.mark.django_db
def test_a_valid_delivery_checked_in_the_pool_stores_every_image_with_its_hash(
    dataset, settings, monkeypatch, media, run
):
    import hashlib

    monkeypatch.setattr(image_pool, "MIN_IMAGES", 1)
    settings.IMAGE_CHECK_WORKERS = 2
    files = coco_files(n_images=10)
    result = run(make_delivery(dataset, files))

    assert result.ok, result.problems
    stored = dict(Item.objects.filter(version__dataset=dataset).values_list("key", "sha256"))
    expected = {k: hashlib.sha256(v).hexdigest() for k, v in files.items() if k.endswith(".jpg")}
    assert {k.split("/")[-1]: v for k, v in stored.items()} == {
        k.split("/")[-1]: v for k, v in expected.items()
    }


@pytest.mark.parametrize(
    "chunk, window", [(1, 4), (3, 5), (8, 32)], ids=["1-per-task", "3-per-task", "default"]
)
@pytest.mark.parametrize("on_disk", [True, False], ids=["workers-read-the-zip", "bytes-sent-to-workers"])
def test_any_chunk_size_gives_the_one_process_outcomes_in_order(
    tmp_path, monkeypatch, chunk, window, on_disk
):
    monkeypatch.setattr(image_pool, "CHUNK_IMAGES", chunk)
    monkeypatch.setattr(image_pool, "WINDOW_PER_WORKER", window)
    files = hostile_and_good_images()
    # A key twice (a duplicate the plan reports) and a missing one, in the middle of chunks.
    keys = [*files][:20] + ["images/missing.jpg", "images/003.jpg", *[*files][20:]]
    data = zip_bytes(files)
    archive = tmp_path / "delivery.zip"
    archive.write_bytes(data)
    source = ZipSource(archive) if on_disk else ZipSource(io.BytesIO(data))

    pooled = image_pool.PooledImageChecker(source, workers=2)
    got, seen = [], []
    for record in pooled.ahead(Record(k) for k in keys):
        seen.append(record.key)
        got.extend(outcomes(pooled, [record.key]))
        pooled.forget(record.key)
    assert seen == keys
    assert got == outcomes(ImageChecker(ZipSource(io.BytesIO(data))), keys)


def test_a_worker_that_dies_mid_chunk_leaves_the_rest_to_this_process(tmp_path, monkeypatch):
    files = hostile_and_good_images()
    keys = list(files)
    archive = tmp_path / "delivery.zip"
    archive.write_bytes(zip_bytes(files))
    real = image_pool._inspect

    def dies_on_the_tenth(source, key):  # the workers are forked: they run this patched function
        if key == keys[10]:
            os._exit(1)
        return real(source, key)

    monkeypatch.setattr(image_pool, "_inspect", dies_on_the_tenth)
    source = ZipSource(archive)
    pooled = image_pool.PooledImageChecker(source, workers=2)
    got = []
    for record in pooled.ahead(Record(k) for k in keys):
        got.extend(outcomes(pooled, [record.key]))
        pooled.forget(record.key)
    assert pooled.broken  # the pool broke, and every image still has the one-process outcome
    assert got == outcomes(ImageChecker(source), keys)
