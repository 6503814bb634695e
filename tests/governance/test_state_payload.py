"""Issue 13: a label state's payload text from ``events.state_payload_json`` is the slow path's.

Ingest encodes one ``{"after": state}`` a label. The quick encoder scans only the attributes for
markers of numbers; whatever the state holds -- hostile text (lone surrogates, "null", "e-",
"0.0000"), attributes with tiny, huge or negative-zero floats, big integers, NaN -- its text is
``canonical.plain_json_text``'s wherever that answers, and the documented rule's bytes of
``_plain(payload)`` (what the event hash covers on the slow path) wherever it answers at all.
"""

import json
import math

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from governance.ledger import canonical, chain
from governance.ledger.events import GEOMETRY_DIGEST, state_payload_json


def documented_rule(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode(
        "utf-8"
    )


def rule_of_plain(value):
    try:
        return ("ok", documented_rule(chain._plain(value)))
    except (ValueError, TypeError, RecursionError) as error:
        return ("refused", type(error).__name__)


text = st.one_of(
    st.text(st.characters(codec=None, exclude_categories=()), max_size=12),
    st.sampled_from(["null", "e-", "1e-05", "0.0000", "-0.0", "e+", "images/a.png", "\ud800", "\x00"]),
)
floats = st.one_of(
    st.floats(),
    st.sampled_from([1e-5, -0.0, 0.0, 1e16, 2e20, 5e-324, math.nan, math.inf]),
)
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(2**63, 2**70), floats, text)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(text, inner, max_size=3)),
    max_leaves=8,
)
states = st.fixed_dictionaries(
    {
        "category": text,
        "geometry_type": st.sampled_from(["polygon", "bbox", "keypoints"]),
        GEOMETRY_DIGEST: st.from_regex(r"[0-9a-f]{64}", fullmatch=True),
        "attributes": st.one_of(st.just({}), st.dictionaries(text, values, max_size=3)),
        "is_final": st.booleans(),
        "item": text,
    }
)
# Shapes the quick path must hand on: an inline geometry, a value of another type, a missing key.
odd_states = st.one_of(
    states.map(lambda s: {**s, "geometry": {"bbox": [1, 2, 3, 4]}}),
    states.map(lambda s: {**s, "is_final": 1}),
    states.map(lambda s: {**s, "category": None}),
    states.map(lambda s: {**s, "attributes": [1.5]}),
    states.map(lambda s: {k: v for k, v in s.items() if k != "item"}),
)


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@example(
    state={
        "category": "null",
        "geometry_type": "polygon",
        GEOMETRY_DIGEST: "0" * 64,
        "attributes": {},
        "is_final": True,
        "item": "a-1e-05.png",
    }
)
@example(
    state={
        "category": "car",
        "geometry_type": "polygon",
        GEOMETRY_DIGEST: "0" * 64,
        "attributes": {"score": 1e-05, "z": -0.0},
        "is_final": False,
        "item": "a.png",
    }
)
@given(state=st.one_of(states, states, states, odd_states))
def test_the_quick_payload_text_is_the_slow_paths(state):
    quick = state_payload_json("after", state)
    slow = canonical.plain_json_text({"after": state})
    if slow is not None:
        assert quick == slow
    if quick is not None:
        assert ("ok", quick.encode()) == rule_of_plain({"after": state})


def test_a_string_that_looks_like_a_number_marker_does_not_decline():
    state = {
        "category": "null",
        "geometry_type": "polygon",
        GEOMETRY_DIGEST: "a" * 64,
        "attributes": {},
        "is_final": True,
        "item": "frame-1e-05.png",
    }
    assert canonical.plain_json_text({"after": state}) is None  # the whole-output scan declines
    assert state_payload_json("after", state).encode() == documented_rule({"after": state})
