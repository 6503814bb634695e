"""Chunked verification (governance.ledger.verify_chain) reaches the same verdicts as the ledger's own verifier.

Every tampering scenario of test_ledger_tampering runs again here with ``ledger.verify_dataset`` swapped
for the chunked verifier, on blocks of two events and chunks of one block, so a 12-event ledger is cut
into six chunks and every cross-chunk link, gap and root is exercised.
"""

import pytest

from governance import ledger
from governance.ledger import tree_heads, verify_chain
from governance.models import LabelEvent, LedgerVerification

from .ledger_support import ledgered_version, tampering
from .test_ledger_tampering import *  # noqa: F403  (the scenarios and the `signed` fixture, collected again)
from .test_ledger_tampering import heads

pytestmark = pytest.mark.django_db

reference_verify = ledger.verify_dataset


@pytest.fixture(autouse=True)
def chunked(monkeypatch):
    monkeypatch.setattr(tree_heads, "CHUNK_LEVEL", 1)
    monkeypatch.setattr(verify_chain, "MIN_CHUNK_BLOCKS", 1)

    def chunked_verify(*, dataset, trusted_heads=(), workers=1):
        return verify_chain.verify_dataset(
            dataset=dataset, trusted_heads=trusted_heads, workers=max(workers, 3)
        )

    monkeypatch.setattr(ledger, "verify_dataset", chunked_verify)


def same_verdict(dataset, trusted=()):
    chunked_report = verify_chain.verify_dataset(dataset=dataset, trusted_heads=trusted, workers=3)
    reference = reference_verify(dataset=dataset, trusted_heads=trusted)
    keys = ("ok", "events", "tree_heads", "first_broken_seq", "first_broken_event_id", "root_hash")
    return {k: chunked_report.as_dict()[k] for k in keys}, {k: reference.as_dict()[k] for k in keys}


def test_an_edit_that_recomputes_the_hashes_is_caught_by_the_signed_roots(signed):
    # Overrides the imported scenario: on two-event blocks the cached block roots (written at signing)
    # disagree with the forged events too, which the reference verifier reports as well.
    from governance import verify_offline

    docs = [
        ledger.event_document(e) for e in LabelEvent.objects.filter(dataset=signed).select_related("dataset")
    ]
    docs[3]["actor"] = "A-99"
    prev = docs[2]["hash"]
    with tampering() as cursor:
        for doc in docs[3:]:
            doc["prev_hash"] = prev
            doc["hash"] = verify_offline.event_hash(doc, prev)
            cursor.execute(
                "UPDATE governance_labelevent SET actor = %s, prev_hash = %s, hash = %s "
                "WHERE dataset_id = %s AND seq = %s",
                [doc["actor"], doc["prev_hash"], doc["hash"], signed.pk, doc["seq"]],
            )
            prev = doc["hash"]

    report = verify_chain.verify_dataset(dataset=signed, workers=3)
    reference = reference_verify(dataset=signed)
    assert not report.ok and sorted(report.problems) == sorted(reference.problems)
    assert sum("the events do not lead to its signed root" in p for p in report.problems) == 2


def test_a_twelve_event_ledger_is_cut_into_six_chunks(signed):
    assert verify_chain.plan_chunks(12, 6) == [(0, 2), (2, 4), (4, 6), (6, 8), (8, 10), (10, 12)]
    assert verify_chain.plan_chunks(13, 2) == [(0, 8), (8, 13)]


@pytest.mark.parametrize("seq", [0, 1, 2, 5, 6, 11])
def test_an_edit_anywhere_gives_the_reference_verdict(signed, seq):
    with tampering() as cursor:
        cursor.execute(
            "UPDATE governance_labelevent SET actor = 'A-99' WHERE dataset_id = %s AND seq = %s",
            [signed.pk, seq],
        )
    chunked_report, reference = same_verdict(signed)
    assert chunked_report == reference and reference["first_broken_seq"] == seq


