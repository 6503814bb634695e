"""The standalone auditor's verifier: signed heads, event chain, inclusion and consistency, and its CLI."""

import ast
import base64
import copy
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from governance import verify_offline
from governance.ledger import merkle
from governance.verify_offline import (
    GENESIS_PREV_HASH,
    canonical_json,
    event_hash,
    event_leaf_hash,
    key_id,
    tree_head_message,
    verify,
    verify_chain,
    verify_consistency,
)

MODULE_PATH = Path(verify_offline.__file__)

SIGNATURE_MISMATCH = "signature does not match key"
EDITED = "event hash does not match its content: field edited?"
NOT_INCLUDED = "inclusion proof does not lead to the signed root"


# --- Helpers playing the part of the server


def make_events(count, *, dataset="street-scenes"):
    """Return a chain of ``count`` events linked as the ledger links them."""
    events = []
    prev_hash = GENESIS_PREV_HASH
    for i in range(count):
        event = {
            "seq": i,
            "dataset": dataset,
            "action": "version.published" if i % 2 else "delivery.ingested",
            "actor": "supplier@example.org",
            "detail": {"version": f"1.{i}", "note": "Straße über Zürich"},
            "at": f"2025-03-0{1 + i % 9}T10:00:00+00:00",
        }
        relink(event, prev_hash)
        events.append(event)
        prev_hash = event["hash"]
    return events


def relink(event, prev_hash):
    event["prev_hash"] = prev_hash
    event["hash"] = event_hash(event, prev_hash)
    return event


def relink_chain(events):
    """Recompute every hash and link, as someone rewriting the log would."""
    prev_hash = GENESIS_PREV_HASH
    for event in events:
        relink(event, prev_hash)
        prev_hash = event["hash"]
    return events


def sign_head(events, private_key, *, size=None, timestamp="2025-03-10T12:00:00Z", dataset="street-scenes"):
    """Return a signed tree head over the first ``size`` events."""
    size = len(events) if size is None else size
    head = {
        "dataset": dataset,
        "tree_size": size,
        "root_hash": merkle.root([event_leaf_hash(e) for e in events[:size]]).hex(),
        "timestamp": timestamp,
        "key_id": key_id(private_key.public_key()),
    }
    head["signature"] = base64.b64encode(private_key.sign(tree_head_message(head))).decode("ascii")
    return head


def proof_for(events, index):
    leaves = [event_leaf_hash(e) for e in events]
    return {"leaf_index": index, "audit_path": [h.hex() for h in merkle.inclusion_proof(leaves, index)]}


def consistency_hexes(events, old_size):
    leaves = [event_leaf_hash(e) for e in events]
    return [h.hex() for h in merkle.consistency_proof(leaves, old_size)]


@pytest.fixture
def signing_key():
    return Ed25519PrivateKey.generate()


@pytest.fixture
def public_key(signing_key):
    return signing_key.public_key()


@pytest.fixture
def events():
    return make_events(7)


@pytest.fixture
def head(events, signing_key):
    return sign_head(events, signing_key)


# --- The documented rules


def test_canonical_json_is_sorted_compact_utf8():
    assert canonical_json({"b": 1, "a": {"é": [1, None, True]}}) == '{"a":{"é":[1,null,true]},"b":1}'.encode()


def test_canonical_json_refuses_values_that_are_not_json():
    with pytest.raises(ValueError):
        canonical_json({"x": float("nan")})


def test_event_hash_is_sha256_of_the_content_without_hash_fields_then_the_previous_hash():
    prev_hash = "ab" * 32
    event = {"z": "last", "a": 1, "hash": "ignored", "prev_hash": "also ignored"}
    expected = hashlib.sha256(b'{"a":1,"z":"last"}' + bytes.fromhex(prev_hash)).hexdigest()
    assert event_hash(event, prev_hash) == expected


def test_the_first_event_links_to_64_zeros_and_each_later_one_to_its_predecessor(events):
    assert events[0]["prev_hash"] == "0" * 64
    assert [e["prev_hash"] for e in events[1:]] == [e["hash"] for e in events[:-1]]


def test_an_events_merkle_leaf_is_the_rfc_leaf_hash_of_its_hash_bytes(events):
    assert event_leaf_hash(events[0]) == hashlib.sha256(b"\x00" + bytes.fromhex(events[0]["hash"])).digest()


