"""What an export dropped or converted: in the API's notes, in NOTES.md inside the archive and on
the library page; the library page offers each version's Croissant. API tests with an outsider,
and the page in headless Chromium."""

from __future__ import annotations

import json
import zipfile

import pytest
from pycocotools.coco import COCO

from marketplace import tasks
from marketplace.catalogue import publication as catalogue_publication
from marketplace.formats import model as fmt
from marketplace.models import Export
from tests import factories as f
from tests.browser import chromium_page
from tests.conftest import build_version

from .buyer_support import entitle

LABELS_ONLY = {"include_images": False}  # the conftest items have no image files


@pytest.fixture(autouse=True)
def _media_and_eager_tasks(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    conf = tasks.run_export.app.conf
    before, conf.task_always_eager = conf.task_always_eager, True
    yield
    conf.task_always_eager = before


def lossy_version(dataset):
    """A released version whose labels COCO cannot all hold: a lane line (written as its box) and an
    image-level class (in the image entry), next to boxes and keypoints."""
    version = build_version(dataset, number=1, items=3, publish=False)
    car = version.schema.categories.get(name="car")
    item = version.items.order_by("key").first()
    f.LabelFactory(
        item=item, category=car, geometry_type=fmt.POLYLINE, geometry={"points": [5.0, 5.0, 60.0, 9.0]}
    )
    f.LabelFactory(item=item, category=car, geometry_type=fmt.CLASSIFICATION, geometry={})
    catalogue_publication.publish_version(version=version, release_notes="Release 1")
    version.refresh_from_db()
    return version


def export_coco(api, version, django_capture_on_commit_callbacks) -> dict:
    url = f"/api/v1/datasets/{version.dataset.slug}/versions/{version.number}/exports/"
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(url, {"format": "coco", "options": LABELS_ONLY}, format="json")
    assert response.status_code in (201, 202), response.content
    return api.get(f"/api/v1/exports/{response.json()['id']}/").json()


pytestmark = pytest.mark.django_db


def test_the_api_notes_and_the_archives_notes_md_agree(
    api_for, buyer, outsider, dataset, django_capture_on_commit_callbacks, tmp_path
):
    version = lossy_version(dataset)
    entitle(buyer, dataset)
    detail = export_coco(api_for(buyer), version, django_capture_on_commit_callbacks)
    assert detail["status"] == "ready"
    kinds = {(n["code"], n.get("kind")): n["count"] for n in detail["notes"]}
    assert kinds[("converted", fmt.POLYLINE)] == 1
    assert kinds[("converted", fmt.CLASSIFICATION)] == 1
    export = Export.objects.get(pk=detail["id"])
    with export.file.open("rb") as fh, zipfile.ZipFile(fh) as zf:
        zf.extractall(tmp_path / "x")
    text = (tmp_path / "x" / "NOTES.md").read_text()
    for note in detail["notes"]:
        assert note["detail"] in text
    assert "## Converted: in this export as something else" in text
    # Every annotation of the archive decodes to a mask with pycocotools, boxes included.
    for path in (tmp_path / "x" / "annotations").glob("instances_*.json"):
        coco = COCO(str(path))
        for ann in coco.anns.values():
            assert coco.annToMask(ann).any()
    # The outsider (the release is public, the export is not theirs to use) is refused, notes and all.
    hidden = api_for(outsider).get(f"/api/v1/exports/{detail['id']}/")
    assert hidden.status_code == 403
    assert set(hidden.json()) <= {"code", "detail"}


def test_the_croissant_the_library_links_is_public_for_a_release_and_hidden_for_a_draft(
    api_for, outsider, dataset, draft_dataset
):
    version = lossy_version(dataset)
    public = api_for(outsider).get(f"/api/v1/datasets/{dataset.slug}/versions/{version.number}/croissant/")
    assert public.status_code == 200
    assert json.loads(public.content)["@type"] == "sc:Dataset"
    draft = api_for(outsider).get(f"/api/v1/datasets/{draft_dataset.slug}/versions/1/croissant/")
    assert draft.status_code == 404


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_library_shows_what_an_export_dropped_and_links_the_croissant(
    live_server, buyer, outsider, dataset, django_capture_on_commit_callbacks
):
    for user in (buyer, outsider):
        user.set_password("pass-word-123")
        user.save()
    version = lossy_version(dataset)
    entitle(buyer, dataset)
    export_coco(_api(buyer), version, django_capture_on_commit_callbacks)
    base = live_server.url
    with chromium_page() as page:
        page.goto(f"{base}/accounts/login/?next=/library/")
        page.fill("#id_username", "buyer")
        page.fill("#id_password", "pass-word-123")
        page.click("button:has-text('Log in')")
        page.wait_for_url(f"{base}/library/")
        notes = page.locator("details.export-notes").first
        assert "2 notes" in notes.locator("summary").inner_text()
        notes.locator("summary").click()
        listed = notes.locator("li.note").all_inner_texts()
        assert any("polyline" in line and "1 label" in line for line in listed)
        assert any("classification" in line for line in listed)
        link = page.locator("section.ent a.croissant").first
        assert link.inner_text() == "v1 Croissant"
        with page.expect_response(lambda r: "/croissant/" in r.url) as answer:
            link.click()
        body = answer.value.json()
        assert body["@type"] == "sc:Dataset" and body["name"]

        # The outsider's library has neither the export nor the link.
        other = page.context.browser.new_context().new_page()
        other.goto(f"{base}/accounts/login/?next=/library/")
        other.fill("#id_username", "outsider")
        other.fill("#id_password", "pass-word-123")
        other.click("button:has-text('Log in')")
        other.wait_for_url(f"{base}/library/")
        assert other.locator("details.export-notes").count() == 0
        assert other.locator("a.croissant").count() == 0


def _api(user):
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    api = APIClient()
    token, _ = Token.objects.get_or_create(user=user)
    api.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return api
