"""The content rows' fast reading gives the rows of the reference reading, byte for byte.

``content._plain_parsed`` skips ``chain._plain``'s walk over a value parsed from JSON text when the walk
would change nothing; here it is compared with ``_plain`` itself on random JSON (floats around -0.0,
1e16 and the exponent switch points, integers beyond 64 bits, every code point), as the database
would give it back: JSON text.
"""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from governance import verify_offline
from governance.ledger import content
from governance.ledger.canonical import canonical_json_finite, loads_text
from governance.ledger.chain import _plain

floats = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(min_value=1e15, max_value=1e17),
    st.sampled_from([1e16, -1e16, 9999999999999998.0, -0.0, 0.0, 1e-5, 1e300, -1.5e22]),
)
integers = st.one_of(st.integers(), st.sampled_from([2**63, -(2**63) - 1, 2**64, 10**16]))
text = st.text(st.characters(codec="utf-8"), max_size=8)
keys = st.one_of(text, st.sampled_from(["e", "null", "-0.0", "bbox", "polygons", "keypoints", "1e"]))
scalars = st.one_of(st.none(), st.booleans(), integers, floats, text)
plain_json = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(keys, inner, max_size=5)),
    max_leaves=30,
)


def outcome(normalise, stored: str):
    try:
        return ("ok", verify_offline.canonical_json(normalise(stored)))
    except ValueError as error:
        return ("refused", str(error))


