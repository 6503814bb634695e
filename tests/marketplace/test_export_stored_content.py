"""A published version's content files are stored at publication and copied into its exports.

``catalogue.content_files``: publication stores each ``content/<part>.jsonl`` deflated; the export of a
released version copies them (no lines query, no rows read), checking each blob as it copies it; a
draft, or a version published before them, exports as before; a failed publication leaves no row, and
its blobs are swept as orphans.
"""

import io
import zipfile
from datetime import timedelta

import pytest
from django.core.files.storage import default_storage
from django.utils import timezone

from governance import ledger
from governance.ledger import content as ledger_content
from marketplace.catalogue import content_files, publication
from marketplace.deliveries import sweeping
from marketplace.exports import content_lines, deflated_lines, packaging
from marketplace.formats import model as fmt
from marketplace.models import ContentPartFile, Label
from tests import factories as f

OPTIONS = {"include_images": False, "splits": [], "categories": [], "candidates": False}


@pytest.fixture
def media(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")


def labelled_version():
    label = f.LabelFactory(
        geometry_type=fmt.POLYGON, geometry={"bbox": [1.5, 2, 3, 4], "polygons": [[1, 2, 3.25, 4, 5, 6]]}
    )
    f.LabelFactory(item=label.item, category=label.category, attributes={"colour": "blué"})
    return label.version


def export(version, format="coco") -> bytes:
    out = io.BytesIO()
    packaging.build_archive(version=version, format=format, options=OPTIONS, fileobj=out)
    return out.getvalue()


def no_rows_read(monkeypatch):
    """Make every way of building the content rows at export time fail."""

    def refuse(*args, **kwargs):
        raise AssertionError("the export built content rows")

    monkeypatch.setattr(content_lines, "label_lines", refuse)
    monkeypatch.setattr(deflated_lines, "label_lines", refuse)
    monkeypatch.setattr(packaging, "label_lines", refuse)
    monkeypatch.setattr(ledger_content, "iter_rows", refuse)


@pytest.mark.parametrize("format", ["coco", "yolo", "voc"])
def test_a_published_versions_export_copies_its_stored_files_byte_for_byte(db, media, monkeypatch, format):
    version = publication.publish_version(version=labelled_version())
    assert sorted(ContentPartFile.objects.filter(version=version).values_list("part", flat=True)) == sorted(
        ledger_content.PARTS
    )
    with monkeypatch.context() as patched:
        no_rows_read(patched)
        stored = export(version, format)

    ContentPartFile.objects.filter(version=version).delete()  # as a version published before them
    built = export(version, format)

    assert stored == built
    archive = zipfile.ZipFile(io.BytesIO(stored))
    assert archive.testzip() is None
    labels = archive.read("content/labels.jsonl").splitlines()
    assert len(labels) == 2 and "blué".encode() in b"".join(labels)


def test_an_old_version_without_stored_files_exports_from_its_rows(db, media, monkeypatch):
    version = publication.publish_version(version=labelled_version())
    ContentPartFile.objects.filter(version=version).delete()
    no_rows_read(monkeypatch)

    with pytest.raises(AssertionError, match="built content rows"):
        export(version)


def test_a_draft_never_uses_stored_files(db, media):
    version = labelled_version()
    content_files.compute_and_store_content(version=version, record=False)  # stored, then changed
    Label.objects.filter(version=version).update(attributes={"colour": "red"})

    lines = zipfile.ZipFile(io.BytesIO(export(version))).read("content/labels.jsonl")

    assert lines.count(b'"colour":"red"') == 2


@pytest.mark.parametrize("tamper", ["same length", "truncated", "longer"])
def test_a_tampered_stored_file_is_refused(db, media, tamper):
    version = publication.publish_version(version=labelled_version())
    row = ContentPartFile.objects.get(version=version, part="labels")
    with default_storage.open(row.storage_key, "rb") as blob:
        data = blob.read()
    data = {
        "same length": data[:-1] + bytes([data[-1] ^ 1]),
        "truncated": data[:-1],
        "longer": data + b"\0",
    }[tamper]
    default_storage.delete(row.storage_key)
    default_storage.save(row.storage_key, io.BytesIO(data))

    with pytest.raises(content_files.ContentFileMismatch, match=r"content/labels\.jsonl"):
        export(version)


def test_a_publication_that_fails_midway_leaves_no_rows_and_its_blobs_are_swept(db, media, monkeypatch):
    kept = publication.publish_version(version=labelled_version())
    version = labelled_version()

    def fail(**kwargs):
        raise RuntimeError("signing failed")

    monkeypatch.setattr(ledger, "sign_tree_head", fail)
    with pytest.raises(RuntimeError, match="signing failed"):
        publication.publish_version(version=version)

    assert not ContentPartFile.objects.filter(version=version).exists()
    _, left = default_storage.listdir(f"blobs/content/{version.pk}")
    assert len(left) == len(ledger_content.PARTS)  # written before the commit that never came
    out = sweeping.sweep_orphan_blobs(grace_seconds=0, now=timezone.now() + timedelta(seconds=5))
    assert out["deleted"] == len(ledger_content.PARTS)
    assert default_storage.listdir(f"blobs/content/{version.pk}")[1] == []
    # The published version's files are referenced: kept, and its export still reads them.
    for row in ContentPartFile.objects.filter(version=kept):
        assert default_storage.exists(row.storage_key)
    no_rows_read(monkeypatch)
    assert export(kept)
