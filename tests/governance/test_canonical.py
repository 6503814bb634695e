"""The fast canonical encoder writes the documented rule's bytes, or refuses where the rule refuses.

The reference is the rule as ``verify_offline``'s docstring states it, written out here with the
standard library, so the test does not lean on the code under test for its expectation.
"""

import collections
import enum
import hashlib
import json
import math

import numpy
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from governance import verify_offline
from governance.ledger import canonical, chain


def documented_rule(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode(
        "utf-8"
    )


def outcome(encode, obj):
    try:
        return ("ok", encode(obj))
    except (ValueError, TypeError, RecursionError) as error:
        return ("refused", type(error).__name__)


# Floats from everywhere: tiny, subnormal, huge exponents, around the 1e-4 and 1e16 switch points.
floats = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(min_value=-1e-3, max_value=1e-3),
    st.floats(min_value=1e15, max_value=1e17),
    st.sampled_from([1e-4, 9.999999999999999e-05, 1e-5, 5e-324, 1e16, 9999999999999998.0, -0.0, 0.0]),
    st.integers(min_value=-(10**20), max_value=10**20).map(lambda n: n / 1000),
)
integers = st.one_of(
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64 - 1, 2**64]),
)
# Every code point, lone surrogates and control characters included.
text = st.text(st.characters(codec=None, exclude_categories=()), max_size=12)
keys = st.one_of(text, st.sampled_from(["a", "é", "\uffff", "😀", "Z", "", "0", "e-", "null"]))
scalars = st.one_of(st.none(), st.booleans(), integers, floats, text)
plain_json = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(keys, inner, max_size=5)),
    max_leaves=30,
)


@settings(max_examples=3000, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(plain_json)
def test_the_fast_path_is_the_documented_rule_byte_for_byte(value):
    assert outcome(canonical.canonical_json, value) == outcome(documented_rule, value)


@settings(max_examples=500, deadline=None)
@given(st.one_of(floats, st.floats()))
def test_every_float_alone_and_inside_an_event(value):
    document = {"payload": {"after": {"bbox": [value, 1.5, value]}}, "seq": 3, "label_uid": "3e-4a"}
    assert outcome(canonical.canonical_json, document) == outcome(documented_rule, document)
    assert outcome(canonical.canonical_json, value) == outcome(documented_rule, value)


@pytest.mark.parametrize(
    "value",
    [
        float("nan"),
        {"x": [float("inf")]},
        -math.inf,
        "\ud800",  # a lone surrogate is not UTF-8
        {"k\udfff": 1},
        {1: "int key"},  # the rule writes it as "1"; orjson refuses: falls back
        {1: 1, "a": 2},  # the rule cannot sort mixed keys
        2**64,
        "__deep__",
        '\x00\x1f\x7f\u2028\u2029"\\/\b\f\n\r\t',
        {"1e-05": 1e-05, "tiny": [0.00001, 1e-7, -3.2e-300]},
    ],
)
def test_the_edge_cases_end_where_the_rule_ends(value):
    if value == "__deep__":
        value = nested(60)
    assert outcome(canonical.canonical_json, value) == outcome(documented_rule, value)


def nested(depth):
    value = 1
    for _ in range(depth):
        value = [value]
    return value


def test_nesting_beyond_orjson_depth_falls_back():
    deep = nested(300)  # orjson stops at 255 levels; the standard library goes on
    assert canonical.canonical_json(deep) == documented_rule(deep)


def test_the_reference_the_server_imports_is_the_documented_rule():
    value = {"b": [1.5, 1e-05, 2**70, "é"], "a": None}
    assert verify_offline.canonical_json(value) == documented_rule(value)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(keys, plain_json, max_size=6), st.from_regex(r"[0-9a-f]{64}", fullmatch=True))
def test_event_hash_agrees_with_the_offline_verifier(document, prev_hash):
    document = {k: v for k, v in document.items() if k not in ("hash", "prev_hash")}
    assert outcome(lambda d: canonical.event_hash(d, prev_hash), document) == outcome(
        lambda d: verify_offline.event_hash(d, prev_hash), document
    )


@settings(max_examples=500, deadline=None)
@given(plain_json)
def test_stored_text_reads_back_as_the_standard_library_reads_it(value):
    try:
        text = json.dumps(value, allow_nan=False)
    except ValueError:
        return
    as_read = json.dumps(canonical.loads_text(text), sort_keys=True)
    assert as_read == json.dumps(json.loads(text), sort_keys=True)


# An event document as the verifier reads it from the ledger's columns: str, 64-bit int or None
# everywhere but the payload, which is any plain JSON.
column_values = st.one_of(st.none(), text, st.integers(min_value=-(2**63), max_value=2**63 - 1))
event_documents = st.fixed_dictionaries(
    dict.fromkeys(
        ("dataset", "seq", "label_uid", "action", "actor", "occurred_at", "source", "model_name"),
        column_values,
    )
    | {"payload": plain_json}
)


