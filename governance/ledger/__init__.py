"""The label ledger: append-only, hash-chained events per dataset, signed Merkle tree heads, proofs.

Every dataset has one chain of ``LabelEvent`` rows, numbered by ``seq`` from 0. Each event is hashed
with ``verify_offline.event_hash`` over its *document*, the JSON object that the API serves and that
``governance/verify_offline.py`` checks, so the server and an auditor's copy of the verifier apply
the same rule byte for byte::

    hash = SHA-256(canonical_json(document) + bytes.fromhex(prev_hash))

The document holds exactly these fields, all covered by the hash:

``dataset``            the dataset's slug
``seq``                position in the chain (0, 1, 2 ...)
``label_uid``          the label's stable uid (str) or null for dataset-level events
``action``             created, modified, deleted, reviewed, accepted, rejected, consensus,
                       version_published, version_deprecated, entitlement_granted, export_downloaded,
                       payment_confirmed
``actor``              annotator pseudonym, model name, "consensus", or an organisation/user
``occurred_at``        when it happened, as the source says (ISO 8601, UTC, microseconds)
``recorded_at``        when the registry wrote it down (same format)
``guideline_version``  the guideline version tag it was made under, or ""
``source``             human, model or consensus, or ""
``model_name``, ``model_version``  for model-made labels, else ""
``payload``            the label's state after (and before) the event, or the dataset event's details;
                       a state binds the geometry by ``geometry_sha256`` (below)
``delivery_id``        the delivery that brought it, or null
``version_number``     the dataset version it belongs to, or null

plus ``prev_hash`` (64 zeros for seq 0) and ``hash``, which are not hashed themselves. Payloads are
normalised before hashing so that they come back from either database unchanged (see ``chain._plain``).
The dataset's slug is part of every hash: renaming a dataset that has a ledger breaks verification.

A label's state in a payload (``events.label_state``): category, geometry type, attributes, final
flag, item key and ``geometry_sha256`` = SHA-256(canonical_json(geometry)), hex, the geometry
normalised as payloads are; the geometry itself is in the label row, not copied into the event. Events
written before this rule hold ``geometry`` inline and stay valid (the hash covers whatever the
payload holds); every reader takes both forms. A state whose row is about to be overwritten in place
(a reviewer's fix in a draft: its "before") keeps the geometry inline, so that every hash of a label's
history resolves to a label row or to an inline state; a deleted draft's geometries that no other
version holds are kept in ``HeldGeometry`` (``events.hold_geometries``). Histories and event bundles carry the
geometries their events bind (``events.geometries_of_events``); ``verify_offline.py --history`` checks
them, and content verification checks each released label row against its event's hash
(``content_verification.verify_label_geometries``).

Merkle tree: leaf i is ``SHA-256(0x00 + bytes.fromhex(hash of event i))`` (RFC 6962), built with
``governance.ledger.merkle``. Publishing a version signs a tree head (dataset, size, root, time, key id)
with the registry's Ed25519 key (``governance.ledger.signing``). Full aligned blocks of 2**CHUNK_LEVEL
leaves have their roots cached in ``LedgerChunk`` so an inclusion proof reads ~2,000 hashes rather
than the whole ledger; every proof is verified against the signed root before it is served.

Concurrency: appending and signing lock the dataset row (``SELECT ... FOR NO KEY UPDATE``), so two
transactions cannot both extend the same chain head; the ``(dataset, seq)`` and ``hash`` unique
constraints back that up on SQLite, which has no row locks but serialises writers.

Append-only: ``LabelEvent.save()``/``delete()`` and the QuerySet's ``update()``/``delete()`` refuse,
and database triggers refuse UPDATE and DELETE from anywhere (migration 0004). An event appended after
the latest tree head has no proof until the next head is signed (at the next publication).

Cost (bench/ledger, 2 cores): verification re-encodes every event's canonical JSON, ~15 us each with
the standard library, which dominates; ``verify_dataset(workers=N)`` spreads that over processes.

Layout: ``chain`` (event documents, the hash rule, appending), ``events`` (the events that describe
labels), ``merkle`` (RFC 6962 / 9162, no Django), ``signing`` (the registry's Ed25519 key),
``tree_heads`` (signing Merkle tree heads, the chunk cache), ``proofs`` (inclusion and consistency
proofs, bundles), ``verification`` (re-checking a dataset's whole ledger), ``content`` (the content
rule: what a ``version_published`` event's content hash covers) and ``content_verification`` (does
the database still hold it; names the first changed row). Callers import from this
package: ``from governance import ledger`` then ``ledger.append_events(...)``.
"""

from __future__ import annotations

from ..models import LedgerAppendOnlyError
from . import merkle, signing
from .chain import (
    BATCH_SIZE,
    EventData,
    LedgerError,
    LedgerIntegrityError,
    append_events,
    event_document,
    record_dataset_event,
)
from .events import hold_geometries, label_created_events, label_event, label_version_events
from .proofs import consistency_proof_for, inclusion_proof_for, proof_bundle, proofs_for, public_key_pem
from .tree_heads import CHUNK_LEVEL, latest_tree_head, sign_tree_head, tree_head_document
from .verification import VerificationReport, verify_dataset

__all__ = [
    "hold_geometries",
    "BATCH_SIZE",
    "CHUNK_LEVEL",
    "EventData",
    "LedgerAppendOnlyError",
    "LedgerError",
    "LedgerIntegrityError",
    "VerificationReport",
    "append_events",
    "consistency_proof_for",
    "event_document",
    "inclusion_proof_for",
    "label_created_events",
    "label_event",
    "label_version_events",
    "latest_tree_head",
    "merkle",
    "proof_bundle",
    "proofs_for",
    "public_key_pem",
    "record_dataset_event",
    "sign_tree_head",
    "signing",
    "tree_head_document",
    "verify_dataset",
]
