"""Exports through the API: who may ask, follow and download; signed links; S3; reuse; Celery."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import time
import urllib.request
import zipfile
from datetime import timedelta
from pathlib import Path
from unittest import mock

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.utils import timezone

from marketplace import tasks
from marketplace.exports import downloads as export_downloads
from marketplace.exports import service as export_service
from marketplace.licensing import service as licensing
from marketplace.models import ContentPartFile, Download, Entitlement, Export, Offer, Role

from .. import factories as f

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
LABELS_ONLY = {"include_images": False}  # the conftest items have no image files


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    # Personas are made with passwords: Django's default hasher takes a second per user.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    return settings.MEDIA_ROOT


@pytest.fixture(autouse=True)
def in_process_tasks(request):
    """Run the export task in-process even when CELERY_BROKER_URL is set (CI sets it to Redis);
    the one test that drives a real worker through the broker keeps the broker."""
    if request.node.get_closest_marker("celery_worker") is not None:
        yield
        return
    conf = tasks.run_export.app.conf
    before = conf.task_always_eager
    conf.task_always_eager = True
    try:
        yield
    finally:
        conf.task_always_eager = before


def entitle(user, dataset, *, accept=True, **kwargs):
    """The user's organisation holds a license; with ``accept``, the user accepted it (their seat)."""
    org = user.memberships.get().organization
    entitlement = f.EntitlementFactory(
        organization=org, dataset=dataset, license=f.LicenseFactory(), **kwargs
    )
    if accept and Entitlement.objects.active().filter(pk=entitlement.pk).exists():
        licensing.claim_seat(user=user, entitlement=entitlement)
    return entitlement


def test_an_entitled_buyer_who_has_not_accepted_the_license_is_told_to_accept_it(
    api_for, buyer, published_version
):
    entitle(buyer, published_version.dataset, accept=False)
    response = ask(api_for, buyer, published_version)
    assert response.status_code == 403 and response.json()["code"] == "license_not_accepted"
    entitlement = Entitlement.objects.get(organization=buyer.memberships.get().organization)
    licensing.claim_seat(user=buyer, entitlement=entitlement)
    assert ask(api_for, buyer, published_version).status_code == 202


def ask(api_for, user, version, fmt="coco", options=None, capture=None):
    """POST an export request; with ``capture``, the on_commit task runs (eagerly) before returning."""
    url = f"/api/v1/datasets/{version.dataset.slug}/versions/{version.number}/exports/"
    body = {"format": fmt, "options": LABELS_ONLY if options is None else options}
    if capture is None:
        return api_for(user).post(url, body, format="json")
    with capture(execute=True):
        return api_for(user).post(url, body, format="json")


def ready(api_for, user, version, capture, **kwargs) -> dict:
    """Ask, let the task run, and return the export's status as the API shows it afterwards."""
    response = ask(api_for, user, version, capture=capture, **kwargs)
    assert response.status_code == 202, response.json()
    return api_for(user).get(response["Location"]).json()


def fetch(api, url: str):
    """Follow a download link with the API client; the file's bytes (streamed or not)."""
    response = api.get(url)
    body = b"".join(response.streaming_content) if getattr(response, "streaming", False) else response.content
    return response, body


# --------------------------------------------------------------------------- the happy path


def test_an_entitled_buyer_exports_follows_and_downloads_and_the_download_is_recorded(
    api_for, buyer, published_version, django_capture_on_commit_callbacks
):
    entitle(buyer, published_version.dataset)
    response = ask(api_for, buyer, published_version, capture=django_capture_on_commit_callbacks)
    assert response.status_code == 202, response.json()
    status_url = response["Location"]
    status = api_for(buyer).get(status_url).json()
    assert status["status"] == "ready" and status["progress"] == 100
    assert status["size_bytes"] > 0 and len(status["sha256"]) == 64
    assert status["download_url"].startswith("http://testserver/api/v1/exports/")
    response, body = fetch(api_for(buyer), status["download_url"])
    assert response.status_code == 200
    assert hashlib.sha256(body).hexdigest() == status["sha256"] == response["X-Content-SHA256"]
    assert 'attachment; filename="street-scenes-v1-coco-' in response["Content-Disposition"]
    with zipfile.ZipFile(io.BytesIO(body)) as zf:
        names = set(zf.namelist())
    assert {"annotations/instances_train.json", "datasheet.md", "LICENSE.txt", "provenance.csv"} <= names
    assert {"croissant.json", "MANIFEST.sha256"} <= names
    download = Download.objects.get()
    assert download.user == buyer and download.organization == buyer.memberships.get().organization
    assert download.export_id == status["id"]
    from governance.models import LabelEvent

    event = LabelEvent.objects.filter(dataset=published_version.dataset, action="export_downloaded").get()
    assert event.payload["export"] == status["id"] and event.actor == f"user:{buyer.pk}"
    assert event.version_number == published_version.number


