"""Tampering by someone who can switch the triggers off is caught, and at the right event.

Each test builds a ledger of 12 events with signed tree heads, tampers as the table owner would
(triggers disabled or dropped), and checks what ``verify_dataset``, the CLI and the offline verifier say.
"""

import base64
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from governance import ledger, verify_offline
from governance.ledger import signing
from governance.models import LabelEvent, TreeHead
from tests import factories as f

from .ledger_support import events, tampering

pytestmark = pytest.mark.django_db


@pytest.fixture
def signed(dataset):
    """12 events; tree heads at sizes 6 and 12."""
    ledger.append_events(dataset=dataset, events=events(6))
    ledger.sign_tree_head(dataset=dataset)
    ledger.append_events(dataset=dataset, events=events(6, start=6))
    ledger.sign_tree_head(dataset=dataset)
    return dataset


def heads(dataset):
    return [
        ledger.tree_head_document(h) for h in TreeHead.objects.filter(dataset=dataset).order_by("tree_size")
    ]


def test_an_intact_ledger_verifies(signed):
    report = ledger.verify_dataset(dataset=signed)

    assert report.ok, report.problems
    assert (report.events, report.tree_heads, report.first_broken_seq) == (12, 2, None)
    assert report.root_hash == heads(signed)[-1]["root_hash"]


def test_an_edited_payload_is_caught_at_that_event(signed):
    with tampering() as cursor:
        cursor.execute(
            "UPDATE governance_labelevent SET payload = %s WHERE dataset_id = %s AND seq = 4",
            ['{"after": {"bbox": [0, 0, 1, 1]}}', signed.pk],
        )

    report = ledger.verify_dataset(dataset=signed)

    assert not report.ok
    assert report.first_broken_seq == 4
    assert report.first_broken_event_id == LabelEvent.objects.get(dataset=signed, seq=4).pk
    assert "edited" in report.reason


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("actor", "A-99"),
        ("occurred_at", "2020-01-01T00:00:00+00:00"),
        ("guideline_version", "v0.9"),
        ("action", "deleted"),
    ],
)
def test_any_edited_field_is_caught_at_that_event(signed, column, value):
    with tampering() as cursor:
        cursor.execute(
            f"UPDATE governance_labelevent SET {column} = %s WHERE dataset_id = %s AND seq = 9",
            [value, signed.pk],
        )

    report = ledger.verify_dataset(dataset=signed)

    assert (report.first_broken_seq, "edited" in report.reason) == (9, True)


def test_an_edit_that_recomputes_the_hashes_is_caught_by_the_signed_roots(signed):
    # The forger rewrites event 3 and relinks every hash after it: the chain is consistent again,
    # but it no longer leads to the roots that were signed.
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

    report = ledger.verify_dataset(dataset=signed)

    assert not report.ok
    assert all("the events do not lead to its signed root" in p for p in report.problems)
    assert len(report.problems) == 2  # both heads cover event 3


def test_a_deleted_row_is_caught_at_the_missing_event(signed):
    with tampering() as cursor:
        cursor.execute("DELETE FROM governance_labelevent WHERE dataset_id = %s AND seq = 5", [signed.pk])

    report = ledger.verify_dataset(dataset=signed)

    assert report.first_broken_seq == 5
    assert report.first_broken_event_id is None
    assert report.reason.startswith("missing")


def test_two_swapped_rows_are_caught_at_the_first_of_them(signed):
    with tampering() as cursor:
        for old, new in [(3, 1000), (7, 3), (1000, 7)]:
            cursor.execute(
                "UPDATE governance_labelevent SET seq = %s WHERE dataset_id = %s AND seq = %s",
                [new, signed.pk, old],
            )

    report = ledger.verify_dataset(dataset=signed)

    assert report.first_broken_seq == 3
    assert "reordered" in report.reason
    assert any(p.startswith("event 7:") for p in report.problems)