@pytest.mark.parametrize("seq", [0, 1, 2, 3, 7, 11])
def test_a_deleted_event_at_a_chunk_edge_or_inside_gives_the_reference_verdict(signed, seq):
    with tampering() as cursor:
        cursor.execute(
            "DELETE FROM governance_labelevent WHERE dataset_id = %s AND seq = %s", [signed.pk, seq]
        )
    chunked_report, reference = same_verdict(signed, heads(signed))
    assert chunked_report == reference and chunked_report["ok"] is False


def test_a_chunk_whose_first_event_links_elsewhere_is_caught_at_that_event(signed):
    # Event 4 opens the third chunk; its prev_hash is relinked to event 2's hash (and rehashed), so only
    # the link between chunks, which no chunk sees alone, is wrong.
    from governance import verify_offline

    docs = [
        ledger.event_document(e) for e in LabelEvent.objects.filter(dataset=signed).select_related("dataset")
    ]
    doc = docs[4]
    doc["prev_hash"] = docs[2]["hash"]
    doc["hash"] = verify_offline.event_hash(doc, doc["prev_hash"])
    with tampering() as cursor:
        cursor.execute(
            "UPDATE governance_labelevent SET prev_hash = %s, hash = %s WHERE dataset_id = %s AND seq = 4",
            [doc["prev_hash"], doc["hash"], signed.pk],
        )
    report = verify_chain.verify_dataset(dataset=signed, workers=3)
    assert report.first_broken_seq == 4 and "does not link to event 3" in report.reason


def test_an_empty_ledger_verifies(dataset):
    report = verify_chain.verify_dataset(dataset=dataset, workers=2)
    assert report.ok and report.events == 0
    assert report.root_hash == reference_verify(dataset=dataset).root_hash


# --- as a job: the API starts it, tasks record chunks, the last one combines


def test_the_api_answers_202_with_a_job_whose_status_shows_the_report(
    api_for, auditor, published_ledger, django_capture_on_commit_callbacks
):
    api = api_for(auditor)
    with django_capture_on_commit_callbacks(execute=False) as enqueued:
        response = api.post("/api/v1/ledger/verify/", {"dataset": published_ledger.slug}, format="json")

    assert response.status_code == 202
    job = response.json()
    assert (job["status"], job["report"]) == ("queued", None)  # the request did not verify anything
    assert api.get(f"/api/v1/ledger/verify/{job['id']}/").json()["status"] == "queued"
    for task in enqueued:  # what the commit would enqueue; eager without a broker
        task()
    body = api.get(f"/api/v1/ledger/verify/{job['id']}/").json()
    assert body["status"] == "done" and body["chunks_done"] == body["chunks_total"]
    assert body["report"]["ok"] is True and body["report"]["events"] == published_ledger.events


def test_a_job_reports_a_tampered_ledger_like_the_reference(
    api_for, auditor, published_ledger, django_capture_on_commit_callbacks
):
    with tampering() as cursor:
        cursor.execute(
            "UPDATE governance_labelevent SET actor = 'A-99' WHERE dataset_id = %s AND seq = 3",
            [published_ledger.pk],
        )
    with django_capture_on_commit_callbacks(execute=True):
        job = (
            api_for(auditor)
            .post("/api/v1/ledger/verify/", {"dataset": published_ledger.slug}, format="json")
            .json()
        )
    report = api_for(auditor).get(f"/api/v1/ledger/verify/{job['id']}/").json()["report"]

    assert (report["ok"], report["first_broken_seq"]) == (False, 3)
    assert report["first_broken_seq"] == reference_verify(dataset=published_ledger).first_broken_seq


def test_another_user_cannot_read_the_job(api_for, auditor, outsider, published_ledger):
    job = (
        api_for(auditor)
        .post("/api/v1/ledger/verify/", {"dataset": published_ledger.slug}, format="json")
        .json()
    )

    response = api_for(outsider).get(f"/api/v1/ledger/verify/{job['id']}/")
    assert response.status_code == 404 and set(response.json()) == {"code", "detail"}
    assert api_for().get(f"/api/v1/ledger/verify/{job['id']}/").status_code == 401