def test_the_same_request_twice_reuses_the_finished_file(
    api_for, supplier, published_version, django_capture_on_commit_callbacks
):
    first = ready(api_for, supplier, published_version, django_capture_on_commit_callbacks)
    stored = Export.objects.get(pk=first["id"])
    with mock.patch.object(tasks.run_export, "delay") as delay:
        # The same options in another order and spelled out: the same export.
        again = ask(
            api_for,
            supplier,
            published_version,
            options={"candidates": False, "include_images": False, "splits": []},
            capture=django_capture_on_commit_callbacks,
        )
    assert again.status_code == 202
    assert again.json()["id"] == first["id"] and again.json()["status"] == "ready"
    delay.assert_not_called()
    assert Export.objects.count() == 1
    assert Export.objects.get(pk=first["id"]).file.name == stored.file.name


def test_anyone_logged_in_may_export_a_dataset_offered_openly(
    api_for, outsider, published_version, django_capture_on_commit_callbacks
):
    assert ask(api_for, outsider, published_version).status_code == 403
    f.OfferFactory(dataset=published_version.dataset, access_mode=Offer.AccessMode.OPEN, price=0)
    response = ask(api_for, outsider, published_version, capture=django_capture_on_commit_callbacks)
    assert response.status_code == 202
    assert Export.objects.get(pk=response.json()["id"]).status == "ready"


# --------------------------------------------------------------------------- refusals


@pytest.fixture
def refused(request, db, published_version, outsider, other_supplier, buyer):
    """Each persona that must not get the data, and the status code it gets."""
    other = f.DatasetFactory(slug="other-dataset")
    who = request.param
    if who == "outsider":
        return outsider, 403
    if who == "other_supplier":
        return other_supplier, 403
    if who == "anonymous":
        return None, 401
    if who == "expired_buyer":
        entitle(
            buyer,
            published_version.dataset,
            starts_at=timezone.now() - timedelta(days=400),
            ends_at=timezone.now() - timedelta(days=35),
        )
        return buyer, 403
    if who == "buyer_of_another_dataset":
        entitle(buyer, other)
        return buyer, 403
    raise AssertionError(who)


@pytest.mark.parametrize(
    "refused",
    ["outsider", "other_supplier", "anonymous", "expired_buyer", "buyer_of_another_dataset"],
    indirect=True,
)
def test_everyone_without_a_license_is_refused_request_status_and_download(
    refused, api_for, supplier, published_version, django_capture_on_commit_callbacks
):
    user, code = refused
    done = ready(api_for, supplier, published_version, django_capture_on_commit_callbacks)
    assert ask(api_for, user, published_version).status_code == code
    api = api_for(user)
    assert api.get(f"/api/v1/exports/{done['id']}/").status_code == code
    export = Export.objects.get(pk=done["id"])
    # Even holding a correctly signed link for themselves, or the supplier's own link.
    links = [done["download_url"]]
    if user is not None:
        links.append(export_downloads.download_url_for(export=export, user=user))
    for link in links:
        response, body = fetch(api, link)
        assert response.status_code == code and export.sha256 not in body.decode(errors="ignore")
    assert not Download.objects.exists()


def test_a_draft_is_a_404_for_everyone_but_its_supplier(
    api_for, supplier, outsider, draft_dataset, django_capture_on_commit_callbacks
):
    version = draft_dataset.versions.get()
    for user in (outsider, None):
        assert ask(api_for, user, version).status_code == 404
        assert (
            api_for(user).get(f"/api/v1/datasets/{draft_dataset.slug}/versions/1/croissant/").status_code
            == 404
        )
    done = ready(api_for, supplier, version, django_capture_on_commit_callbacks)
    assert done["status"] == "ready"
    assert api_for(outsider).get(f"/api/v1/exports/{done['id']}/").status_code == 404
    assert (
        api_for(supplier).get(f"/api/v1/datasets/{draft_dataset.slug}/versions/1/croissant/").status_code
        == 200
    )


# --------------------------------------------------------------------------- signed links