@settings(max_examples=3000, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(event_documents)
def test_the_event_encoder_is_the_documented_rule_byte_for_byte(document):
    assert outcome(canonical.canonical_event, document) == outcome(documented_rule, document)


@pytest.mark.parametrize(
    "payload",
    [{"after": {"bbox": [1e-05, 2.5]}}, {"x": None}, {"x": float("nan")}, {"big": 2**64}, nested(300)],
)
def test_the_event_encoder_falls_back_on_the_payload_alone(payload):
    document = {"label_uid": "0e-4e-1", "model_name": None, "seq": 2**63 - 1, "payload": payload}
    assert outcome(canonical.canonical_event, document) == outcome(documented_rule, document)


# --------------------------------------------------------------------------- plain_json: _plain skipped

ledger_floats = st.one_of(
    floats,
    st.sampled_from([-0.0, 1e16, -1e16, 1.5e17, 1e-7, -1e-7, 1e300, 123.25, -0.05, -0.0001]),
    st.floats(allow_nan=True, allow_infinity=True),
)
ledger_scalars = st.one_of(st.none(), st.booleans(), integers, ledger_floats, text)
payloads = st.recursive(
    ledger_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.lists(inner, max_size=4).map(tuple),
        st.dictionaries(keys, inner, max_size=5),
    ),
    max_leaves=30,
)
# Coordinates as deliveries hold them: a fast path that never fired would pass the property trivially.
polygons = st.dictionaries(
    st.sampled_from(["points", "bbox", "counts", "size"]),
    st.lists(st.integers(min_value=0, max_value=10**7).map(lambda n: n / 100), min_size=1, max_size=40),
    min_size=1,
)


def reference_of_plain(value):
    """What the ledger hashes for a payload today: ``_plain`` then the offline verifier's rule."""
    return outcome(lambda v: verify_offline.canonical_json(chain._plain(v)), value)


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(payloads)
def test_plain_json_is_the_rule_over_plain_or_declines(value):
    fast = canonical.plain_json(value)
    if fast is not None:
        assert ("ok", fast) == reference_of_plain(value)


@settings(max_examples=500, deadline=None)
@given(polygons, st.dictionaries(keys, ledger_scalars, max_size=4))
def test_plain_json_of_a_label_state_with_its_geometry_spliced_in(geometry, attributes):
    geometry_json = canonical.plain_json_text(geometry)
    assert geometry_json is not None  # pixel coordinates (no tiny floats, no -0.0): no normalisation
    state = {"category": "car", "geometry": geometry, "attributes": attributes, "is_final": True}
    spliced = canonical.plain_json({"after": {**state, "geometry": orjson.Fragment(geometry_json)}})
    if spliced is not None:
        assert ("ok", spliced) == reference_of_plain({"after": state})


@pytest.mark.parametrize(
    "value",
    [-0.0, [1, -0.0], 1e16, {"a": 2e20}, float("nan"), [math.inf], (1.5, 2), 1e-7, {1: 2}, 2**64, [None]],
)
def test_plain_json_declines_what_plain_would_change_or_refuse(value):
    if isinstance(value, tuple):  # a tuple is the same JSON as the list _plain makes of it
        assert canonical.plain_json(value) == verify_offline.canonical_json(chain._plain(value))
    else:
        assert canonical.plain_json(value) is None


@settings(max_examples=1000, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    payloads,
    st.fixed_dictionaries(
        {"actor": text, "seq": integers, "label_uid": st.one_of(st.none(), st.uuids().map(str))},
        optional={"delivery_id": st.one_of(st.none(), integers), "source": text},
    ),
    st.from_regex(r"[0-9a-f]{64}", fullmatch=True),
)
def test_document_json_hashes_as_the_offline_verifier(payload, fields, prev_hash):
    payload = {"after": payload}
    payload_json = canonical.plain_json_text(payload)
    if payload_json is None:
        return
    document = {"dataset": "street-scenes", "action": "created", **fields, "payload": payload}
    expected = outcome(
        lambda d: verify_offline.event_hash({**d, "payload": chain._plain(d["payload"])}, prev_hash), document
    )
    got = outcome(
        lambda d: hashlib.sha256(
            canonical.document_json(d, payload_json) + bytes.fromhex(prev_hash)
        ).hexdigest(),
        document,
    )
    assert got == expected


class Score(float):
    pass


class Level(enum.IntEnum):
    HIGH = 3


class Colour(enum.StrEnum):
    RED = "red"


@pytest.mark.parametrize(
    "value",
    [
        Score(2.5),
        Level.HIGH,
        Colour.RED,
        collections.OrderedDict(b=1, a=2),
        numpy.float64(1.5),
        numpy.int64(3),
    ],
)
def test_plain_json_of_subclasses_is_the_rule_over_plain_or_declines(value):
    fast = canonical.plain_json({"x": [value]})
    if fast is not None:
        assert ("ok", fast) == reference_of_plain({"x": [value]})