def test_a_tree_head_whose_root_was_edited_fails_its_signature(signed):
    with tampering() as cursor:
        cursor.execute(
            "UPDATE governance_treehead SET root_hash = %s WHERE dataset_id = %s AND tree_size = 6",
            ["ab" * 32, signed.pk],
        )

    report = ledger.verify_dataset(dataset=signed)

    assert not report.ok
    assert any(
        "stored tree head at size 6" in p and "signature does not match key" in p for p in report.problems
    )


def test_a_tree_head_forged_with_another_key_is_caught(signed):
    forger = Ed25519PrivateKey.generate()
    head = {
        "dataset": signed.slug,
        "tree_size": 12,
        "root_hash": "cd" * 32,
        "timestamp": timezone.now().isoformat(),
        "key_id": verify_offline.key_id(forger.public_key()),
    }
    head["signature"] = base64.b64encode(forger.sign(verify_offline.tree_head_message(head))).decode()
    TreeHead.objects.create(
        dataset=signed,
        tree_size=12,
        root_hash=head["root_hash"],
        timestamp=timezone.now(),
        key_id=head["key_id"],
        signature=head["signature"],
    )

    report = ledger.verify_dataset(dataset=signed)

    assert any("names key" in p and "not the given key" in p for p in report.problems)


def test_a_tree_head_signed_with_the_real_key_over_other_events_is_caught(signed):
    # Someone holding the key signs a root that is not the root of these events.
    forged = TreeHead(
        dataset=signed, tree_size=12, root_hash="cd" * 32, timestamp=timezone.now(), key_id=signing.key_id()
    )
    forged.signature = signing.sign(verify_offline.tree_head_message(ledger.tree_head_document(forged)))
    forged.save()

    report = ledger.verify_dataset(dataset=signed)

    assert report.problems == [
        f"stored tree head at size 12 ({ledger.tree_head_document(forged)['timestamp']}): the events do not lead "
        "to its signed root: the log was rewritten or the head forged"
    ]


def test_a_truncated_log_is_caught_against_an_older_tree_head_held_outside(signed):
    auditors_copy = heads(signed)  # what an auditor saved: heads at 6 and 12
    with tampering() as cursor:
        # The forger removes the last eight events and every head that covered them.
        cursor.execute("DELETE FROM governance_labelevent WHERE dataset_id = %s AND seq >= 4", [signed.pk])
        cursor.execute("DELETE FROM governance_treehead WHERE dataset_id = %s", [signed.pk])

    alone = ledger.verify_dataset(dataset=signed)
    against_old = ledger.verify_dataset(dataset=signed, trusted_heads=auditors_copy[:1])

    assert alone.ok  # nothing inside the database remembers the lost events (REFERENCE.md)
    assert not against_old.ok
    assert against_old.first_broken_seq == 4
    assert (
        "truncated: the trusted tree head" in against_old.reason and "covers 6 events" in against_old.reason
    )


def test_a_truncation_below_the_newest_stored_head_is_caught_without_help(signed):
    with tampering() as cursor:
        cursor.execute("DELETE FROM governance_labelevent WHERE dataset_id = %s AND seq >= 10", [signed.pk])

    report = ledger.verify_dataset(dataset=signed)

    assert (report.first_broken_seq, report.reason.startswith("truncated")) == (10, True)


def test_a_rewritten_history_is_caught_against_the_auditors_older_head(signed):
    auditors_copy = heads(signed)[:1]
    with tampering() as cursor:
        cursor.execute("DELETE FROM governance_labelevent WHERE dataset_id = %s", [signed.pk])
        cursor.execute("DELETE FROM governance_treehead WHERE dataset_id = %s", [signed.pk])
        cursor.execute("DELETE FROM governance_ledgerchunk WHERE dataset_id = %s", [signed.pk])
    ledger.append_events(dataset=signed, events=events(12, actor="A-forged"))
    ledger.sign_tree_head(dataset=signed)

    assert ledger.verify_dataset(dataset=signed).ok
    report = ledger.verify_dataset(dataset=signed, trusted_heads=auditors_copy)
    assert any(
        "trusted tree head at size 6" in p and "do not lead to its signed root" in p for p in report.problems
    )