def test_a_signed_link_expires(
    api_for, settings, buyer, published_version, django_capture_on_commit_callbacks
):
    entitle(buyer, published_version.dataset)
    done = ready(api_for, buyer, published_version, django_capture_on_commit_callbacks)
    export = Export.objects.get(pk=done["id"])
    settings.DOWNLOAD_URL_TTL = 60
    # Signed two minutes ago: past its 60 seconds.
    with mock.patch("django.core.signing.time.time", return_value=time.time() - 120):
        old = export_downloads.download_url_for(export=export, user=buyer)
    response, _ = fetch(api_for(buyer), old)
    assert response.status_code == 403 and response.json()["code"] == "link_expired"
    response, _ = fetch(api_for(buyer), export_downloads.download_url_for(export=export, user=buyer))
    assert response.status_code == 200
    assert Download.objects.count() == 1


def test_a_signed_link_is_refused_for_another_user_and_when_tampered_with(
    api_for, supplier, buyer, published_version, django_capture_on_commit_callbacks
):
    entitle(buyer, published_version.dataset)
    done = ready(api_for, buyer, published_version, django_capture_on_commit_callbacks)
    # The supplier may download this export, but not with the buyer's link.
    response, _ = fetch(api_for(supplier), done["download_url"])
    assert response.status_code == 403 and response.json()["code"] == "invalid_link"
    response, _ = fetch(api_for(buyer), done["download_url"].replace("token=", "token=x"))
    assert response.status_code == 403 and response.json()["code"] == "invalid_link"
    response, _ = fetch(api_for(buyer), f"/api/v1/exports/{done['id']}/download/")
    assert response.status_code == 403
    assert not Download.objects.exists()


def test_the_supplier_and_auditors_see_who_downloaded(
    api_for, supplier, buyer, auditor, outsider, published_version, django_capture_on_commit_callbacks
):
    entitle(buyer, published_version.dataset)
    done = ready(api_for, buyer, published_version, django_capture_on_commit_callbacks)
    fetch(api_for(buyer), done["download_url"])
    url = f"/api/v1/datasets/{published_version.dataset.slug}/downloads/"
    for reader in (supplier, auditor):
        rows = api_for(reader).get(url).json()["results"]
        assert [(r["user"], r["export"], r["format"]) for r in rows] == [("buyer", done["id"], "coco")]
        assert rows[0]["organization"] == buyer.memberships.get().organization.name
    assert api_for(buyer).get(url).status_code == 403
    assert api_for(outsider).get(url).status_code == 403
    assert api_for(None).get(url).status_code == 401


# --------------------------------------------------------------------------- options and failures


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"format": "tfrecord"}, "invalid_choice"),
        ({"format": "coco", "options": {"colour": True}}, "invalid_options"),
        ({"format": "coco", "options": {"splits": ["training"]}}, "invalid_options"),
        ({"format": "coco", "options": {"categories": ["unicorn"]}}, "invalid_options"),
        ({"format": "coco", "options": {"include_images": "yes"}}, "invalid_options"),
        ({"format": "voc", "options": {"yolo_task": "pose"}}, "invalid_options"),
        ({"format": "yolo", "options": {"yolo_task": "obb"}}, "invalid_options"),
    ],
)
def test_bad_formats_and_options_are_refused_with_a_code(api_for, supplier, published_version, body, code):
    url = f"/api/v1/datasets/{published_version.dataset.slug}/versions/1/exports/"
    response = api_for(supplier).post(url, body, format="json")
    assert response.status_code == 400 and response.json()["code"] == code
    assert not Export.objects.exists()


def test_a_failed_export_says_why_and_is_retried_when_asked_again(
    api_for, supplier, published_version, django_capture_on_commit_callbacks
):
    with mock.patch.object(export_service, "build_archive", side_effect=RuntimeError("disk full")):
        failed = ready(api_for, supplier, published_version, django_capture_on_commit_callbacks)
    status = api_for(supplier).get(f"/api/v1/exports/{failed['id']}/").json()
    assert status["status"] == "failed" and "disk full" in status["error"] and status["download_url"] is None
    again = ready(api_for, supplier, published_version, django_capture_on_commit_callbacks)
    assert again["id"] == failed["id"] and again["status"] == "ready"


def test_the_api_lists_a_versions_exports_for_those_who_may_export(
    api_for, supplier, outsider, published_version, django_capture_on_commit_callbacks
):
    ask(api_for, supplier, published_version, fmt="voc", capture=django_capture_on_commit_callbacks)
    url = f"/api/v1/datasets/{published_version.dataset.slug}/versions/1/exports/"
    assert [e["format"] for e in api_for(supplier).get(url).json()["results"]] == ["voc"]
    assert api_for(outsider).get(url).status_code == 403


# --------------------------------------------------------------------------- the real services