def test_the_key_id_is_the_sha256_of_the_raw_public_key(public_key):
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert key_id(public_key) == hashlib.sha256(raw).hexdigest()


def test_the_signed_message_is_the_canonical_head_without_its_signature(head):
    unsigned = {k: v for k, v in head.items() if k != "signature"}
    assert tree_head_message(head) == canonical_json(unsigned)


def test_the_verifier_and_the_server_build_the_same_tree(events):
    # The verifier carries its own copy of the Merkle code; it must agree with governance.ledger.merkle.
    leaves = [event_leaf_hash(e) for e in events]
    assert verify_offline._root(leaves) == merkle.root(leaves)


# --- verify(): one event against a signed head


def test_it_accepts_every_untouched_event_with_its_proof(events, head, public_key):
    for index, event in enumerate(events):
        result = verify(head, public_key, event, proof_for(events, index))
        assert result.valid, (index, result.failures)
        assert result.failures == []


def test_it_accepts_the_key_as_pem_or_as_hex(events, head, public_key):
    pem = public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    raw_hex = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()
    for key in (pem, pem.decode(), raw_hex, raw_hex.upper()):
        assert verify(head, key, events[3], proof_for(events, 3)).valid


def test_it_reports_an_edited_field(events, head, public_key):
    edited = copy.deepcopy(events[3])
    edited["actor"] = "mallory@example.org"

    result = verify(head, public_key, edited, proof_for(events, 3))

    assert not result.valid
    assert result.failures == [EDITED]


def test_it_reports_an_edited_field_whose_hash_was_recomputed(events, head, public_key):
    edited = copy.deepcopy(events[3])
    edited["detail"]["version"] = "9.9"
    relink(edited, edited["prev_hash"])

    result = verify(head, public_key, edited, proof_for(events, 3))

    assert result.failures == [NOT_INCLUDED]


def test_it_reports_an_event_presented_at_another_position(events, head, public_key):
    result = verify(head, public_key, events[2], proof_for(events, 4))

    assert result.failures == [NOT_INCLUDED]


def test_it_reports_events_reordered_in_a_rebuilt_log(events, head, public_key):
    reordered = relink_chain(copy.deepcopy([events[0], events[2], events[1], *events[3:]]))

    result = verify(head, public_key, reordered[1], proof_for(reordered, 1))

    assert result.failures == [NOT_INCLUDED]


def test_it_reports_a_log_rebuilt_without_one_event(events, head, public_key):
    shortened = relink_chain(copy.deepcopy(events[:2] + events[3:]))
    padded = shortened + make_events(1, dataset="filler")  # the forger keeps the tree size
    relink(padded[-1], padded[-2]["hash"])

    result = verify(head, public_key, padded[4], proof_for(padded, 4))

    assert result.failures == [NOT_INCLUDED]


def test_it_reports_a_head_re_signed_with_another_key(events, public_key):
    forged_head = sign_head(events, Ed25519PrivateKey.generate())

    result = verify(forged_head, public_key, events[1], proof_for(events, 1))

    assert SIGNATURE_MISMATCH in result.failures
    assert any(f.startswith("tree head names key") for f in result.failures)
    assert len(result.failures) == 2


def test_it_reports_a_forged_signature_that_claims_the_right_key_id(events, head, public_key):
    forger = Ed25519PrivateKey.generate()
    forged_head = dict(head, root_hash="00" * 32)
    forged_head["signature"] = base64.b64encode(forger.sign(tree_head_message(forged_head))).decode()

    result = verify(forged_head, public_key, events[1], proof_for(events, 1))

    assert result.failures == [SIGNATURE_MISMATCH, NOT_INCLUDED]


def test_it_reports_a_tree_size_edited_after_signing(events, head, public_key):
    result = verify(dict(head, tree_size=6), public_key, events[5], proof_for(events[:6], 5))

    assert result.failures == [SIGNATURE_MISMATCH, NOT_INCLUDED]


def test_it_reports_a_leaf_index_outside_the_signed_tree(events, signing_key, public_key):
    older_head = sign_head(events, signing_key, size=5)

    result = verify(older_head, public_key, events[6], proof_for(events, 6))

    assert result.failures == ["leaf index 6 is out of range for the signed tree of size 5"]