def test_the_offline_verifier_rejects_a_bundle_of_an_edited_event(signed):
    event = LabelEvent.objects.select_related("dataset").get(dataset=signed, seq=2)
    bundle = ledger.proof_bundle(event)
    bundle["event"]["actor"] = "A-99"

    result = verify_offline.verify(
        bundle["tree_head"], bundle["public_key"], bundle["event"], bundle["proof"]
    )

    assert verify_offline.EVENT_HASH_MISMATCH in result.failures


def test_no_proof_is_served_for_an_event_whose_stored_hash_was_changed(signed):
    with tampering() as cursor:
        cursor.execute(
            "UPDATE governance_labelevent SET hash = %s WHERE dataset_id = %s AND seq = 2",
            ["ef" * 32, signed.pk],
        )
    event = LabelEvent.objects.select_related("dataset").get(dataset=signed, seq=2)

    with pytest.raises(ledger.LedgerIntegrityError):
        ledger.inclusion_proof_for(event)


def test_the_cli_exits_0_when_intact_and_1_naming_the_first_broken_event(signed, capsys):
    call_command("ledger", "verify", "--dataset", signed.slug)
    assert "intact — 12 events, 2 tree heads" in capsys.readouterr().out

    with tampering() as cursor:
        cursor.execute(
            "UPDATE governance_labelevent SET actor = 'A-99' WHERE dataset_id = %s AND seq = 8", [signed.pk]
        )
    with pytest.raises(CommandError) as raised:
        call_command("ledger", "verify")
    assert raised.value.returncode == 1
    assert "first broken event: seq 8" in capsys.readouterr().out


def test_the_cli_checks_tree_heads_kept_in_files(signed, tmp_path, capsys):
    kept = tmp_path / "head.json"
    kept.write_text(json.dumps(heads(signed)[-1]))
    with tampering() as cursor:
        cursor.execute("DELETE FROM governance_labelevent WHERE dataset_id = %s AND seq >= 11", [signed.pk])
        cursor.execute(
            "DELETE FROM governance_treehead WHERE dataset_id = %s AND tree_size = 12", [signed.pk]
        )

    with pytest.raises(CommandError):
        call_command("ledger", "verify", "--head", str(kept))
    assert "first broken event: seq 11" in capsys.readouterr().out


def test_the_cli_prints_a_bundle_the_offline_verifier_accepts(signed, capsys):
    event = LabelEvent.objects.get(dataset=signed, seq=3)
    call_command("ledger", "prove", str(event.pk))

    bundle = json.loads(capsys.readouterr().out)
    assert verify_offline.verify(
        bundle["tree_head"], bundle["public_key"], bundle["event"], bundle["proof"]
    ).valid


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(
    connection.vendor != "postgresql", reason="forked workers read committed rows: PostgreSQL"
)
def test_verification_in_parallel_workers_finds_the_same_first_broken_event(supplier_org):
    dataset = f.DatasetFactory(supplier=supplier_org, slug="parallel")
    ledger.append_events(dataset=dataset, events=events(40))
    ledger.sign_tree_head(dataset=dataset)
    assert ledger.verify_dataset(dataset=dataset, workers=2).ok
    with tampering() as cursor:
        cursor.execute(
            "UPDATE governance_labelevent SET actor = 'A-99' WHERE dataset_id = %s AND seq IN (27, 31)",
            [dataset.pk],
        )

    report = ledger.verify_dataset(dataset=dataset, workers=2)

    assert (report.first_broken_seq, report.reason) == (27, ledger.verification.EDITED)
    assert [p.split(":")[0] for p in report.problems] == ["event 27", "event 31"]