@settings(max_examples=2000, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(plain_json)
def test_the_fast_normalisation_gives_the_reference_bytes(value):
    stored = json.dumps(value)
    fast = outcome(lambda t: content._plain_parsed(loads_text(t)), stored)
    assert fast == outcome(lambda t: _plain(json.loads(t)), stored)


def test_it_normalises_what_plain_normalises():
    stored = '{"bbox": [-0.0, 1e16, 2.5], "polygons": [[1e17, 0.0, 3, 4, 5, 6]]}'
    assert verify_offline.canonical_json(content._plain_parsed(loads_text(stored))) == (
        b'{"bbox":[0.0,10000000000000000,2.5],"polygons":[[100000000000000000,0.0,3,4,5,6]]}'
    )


def test_it_refuses_what_plain_refuses():
    for stored in ('{"bbox": [NaN, 1, 2, 3]}', "[Infinity]"):
        assert outcome(lambda t: content._plain_parsed(loads_text(t)), stored)[0] == "refused"


def test_a_keypoint_geometry_is_not_walked_but_its_exponents_are(monkeypatch):
    # "keypoints" has an "e": only a digit then "e" (orjson's exponent, 1e+16) may need the walk.
    plain_geometry = loads_text('{"bbox":[1.5,2,3,4],"keypoints":[1.25,2,2,0,0,0]}')
    large = loads_text('{"bbox":[1,2,3,4],"keypoints":[1e16,2,2]}')
    walked = []
    monkeypatch.setattr(content, "_plain", lambda value: walked.append(value) or _plain(value))

    assert content._plain_parsed(plain_geometry) is plain_geometry
    assert walked == []
    assert content._plain_parsed(large) == {"bbox": [1, 2, 3, 4], "keypoints": [10**16, 2, 2]}
    assert walked == [large]


@pytest.mark.django_db
def test_verification_encodes_the_rows_without_the_reference_encoder(published_version, monkeypatch):
    from governance.ledger import content_verification

    monkeypatch.setattr(content, "row_digest", lambda row: pytest.fail("the reference encoder"))

    assert content_verification.verify_version(published_version) is None


def documented_rule(obj) -> bytes:
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


@settings(max_examples=2000, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(plain_json)
def test_the_encoder_for_finite_values_is_the_documented_rule_byte_for_byte(value):
    # plain_json holds no NaN and no infinity: the precondition of canonical_json_finite.
    try:
        expected = documented_rule(value)
    except (ValueError, TypeError):
        return  # what the rule refuses (lone surrogates are excluded above; nothing else is expected)
    assert canonical_json_finite(value) == expected


def reference_label_rows(version):
    """The label rows as the ORM reads them, each JSON value through ``_plain``: the rule as first written."""
    from governance.ledger.chain import _iso
    from governance.models import GuidelineVersion
    from marketplace.models import Label

    tags = {
        pk: content.guideline_key(title, tag)
        for pk, title, tag in GuidelineVersion.objects.filter(labels__version=version).values_list(
            "pk", "guideline__title", "tag"
        )
    }
    for label in (
        Label.objects.filter(version=version).order_by("uid").select_related("item", "category", "annotator")
    ):
        yield {
            "key": str(label.uid),
            "item": label.item.key,
            "category": label.category.name,
            "geometry_type": label.geometry_type,
            "geometry": _plain(label.geometry),
            "attributes": _plain(label.attributes),
            "iscrowd": label.iscrowd,
            "is_final": label.is_final,
            "annotator": label.annotator.pseudonym if label.annotator else None,
            "made_at": _iso(label.made_at) if label.made_at else None,
            "guideline_version": tags.get(label.guideline_version_id),
            "source": label.source,
            "model_name": label.model_name,
            "model_version": label.model_version,
        }


@pytest.mark.django_db
def test_label_rows_read_raw_are_the_rows_the_orm_reads():
    from datetime import UTC, datetime

    from marketplace.formats import model as fmt
    from tests import factories as f

    item = f.ItemFactory()
    version = item.version
    schema = f.SchemaFactory(version=version)
    category = f.CategoryFactory(schema=schema, name="car")
    guideline = f.GuidelineVersionFactory(guideline__dataset=version.dataset)
    annotator = f.AnnotatorFactory(organization=version.dataset.supplier)
    geometries = [
        (fmt.BBOX, {"bbox": [10.0, 20.0, 100.0, 50.0]}, {}),
        (fmt.POLYGON, {"polygons": [[-0.0, 1e16, 3, 4.5, 5e-5, 6]], "bbox": [0, 0, 1, 1]}, {"n": 2**70}),
        (fmt.MASK, {"rle": {"size": [4, 4], "counts": "e3b0"}}, {"colour": "blue", "ok": True, "x": None}),
        (fmt.KEYPOINTS, {"keypoints": [1.25, 2, 2, 0, 0, 0], "bbox": [1, 2, 3, 4]}, {"é": "ü"}),
    ]
    for n, (kind, geometry, attributes) in enumerate(geometries):
        f.LabelFactory(
            item=item,
            category=category,
            geometry_type=kind,
            geometry=geometry,
            attributes=attributes,
            iscrowd=n == 2,
            is_final=n != 1,
            annotator=annotator if n % 2 else None,
            guideline_version=guideline if n else None,
            made_at=datetime(2026, 3, 2, 9, 0, n, 123456 * n, tzinfo=UTC) if n else None,
        )
    fast = [verify_offline.canonical_json(row) for row in content.iter_rows(version, "labels")]
    assert len(fast) == len(geometries)
    assert fast == [verify_offline.canonical_json(row) for row in reference_label_rows(version)]


@pytest.mark.django_db
def test_publication_digests_are_the_reference_encoders(published_version, monkeypatch):
    """compute_content (publication) encodes its rows with orjson: the content hash and every stored
    row and field digest are those the documented rule's encoder gives (rows with nulls, attributes,
    boxes and keypoints); the encoder itself is proven on random values above."""
    from governance.models import ContentDigestBlock

    def blocks():
        return list(
            ContentDigestBlock.objects.filter(version=published_version)
            .order_by("part", "index")
            .values_list("part", "index", "rows")
        )

    fast = content.compute_content(version=published_version, record=True)
    fast_blocks = blocks()
    with monkeypatch.context() as patched:
        patched.setattr(content, "canonical_json_finite", verify_offline.canonical_json)
        reference = content.compute_content(version=published_version, record=True)
    assert fast == reference
    assert fast_blocks == blocks() and fast_blocks
