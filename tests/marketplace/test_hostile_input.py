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
    # libyaml's scanner refuses the surrogate escape itself ("invalid"); NUL is ours to refuse
    assert [(p["code"], p["file"]) for p in result.problems] in (
        [("unsafe_yaml", "data.yaml")],
        [("invalid", "data.yaml")],
    )
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


# -- values Python's json accepts but a delivery must not carry (point 6) -------------------------


def _coco_with_raw(replace: dict[str, str], **annotation):
    files = support.coco_files(n_images=1)
    doc = json.loads(files["annotations/instances_train.json"])
    doc["annotations"][0].update(annotation)
    text = json.dumps(doc)
    for old, new in replace.items():
        assert old in text
        text = text.replace(old, new)
    files["annotations/instances_train.json"] = text
    return zip_bytes(files)


UNHANDLED = {
    "nan_attribute": lambda: _coco_with_raw({'"__X__"': "NaN"}, attributes={"occluded": "__X__"}),
    "infinity": lambda: _coco_with_raw({'"__X__"': "-Infinity"}, attributes={"score": "__X__"}),
    "float_overflow": lambda: _coco_with_raw({"[2.0, 2.0, 10.0, 8.0]": "[1e400, 2.0, 10.0, 8.0]"}),
    "lone_surrogate": lambda: _coco_with_raw({'"__X__"': '"\\ud800"'}, attributes={"note": "__X__"}),
    "5000_digit_int": lambda: _coco_with_raw({'"n": 1': '"n": ' + "9" * 5000}, attributes={"n": 1}),
    "nul_in_attribute": lambda: _coco_with_raw({}, attributes={"note": "a\u0000b"}),
    "nul_in_category": lambda: _coco_with_raw({'"name": "car"': '"name": "c\\u0000ar"'}),
}


@pytest.mark.parametrize("build", list(UNHANDLED.values()), ids=list(UNHANDLED))
def test_unrepresentable_values_fail_with_invalid_json_not_internal_error(build, dataset, media, run):
    delivery = make_delivery(dataset, build())
    rows, stored = row_counts(), storage_files(media)

    result = run(delivery)

    assert delivery.status == Delivery.Status.FAILED
    assert [(p["code"], p["file"]) for p in result.problems] == [
        ("invalid_json", "annotations/instances_train.json")
    ]
    assert row_counts() == rows and storage_files(media) == stored


def test_a_well_formed_pair_of_surrogate_escapes_is_fine(dataset, media, run):
    # "\ud83d\ude97" is one emoji (U+1F697) written as a pair: valid JSON, valid text.
    data = _coco_with_raw({'"__X__"': '"\\ud83d\\ude97"'}, attributes={"note": "__X__"})
    result = run(make_delivery(dataset, data))
    assert result.ok, result.problems


@pytest.mark.parametrize(
    "data_yaml", ['names: ["a\\0b"]\ntrain: images/train\n', 'names: ["\\ud800"]\ntrain: images/train\n']
)
def test_nul_and_lone_surrogates_in_data_yaml_are_refused(data_yaml, dataset, media, run):
    files = {"data.yaml": data_yaml, "images/train/a.jpg": picture(64, 48)}
    result = run(make_delivery(dataset, zip_bytes(files)))
    # libyaml's scanner refuses the surrogate escape itself ("invalid"); NUL is ours to refuse
    assert [(p["code"], p["file"]) for p in result.problems] in (
        [("unsafe_yaml", "data.yaml")],
        [("invalid", "data.yaml")],
    )
