"""Guideline versions stored as a file: `ledger verify` re-hashes the file bytes (#16).

The content hash covers a guideline version's sha256 column; the PDF itself lives in storage, where a
replaced file would go unseen by the rows. Verification reads each referenced file again.
"""

import hashlib
import uuid
from datetime import date

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from governance.ledger import content_verification
from governance.models import GuidelineVersion
from marketplace.catalogue import publication
from tests import factories as f
from tests.conftest import build_version

from .test_published_evidence import verify_output

pytestmark = pytest.mark.django_db

PDF = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"


@pytest.fixture
def pdf_guideline(dataset, settings, tmp_path):
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": tmp_path},
        },
    }
    gv = GuidelineVersion(
        guideline=f.GuidelineFactory(dataset=dataset, title="Polygons"),
        tag="v3",
        effective_date=date(2026, 1, 1),
    )
    gv.document.save(f"polygons-{uuid.uuid4().hex}.pdf", ContentFile(PDF), save=False)
    gv.save()
    assert gv.sha256 == hashlib.sha256(PDF).hexdigest()
    version = build_version(dataset, number=1, items=2, publish=False, guideline_version=gv)
    version.guideline_versions.add(gv)
    publication.publish_version(version=version)
    version.refresh_from_db()
    return version, gv


def _replace_file(gv, data: bytes):
    name = gv.document.name
    default_storage.delete(name)
    assert default_storage.save(name, ContentFile(data)) == name


def test_an_untouched_guideline_file_verifies(pdf_guideline):
    version, _ = pdf_guideline
    assert content_verification.verify_version(version) is None


def test_a_replaced_guideline_file_is_named(pdf_guideline):
    version, gv = pdf_guideline
    _replace_file(gv, PDF.replace(b"<<>>", b"<< /Loose true >>", 1))
    difference = content_verification.verify_version(version)
    assert difference.table == "governance_guidelineversion"
    assert difference.row == "version='Polygons / v3'" and difference.field == "document"
    assert "replaced" in difference.detail

    code, out = verify_output("--dataset", version.dataset.slug)
    assert code == 1
    assert "CONTENT CHANGED" in out and "Polygons / v3" in out and "document" in out


def test_a_missing_guideline_file_is_named(pdf_guideline):
    version, gv = pdf_guideline
    default_storage.delete(gv.document.name)
    difference = content_verification.verify_version(version)
    assert difference.field == "document" and "missing" in difference.detail