def test_it_reports_a_truncated_audit_path(events, head, public_key):
    proof = proof_for(events, 3)
    proof["audit_path"].pop()

    result = verify(head, public_key, events[3], proof)

    assert result.failures == ["inclusion proof has 2 hashes, leaf 3 of a tree of size 7 needs 3"]


def test_it_reports_a_head_with_missing_or_malformed_fields(events, head, public_key):
    broken = {k: v for k, v in head.items() if k != "timestamp"}
    assert verify(broken, public_key, events[0], proof_for(events, 0)).failures == [
        "tree head is missing timestamp"
    ]

    broken = dict(head, root_hash="xyz", timestamp="yesterday")
    assert verify(broken, public_key, events[0], proof_for(events, 0)).failures == [
        "tree head root_hash is not 64 lowercase hex characters",
        "tree head timestamp is not ISO-8601",
    ]


def test_it_reports_a_malformed_signature(events, head, public_key):
    result = verify(dict(head, signature="not base64!"), public_key, events[0], proof_for(events, 0))

    assert result.failures == ["signature is not valid base64"]


def test_it_reports_a_malformed_event_or_proof(events, head, public_key):
    no_hash = {k: v for k, v in events[0].items() if k != "hash"}
    assert verify(head, public_key, no_hash, proof_for(events, 0)).failures == [
        "event hash is missing or not 64 lowercase hex characters"
    ]
    assert verify(head, public_key, events[0], {"audit_path": []}).failures == [
        "inclusion proof must be an object with leaf_index and audit_path"
    ]


# --- verify_chain(): the whole exported log


def test_the_whole_chain_verifies_against_the_signed_head(events, head, public_key):
    assert verify_chain(events, tree_head=head, public_key=public_key).failures == []


def test_a_chain_that_grew_after_the_head_still_verifies_its_signed_prefix(events, signing_key, public_key):
    older_head = sign_head(events, signing_key, size=4)
    assert verify_chain(events, tree_head=older_head, public_key=public_key).valid


def test_it_names_the_edited_event_in_a_chain(events):
    events[2]["action"] = "version.withdrawn"

    assert verify_chain(events).failures == [f"event 2: {EDITED}"]


def test_it_names_the_event_after_a_removed_one(events, head, public_key):
    del events[3]

    result = verify_chain(events, tree_head=head, public_key=public_key)

    assert result.failures == [
        "event 3: prev_hash does not match the hash of event 2: event removed or reordered?",
        "the signed tree has 7 events but the chain has 6: events removed?",
    ]


def test_it_names_reordered_events(events, head, public_key):
    events[2], events[3] = events[3], events[2]

    result = verify_chain(events, tree_head=head, public_key=public_key)

    assert result.failures == [
        "event 2: prev_hash does not match the hash of event 1: event removed or reordered?",
        "event 3: prev_hash does not match the hash of event 2: event removed or reordered?",
        "event 4: prev_hash does not match the hash of event 3: event removed or reordered?",
        "the Merkle root of the first 7 events does not match the signed root",
    ]


def test_it_reports_a_chain_missing_its_first_events(events):
    assert verify_chain(events[2:]).failures == [
        "event 0: prev_hash is not the first event's 64 zeros: earlier events removed?"
    ]


def test_it_reports_a_relinked_chain_against_the_signed_head(events, head, public_key):
    rewritten = relink_chain(copy.deepcopy(events[:3] + events[4:]))
    rewritten.append(relink(make_events(1)[0], rewritten[-1]["hash"]))

    result = verify_chain(rewritten, tree_head=head, public_key=public_key)

    assert result.failures == ["the Merkle root of the first 7 events does not match the signed root"]


# --- verify_consistency(): two heads of one log


def test_a_grown_log_is_consistent_with_its_older_head(events, signing_key, public_key):
    old_head = sign_head(events, signing_key, size=3, timestamp="2025-03-01T00:00:00+00:00")
    new_head = sign_head(events, signing_key, timestamp="2025-03-10T12:00:00Z")

    result = verify_consistency(
        old_head=old_head,
        new_head=new_head,
        public_key=public_key,
        proof_hex_list=consistency_hexes(events, 3),
    )

    assert result.failures == []


