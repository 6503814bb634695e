"""Smoke test driver (.ci/smoke_production.sh): what a supplier and a buyer do, over HTTP only.

`python .ci/smoke_driver.py first URL TOKEN SLUG`: upload a delivery, wait for the worker to
ingest it, publish it, export it, download the export through the presigned link and check it.
`python .ci/smoke_driver.py upload URL TOKEN SLUG N`: upload a delivery of N images, print its id.
`python .ci/smoke_driver.py wait URL TOKEN ID STATUS SECONDS`: wait until the delivery has STATUS
(or a later one), print its status and stage.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import sys
import time
import urllib.parse
import zipfile

import requests
from PIL import Image

# gunicorn behind a TLS proxy, as the README deploys it: the proxy says the request was HTTPS.
HEADERS = {"X-Forwarded-Proto": "https"}


def api(base: str, token: str) -> requests.Session:
    session = requests.Session()
    session.headers.update({**HEADERS, "Authorization": f"Token {token}"})
    session.base = base.rstrip("/")
    return session


def call(session, method: str, path: str, expect: int | tuple, **kwargs):
    response = session.request(method, session.base + path, timeout=60, allow_redirects=False, **kwargs)
    expected = expect if isinstance(expect, tuple) else (expect,)
    if response.status_code not in expected:
        sys.exit(f"{method} {path}: {response.status_code} {response.text[:500]}")
    return response


def delivery_zip(n: int, seed: int) -> bytes:
    """A COCO delivery of n distinct 320x240 JPEGs with a box each."""
    rng = random.Random(seed)
    images, annotations, buffer = [], [], io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(1, n + 1):
            picture = Image.new("RGB", (320, 240), tuple(rng.randrange(256) for _ in range(3)))
            for _ in range(20):
                x, y = rng.randrange(300), rng.randrange(220)
                picture.paste(tuple(rng.randrange(256) for _ in range(3)), (x, y, x + 20, y + 20))
            data = io.BytesIO()
            picture.save(data, "JPEG", quality=90)
            name = f"{seed:02d}-{i:05d}.jpg"
            zf.writestr(f"images/train/{name}", data.getvalue())
            images.append({"id": i, "file_name": name, "width": 320, "height": 240})
            annotations.append({"id": i, "image_id": i, "category_id": 1, "bbox": [10, 10, 50, 40]})
        doc = {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "car"}]}
        zf.writestr("annotations/instances_train.json", json.dumps(doc))
    return buffer.getvalue()


def upload(session, slug: str, n: int, seed: int) -> int:
    files = {"archive": (f"delivery-{seed}.zip", delivery_zip(n, seed), "application/zip")}
    body = call(session, "POST", f"/api/v1/datasets/{slug}/deliveries/", 202, files=files).json()
    return body["id"]


ORDER = ["pending", "validating", "ingested"]


def wait(session, delivery_id: int, status: str, seconds: float) -> dict:
    deadline = time.monotonic() + seconds
    while True:
        body = call(session, "GET", f"/api/v1/deliveries/{delivery_id}/", 200).json()
        if body["status"] == "failed":
            sys.exit(f"delivery {delivery_id} failed: {json.dumps(body.get('report'))[:800]}")
        if ORDER.index(body["status"]) >= ORDER.index(status):
            return body
        if time.monotonic() > deadline:
            sys.exit(f"delivery {delivery_id} still {body['status']} after {seconds} s")
        time.sleep(0.2)


def first(base: str, token: str, slug: str) -> None:
    session = api(base, token)
    delivery = upload(session, slug, 5, seed=1)
    body = wait(session, delivery, "ingested", 120)
    number = body["version"] if isinstance(body.get("version"), int) else 1
    print(f"delivery {delivery} ingested by the worker as version {number}")
    call(
        session,
        "POST",
        f"/api/v1/workspace/datasets/{slug}/versions/{number}/publish/",
        200,
        json={"release_notes": "First release (smoke test)."},
    )
    print(f"version {number} published")
    export = call(
        session, "POST", f"/api/v1/datasets/{slug}/versions/{number}/exports/", 202, json={"format": "coco"}
    ).json()
    deadline = time.monotonic() + 120
    while export["status"] != "ready":
        if export["status"] == "failed" or time.monotonic() > deadline:
            sys.exit(f"export {export['id']}: {export['status']}")
        time.sleep(0.3)
        export = call(session, "GET", f"/api/v1/exports/{export['id']}/", 200).json()
    link = urllib.parse.urlsplit(export["download_url"])  # absolute, https: as the proxy would serve it
    redirect = call(session, "GET", f"{link.path}?{link.query}", 302)
    presigned = redirect.headers["Location"]
    assert "Signature=" in presigned or "X-Amz-Signature=" in presigned, presigned
    data = requests.get(presigned, timeout=60).content  # straight from S3: no registry credentials
    assert hashlib.sha256(data).hexdigest() == export["sha256"], (
        "downloaded bytes differ from the export's sha256"
    )
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert any(n.endswith(".json") for n in names) and sum(n.endswith(".jpg") for n in names) == 5, names
    print(f"export {export['id']} downloaded through the presigned link: {len(data)} bytes, sha256 checked")


def main() -> None:
    command, base, token, *rest = sys.argv[1:]
    if command == "first":
        first(base, token, rest[0])
    elif command == "upload":
        print(upload(api(base, token), rest[0], int(rest[1]), seed=2))
    elif command == "wait":
        body = wait(api(base, token), int(rest[0]), rest[1], float(rest[2]))
        print(body["status"], body.get("stage", ""))
    else:
        sys.exit(f"unknown command {command}")


if __name__ == "__main__":
    main()
