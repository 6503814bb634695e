"""A Hypothesis state machine appends, publishes and verifies, and checks every answer offline.

The model is the list of events appended and the tree heads signed. After any sequence of steps the
ledger must verify, every event must prove into every head that covers it, and every older head must
be consistent with every newer one, all as ``verify_offline`` (not the server) judges.
"""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from governance import ledger, verify_offline
from governance.models import LabelEvent, TreeHead
from marketplace.catalogue import publication as catalogue_publication
from tests import factories as f

from ..conftest import build_version

pytestmark = pytest.mark.django_db

# Text both databases store as given: no NUL (PostgreSQL refuses it) and no lone surrogates (not UTF-8).
text = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=12)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8,
)
event_data = st.builds(
    ledger.EventData,
    label_uid=st.none() | st.uuids(),
    action=st.sampled_from(["created", "modified", "reviewed", "accepted", "consensus", "export_downloaded"]),
    actor=text,
    occurred_at=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
    guideline_version=text,
    source=st.sampled_from(["", "human", "model", "consensus"]),
    payload=st.dictionaries(text, json_values, max_size=4),
    delivery_id=st.none() | st.integers(1, 2**40),
    version_number=st.none() | st.integers(1, 50),
)


class LedgerMachine(RuleBasedStateMachine):
    """Append batches, sign heads (alone or by publishing a version), verify; tampering is another test's job."""

    @initialize()
    def a_fresh_dataset(self):
        self.dataset = f.DatasetFactory(slug=f"ds-{uuid.uuid4().hex[:12]}", supplier=f.OrganizationFactory())
        self.appended = 0
        self.heads: list[int] = []
        self.versions = 0

    @rule(batch=st.lists(event_data, max_size=6))
    def append(self, batch):
        assert ledger.append_events(dataset=self.dataset, events=iter(batch)) == len(batch)
        self.appended += len(batch)

    @rule()
    def sign(self):
        head = ledger.sign_tree_head(dataset=self.dataset)
        assert head.tree_size == self.appended
        self.heads.append(head.pk)

    @precondition(lambda self: self.versions < 3)
    @rule()
    def publish(self):
        self.versions += 1
        version = build_version(self.dataset, number=self.versions, items=0, publish=False)
        catalogue_publication.publish_version(
            version=version, at=datetime(2026, 3, 2, tzinfo=UTC) + timedelta(days=self.versions)
        )
        self.appended += 1  # version_published
        self.heads.append(TreeHead.objects.get(version=version).pk)

    @invariant()
    def the_ledger_verifies_on_the_server(self):
        report = ledger.verify_dataset(dataset=self.dataset)
        assert report.ok, report.problems
        assert report.events == self.appended

    @rule()
    def every_event_proves_into_every_head_that_covers_it_offline(self):
        key = ledger.public_key_pem()
        events = list(LabelEvent.objects.filter(dataset=self.dataset).select_related("dataset"))
        docs = [ledger.event_document(e) for e in events]
        for head in TreeHead.objects.filter(pk__in=self.heads).select_related("dataset"):
            document = ledger.tree_head_document(head)
            assert verify_offline.verify_chain(docs, tree_head=document, public_key=key).valid
            for event, doc in zip(events[: head.tree_size], docs, strict=False):
                proof = ledger.inclusion_proof_for(event, head=head)
                result = verify_offline.verify(document, key, doc, proof)
                assert result.valid, result.failures

    @rule()
    def every_older_head_is_consistent_with_every_newer_one_offline(self):
        key = ledger.public_key_pem()
        heads = list(
            TreeHead.objects.filter(pk__in=self.heads).select_related("dataset").order_by("tree_size", "pk")
        )
        for old, new in zip(heads, heads[1:], strict=False):
            proof = ledger.consistency_proof_for(old, new)
            result = verify_offline.verify_consistency(
                old_head=ledger.tree_head_document(old),
                new_head=ledger.tree_head_document(new),
                public_key=key,
                proof_hex_list=proof,
            )
            assert result.valid, result.failures


def test_any_sequence_of_appends_publications_and_signatures_verifies_offline(monkeypatch):
    # two-leaf chunks: small ledgers exercise the cache
    monkeypatch.setattr(ledger.tree_heads, "CHUNK_LEVEL", 1)
    run_state_machine_as_test(
        LedgerMachine,
        settings=settings(
            max_examples=20,
            stateful_step_count=8,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        ),
    )