def test_it_reports_a_history_rewritten_between_two_heads(events, signing_key, public_key):
    old_head = sign_head(events, signing_key, size=5, timestamp="2025-03-01T00:00:00Z")
    rewritten = copy.deepcopy(events)
    rewritten[1]["actor"] = "mallory@example.org"
    relink_chain(rewritten)
    new_head = sign_head(rewritten, signing_key)

    result = verify_consistency(
        old_head=old_head,
        new_head=new_head,
        public_key=public_key,
        proof_hex_list=consistency_hexes(rewritten, 5),
    )

    assert result.failures == [
        "consistency proof does not rebuild the old signed root: the log was rewritten"
    ]


def test_it_reports_a_log_that_shrank_between_two_heads(events, signing_key, public_key):
    old_head = sign_head(events, signing_key, timestamp="2025-03-01T00:00:00Z")
    new_head = sign_head(events, signing_key, size=5)

    result = verify_consistency(
        old_head=old_head, new_head=new_head, public_key=public_key, proof_hex_list=[]
    )

    assert result.failures == ["the log shrank: old tree size 7 is larger than new tree size 5"]


def test_it_reports_heads_of_other_datasets_or_dated_backwards(events, signing_key, public_key):
    old_head = sign_head(events, signing_key, size=3, timestamp="2025-04-01T00:00:00Z", dataset="other")
    new_head = sign_head(events, signing_key, timestamp="2025-03-10T12:00:00Z")

    result = verify_consistency(
        old_head=old_head,
        new_head=new_head,
        public_key=public_key,
        proof_hex_list=consistency_hexes(events, 3),
    )

    assert result.failures == [
        "the two tree heads are for different datasets",
        "the new tree head is dated before the old one",
    ]


def test_it_reports_which_of_two_heads_has_a_bad_signature(events, signing_key, public_key):
    old_head = sign_head(events, signing_key, size=3, timestamp="2025-03-01T00:00:00Z")
    new_head = dict(sign_head(events, signing_key), tree_size=8)

    result = verify_consistency(
        old_head=old_head,
        new_head=new_head,
        public_key=public_key,
        proof_hex_list=consistency_hexes(events, 3),
    )

    assert result.failures[0] == f"new tree head: {SIGNATURE_MISMATCH}"


# --- Standalone: imports and command line


