"""Hostile input that used to cost minutes or end as internal_error (issue #14, points 1 and 6)."""

from __future__ import annotations

import json

import pytest

from marketplace.models import Delivery

from . import ingest_support as support
from .formats.test_yolo_hostile import YAML_BOMB
from .ingest_support import make_delivery, picture, row_counts, storage_files, zip_bytes

pytestmark = pytest.mark.django_db

media, run = support.media, support.run  # fixtures


def test_the_yaml_alias_bomb_fails_the_delivery_with_a_small_report(dataset, media, run):
    files = {"data.yaml": YAML_BOMB, "images/train/a.jpg": picture(64, 48)}
    delivery = make_delivery(dataset, zip_bytes(files))
    rows, stored = row_counts(), storage_files(media)

    result = run(delivery)

    assert delivery.status == Delivery.Status.FAILED
    assert [(p["code"], p["file"]) for p in result.problems] == [("unsafe_yaml", "data.yaml")]
    assert len(json.dumps(delivery.report)) < 10_000  # it was 522 MB
    assert row_counts() == rows and storage_files(media) == stored


# -- JSON request bodies (point 6): deep, huge, NaN, lone surrogates, 5000-digit ints -----------

TOKEN = "/api/v1/auth/token/"


def _post_raw(client, path, body: bytes):
    return client.generic("POST", path, body, content_type="application/json")


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "json_too_deep"),
        (b'{"username": ' + b"[" * 40 + b"]" * 40 + b"}", "json_too_deep"),
        (b'{"username": "' + b"a" * (2 * 1024 * 1024) + b'"}', "json_too_large"),
        (b'{"username": NaN, "password": "x"}', "invalid_json"),
        (b'{"username": "\\ud800", "password": "x"}', "invalid_json"),
        (b'{"username": ' + b"9" * 5000 + b', "password": "x"}', "invalid_json"),
        (b'{"username": "a\xff"}', "invalid_json"),
    ],
    ids=["deep", "deep_value", "large", "nan", "lone_surrogate", "5000_digits", "not_utf8"],
)
def test_a_hostile_json_body_is_a_400_with_a_code_even_anonymous(client, body, code):
    response = _post_raw(client, TOKEN, body)

    assert response.status_code == 400, response.content[:200]
    assert response.json()["code"] == code
    assert len(response.content) < 1000


def test_brackets_inside_strings_do_not_count_as_depth(client, buyer):
    body = b'{"username": "buyer", "password": "' + b"[" * 500 + b'"}'
    response = _post_raw(client, TOKEN, body)
    assert response.status_code == 400 and response.json()["code"] != "json_too_deep"


def test_a_hostile_body_is_refused_on_an_authenticated_endpoint_too(api_for, supplier, dataset):
    api = api_for(supplier)
    response = api.generic(
        "POST", "/api/v1/workspace/datasets/", b"{" * 10_000, content_type="application/json"
    )
    assert response.status_code == 400 and response.json()["code"] == "json_too_deep"
