"""The real parts: a Celery worker through the broker, and object storage through the S3 API."""

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.storage import default_storage
from django.db import connection

from marketplace.blobs import put_blob
from marketplace.models import DatasetVersion
from marketplace.tasks import refresh_version_stats

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
def test_a_real_celery_worker_runs_a_task_sent_through_the_broker(published_version):
    if not settings.CELERY_BROKER_URL:
        pytest.skip("CELERY_BROKER_URL is not set (CI sets it to Redis)")
    if connection.vendor != "postgresql":
        pytest.skip("the worker process needs a database it can share: PostgreSQL")
    # Given stats that are visibly stale
    # (stats are a cache, the one field of a released version that may change, through save())
    published_version.stats = {"items": -1}
    published_version.save(update_fields=["stats"])
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
    }
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "--pool=solo",
            "--concurrency=1",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-Q",
            settings.CELERY_TASK_DEFAULT_QUEUE,
            "--loglevel=WARNING",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        # When the task goes through the broker, not in-process
        assert refresh_version_stats.app.conf.task_always_eager is False
        refresh_version_stats.delay(published_version.pk)
        deadline = time.monotonic() + 60
        stats = {}
        while time.monotonic() < deadline:
            stats = DatasetVersion.objects.get(pk=published_version.pk).stats
            if stats.get("items") != -1:
                break
            time.sleep(0.2)
        # Then the worker process has recomputed them in the database
        assert stats["items"] == 3 and stats["labels"] == 6
    finally:
        worker.terminate()
        try:
            output, _ = worker.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
            output, _ = worker.communicate()
    assert "Traceback" not in output, output


@pytest.mark.s3
def test_blobs_go_to_s3_and_come_back_over_a_presigned_url(s3_storage):
    data = b"\xff\xd8\xff" + os.urandom(2048)
    key, sha = put_blob(data, suffix=".JPG")
    assert key.endswith(f"{sha}.jpg")
    listed = s3_storage["client"].list_objects_v2(Bucket=s3_storage["bucket"])["Contents"]
    assert [o["Key"] for o in listed] == [key]
    # Storing the same bytes again writes nothing new: content addressing.
    assert put_blob(data, suffix=".jpg") == (key, sha)
    assert s3_storage["client"].list_objects_v2(Bucket=s3_storage["bucket"])["KeyCount"] == 1
    url = default_storage.url(key)
    assert "Signature" in url or "X-Amz-Signature" in url
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == data
