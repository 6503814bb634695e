"""The embedded default under concurrent HTTP writers (issue #14, point 3), end to end.

A real server (gunicorn: two processes, four threads each) on a fresh SQLite *file*, tasks
in-process as without a broker, and client threads: two deliveries uploaded to one dataset at
once, and twenty buyers purchasing at once. Before the fix, this answered 500 "database is
locked" and left a delivery pending forever; now no request may answer 500, anything refused
for a busy database says 503 with Retry-After (and then succeeds on retry), and no delivery
is left pending or validating.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.marketplace.ingest_support import coco_files, zip_bytes

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
BUYERS = 20

SETUP = """
import json
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from marketplace.models import Dataset, License, Membership, Offer, Organization, Role
from marketplace.workspace import editing
User = get_user_model()
org = Organization.objects.create(slug="s", name="Supplier")
supplier = User.objects.create(username="supplier")
Membership.objects.create(user=supplier, organization=org, role=Role.SUPPLIER)
dataset = editing.create_dataset(user=supplier, organization=org, slug="streets", title="Streets",
                                 summary="Streets.", domain="autonomous-driving")
sheet = dataset.versions.get(number=1).datasheet
for field in editing.REQUIRED_DATASHEET_FIELDS.values():
    setattr(sheet, field, "Answered.")
sheet.save()
offer = Offer.objects.create(dataset=dataset, license=License.objects.create(name="Paid", spdx_id=""),
                             access_mode=Offer.AccessMode.PURCHASE, price=10)
tokens = []
for i in range(%(buyers)d):
    user = User.objects.create(username=f"buyer{i}")
    Membership.objects.create(user=user, organization=Organization.objects.create(slug=f"b{i}", name=f"B{i}"),
                              role=Role.BUYER)
    tokens.append(Token.objects.create(user=user).key)
print(json.dumps({"supplier": Token.objects.create(user=supplier).key, "buyers": tokens, "offer": offer.pk}))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL", "CACHE_URL")}
    env.update(
        VAR_DIR=str(tmp_path / "var"),
        GENERATE_SECRETS="true",
        DEBUG="false",
        ALLOWED_HOSTS="127.0.0.1",
        STORAGE_BACKEND="local",
        PYTHONPATH=str(ROOT),
        LOGIN_RATE="1000/minute",
    )
    run = {"cwd": ROOT, "env": env, "check": True, "capture_output": True, "text": True}
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], **run)
    setup = subprocess.run([sys.executable, "manage.py", "shell", "-c", SETUP % {"buyers": BUYERS}], **run)
    people = json.loads(setup.stdout.strip().splitlines()[-1])
    port = _free_port()
    log = open(tmp_path / "gunicorn.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [str(BIN / "gunicorn"), "config.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "2",
         "--threads", "4", "--worker-class", "gthread", "--timeout", "120"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        for _ in range(150):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.2)
        yield {"base": f"http://127.0.0.1:{port}", "db": tmp_path / "var" / "db.sqlite3", **people}
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def _parallel(calls) -> list[requests.Response]:
    """Run every call at the same moment, each in its own thread; their responses, in order."""
    start = threading.Barrier(len(calls))
    results: list = [None] * len(calls)

    def go(i, call):
        start.wait()
        results[i] = call()

    threads = [threading.Thread(target=go, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    return results


def _with_retry(call):
    """What a client does with a 503: wait Retry-After, try again (a few times)."""

    def go():
        for _ in range(5):
            response = call()
            if response.status_code != 503:
                return response
            assert response.headers["Retry-After"] and response.json()["code"] == "database_busy"
            time.sleep(int(response.headers["Retry-After"]))
        return response

    return go


def test_two_deliveries_and_twenty_purchases_at_once_never_answer_500(server):
    base, auth = server["base"], {"Authorization": f"Token {server['supplier']}"}
    archives = [zip_bytes(coco_files(n_images=3)), zip_bytes(coco_files(n_images=4))]

    def upload(data):
        files = {"archive": ("d.zip", data, "application/zip")}
        return lambda: requests.post(
            f"{base}/api/v1/datasets/streets/deliveries/", files=files, headers=auth, timeout=120
        )

    uploads = _parallel([_with_retry(upload(a)) for a in archives])
    assert [r.status_code for r in uploads] == [202, 202], [r.text[:300] for r in uploads]

    # The catalogue shows it once published: the newer of the two versions, through the API.
    published = requests.post(
        f"{base}/api/v1/workspace/datasets/streets/versions/2/publish/",
        json={"release_notes": "Both deliveries in."},
        headers=auth,
        timeout=60,
    )
    assert published.status_code == 200, published.text[:500]

    def purchase(token, i):
        return lambda: requests.post(
            f"{base}/api/v1/offers/{server['offer']}/purchase/",
            json={"accept_license": True, "idempotency_key": f"order-{i}"},
            headers={"Authorization": f"Token {token}"},
            timeout=120,
        )

    raw = _parallel([purchase(t, i) for i, t in enumerate(server["buyers"])])
    assert not [r for r in raw if r.status_code >= 500 and r.status_code != 503], [r.text[:200] for r in raw]
    retried = [
        _with_retry(purchase(t, i))() if r.status_code == 503 else r
        for i, (t, r) in enumerate(zip(server["buyers"], raw, strict=True))
    ]
    assert [r.status_code for r in retried] == [201] * BUYERS

    # The server's own database file, read directly: no delivery stuck, one order per buyer.
    import sqlite3

    db = sqlite3.connect(server["db"])
    statuses = db.execute("SELECT status, version_id FROM marketplace_delivery ORDER BY id").fetchall()
    assert [s for s, _ in statuses] == ["ingested", "ingested"], statuses
    numbers = dict(db.execute("SELECT id, number FROM marketplace_datasetversion").fetchall())
    assert sorted(numbers[v] for _, v in statuses) == [1, 2]
    assert db.execute("SELECT COUNT(DISTINCT organization_id) FROM marketplace_order").fetchone() == (BUYERS,)
    db.close()