def test_a_chunk_recorded_twice_counts_once_and_the_last_chunk_combines(signed):
    job = LedgerVerification.objects.create(
        dataset=signed, tree_size=12, head_sizes=[6, 12], chunks_total=2, status="queued"
    )
    verify_chain.run_chunk(job_id=job.pk, index=0, lo=0, hi=8)
    verify_chain.run_chunk(job_id=job.pk, index=0, lo=0, hi=8)  # a retried task
    job.refresh_from_db()
    assert (job.chunks_done, job.status) == (1, "running")

    verify_chain.run_chunk(job_id=job.pk, index=1, lo=8, hi=12)
    job.refresh_from_db()
    assert job.status == "done" and job.report["ok"] is True and job.report["events"] == 12
    assert job.report["root_hash"] == reference_verify(dataset=signed).root_hash


@pytest.fixture
def published_ledger(dataset):
    ledgered_version(dataset, items=3)
    dataset.events = LabelEvent.objects.filter(dataset=dataset).count()
    return dataset


# --- through a real broker, on a real worker


@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
def test_real_celery_workers_verify_the_chunks_sent_through_the_broker(
    api_for, auditor, dataset, monkeypatch
):
    import os
    import subprocess
    import sys
    import time
    from pathlib import Path

    from django.conf import settings as django_settings
    from django.db import connection

    from .ledger_support import events

    if not django_settings.CELERY_BROKER_URL:
        pytest.skip("CELERY_BROKER_URL is not set (CI sets it to Redis)")
    if connection.vendor != "postgresql":
        pytest.skip("the worker process needs a database it can share: PostgreSQL")
    monkeypatch.setattr(tree_heads, "CHUNK_LEVEL", 10)  # the worker runs with the real block size
    ledgered_version(dataset, items=2)  # published: the auditor may read it
    ledger.append_events(dataset=dataset, events=events(5000, start=100))
    ledger.sign_tree_head(dataset=dataset)
    size = LabelEvent.objects.filter(dataset=dataset).count()
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
        "CELERY_BROKER_URL": django_settings.CELERY_BROKER_URL,
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool=prefork", "--concurrency=2",
         "--without-gossip", "--without-mingle", "--without-heartbeat", "-Q", django_settings.CELERY_TASK_DEFAULT_QUEUE,
         "--loglevel=WARNING"],
        cwd=Path(__file__).resolve().parents[2], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        started = api_for(auditor).post("/api/v1/ledger/verify/", {"dataset": dataset.slug}, format="json")
        assert started.status_code == 202
        job_id = started.json()["id"]
        assert started.json()["chunks_total"] == -(-size // 1024)  # one chunk per block of 1,024 events
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and LedgerVerification.objects.get(pk=job_id).status not in (
            "done",
            "failed",
        ):
            time.sleep(0.2)
        job = LedgerVerification.objects.get(pk=job_id)
        assert job.status == "done", job.error
        assert job.report["ok"] is True and job.report["events"] == size
        assert job.report["root_hash"] == reference_verify(dataset=dataset).root_hash
    finally:
        worker.terminate()
        try:
            output, _ = worker.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
            output, _ = worker.communicate()
    assert "Traceback" not in output, output


def test_rows_with_escapes_big_integers_and_tiny_floats_verify_as_the_reference_does(dataset):
    from .ledger_support import events

    awkward = {
        "note": "tab\there\nnew\\line\r\x0b\x0c\x08 \\N",
        "big": [2**70, -(2**64), 10**19],
        "tiny": [1e-7, 0.00001, -3.5e-300],
        "é": "ü😀\u2028",
    }
    ledger.append_events(dataset=dataset, events=events(5, actor="A\t1\\x\nB", payload=awkward))
    ledger.sign_tree_head(dataset=dataset)

    report = verify_chain.verify_dataset(dataset=dataset, workers=2)
    reference = reference_verify(dataset=dataset)
    assert report.ok, report.problems
    assert (report.events, report.root_hash) == (reference.events, reference.root_hash)