@pytest.mark.s3
def test_on_s3_the_export_is_stored_in_the_bucket_and_the_presigned_url_gives_the_same_bytes(
    s3_storage, api_for, buyer, published_version, django_capture_on_commit_callbacks
):
    entitle(buyer, published_version.dataset)
    done = ready(api_for, buyer, published_version, django_capture_on_commit_callbacks)
    assert done["status"] == "ready", done
    export = Export.objects.get(pk=done["id"])
    listed = s3_storage["client"].list_objects_v2(Bucket=s3_storage["bucket"])["Contents"]
    # Besides the export, the version's content files stored at publication, which the export copied.
    content = ContentPartFile.objects.filter(version=published_version).values_list("storage_key", flat=True)
    assert len(content) == 7
    assert sorted(o["Key"] for o in listed) == sorted([export.file.name, *content])
    response = api_for(buyer).get(done["download_url"])
    assert response.status_code == 302
    presigned = response["Location"]
    assert presigned.startswith(s3_storage["endpoint"]) and "Signature" in presigned
    assert "response-content-disposition=attachment" in presigned
    with urllib.request.urlopen(presigned, timeout=10) as got:
        body = got.read()
        assert "attachment" in got.headers["Content-Disposition"]
    assert hashlib.sha256(body).hexdigest() == export.sha256
    assert Download.objects.filter(export=export, user=buyer).count() == 1
    # Asked again: the file in the bucket is reused, nothing new is written.
    assert ask(api_for, buyer, published_version).json()["id"] == export.pk
    assert s3_storage["client"].list_objects_v2(Bucket=s3_storage["bucket"])["KeyCount"] == len(listed)


@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
def test_a_real_celery_worker_builds_an_export_sent_through_the_broker(
    api_for, supplier, published_version, media
):
    if not django_settings.CELERY_BROKER_URL:
        pytest.skip("CELERY_BROKER_URL is not set (CI sets it to Redis)")
    if connection.vendor != "postgresql":
        pytest.skip("the worker process needs a database it can share: PostgreSQL")
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
        "CELERY_BROKER_URL": django_settings.CELERY_BROKER_URL,
        "MEDIA_ROOT": str(media),
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool=solo", "--concurrency=1",
         "--without-gossip", "--without-mingle", "--without-heartbeat", "-Q", django_settings.CELERY_TASK_DEFAULT_QUEUE,
         "--loglevel=WARNING"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert tasks.run_export.app.conf.task_always_eager is False
        done = ask(api_for, supplier, published_version).json()  # committed: the task is sent
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and Export.objects.get(pk=done["id"]).status not in (
            "ready",
            "failed",
        ):
            time.sleep(0.2)
        export = Export.objects.get(pk=done["id"])
        assert export.status == "ready", export.error
        with export.file.open("rb") as fh:
            assert hashlib.sha256(fh.read()).hexdigest() == export.sha256
    finally:
        worker.terminate()
        try:
            output, _ = worker.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
            output, _ = worker.communicate()
    assert "Traceback" not in output, output


def test_roles_other_than_buyer_in_an_entitled_org_do_not_export(api_for, published_version):
    """An entitlement belongs to the buyer role of the organisation, not to its auditors."""
    org = f.OrganizationFactory()
    user = f.MembershipFactory(organization=org, role=Role.AUDITOR).user
    f.EntitlementFactory(organization=org, dataset=published_version.dataset, license=f.LicenseFactory())
    assert ask(api_for, user, published_version).status_code == 403


def test_a_draft_is_exported_afresh_on_each_request_and_the_stale_file_removed(
    api_for, supplier, draft_dataset, django_capture_on_commit_callbacks
):
    version = draft_dataset.versions.get()
    first = ready(api_for, supplier, version, django_capture_on_commit_callbacks)
    old = Export.objects.get(pk=first["id"]).file
    old_name, storage = old.name, old.storage
    again = ready(api_for, supplier, version, django_capture_on_commit_callbacks)
    assert again["id"] == first["id"] and again["status"] == "ready"
    new_name = Export.objects.get(pk=first["id"]).file.name
    assert new_name != old_name and storage.exists(new_name) and not storage.exists(old_name)


def test_an_export_whose_file_was_lost_from_storage_is_built_again(
    api_for, supplier, published_version, django_capture_on_commit_callbacks
):
    first = ready(api_for, supplier, published_version, django_capture_on_commit_callbacks)
    stored = Export.objects.get(pk=first["id"]).file
    stored.storage.delete(stored.name)
    again = ready(api_for, supplier, published_version, django_capture_on_commit_callbacks)
    assert again["id"] == first["id"] and again["sha256"] == first["sha256"]  # the same bytes, rebuilt
    rebuilt = Export.objects.get(pk=first["id"]).file
    assert rebuilt.storage.exists(rebuilt.name)