def test_the_verifier_imports_only_the_standard_library_and_cryptography():
    tree = ast.parse(MODULE_PATH.read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "relative import"
            imported.add(node.module.split(".")[0])
    assert imported - sys.stdlib_module_names == {"cryptography"}


# cryptography and what it needs at run time (its cffi backend); nothing else of the virtualenv.
CRYPTOGRAPHY_DISTRIBUTIONS = {"cryptography", "cffi", "pycparser"}


@pytest.fixture
def cryptography_only_path(tmp_path):
    """A directory holding links to cryptography and its own dependencies only: no Django, no project."""
    import importlib.metadata
    import importlib.util

    folder = tmp_path / "cryptography-only"
    folder.mkdir()
    for top_level, distributions in importlib.metadata.packages_distributions().items():
        if not CRYPTOGRAPHY_DISTRIBUTIONS & set(distributions):
            continue
        spec = importlib.util.find_spec(top_level)
        if spec is None or spec.origin in (None, "namespace"):
            continue
        source = Path(spec.submodule_search_locations[0] if spec.submodule_search_locations else spec.origin)
        (folder / source.name).symlink_to(source)
    return folder


def bare_python(args, *, pythonpath, cwd):
    """Run the interpreter without site-packages (-S): only the standard library and ``pythonpath``."""
    return subprocess.run(
        [sys.executable, "-S", *args],
        cwd=cwd,
        env={"PYTHONPATH": str(pythonpath), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_verifier_runs_at_its_path_with_the_standard_library_and_cryptography_only(
    cryptography_only_path, auditor_dir, key_pem, events, head
):
    # The bare interpreter really lacks Django and the project, so this test can fail.
    for module in ("django", "marketplace", "governance.ledger"):
        refused = bare_python(["-c", f"import {module}"], pythonpath=cryptography_only_path, cwd=auditor_dir)
        assert refused.returncode != 0 and "ModuleNotFoundError" in refused.stderr, module

    completed = bare_python(
        [
            str(MODULE_PATH),  # the file at governance/verify_offline.py, as the README runs it
            "--head", write_json(auditor_dir, "head.json", head),
            "--key", key_pem,
            "--event", write_json(auditor_dir, "event.json", events[4]),
            "--proof", write_json(auditor_dir, "proof.json", proof_for(events, 4)),
        ],
        pythonpath=cryptography_only_path,
        cwd=auditor_dir,
    )  # fmt: skip

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == "VALID\n"


@pytest.fixture
def auditor_dir(tmp_path):
    """A directory holding only a copy of verify_offline.py, as an auditor would have it."""
    shutil.copy(MODULE_PATH, tmp_path / "verify_offline.py")
    return tmp_path


def write_json(directory, name, obj):
    path = directory / name
    path.write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")
    return str(path)


def run_cli(directory, *args):
    return subprocess.run(
        [sys.executable, "verify_offline.py", *args],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def key_pem(auditor_dir, public_key):
    path = auditor_dir / "key.pem"
    path.write_bytes(
        public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return str(path)


def test_the_cli_prints_valid_and_exits_0_for_a_good_event(auditor_dir, key_pem, events, head):
    completed = run_cli(
        auditor_dir,
        "--head", write_json(auditor_dir, "head.json", head),
        "--key", key_pem,
        "--event", write_json(auditor_dir, "event.json", events[4]),
        "--proof", write_json(auditor_dir, "proof.json", proof_for(events, 4)),
    )  # fmt: skip

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == "VALID\n"


def test_the_cli_prints_each_failure_and_exits_1_for_an_edited_event(auditor_dir, key_pem, events):
    forged_head = sign_head(events, Ed25519PrivateKey.generate())
    edited = dict(events[4], actor="mallory@example.org")
    completed = run_cli(
        auditor_dir,
        "--head", write_json(auditor_dir, "head.json", forged_head),
        "--key", key_pem,
        "--event", write_json(auditor_dir, "event.json", edited),
        "--proof", write_json(auditor_dir, "proof.json", proof_for(events, 4)),
    )  # fmt: skip

    assert completed.returncode == 1
    lines = completed.stdout.splitlines()
    assert f"FAIL: {SIGNATURE_MISMATCH}" in lines
    assert f"FAIL: {EDITED}" in lines
    assert "VALID" not in lines


def test_the_cli_reads_a_bundle_and_a_hex_key(auditor_dir, public_key, events, head):
    raw_hex = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()
    bundle = {"tree_head": head, "event": events[0], "proof": proof_for(events, 0)}
    bundle_path = write_json(auditor_dir, "bundle.json", bundle)

    assert run_cli(auditor_dir, "--bundle", bundle_path, "--key", raw_hex).returncode == 0

    bundle["proof"] = proof_for(events, 1)
    write_json(auditor_dir, "bundle.json", bundle)
    completed = run_cli(auditor_dir, "--bundle", bundle_path, "--key", raw_hex)
    assert completed.returncode == 1
    assert completed.stdout == f"FAIL: {NOT_INCLUDED}\n"


def test_the_cli_checks_a_whole_chain(auditor_dir, key_pem, events, head):
    head_path = write_json(auditor_dir, "head.json", head)
    events_path = write_json(auditor_dir, "events.json", events)
    assert (
        run_cli(auditor_dir, "--head", head_path, "--key", key_pem, "--events", events_path).returncode == 0
    )

    del events[3]
    completed = run_cli(
        auditor_dir,
        "--head",
        head_path,
        "--key",
        key_pem,
        "--events",
        write_json(auditor_dir, "events.json", events),
    )
    assert completed.returncode == 1
    assert "event removed or reordered?" in completed.stdout


def test_the_cli_checks_consistency_between_two_heads(auditor_dir, key_pem, events, signing_key):
    old_head = sign_head(events, signing_key, size=4, timestamp="2025-03-01T00:00:00Z")
    args = [
        "--old-head", write_json(auditor_dir, "old.json", old_head),
        "--head", write_json(auditor_dir, "new.json", sign_head(events, signing_key)),
        "--key", key_pem,
    ]  # fmt: skip
    good = write_json(auditor_dir, "good.json", consistency_hexes(events, 4))
    bad = write_json(auditor_dir, "bad.json", consistency_hexes(events, 3))

    assert run_cli(auditor_dir, *args, "--consistency", good).returncode == 0
    assert run_cli(auditor_dir, *args, "--consistency", bad).returncode == 1


def test_the_cli_exits_2_when_an_input_cannot_be_read(auditor_dir, key_pem, events, head):
    completed = run_cli(
        auditor_dir,
        "--head", str(auditor_dir / "missing.json"),
        "--key", key_pem,
        "--event", write_json(auditor_dir, "event.json", events[0]),
        "--proof", write_json(auditor_dir, "proof.json", proof_for(events, 0)),
    )  # fmt: skip

    assert completed.returncode == 2
    assert "cannot read" in completed.stderr
    assert completed.stdout == ""


# --- Pinned and unpinned keys


def test_without_a_key_it_checks_a_bundle_against_its_own_key_and_says_unpinned(
    auditor_dir, public_key, events, head
):
    pem = public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    bundle = {
        "tree_head": head,
        "event": events[2],
        "proof": proof_for(events, 2),
        "public_key": pem.decode(),
    }
    completed = run_cli(auditor_dir, "--bundle", write_json(auditor_dir, "bundle.json", bundle))

    assert completed.returncode == 0, completed.stderr
    assert f"fingerprint {key_id(public_key)}" in completed.stdout
    assert completed.stdout.splitlines()[-1] == "VALID (UNPINNED)"

    bundle["event"] = dict(events[2], actor="mallory@example.org")
    completed = run_cli(auditor_dir, "--bundle", write_json(auditor_dir, "bundle.json", bundle))
    assert (
        completed.returncode == 1 and f"FAIL: {EDITED}" in completed.stdout and "UNPINNED" in completed.stdout
    )


def test_a_bundle_re_signed_with_its_own_key_passes_unpinned_and_fails_pinned(
    auditor_dir, key_pem, public_key, events
):
    forger = Ed25519PrivateKey.generate()
    forged_pem = forger.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    bundle = {
        "tree_head": sign_head(events, forger),
        "event": events[1],
        "proof": proof_for(events, 1),
        "public_key": forged_pem.decode(),
    }
    path = write_json(auditor_dir, "bundle.json", bundle)

    unpinned = run_cli(auditor_dir, "--bundle", path)
    assert unpinned.returncode == 0 and "UNPINNED" in unpinned.stdout
    assert key_id(forger.public_key()) in unpinned.stdout

    assert run_cli(auditor_dir, "--bundle", path, "--key", key_pem).returncode == 1
    by_fingerprint = run_cli(auditor_dir, "--bundle", path, "--fingerprint", key_id(public_key))
    assert by_fingerprint.returncode == 1
    assert f"is not the pinned {key_id(public_key)}" in by_fingerprint.stdout


def test_it_reads_the_key_as_the_public_key_endpoint_answers_it(auditor_dir, public_key, events, head):
    pem = public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    key_json = write_json(
        auditor_dir,
        "registry-key.json",
        {"algorithm": "Ed25519", "key_id": key_id(public_key), "public_key": pem.decode()},
    )
    bundle = {"tree_head": head, "event": events[0], "proof": proof_for(events, 0)}
    completed = run_cli(auditor_dir, "--bundle", write_json(auditor_dir, "b.json", bundle), "--key", key_json)
    assert (completed.returncode, completed.stdout) == (0, "VALID\n")


def test_it_exits_2_for_a_bundle_without_a_key_or_a_malformed_fingerprint(auditor_dir, events, head):
    bundle = write_json(
        auditor_dir, "b.json", {"tree_head": head, "event": events[0], "proof": proof_for(events, 0)}
    )
    completed = run_cli(auditor_dir, "--bundle", bundle)
    assert completed.returncode == 2 and "carries no public key" in completed.stderr
    completed = run_cli(auditor_dir, "--bundle", bundle, "--fingerprint", "xyz" * 100)
    assert completed.returncode == 2 and "xyz" not in completed.stderr
    completed = run_cli(auditor_dir, "--head", bundle, "--events", bundle)
    assert completed.returncode == 2 and "--key is required" in completed.stderr
