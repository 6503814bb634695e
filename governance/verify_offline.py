"""Offline verifier for the dataset governance ledger.

An auditor can copy this one file and run it with Python 3.9+ and the ``cryptography`` package, without
the rest of the project. It deliberately imports nothing from the project: the few Merkle functions it
needs are duplicated from ``governance/merkle.py`` so that the code checking the server is not the code
the server runs. The server, in turn, imports ``canonical_json``, ``event_hash``, ``event_leaf_hash``,
``tree_head_message`` and ``key_id`` from this module, so both sides apply the same rules:

Canonical JSON
    ``json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")``.
    Values must be plain JSON (str, int, bool, None, list, dict); NaN and infinities are refused.
    Prefer strings to floats: other languages may print a float differently.

Event chain
    ``event["hash"] = SHA-256(canonical_json(event without "hash" and "prev_hash")
    + bytes.fromhex(event["prev_hash"]))`` as 64 lowercase hex characters. The first event's
    ``prev_hash`` is 64 zeros; every later one is the ``hash`` of the event before it.

Merkle tree (RFC 6962 / RFC 9162)
    The leaf for an event is ``SHA-256(0x00 + bytes.fromhex(event["hash"]))``; interior nodes are
    ``SHA-256(0x01 + left + right)``; the tree over n leaves splits at the largest power of two
    smaller than n. Event i of the chain is leaf i.

Signed tree head
    ``{"dataset": str, "tree_size": int, "root_hash": hex, "timestamp": ISO-8601 str, "key_id": hex,
    "signature": base64}``; the timestamp carries a time zone (``+00:00`` or ``Z``). The signature
    is Ed25519 over ``canonical_json(head without "signature")``. ``key_id`` is the SHA-256 of the
    raw 32-byte Ed25519 public key, in hex.

A label's geometry in its events (``governance/ledger/events.py``)
    A label state in an event's payload (``"after"``, ``"before"``) holds ``geometry_sha256``, the
    SHA-256 (hex) of ``canonical_json(geometry)``, instead of the geometry, which stays in the label
    row; events written before that rule hold ``"geometry"`` itself, and stay valid. A label's history
    (``GET /api/v1/labels/<uid>/history/``: ``{"dataset", "label_uid", "tree_head", "events": [{"event",
    "proof"}, ...], "geometries": {sha256: geometry}, "public_key"}``) carries the geometries its
    events bind, from the label rows; ``--history`` checks every event (its hash, and its inclusion
    proof where it has one) and that every bound geometry is there and hashes to its event's
    ``geometry_sha256`` (an inline geometry of another of the label's events counts). A one-event
    bundle with ``"geometries"`` has them checked the same way.

Content of a published version (content rule 2, written out in ``governance/ledger/content.py``)
    An export archive carries ``content/<part>.jsonl`` for the parts ``schema, categories,
    attributes, datasheet, guidelines, items, labels`` (one JSON row a line) and
    ``evidence/version_published.json`` (``{"tree_head", "event", "proof", "public_key"}``).
    ``row_digest = SHA-256(canonical_json(row))``; ``part_digest = SHA-256(row_digest_1 || ...)``;
    ``content_hash = SHA-256(canonical_json({"content_rule": 2, "parts": {part: {"count": n,
    "sha256": part_digest}}}))``, which must be the event's ``payload.content_hash``. ``--archive``
    checks, in order: every file against ``MANIFEST.sha256`` (and no file missing or extra), the
    content hash recomputed from the content files, the event's own hash, its inclusion proof, the
    tree head's signature with the auditor's key, and that every annotation file holds the published
    labels and nothing else (so a box, class, attribute or flag altered in a format file, with the
    manifest rewritten to match, fails; a rewritten provenance.csv too):

    - COCO ``annotations/*.json``: each annotation (and image-level classification) by its uid, with
      the same class, image (the published item's), final and crowd flags, geometry (box, polygons,
      RLE, keypoints, the segmentation mark of a box, area; within GEOMETRY_TOLERANCE), attributes,
      kept fields and provenance fields, and no field the writer does not write; none twice; each
      image entry a published item's, with its width, height and attributes; each category a
      published class under one id, with the class's keypoint names and skeleton;
    - VOC ``Annotations/*.xml``: each file is one item's (by its name, as the writer derives it from
      the item key) and holds, in any order, one ``<object>`` per label with an image box: class,
      corners (rounded as the writer rounds), pose, truncated/difficult/occluded, parts, actions and
      the other attributes, and its ``<size>`` is the item's; the classifications are
      ``ImageSets/Main/<class>_<split>.txt``'s "1"s, and ``ImageSets/Main/<split>.txt`` lists each
      of the split's files once (the masks' PNGs are not compared);
    - YOLO ``labels/**.txt``: each file is one item's and holds one row per label: class index
      (``data.yaml``'s names), and the normalised box, keypoints or polygon within YOLO_TOLERANCE
      (six printed decimals); a mask's traced outline by its extent; ``data.yaml``'s train, val and
      test point at the export's splits as the writer points them, and a pose export's kpt_shape,
      kpt_names and flip_idx are its pose class's;
    - VOC and YOLO ``provenance.jsonl``: who made the label at each object or row;

    and none of the labels the export's selection (``evidence/export.json``: splits, classes,
    candidates) takes missing from them, nor any item's file. Croissant metadata carries no labels.

Command line (exit status 0 when everything verifies, 1 when something does not, 2 when an input
cannot be read)::

    python verify_offline.py --key key.pem --head head.json --event event.json --proof proof.json
    python verify_offline.py --key key.pem --bundle bundle.json   # {"tree_head", "event", "proof"}
    python verify_offline.py --bundle bundle.json   # the bundle's own "public_key": says UNPINNED
    python verify_offline.py --fingerprint KEY_ID --bundle bundle.json   # the bundle's key, pinned by key_id
    python verify_offline.py --key key.pem --history history.json   # a label's history, geometries too
    python verify_offline.py --key key.pem --head head.json --events events.json   # whole chain
    python verify_offline.py --key key.pem --old-head old.json --head new.json --consistency proof.json
    python verify_offline.py --key key.pem --archive export.zip   # a downloaded export

``proof.json`` is ``{"leaf_index": int, "audit_path": [hex, ...]}``; the consistency proof file is a
JSON list of hex hashes. The key is a PEM file, 64 hex characters (raw Ed25519 public key), or the
JSON that ``GET /api/v1/ledger/public-key/`` answers (``{"public_key": PEM, "key_id": ...}``).
Without ``--key`` or ``--fingerprint`` a bundle is checked against the key it carries: that proves
it consistent with itself, not that the registry signed it, so the output says UNPINNED and prints
the key's fingerprint to compare with the one the auditor keeps.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import hashlib
import json
import math
import operator
import posixpath
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Union

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

GENESIS_PREV_HASH = "0" * 64

SIGNATURE_MISMATCH = "signature does not match key"
EVENT_HASH_MISMATCH = "event hash does not match its content: field edited?"
INCLUSION_MISMATCH = "inclusion proof does not lead to the signed root"

_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEAD_FIELDS = ("dataset", "tree_size", "root_hash", "timestamp", "key_id", "signature")

# Union rather than "|": this alias is evaluated at run time and auditors may run Python 3.9.
PublicKeyLike = Union[Ed25519PublicKey, bytes, str]  # noqa: UP007


@dataclass
class Result:
    """Outcome of a verification: valid when no check failed; each failure says what failed."""

    failures: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        """Return True when no check failed."""
        return not self.failures


# --- Rules shared with the server -----------------------------------------------------------------


# What json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False) builds
# on every call, built once: the server encodes every event of a million-event ledger with it.
_CANONICAL_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


def canonical_json(obj: Any) -> bytes:
    """Return the canonical UTF-8 JSON encoding of ``obj`` that hashes and signatures are computed over."""
    # allow_nan=False only refuses NaN/Infinity, which are not JSON; every valid value encodes as specified.
    return _CANONICAL_ENCODER.encode(obj).encode("utf-8")


def event_hash(event: dict, prev_hash: str) -> str:
    """Return the chained hash of ``event`` (hex): SHA-256(canonical JSON without hash fields + prev_hash)."""
    if not isinstance(prev_hash, str) or not _HEX64.fullmatch(prev_hash):
        raise ValueError("prev_hash must be 64 lowercase hex characters")
    content = {key: value for key, value in event.items() if key not in ("hash", "prev_hash")}
    return hashlib.sha256(canonical_json(content) + bytes.fromhex(prev_hash)).hexdigest()


def geometry_sha256(geometry: Any) -> str:
    """Return the hash a label state binds its geometry by: SHA-256 of its canonical JSON, in hex."""
    return hashlib.sha256(canonical_json(geometry)).hexdigest()


def event_leaf_hash(event: dict) -> bytes:
    """Return the Merkle leaf hash of ``event``: SHA-256(0x00 + bytes.fromhex(event["hash"]))."""
    return _leaf_hash(bytes.fromhex(event["hash"]))


def tree_head_message(tree_head: dict) -> bytes:
    """Return the bytes an Ed25519 tree head signature covers: the canonical JSON without "signature"."""
    return canonical_json({key: value for key, value in tree_head.items() if key != "signature"})


def load_public_key(key: PublicKeyLike) -> Ed25519PublicKey:
    """Return an Ed25519 public key from a key object, PEM text or 64 hex characters (or 32 raw bytes)."""
    if isinstance(key, Ed25519PublicKey):
        return key
    if isinstance(key, str):
        key = key.encode("utf-8")
    text = key.strip()
    if text.startswith(b"-----BEGIN"):
        loaded = serialization.load_pem_public_key(text)
        if not isinstance(loaded, Ed25519PublicKey):
            raise ValueError("the PEM key is not an Ed25519 public key")
        return loaded
    if len(text) == 64 and _HEX64.fullmatch(text.decode("ascii", "replace").lower()):
        return Ed25519PublicKey.from_public_bytes(bytes.fromhex(text.decode("ascii")))
    if len(key) == 32:
        return Ed25519PublicKey.from_public_bytes(key)
    raise ValueError("the public key is neither PEM nor 64 hex characters")


def key_id(public_key: PublicKeyLike) -> str:
    """Return the key id of an Ed25519 public key: SHA-256 of its raw 32 bytes, in hex."""
    raw = load_public_key(public_key).public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


# --- Verification ---------------------------------------------------------------------------------


def verify(tree_head: dict, public_key: PublicKeyLike, event: dict, proof: dict) -> Result:
    """Check the head's signature, the event's own hash and its inclusion proof against the signed root."""
    failures: list[str] = []
    # The inclusion proof is checked even when the signature fails: the auditor learns both things.
    head_ok = _check_signed_head(tree_head, public_key, failures)

    event_ok = _check_event_shape(event, failures)
    if event_ok and event_hash(event, event["prev_hash"]) != event["hash"]:
        failures.append(EVENT_HASH_MISMATCH)

    path = _parse_inclusion_proof(proof, failures)
    if head_ok and event_ok and path is not None:
        try:
            _verify_inclusion(
                leaf_hash=event_leaf_hash(event),
                index=proof["leaf_index"],
                tree_size=tree_head["tree_size"],
                proof=path,
                root=bytes.fromhex(tree_head["root_hash"]),
            )
        except _ProofError as error:
            failures.append(str(error))
    return Result(failures)


def verify_consistency(
    *, old_head: dict, new_head: dict, public_key: PublicKeyLike, proof_hex_list: Sequence[str]
) -> Result:
    """Check both heads' signatures and that the old signed tree is a prefix of the new one."""
    failures: list[str] = []
    old_ok = _check_signed_head(old_head, public_key, failures, label="old tree head")
    new_ok = _check_signed_head(new_head, public_key, failures, label="new tree head")
    proof = _parse_hashes(proof_hex_list, "consistency proof", failures)
    if not (old_ok and new_ok and proof is not None):
        return Result(failures)

    if old_head["dataset"] != new_head["dataset"]:
        failures.append("the two tree heads are for different datasets")
    if _parse_timestamp(new_head["timestamp"]) < _parse_timestamp(old_head["timestamp"]):
        failures.append("the new tree head is dated before the old one")
    try:
        _verify_consistency(
            old_size=old_head["tree_size"],
            new_size=new_head["tree_size"],
            old_root=bytes.fromhex(old_head["root_hash"]),
            new_root=bytes.fromhex(new_head["root_hash"]),
            proof=proof,
        )
    except _ProofError as error:
        failures.append(str(error))
    return Result(failures)


def verify_chain(
    events: Sequence[dict], *, tree_head: dict | None = None, public_key: PublicKeyLike | None = None
) -> Result:
    """Check each event's hash and link from the first one, and optionally the chain against a signed head."""
    failures: list[str] = []
    previous = GENESIS_PREV_HASH
    leaves = []
    for i, event in enumerate(events):
        event_failures: list[str] = []
        if _check_event_shape(event, event_failures):
            if event_hash(event, event["prev_hash"]) != event["hash"]:
                event_failures.append(EVENT_HASH_MISMATCH)
            if event["prev_hash"] != previous:
                if i == 0:
                    event_failures.append(
                        "prev_hash is not the first event's 64 zeros: earlier events removed?"
                    )
                else:
                    event_failures.append(
                        f"prev_hash does not match the hash of event {i - 1}: event removed or reordered?"
                    )
            leaves.append(event_leaf_hash(event))
            previous = event["hash"]
        else:
            previous = None
        failures.extend(f"event {i}: {failure}" for failure in event_failures)

    if tree_head is not None:
        if public_key is None:
            raise ValueError("a public key is needed to check the tree head")
        if _check_signed_head(tree_head, public_key, failures) and len(leaves) == len(events):
            size = tree_head["tree_size"]
            if len(events) < size:
                failures.append(
                    f"the signed tree has {size} events but the chain has {len(events)}: events removed?"
                )
            elif _root(leaves[:size]) != bytes.fromhex(tree_head["root_hash"]):
                failures.append(f"the Merkle root of the first {size} events does not match the signed root")
    return Result(failures)


GEOMETRY_MISMATCH = "does not hash to the event's geometry_sha256: geometry altered"
_STATE_KEYS = ("after", "before")


def verify_history(history: Any, public_key: PublicKeyLike) -> Result:
    """Check a label's history: each event's hash and proof against the signed head, its geometries.

    An event without a proof (appended after the latest signed head) has its own hash checked only.
    """
    if not isinstance(history, dict) or not isinstance(history.get("events"), list):
        return Result(["the history is not a JSON object with an events list"])
    failures: list[str] = []
    head = history.get("tree_head")
    if head is not None and any(isinstance(e, dict) and e.get("proof") for e in history["events"]):
        _check_signed_head(head, public_key, failures)
    events = []
    for i, entry in enumerate(history["events"]):
        event = entry.get("event") if isinstance(entry, dict) else None
        events.append(event)
        where = f"event {i}"
        if isinstance(event, dict) and isinstance(event.get("seq"), int):
            where += f" (seq {event['seq']}, {event.get('action')})"
        if entry.get("proof") if isinstance(entry, dict) else False:
            # The head's own failures were reported once above.
            found = [f for f in verify(head, public_key, event, entry["proof"]).failures if f not in failures]
        else:
            found = []
            if _check_event_shape(event, found) and event_hash(event, event["prev_hash"]) != event["hash"]:
                found.append(EVENT_HASH_MISMATCH)
        failures.extend(f"{where}: {failure}" for failure in found)
        if isinstance(event, dict):
            for name in ("dataset", "label_uid"):
                if name in history and event.get(name) != history[name]:
                    failures.append(f"{where}: its {name} is not the history's {history[name]!r}")
    failures += check_geometries(events, history.get("geometries", {}))
    return Result(failures)


def check_geometries(events: Sequence[Any], geometries: Any) -> list[str]:
    """What is wrong with the geometries bound by ``events``' label states, given ``{sha256: geometry}``.

    A state bound by hash needs its geometry in ``geometries`` (or inline in another of the events:
    a state written before the hash rule, or one whose row was then overwritten), hashing to it.
    """
    if not isinstance(geometries, dict):
        return ["the bundle's geometries are not a JSON object {sha256: geometry}"]
    inline: dict[str, Any] = {}
    bound = []
    for i, event in enumerate(events):
        payload = event.get("payload") if isinstance(event, dict) else None
        for key in _STATE_KEYS:
            state = payload.get(key) if isinstance(payload, dict) else None
            if not isinstance(state, dict):
                continue
            if "geometry" in state:
                with contextlib.suppress(TypeError, ValueError):  # not plain JSON: the event's check says so
                    inline.setdefault(geometry_sha256(state["geometry"]), state["geometry"])
            elif "geometry_sha256" in state:
                bound.append((i, event, key, state["geometry_sha256"]))
    failures = []
    for i, event, key, digest in bound:
        where = f"event {i} (seq {event.get('seq')}, {event.get('action')}), its {key!r} state"
        if digest in geometries:
            try:
                actual = geometry_sha256(geometries[digest])
            except (TypeError, ValueError):
                actual = None
            if actual != digest:
                failures.append(f"{where}: the bundle's geometry {GEOMETRY_MISMATCH} {str(digest)[:16]}...")
        elif digest not in inline:
            failures.append(
                f"{where}: no geometry in the bundle for its geometry_sha256 {str(digest)[:16]}...: "
                "it cannot be checked"
            )
    return failures


def _check_signed_head(
    tree_head: Any, public_key: PublicKeyLike, failures: list[str], label: str = ""
) -> bool:
    """Append what is wrong with a signed tree head to ``failures``; return True if its fields are usable."""
    prefix = f"{label}: " if label else ""
    problems = _head_shape_problems(tree_head)
    if problems:
        failures.extend(prefix + problem for problem in problems)
        return False
    try:
        key = load_public_key(public_key)
    except (ValueError, UnsupportedAlgorithm) as error:
        failures.append(f"{prefix}unusable public key: {error}")
        return True
    if tree_head["key_id"] != key_id(key):
        failures.append(f"{prefix}tree head names key {tree_head['key_id']}, not the given key {key_id(key)}")
    try:
        signature = base64.b64decode(tree_head["signature"], validate=True)
        key.verify(signature, tree_head_message(tree_head))
    except (binascii.Error, ValueError):
        failures.append(f"{prefix}signature is not valid base64")
    except InvalidSignature:
        failures.append(prefix + SIGNATURE_MISMATCH)
    return True


def _head_shape_problems(tree_head: Any) -> list[str]:
    """Return what is missing or malformed in a tree head, without checking its signature."""
    if not isinstance(tree_head, dict):
        return ["tree head is not a JSON object"]
    missing = [name for name in _HEAD_FIELDS if name not in tree_head]
    if missing:
        return [f"tree head is missing {', '.join(missing)}"]
    problems = []
    for name in ("dataset", "timestamp", "signature"):
        if not isinstance(tree_head[name], str):
            problems.append(f"tree head {name} is not a string")
    size = tree_head["tree_size"]
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        problems.append("tree head tree_size is not a non-negative integer")
    for name in ("root_hash", "key_id"):
        if not isinstance(tree_head[name], str) or not _HEX64.fullmatch(tree_head[name]):
            problems.append(f"tree head {name} is not 64 lowercase hex characters")
    if isinstance(tree_head["timestamp"], str):
        try:
            _parse_timestamp(tree_head["timestamp"])
        except ValueError:
            problems.append("tree head timestamp is not ISO-8601")
    return problems


def _parse_timestamp(value: str) -> datetime:
    """Parse an ISO-8601 timestamp, accepting a trailing Z (older Pythons do not) and comparing as UTC."""
    parsed = datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith("Z") else value)
    if parsed.tzinfo is None:
        raise ValueError("timestamp has no time zone")
    return parsed


def _check_event_shape(event: Any, failures: list[str]) -> bool:
    """Append what is malformed in an event to ``failures``; return True if its hashes can be checked."""
    if not isinstance(event, dict):
        failures.append("event is not a JSON object")
        return False
    sound = True
    for name in ("hash", "prev_hash"):
        if not isinstance(event.get(name), str) or not _HEX64.fullmatch(event[name]):
            failures.append(f"event {name} is missing or not 64 lowercase hex characters")
            sound = False
    if sound:
        try:
            canonical_json(event)
        except (TypeError, ValueError):
            failures.append("event contains values that are not plain JSON")
            sound = False
    return sound


def _parse_inclusion_proof(proof: Any, failures: list[str]) -> list[bytes] | None:
    """Return the audit path of an inclusion proof as bytes, or None after appending what is malformed."""
    if not isinstance(proof, dict) or "leaf_index" not in proof or "audit_path" not in proof:
        failures.append("inclusion proof must be an object with leaf_index and audit_path")
        return None
    index = proof["leaf_index"]
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        failures.append("inclusion proof leaf_index is not a non-negative integer")
        return None
    return _parse_hashes(proof["audit_path"], "inclusion proof audit_path", failures)


def _parse_hashes(values: Any, name: str, failures: list[str]) -> list[bytes] | None:
    """Return a list of 64-hex hashes as bytes, or None after appending what is malformed."""
    if not isinstance(values, list) or not all(isinstance(v, str) and _HEX64.fullmatch(v) for v in values):
        failures.append(f"{name} must be a list of 64 lowercase hex characters each")
        return None
    return [bytes.fromhex(value) for value in values]


# --- Export archives: manifest -> content hash -> version_published event -> proof -> signature -------

CONTENT_PARTS = ("schema", "categories", "attributes", "datasheet", "guidelines", "items", "labels")
CONTENT_RULE = 2
MANIFEST = "MANIFEST.sha256"
EVIDENCE = "evidence/version_published.json"
_READ_CHUNK = 1 << 20


def content_hash_of(parts: dict) -> str:
    """Return the rule-2 content hash of per-part counts and digests."""
    return hashlib.sha256(canonical_json({"content_rule": CONTENT_RULE, "parts": parts})).hexdigest()


def verify_archive(path: Union[str, Path], public_key: PublicKeyLike) -> Result:  # noqa: UP007
    """Check that an export archive is the published version: see the module docstring, in that order."""
    import sqlite3
    import tempfile
    import zipfile

    failures: list[str] = []
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as error:
        raise _InputError(f"cannot read the archive {path}: {error}") from error
    with archive:
        names = [info.filename for info in archive.infolist() if not info.is_dir()]
        if MANIFEST not in names:
            return Result(["the archive has no MANIFEST.sha256"])
        listed = _read_manifest(archive, failures)
        for name in names:
            if name == MANIFEST:
                continue
            if name not in listed:
                failures.append(f"{name} is not in the manifest")
                continue
            digest = hashlib.sha256()
            with archive.open(name) as stream:
                for chunk in iter(lambda: stream.read(_READ_CHUNK), b""):
                    digest.update(chunk)
            if digest.hexdigest() != listed[name]:
                failures.append(f"{name} does not match its manifest sha256: altered")
        for name in sorted(set(listed) - set(names)):
            failures.append(f"{name} is in the manifest but not in the archive")

        # One scratch SQLite file for the run: content/labels.jsonl is read once, hashed for its part
        # digest while its rows go where the format and provenance checks look them up.
        with tempfile.TemporaryDirectory() as tmp:
            db = sqlite3.connect(str(Path(tmp) / "labels.sqlite3"))
            try:
                checked = _check_content(archive, names, db, failures)
            finally:
                db.close()
        if isinstance(checked, Result):
            return checked
        bundle, parts = checked

    if not isinstance(bundle, dict):
        return Result(failures + [f"{EVIDENCE} is not a JSON object"])
    event = bundle.get("event")
    payload = event.get("payload") if isinstance(event, dict) else None
    if not isinstance(payload, dict) or event.get("action") != "version_published":
        failures.append("the evidence is not a version_published event")
    else:
        if payload.get("content_rule") != CONTENT_RULE:
            failures.append(
                f"the event's content rule is {payload.get('content_rule')!r}, not {CONTENT_RULE}"
            )
        signed_parts = payload.get("parts") or {}
        for part in CONTENT_PARTS:
            if signed_parts.get(part) != parts[part]:
                failures.append(f"content/{part}.jsonl is not the published {part}: its digest differs")
        if content_hash_of(parts) != payload.get("content_hash"):
            failures.append("the content hash recomputed from the archive is not the published content hash")
    failures += verify(bundle.get("tree_head"), public_key, event, bundle.get("proof")).failures
    return Result(failures)


def _check_content(archive, names: list[str], db, failures: list[str]) -> Result | tuple[Any, dict]:
    """The content parts' digests and the evidence, the format files and provenance.csv checked
    against the content rows: (evidence, parts), or the Result when the archive cannot be checked."""
    formats = _format_files(names)
    parts = {}
    for part in CONTENT_PARTS:
        name = f"content/{part}.jsonl"
        if name not in names:
            failures.append(f"the archive has no {name}: it cannot be checked against the ledger")
            return Result(failures)
        if part == "labels":
            parts[part] = _load_labels(
                archive, db, failures, formats=any(formats), provenance=PROVENANCE_CSV in names
            )
        else:
            parts[part] = _part_digest(archive, name, failures)
    if EVIDENCE not in names:
        failures.append(f"the archive has no {EVIDENCE}")
        return Result(failures)
    try:
        bundle = json.loads(archive.read(EVIDENCE).decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        failures.append(f"{EVIDENCE} is not JSON")
        return Result(failures)
    _check_format_labels(archive, names, db, failures)
    _check_voc_yolo_classes(archive, names, failures)
    if PROVENANCE_CSV in names:
        _check_provenance_csv(archive, db, failures)
    return bundle, parts


def _read_manifest(archive, failures: list[str]) -> dict:
    listed = {}
    with archive.open(MANIFEST) as stream:
        for number, raw in enumerate(stream, 1):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            digest, sep, name = line.partition("  ")
            if not sep or not _HEX64.fullmatch(digest):
                failures.append(f"MANIFEST.sha256 line {number} is not 'sha256  name'")
                continue
            listed[name] = digest
    return listed


def _part_digest(archive, name: str, failures: list[str]) -> dict:
    digest = _PartDigest()
    for _line in _hashed_rows(archive, name, digest, failures):
        pass
    return digest.as_dict()


class _PartDigest:
    """A part's count and digest: SHA-256 over the SHA-256 of each row's canonical JSON."""

    def __init__(self) -> None:
        self.digest, self.count = hashlib.sha256(), 0

    def add(self, row) -> None:
        self.digest.update(hashlib.sha256(canonical_json(row)).digest())
        self.count += 1

    def as_dict(self) -> dict:
        return {"count": self.count, "sha256": self.digest.hexdigest()}


def _hashed_rows(archive, name: str, digest: _PartDigest, failures: list[str]):
    """Every row of a content file into ``digest``; each JSON object yielded with its line (bytes)."""
    with archive.open(name) as stream:
        for number, line in enumerate(stream, 1):
            try:
                row = json.loads(line)
            except ValueError:
                failures.append(f"{name} line {number} is not JSON")
                continue
            digest.add(row)
            if isinstance(row, dict):
                yield line, row


# --- The labels in an export's format files are the published labels --------------------------------
#
# A manifest can be rewritten with the files it lists, so the format files are checked against the
# content files (whose digests the signed event holds). COCO: every annotation, and every image-level
# classification, must be a published label (by its uid) of the same class, image, final flag, crowd
# flag, geometry (box, polygons, RLE, keypoints: equal within GEOMETRY_TOLERANCE, the rounding a float
# written as JSON may take; the area and a box's segmentation mark), attributes and provenance, none
# twice; and every published label that the export's selection (``evidence/export.json``: splits,
# classes, candidates) takes and COCO can hold must be there. VOC and YOLO: see _check_voc, _check_yolo.
# Bounded memory: the published labels go into a temporary SQLite file (standard library), and the
# COCO files are read element by element (``_JsonStream``), never loaded whole.

EXPORT_SELECTION = "evidence/export.json"
GEOMETRY_TOLERANCE = 1e-3  # pixels
MAX_ELEMENT_CHARS = 64 << 20  # one annotation, image or the categories list, as JSON text
MAX_LABEL_FAILURES = 20
_WS = " \t\n\r"


class _JsonStream:
    """Reads one JSON document from a binary stream a value at a time (``json.JSONDecoder.raw_decode``
    over a refilled buffer), so arrays of millions of annotations never sit in memory at once."""

    def __init__(self, stream):
        import codecs

        self.stream = stream
        self.decode = codecs.getincrementaldecoder("utf-8")().decode
        self.buf, self.pos, self.eof = "", 0, False
        self.decoder = json.JSONDecoder()

    def _fill(self, size: int = 1 << 16) -> None:
        chunk = self.stream.read(size)
        self.eof = not chunk
        self.buf = self.buf[self.pos :] + self.decode(chunk, final=self.eof)
        self.pos = 0

    def peek(self) -> str:
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in _WS:
                self.pos += 1
            if self.pos < len(self.buf) or self.eof:
                return self.buf[self.pos : self.pos + 1]
            self._fill()

    def expect(self, char: str) -> None:
        if self.peek() != char:
            raise ValueError(f"expected {char!r}")
        self.pos += 1

    def value(self):
        self.peek()
        size = 1 << 16
        while True:
            try:
                obj, end = self.decoder.raw_decode(self.buf, self.pos)
            except ValueError:
                if self.eof:
                    raise
            else:
                if end < len(self.buf) or self.eof:  # a number at the buffer's end may go on
                    self.pos = end
                    return obj
            if len(self.buf) - self.pos > MAX_ELEMENT_CHARS:
                raise ValueError("a JSON element is larger than this verifier reads")
            self._fill(size)
            size = min(size * 2, 1 << 24)

    def object_members(self, arrays: tuple[str, ...]):
        """Yield (key, value) of the top-level object; the members named in ``arrays`` are yielded
        element by element as (key, element)."""
        self.expect("{")
        if self.peek() == "}":
            return
        while True:
            key = self.value()
            self.expect(":")
            if key in arrays:
                self.expect("[")
                if self.peek() == "]":
                    self.pos += 1
                else:
                    while True:
                        yield key, self.value()
                        if self.peek() == ",":
                            self.pos += 1
                            continue
                        self.expect("]")
                        break
            else:
                yield key, self.value()
            if self.peek() == ",":
                self.pos += 1
                continue
            self.expect("}")
            return


def _tight_box(geometry: dict) -> list | None:
    """The tight [x, y, w, h] box, as the registry's codecs derive it (marketplace.formats.model.bbox_of)."""
    if "bbox" in geometry:
        return list(geometry["bbox"])
    xs: list = []
    ys: list = []
    for ring in geometry.get("polygons") or []:
        xs += ring[0::2]
        ys += ring[1::2]
    for part in ("points", "cuboid"):
        if part in geometry:
            xs += geometry[part][0::2]
            ys += geometry[part][1::2]
    kp = geometry.get("keypoints") or []
    for i in range(0, len(kp) - 2, 3):
        if kp[i + 2] > 0:
            xs.append(kp[i])
            ys.append(kp[i + 1])
    if not xs:
        return None
    return [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]


def _coco_box(geometry: dict) -> list | None:
    """The box the COCO writer gives a geometry (None: an RLE mask's, which needs pycocotools)."""
    if "bbox" in geometry:
        return list(geometry["bbox"])
    if geometry.get("rle") is not None:
        return None
    box = _tight_box(geometry)
    if box is not None and not geometry.get("polygons"):
        box = [box[0], box[1], max(box[2], 1.0), max(box[3], 1.0)]  # a line covers a pixel at least
    return box


def _close(a, b) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return False
        # Coordinates compared inline (a polygon's are most of a COCO file); anything else recursively.
        for x, y in zip(a, b):  # noqa: B905 - equal lengths; zip(strict=) is Python 3.10+
            if (x.__class__ is float or x.__class__ is int) and (y.__class__ is float or y.__class__ is int):
                if not abs(x - y) <= GEOMETRY_TOLERANCE:  # not ">": NaN (which json reads) is never close
                    return False
            elif not _close(x, y):
                return False
        return True
    if isinstance(a, bool) or isinstance(b, bool):
        return a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return abs(float(a) - float(b)) <= GEOMETRY_TOLERANCE
    return a == b


def _same(a, b) -> bool:
    """Equal as JSON values: numbers by value (1 == 1.0), booleans only to booleans, objects in any order."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(value, b[key]) for key, value in a.items())
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(_same, a, b))
    return type(a) is type(b) and a == b


def _rle_counts(rle: dict) -> list[int]:
    """The run lengths of a COCO RLE, from its compressed string (pycocotools' rleFrString) or list."""
    text = rle.get("counts")
    if isinstance(text, list):
        return [int(c) for c in text]
    counts: list[int] = []
    pos, end = 0, len(text)
    while pos < end:
        value, shift, more = 0, 0, True
        while more:
            c = ord(text[pos]) - 48
            value |= (c & 0x1F) << shift
            more = c & 0x20
            pos += 1
            shift += 5
            if not more and c & 0x10:
                value |= -1 << shift
        if len(counts) > 2:
            value += counts[-2]
        counts.append(value)
    return counts


def _rle_box(rle: dict) -> list | None:
    """The [x, y, w, h] box of a COCO RLE mask, as ``pycocotools.mask.toBbox`` computes it (None: unreadable)."""
    try:
        h, w = (int(v) for v in rle["size"])
        counts = _rle_counts(rle)
        m = len(counts) // 2 * 2
        if m == 0:
            return [0.0, 0.0, 0.0, 0.0]
        xs, ys, xe, ye, cc, xp = w, h, 0, 0, 0, 0
        for j in range(m):
            cc += counts[j]
            t = cc - j % 2
            y = t % h
            x = (t - y) // h
            if j % 2 == 0:
                xp = x
            elif xp < x:
                ys, ye = 0, h - 1
            xs, xe, ys, ye = min(xs, x), max(xe, x), min(ys, y), max(ye, y)
        return [float(xs), float(ys), float(xe - xs + 1), float(ye - ys + 1)]
    except (KeyError, TypeError, ValueError, IndexError, ZeroDivisionError):
        return None


def _ring_area(ring: list) -> float:
    """Shoelace area of a flat [x1, y1, ...] ring, summed as coco_writer.ring_area sums it."""
    xs, ys = ring[0::2], ring[1::2]
    return (
        abs(sum(map(operator.mul, xs, ys[1:] + ys[:1])) - sum(map(operator.mul, xs[1:] + xs[:1], ys))) / 2.0
    )


def _geometry_difference(geometry: dict, ann: dict) -> str:
    """'' when the annotation holds the published geometry (its box, segmentation, area, keypoints and
    the parts COCO has no field for), else which part differs."""
    rle = geometry.get("rle")
    box = _coco_box(geometry)
    if box is None and rle is not None:
        box = _rle_box(rle)
    if box is not None and not _close(box, ann.get("bbox")):
        return "box"
    seg = ann.get("segmentation")
    if rle is not None:
        if (
            not isinstance(seg, dict)
            or seg.get("counts") != rle.get("counts")
            or not _close(list(rle.get("size") or []), list(seg.get("size") or []))
        ):
            return "mask"
        try:
            area = float(sum(_rle_counts(rle)[1::2]))
        except (TypeError, ValueError, IndexError):
            area = None
    elif geometry.get("polygons"):
        if not _close(geometry["polygons"], seg):
            return "polygons"
        area = sum(_ring_area(ring) for ring in geometry["polygons"])
    else:
        # A box-only label is written with its box's rectangle as segmentation (so that pycocotools
        # decodes every annotation), marked so that a reader takes it back as the box: that ring
        # must be the published box, and the mark must be there (without it, a reader sees a polygon).
        if ann.get("segmentation_is_box") is not True:
            return "segmentation"
        x, y, w, h = ann.get("bbox") or (0, 0, 0, 0)
        if not _close([[x, y, x + w, y, x + w, y + h, x, y + h]], seg):
            return "polygons"
        area = box[2] * box[3] if box is not None else None
    if (rle is not None or geometry.get("polygons")) and "segmentation_is_box" in ann:
        return "segmentation"
    found = ann.get("area")
    if area is not None and (
        not isinstance(found, (int, float))
        or isinstance(found, bool)
        or not abs(found - area) <= max(GEOMETRY_TOLERANCE, 1e-9 * abs(area))
    ):
        return "area"
    for part in ("keypoints", "points", "cuboid", "cuboid_3d"):
        if (part in geometry) != (part in ann) or (
            part in geometry and not _close(geometry[part], ann[part])
        ):
            return part
    if "keypoints" in geometry:
        kp = geometry["keypoints"]
        if ann.get("num_keypoints") != sum(1 for v in kp[2::3] if v > 0):
            return "num_keypoints"
    elif "num_keypoints" in ann:
        return "num_keypoints"
    return ""


# What the COCO writer puts on an annotation (coco_writer._Writer.annotation and .extras); a field a
# COCO file had beyond these rides in the label's attributes, named in their "coco_fields" list.
_COCO_GEOMETRY_FIELDS = frozenset(
    {"id", "image_id", "category_id", "bbox", "area", "iscrowd", "segmentation", "segmentation_is_box",
     "keypoints", "num_keypoints", "points", "cuboid", "cuboid_3d"}
)  # fmt: skip
_COCO_LABEL_FIELDS = frozenset(
    {"category_id", "attributes", "is_final", "uid", "annotator", "created_at", "guideline_version", "source",
     "model_name", "model_version"}
)  # fmt: skip
_COCO_RESERVED = _COCO_GEOMETRY_FIELDS | _COCO_LABEL_FIELDS | {"updated_at"}  # never a kept field
_LABEL_PROVENANCE = ("annotator", "made_at", "guideline_version", "source", "model_name", "model_version")


def _extras_difference(ann: dict, attributes: dict, provenance: list, *, classification: bool) -> str:
    """'' when an annotation's (or classification's) attributes, kept fields and provenance are the
    published label's, as coco_writer._Writer.extras writes them; else which differs."""
    attrs = dict(attributes) if isinstance(attributes, dict) else {}
    kept = attrs.pop("coco_fields", None)
    fields = {}
    for name in kept if isinstance(kept, list) else []:
        if isinstance(name, str) and name in attrs and name not in _COCO_RESERVED:
            fields[name] = attrs.pop(name)
    allowed = _COCO_LABEL_FIELDS if classification else _COCO_GEOMETRY_FIELDS | _COCO_LABEL_FIELDS
    for name in ann:
        if name not in allowed and name not in fields:
            return f"field {_short(name)}"
    for name, value in fields.items():
        if name not in ann or not _same(ann[name], value):
            return f"field {_short(name)}"
    if not _same(ann.get("attributes", {}), attrs):
        return "attributes"
    annotator, made_at, guideline, source, model_name, model_version = provenance
    tag = str(guideline).rsplit(" / ", 1)[-1] if guideline else ""
    for name, expected in (
        ("annotator", annotator),
        ("guideline_version", tag),
        ("source", source),
        ("model_name", model_name),
        ("model_version", model_version),
    ):
        if (ann.get(name) or "") != (expected or ""):
            return name
    if _moment(ann.get("created_at")) != _moment(made_at):
        return "created_at"
    return ""


class _LabelFailures:
    def __init__(self, failures: list[str]):
        self.failures, self.count = failures, 0

    def add(self, message: str) -> None:
        self.count += 1
        if self.count <= MAX_LABEL_FAILURES:
            self.failures.append(message)

    def close(self) -> None:
        if self.count > MAX_LABEL_FAILURES:
            self.failures.append(f"... and {self.count - MAX_LABEL_FAILURES} more label differences")


def _short(value) -> str:
    return repr(str(value)[:80])


def _format_files(names: list[str]) -> tuple[list[str], list[str], bool]:
    """The archive's COCO files, VOC files, and whether it is a YOLO export."""
    coco = sorted(n for n in names if n.startswith("annotations/") and n.endswith(".json"))
    voc = [n for n in names if n.startswith("Annotations/") and n.endswith(".xml")]
    return coco, voc, "data.yaml" in names


def _check_format_labels(archive, names: list[str], db, failures: list[str]) -> None:
    """The labels of the export's COCO, VOC and YOLO files are the published labels (see above).

    ``db`` holds the published labels already (``_load_labels``, while their part was hashed)."""
    coco, voc, yolo = _format_files(names)
    if not (coco or voc or yolo):
        return
    selection = None
    if EXPORT_SELECTION in names:
        try:
            selection = json.loads(archive.read(EXPORT_SELECTION).decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            selection = None
    if not isinstance(selection, dict):
        failures.append(f"{EXPORT_SELECTION} is missing or not a JSON object: the labels cannot be counted")
        selection = None
    report = _LabelFailures(failures)
    _load_published(archive, db, by_item=bool(voc or yolo))
    published_classes = {row[0] for row in db.execute("SELECT key FROM classes")}
    for name in coco:
        try:
            _check_coco_file(archive, name, db, published_classes, selection, report)
        except (UnicodeDecodeError, ValueError) as error:
            failures.append(f"{name} cannot be read as COCO JSON: {str(error)[:120]}")
    if coco and selection is not None:
        _check_nothing_missing(db, selection, report)
    if voc:
        _check_voc(archive, names, voc, db, _Selection(selection), report)
    if yolo:
        _check_yolo(archive, names, db, _Selection(selection), report)
    if (voc or yolo) and SIDECAR in names:
        _check_sidecar(archive, db, report)
    report.close()


def _jsonl(archive, name: str, *, lines: bool = False):
    """The JSON objects of a content file, each with its line (as text) when ``lines``."""
    with archive.open(name) as stream:
        for line in stream:
            try:
                row = json.loads(line)
            except ValueError:
                continue  # reported by the content hash check
            if isinstance(row, dict):
                yield (line.decode("utf-8"), row) if lines else row


def _export_names(key: str, split: str) -> tuple[str, str, str, str]:
    """Where the writers put an item, before a name taken twice gets its "-2" (``NameAllocator``):
    COCO's "<folder>/<file_name>", VOC's id and the image's extension, YOLO's label file without
    ".txt" (``writing.relative_image_name``, ``yolo.label_key_for``)."""
    folder = split or DEFAULT_SPLIT_FOLDER
    rel = key
    for prefix in (f"images/{split}/" if split else None, "images/"):
        if prefix and key.startswith(prefix) and len(key) > len(prefix):
            rel = key[len(prefix) :]
            break
    stem, ext = posixpath.splitext(rel)
    path = f"/images/{folder}/{rel}"
    head, sep, tail = path.rpartition("/images/")
    if sep:
        path = head + "/labels/" + tail
    return f"{folder}/{rel}", stem.replace("/", "__"), ext.lower() or ".jpg", posixpath.splitext(path)[0][1:]


def _unsuffixed(name: str) -> str | None:
    """The name a "-2" (or later) was added to (``NameAllocator``: before the extension), or None."""
    stem, ext = posixpath.splitext(name)
    match = re.fullmatch(r"(.*)-([2-9]|[1-9][0-9]+)", stem, re.S)
    return match.group(1) + ext if match else None


def _load_labels(archive, db, failures: list[str], *, formats: bool, provenance: bool) -> dict:
    """content/labels.jsonl read once: its part digest, and its rows into ``db`` for the checks that
    need them (``labels``: the format files'; ``published``: provenance.csv's)."""
    digest = _PartDigest()
    rows = _hashed_rows(archive, "content/labels.jsonl", digest, failures)
    if formats:
        db.execute(
            "CREATE TABLE labels (uid TEXT PRIMARY KEY, item TEXT, category TEXT, kind TEXT, is_final INTEGER, "
            "iscrowd INTEGER, coco INTEGER, row TEXT, seen INTEGER DEFAULT 0)"
        )
    if provenance:
        db.execute("CREATE TABLE published (uid TEXT PRIMARY KEY, v TEXT)")
    for batch in _batches(rows, 200):
        if formats:
            db.executemany(
                "INSERT OR IGNORE INTO labels (uid, item, category, kind, is_final, iscrowd, coco, row) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [_label_columns(line, r) for line, r in batch],
            )
        if provenance:
            db.executemany(
                "INSERT OR IGNORE INTO published VALUES (?, ?)",
                [(str(r.get("key")), json.dumps(_provenance_values(r))) for _line, r in batch],
            )
    for _rest in rows:  # no table wanted: the digest alone
        pass
    return digest.as_dict()


def _batches(rows, size: int):
    batch = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _label_columns(line: bytes, r: dict) -> tuple:
    """A published label's columns in ``labels``; the row is kept as its line, read back (json.loads)
    only for the labels a file holds."""
    geometry = r.get("geometry") if isinstance(r.get("geometry"), dict) else {}
    kind = str(r.get("geometry_type"))
    # What COCO holds: classifications in the image entry, everything with a box as an annotation.
    holds = kind == "classification" or geometry.get("rle") is not None or _tight_box(geometry) is not None
    return (
        str(r.get("key")),
        str(r.get("item")),
        str(r.get("category")),
        kind,
        1 if r.get("is_final") else 0,
        1 if r.get("iscrowd") else 0,
        1 if holds else 0,
        line.decode("utf-8"),
    )


def _load_published(archive, db, *, by_item: bool = False) -> None:
    # ``pose``: the class's keypoint names, skeleton and flip index as JSON (COCO's category entry,
    # YOLO's data.yaml).
    db.execute("CREATE TABLE classes (key TEXT PRIMARY KEY, keypoints INTEGER, pose TEXT)")
    db.execute(
        "CREATE TABLE items (key TEXT PRIMARY KEY, split TEXT, width INTEGER, height INTEGER, coco TEXT, "
        "voc TEXT, voc_ext TEXT, yolo TEXT, attributes TEXT, done INTEGER DEFAULT 0)"
    )

    def classes():
        for r in _jsonl(archive, "content/categories.jsonl"):
            names = r.get("keypoint_names") if isinstance(r.get("keypoint_names"), list) else []
            pose = json.dumps([names, r.get("skeleton") or [], r.get("flip_idx")]) if names else None
            yield str(r.get("key")), len(names), pose

    db.executemany("INSERT OR IGNORE INTO classes VALUES (?, ?, ?)", classes())

    def items():
        for r in _jsonl(archive, "content/items.jsonl"):
            key, split = str(r.get("key")), str(r.get("split") or "")
            attributes = json.dumps(r["attributes"]) if r.get("attributes") else None
            yield (key, split, r.get("width"), r.get("height"), *_export_names(key, split), attributes)

    db.executemany(
        "INSERT OR IGNORE INTO items (key, split, width, height, coco, voc, voc_ext, yolo, attributes) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        items(),
    )
    db.execute("CREATE INDEX items_coco ON items (coco)")
    if by_item:
        db.execute(
            "CREATE TABLE refs (ref TEXT PRIMARY KEY, uid TEXT, file TEXT, content TEXT, provenance TEXT, "
            "seen INTEGER DEFAULT 0)"
        )
        db.execute("CREATE INDEX refs_content ON refs (file, content)")
        db.execute("CREATE INDEX labels_item ON labels (item)")
        db.execute("CREATE INDEX items_voc ON items (voc)")
        db.execute("CREATE INDEX items_yolo ON items (yolo)")


def _check_coco_file(
    archive, name: str, db, published_classes: set, selection: dict | None, report: _LabelFailures
) -> None:
    classes: dict | None = None
    chosen = _Selection(selection)
    folder = (
        name[len("annotations/instances_") : -len(".json")]
        if name.startswith("annotations/instances_")
        else ""
    )
    db.execute("CREATE TABLE IF NOT EXISTS images (id TEXT PRIMARY KEY, name TEXT)")
    db.execute("DELETE FROM images")
    with archive.open(name) as stream:
        for key, value in _JsonStream(stream).object_members(("images", "annotations")):
            if key == "categories":
                classes = _coco_categories(name, value, db, published_classes, report)
            elif key in ("images", "annotations"):
                if classes is None:
                    raise ValueError("its categories must come before its images and annotations")
                if key == "annotations":
                    _check_label(name, value, db, classes, chosen, report, classification=False)
                elif isinstance(value, dict):
                    image = f"{folder}/{value.get('file_name')}"
                    if (
                        db.execute(
                            "INSERT OR IGNORE INTO images VALUES (?, ?)", (json.dumps(value.get("id")), image)
                        ).rowcount
                        == 0
                    ):
                        report.add(f"{name}: image id {_short(value.get('id'))} is there twice")
                    _check_coco_image(name, value, image, db, report)
                    for entry in value.get("classifications") or []:
                        _check_label(
                            name, entry, db, classes, chosen, report, classification=True, image=image
                        )


def _coco_categories(name: str, entries, db, published_classes: set, report: _LabelFailures) -> dict:
    """A COCO file's categories by id, each checked against its published class: a published class,
    one id each, and the keypoint names and skeleton the class was published with (COCO's pose)."""
    classes: dict = {}
    for category in entries if isinstance(entries, list) else []:
        if not isinstance(category, dict):
            continue
        where = f"{name}: class {_short(category.get('name'))}"
        if category.get("name") not in published_classes:
            report.add(f"{where} is not a published class")
        else:
            (pose,) = db.execute("SELECT pose FROM classes WHERE key = ?", (category.get("name"),)).fetchone()
            published = json.loads(pose)[:2] if pose else [[], []]
            if not _same([category.get("keypoints") or [], category.get("skeleton") or []], published):
                report.add(f"{where}: keypoints or skeleton differ from the published class")
        if category.get("id") in classes:
            report.add(f"{where}: category id {_short(category.get('id'))} is there twice")
            classes[category.get("id")] = None  # its annotations match neither class
        else:
            classes[category.get("id")] = category.get("name")
    return classes


def _check_coco_image(name: str, image: dict, path: str, db, report: _LabelFailures) -> None:
    """A COCO image entry is a published item's, with its size and attributes (``path``: the image's
    "<folder>/<file_name>"; a name the writer suffixed with "-2" is looked up without it too)."""
    rows = db.execute("SELECT width, height, attributes FROM items WHERE coco = ?", (path,)).fetchall()
    plain = _unsuffixed(path)
    if plain is not None:
        rows += db.execute("SELECT width, height, attributes FROM items WHERE coco = ?", (plain,)).fetchall()
    where = f"{name}: image {_short(path)}"
    if not rows:
        report.add(f"{where} is no published item's")
        return
    found = [image.get("width"), image.get("height"), image.get("attributes") or {}]
    if not any(_same(found, [w, h, json.loads(a) if a else {}]) for w, h, a in rows):
        report.add(f"{where}: its size or attributes differ from the published item's")


def _check_label(
    name,
    ann,
    db,
    classes: dict,
    chosen: _Selection,
    report: _LabelFailures,
    *,
    classification: bool,
    image=None,
) -> None:
    if not isinstance(ann, dict):
        report.add(f"{name}: an annotation is not a JSON object")
        return
    uid = ann.get("uid")
    where = f"{name}: label {_short(uid)}" if uid else f"{name}: annotation id {_short(ann.get('id'))}"
    if not isinstance(uid, str):
        report.add(f"{where} has no uid: it cannot be matched to a published label")
        return
    row = db.execute(
        "SELECT l.category, l.kind, l.row, l.is_final, l.iscrowd, l.seen, i.split, i.coco "
        "FROM labels l LEFT JOIN items i ON i.key = l.item WHERE l.uid = ?",
        (uid,),
    ).fetchone()
    if row is None:
        report.add(f"{where} is not a published label")
        return
    category, kind, published, is_final, iscrowd, seen, split, wanted = row
    if not chosen.takes(category=category, split=split or "", is_final=bool(is_final)):
        report.add(f"{where} is outside the export's selection ({EXPORT_SELECTION})")
    if seen:
        report.add(f"{where} appears twice")
        return
    db.execute("UPDATE labels SET seen = 1 WHERE uid = ?", (uid,))
    if classes.get(ann.get("category_id")) != category:
        report.add(
            f"{where}: class {_short(classes.get(ann.get('category_id')))}, published {_short(category)}"
        )
    if bool(ann.get("is_final", True)) != bool(is_final):
        report.add(f"{where}: final flag differs from the published label")
    if image is None:
        found = db.execute(
            "SELECT name FROM images WHERE id = ?", (json.dumps(ann.get("image_id")),)
        ).fetchone()
        image = found[0] if found else None
    if image is None:
        report.add(f"{where}: its image id {_short(ann.get('image_id'))} is no image of the file")
    elif wanted is not None and image != wanted and _unsuffixed(image) != wanted:
        report.add(f"{where} is on image {_short(image)}, not on its published item's")
    published = json.loads(published)
    part = _extras_difference(
        ann,
        published.get("attributes") or {},
        [published.get(field) for field in _LABEL_PROVENANCE],
        classification=classification,
    )
    if part:
        report.add(f"{where}: {part} differs from the published label")
    if classification != (kind == "classification"):
        report.add(f"{where}: geometry type differs from the published {_short(kind)}")
        return
    if classification:
        return
    if bool(ann.get("iscrowd", 0)) != bool(iscrowd):
        report.add(f"{where}: crowd flag differs from the published label")
    geometry = published.get("geometry")
    part = _geometry_difference(geometry if isinstance(geometry, dict) else {}, ann)
    if part:
        report.add(f"{where}: {part} differs from the published geometry")


class _Selection:
    """What an export took (``evidence/export.json``); None takes everything."""

    def __init__(self, selection: dict | None):
        selection = selection or {}
        self.splits = {("" if s == "unassigned" else str(s)) for s in selection.get("splits") or []}
        self.classes = {str(c) for c in selection.get("categories") or []}
        self.candidates = bool(selection.get("candidates")) or not selection

    def takes(self, *, category: str, split: str, is_final: bool) -> bool:
        return (
            (is_final or self.candidates)
            and (not self.splits or split in self.splits)
            and (not self.classes or category in self.classes)
        )


def _check_nothing_missing(db, selection: dict, report: _LabelFailures) -> None:
    splits = [("" if s == "unassigned" else str(s)) for s in selection.get("splits") or []]
    classes = [str(c) for c in selection.get("categories") or []]
    sql = "SELECT l.uid FROM labels l JOIN items i ON i.key = l.item WHERE l.coco = 1 AND l.seen = 0"
    params: list = []
    if not selection.get("candidates"):
        sql += " AND l.is_final = 1"
    if splits:
        sql += f" AND i.split IN ({','.join('?' * len(splits))})"
        params += splits
    if classes:
        sql += f" AND l.category IN ({','.join('?' * len(classes))})"
        params += classes
    for (uid,) in db.execute(sql + " ORDER BY l.uid", params):
        report.add(f"published label {_short(uid)} is missing from the export")


# --- VOC and YOLO files hold the published labels --------------------------------------------------
#
# VOC and YOLO files carry no label uids. Each file is one item's (by its name: the writers derive it
# from the item key, a name taken twice getting "-2"), and holds, in any order, exactly what the writer
# makes of that item's published labels that the selection takes: VOC one <object> per label with an
# image box (class, pose, truncated/difficult/occluded, the corners as voc_writer rounds them, parts,
# actions, the other attributes as text; a box and the mask whose uid is derived from it are one
# object) and the image-level classifications in ImageSets/Main/<class>_<split>.txt; YOLO one row per
# label (class index, then the normalised box, keypoints or polygon). A YOLO number is printed with six
# decimals: it may differ from the published geometry's by YOLO_TOLERANCE (half the last digit), i.e.
# a box edge by at most 5e-7 of the image's size (0.002 px on a 4,000-px image). A mask in a YOLO
# segment file is its traced, simplified outline: only its class and extent (the mask's box, within
# the writer's 1.5-px simplification) are checked. The provenance.jsonl sidecar must say, for every
# object and row (by its place: "Annotations/a.xml#2", "labels/train/a.txt:3"), who made the label
# matched there. Not checked: VOC's PNG masks (their objects' boxes are in the XML).

DEFAULT_SPLIT_FOLDER = "default"
SPLIT_ORDER = {"train": 0, "val": 1, "test": 2}  # the writers' order of split folders (writing's)
VOC_FLAGS = ("truncated", "difficult", "occluded")
_VOC_ELEMENTS = frozenset({"name", "pose", *VOC_FLAGS, "bndbox", "part", "actions", "attributes"})
_VOC_FIELDS = ("class", "box", "pose", "flags", "parts", "actions", "attributes", "elements")
_XML_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")
MAX_LITERAL_CHARS = 1 << 16  # an attribute value written as Python text, read back to compare
YOLO_TOLERANCE = 0.5e-6 + 1e-12  # normalised units: six printed decimals, plus float rounding
YOLO_OUTLINE_PIXELS = 1.5 + 1e-6  # yolo_writer.SIMPLIFY_EPSILON
MAX_PAIRING = 1 << 20  # leftover pairs compared to name the nearest published label


def _taken_labels(db, item: tuple, chosen: _Selection) -> list[tuple]:
    """(uid, category, kind, geometry, attributes, is_final, provenance) of the item's labels the
    export takes; provenance as a list of _LABEL_PROVENANCE's fields."""
    key, split = item[0], item[1]
    out = []
    for uid, category, kind, row, is_final in db.execute(
        "SELECT uid, category, kind, row, is_final FROM labels WHERE item = ? ORDER BY uid", (key,)
    ):
        if chosen.takes(category=category, split=split or "", is_final=bool(is_final)):
            published = json.loads(row)
            geometry, attributes = published.get("geometry"), published.get("attributes")
            out.append(
                (
                    uid,
                    category,
                    kind,
                    geometry if isinstance(geometry, dict) else {},
                    attributes if isinstance(attributes, dict) else {},
                    is_final,
                    [published.get(field) for field in _LABEL_PROVENANCE],
                )
            )
    return out


def _candidates(db, column: str, name: str) -> list[tuple]:
    """Items not yet matched whose file, in the writer's naming, ``name`` may be: its own or, if it
    ends in "-N", the one of an item whose name was taken."""
    rows = []
    for wanted in (name, _unsuffixed(name)):
        if wanted is not None:
            rows += db.execute(
                f"SELECT key, split, width, height, voc_ext FROM items WHERE {column} = ? AND done = 0 ORDER BY key",  # noqa: S608 - a column name of ours
                (wanted,),
            ).fetchall()
    return rows


def _pair_up(found: list, expected: list, key, same, fields) -> tuple[list, list, list, list]:
    """Match found entries (where, value) with expected ones (uid, value): equal ones first (looked up
    by ``key``, then ``same`` among the rest), then each leftover with the expected one with which
    most ``fields`` agree. Returns (differing pairs, found without a label, labels not found, equal
    pairs)."""
    pool: dict = {}
    for entry in expected:
        pool.setdefault(key(entry[1]), []).append(entry)
    left, matched = [], []
    for entry in found:
        bucket = pool.get(key(entry[1])) or []
        for i, candidate in enumerate(bucket):
            if same(entry[1], candidate[1]):
                matched.append((entry, bucket.pop(i)))
                break
        else:
            left.append(entry)
    rest = [entry for bucket in pool.values() for entry in bucket]
    if left and rest and len(left) * len(rest) <= MAX_PAIRING:
        unmatched = []
        for entry in left:
            index = next((i for i, c in enumerate(rest) if same(entry[1], c[1])), None)
            if index is None:
                unmatched.append(entry)
            else:
                matched.append((entry, rest.pop(index)))
        left = unmatched
    pairs, extra = [], []
    for entry in left:
        if rest and len(left) * len(rest) <= MAX_PAIRING:
            agree = [sum(fields(entry[1], c[1])) for c in rest]
            best = max(range(len(rest)), key=agree.__getitem__)
            if agree[best]:
                pairs.append((entry, rest.pop(best)))
                continue
        extra.append(entry)
    return pairs, extra, rest, matched


def _match_file(db, name: str, column: str, found: list, chosen: _Selection, expect, key, same, fields):
    """The item ``name`` is the file of, by the writer's naming, and how its content differs from the
    item's published labels: (item or None, pairs, extra, missing, equal pairs, expected extras,
    the provenance of each of the item's labels by uid)."""
    best = None
    for item in _candidates(db, column, name):
        labels = _taken_labels(db, item, chosen)
        expected, extras = expect(item, labels)
        result = (item, *_pair_up(found, expected, key, same, fields), extras, labels)
        if not any(result[1:4]):
            best = result
            break
        best = best or result
    if best is None:
        return None, [], [], [], [], None, {}
    db.execute("UPDATE items SET done = 1 WHERE key = ?", (best[0][0],))
    return (*best[:6], {label[0]: label[6] for label in best[6]})


def _report_file(report: _LabelFailures, name: str, unit: str, item, pairs, extra, missing, describe) -> None:
    for (where, value), (uid, wanted) in pairs:
        report.add(
            f"{name} {unit} {where}: {describe(value, wanted)} differs from published label {_short(uid)}"
        )
    for where, _ in extra:
        report.add(f"{name} {unit} {where} is no published label of item {_short(item[0])}")
    for uid, _ in missing:
        report.add(f"published label {_short(uid)} is missing from {name}")


def _report_unmatched_items(db, chosen: _Selection, report: _LabelFailures, what: str) -> None:
    """Every item the selection takes has its file (written even when it holds nothing)."""
    for key, split in db.execute("SELECT key, split FROM items WHERE done = 0 ORDER BY key"):
        if not chosen.splits or (split or "") in chosen.splits:
            report.add(f"item {_short(key)} has no {what} in the export")


# What rendering a published label may raise when its row is not what the writer takes (the row is
# signed, so such an archive cannot have come from the registry): reported, never a traceback.
_UNRENDERABLE = (
    TypeError,
    ValueError,
    KeyError,
    AttributeError,
    IndexError,
    ZeroDivisionError,
    OverflowError,
)
SIDECAR = "provenance.jsonl"


def _record_references(db, refs: list) -> None:
    """Where each label is in the export, as provenance.jsonl names it (``Annotations/a.xml#2``,
    ``labels/train/a.txt:3``), with the file and content of what is there."""
    db.executemany(
        "INSERT OR IGNORE INTO refs (ref, uid, file, content, provenance) VALUES (?, ?, ?, ?, ?)",
        ((ref, uid, file, content, json.dumps(provenance)) for ref, uid, file, content, provenance in refs),
    )


def _check_sidecar(archive, db, report: _LabelFailures) -> None:
    """provenance.jsonl (VOC, YOLO): one line per object or row, saying who made the published label
    there (as coco_writer writes it on an annotation). Identical objects of one file may trade lines."""
    with archive.open(SIDECAR) as stream:
        for number, raw in enumerate(stream, 1):
            where = f"{SIDECAR} line {number}"
            try:
                record = json.loads(raw)
            except ValueError:
                report.add(f"{where} is not JSON")
                continue
            if not isinstance(record, dict):
                report.add(f"{where} is not a JSON object")
                continue
            ref = record.pop("label", None)
            found = db.execute(
                "SELECT uid, file, content, seen, provenance FROM refs WHERE ref = ?", (str(ref),)
            ).fetchone()
            if found is None:
                report.add(f"{where}: {_short(ref)} is no object or row of the export")
                continue
            uid, file, content, seen, provenance = found
            if seen:
                report.add(f"{where}: {_short(ref)} is there twice")
                continue
            db.execute("UPDATE refs SET seen = 1 WHERE ref = ?", (ref,))
            if uid is None:
                continue  # an object that is no published label: reported with its file
            part = _extras_difference(record, {}, json.loads(provenance), classification=True)
            if part and not any(
                not _extras_difference(record, {}, json.loads(other), classification=True)
                for (other,) in db.execute(
                    "SELECT provenance FROM refs WHERE file = ? AND content = ? AND uid != ?",
                    (file, content, uid),
                ).fetchall()
            ):
                report.add(f"{where}: {part} of {_short(ref)} differs from published label {_short(uid)}")
    for (ref,) in db.execute("SELECT ref FROM refs WHERE seen = 0 ORDER BY ref").fetchall():
        report.add(f"{_short(ref)} has no {SIDECAR} line")


def _mask_uid(box_uid: str) -> str | None:
    """voc.mask_uid: the uid of the mask of the <object> whose box label has ``box_uid``."""
    import uuid

    try:
        return str(uuid.uuid5(uuid.UUID(str(box_uid)), "SegmentationObject"))
    except ValueError:
        return None


def _voc_corners(box, width: int, height: int) -> tuple:
    """voc_writer.voc_box: a 0-based [x, y, w, h] as VOC's 1-based inclusive corners, clamped."""
    x, y, w, h = box
    xmin, ymin = math.floor(x + 0.5) + 1, math.floor(y + 0.5) + 1
    xmax, ymax = math.floor(x + w + 0.5), math.floor(y + h + 0.5)
    xmin = min(max(xmin, 1), width)
    ymin = min(max(ymin, 1), height)
    return xmin, ymin, min(max(xmax, xmin), width), min(max(ymax, ymin), height)


def _xml_text(value) -> str:
    """A value as voc_writer writes it (booleans as true/false), as an XML parser reads it back."""
    text = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _is_voc_part(part) -> bool:
    return (
        isinstance(part, dict)
        and isinstance(part.get("bbox"), list)
        and len(part["bbox"]) == 4
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in part["bbox"])
    )


def _voc_object(category: str, attributes: dict, corners: tuple, width: int, height: int) -> dict:
    """What voc_writer._Writer.object_xml writes of a label, as _voc_found reads it."""
    attrs = dict(attributes)
    pose = attrs.pop("pose", "Unspecified")
    flags = []
    for flag in VOC_FLAGS:
        value = attrs.pop(flag, False)
        if isinstance(value, bool) or (isinstance(value, (int, float)) and value in (0, 1)):
            flags.append((flag, str(int(bool(value)))))
        else:
            attrs[flag] = value  # not a flag VOC can say: written as an attribute
    parts: tuple = ()
    voc_parts = attrs.get("parts")
    if width and height and isinstance(voc_parts, list) and all(_is_voc_part(p) for p in voc_parts):
        del attrs["parts"]
        parts = tuple(
            (_xml_text(p.get("name")), _voc_corners([float(v) for v in p["bbox"]], width, height))
            for p in voc_parts
        )
    actions: tuple = ()
    voc_actions = attrs.get("actions")
    if (
        isinstance(voc_actions, dict)
        and all(isinstance(v, bool) for v in voc_actions.values())
        and all(isinstance(k, str) and _XML_NAME.fullmatch(k) for k in voc_actions)
    ):
        del attrs["actions"]
        actions = tuple(sorted((k, str(int(v))) for k, v in voc_actions.items()))
    return {
        "class": _xml_text(category),
        "box": corners,
        "pose": _xml_text(pose),
        "flags": tuple(sorted(flags)),
        "parts": parts,
        "actions": actions,
        "attributes": {_xml_text(k): v for k, v in attrs.items()},
        "elements": (),
    }


def _voc_bndbox(element) -> tuple | None:
    if element is None:
        return None
    texts = tuple((element.findtext(t) or "").strip() for t in ("xmin", "ymin", "xmax", "ymax"))
    try:
        return tuple(int(t) for t in texts)
    except ValueError:
        return texts


def _voc_found(element) -> dict:
    """An <object> of a VOC file, read into the fields _voc_object writes."""
    actions = element.find("actions")
    attributes: dict = {}
    for attribute in element.iterfind("attributes/attribute"):
        name = attribute.findtext("name") or ""
        attributes[name] = None if name in attributes else (attribute.findtext("value") or "")
    return {
        "class": element.findtext("name") or "",
        "box": _voc_bndbox(element.find("bndbox")),
        "pose": element.findtext("pose") or "",
        "flags": tuple(sorted((c.tag, (c.text or "").strip()) for c in element if c.tag in VOC_FLAGS)),
        "parts": tuple(
            (p.findtext("name") or "", _voc_bndbox(p.find("bndbox"))) for p in element.iterfind("part")
        ),
        "actions": tuple(sorted((c.tag, (c.text or "").strip()) for c in actions))
        if actions is not None
        else (),
        "attributes": attributes,
        "elements": tuple(sorted({c.tag for c in element} - _VOC_ELEMENTS)),
    }


def _voc_attribute_same(text, value) -> bool:
    if text is None:  # the attribute named twice
        return False
    if isinstance(value, (dict, list)):  # written as Python's text of it, keys in the database's order
        import ast

        if len(text) > MAX_LITERAL_CHARS:
            return False
        try:
            return _same(ast.literal_eval(text), value)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            return False
    return text == _xml_text(value)


def _voc_field_same(field_name: str, found: dict, wanted: dict) -> bool:
    if field_name != "attributes":
        return found[field_name] == wanted[field_name]
    a, b = found["attributes"], wanted["attributes"]
    return a.keys() == b.keys() and all(_voc_attribute_same(a[k], b[k]) for k in a)


def _voc_expected(item: tuple, labels: list[tuple]) -> tuple[list, list]:
    """The <object>s voc_writer writes for an item's labels (uid, fields) and its classifications."""
    width, height = item[2], item[3]
    boxes: dict = {}
    for i, (uid, _, kind, *_rest) in enumerate(labels):
        derived = _mask_uid(uid) if kind == "bbox" else None
        if derived is not None:
            boxes.setdefault(derived, i)
    paired: dict = {}  # mask label index -> index of its object's box label
    for i, (uid, _, kind, geometry, attributes, is_final, _) in enumerate(labels):
        if kind == "bbox" or not ("rle" in geometry or geometry.get("polygons")):
            continue
        box = boxes.get(uid)
        if box is not None and _same(labels[box][4], attributes) and bool(labels[box][5]) == bool(is_final):
            paired[i] = box  # written with its box, as one <object>
            del boxes[uid]
    mask_of_box = {box: mask for mask, box in paired.items()}
    objects, classifications = [], []
    for i, (uid, category, kind, geometry, attributes, _, _) in enumerate(labels):
        if i in paired:
            continue
        if kind == "classification":
            classifications.append((uid, category))
            continue
        box = geometry.get("bbox")
        if box is None and "rle" in geometry:
            box = _rle_box(geometry["rle"])
        if box is None:
            box = _tight_box(geometry)
        if box is None:
            continue  # VOC cannot hold it (the export's notes say so)
        corners = _voc_corners(box, width, height)
        value = _voc_object(category, attributes, corners, width, height)
        # The label whose pixels the object's SegmentationObject index holds (its provenance.jsonl line).
        if i in mask_of_box:
            value["_shape"] = labels[mask_of_box[i]][0]
        else:
            value["_shape"] = uid if ("rle" in geometry or geometry.get("polygons")) else None
        objects.append((uid, value))
    return objects, classifications


def _check_voc(
    archive, names: list[str], files: list[str], db, chosen: _Selection, report: _LabelFailures
) -> None:
    """Each Annotations/<id>.xml holds its item's published labels, and the class lists of
    ImageSets/Main its classifications (see the comment above)."""
    import xml.etree.ElementTree as ET  # noqa: S405 - the archive is the thing checked; expat refuses entity bombs

    classes = {row[0] for row in db.execute("SELECT key FROM classes")}
    db.execute("UPDATE items SET done = 0")
    db.execute("CREATE TABLE voc_ids (id TEXT PRIMARY KEY, folder TEXT)")
    db.execute("CREATE TABLE voc_classified (category TEXT, id TEXT, uid TEXT, seen INTEGER DEFAULT 0)")
    db.execute("CREATE INDEX voc_classified_id ON voc_classified (id, category)")

    def key(value):
        return (value["class"], value["box"])

    def same(a, b):
        return all(_voc_field_same(f, a, b) for f in _VOC_FIELDS)

    def fields(a, b):
        return [_voc_field_same(f, a, b) for f in _VOC_FIELDS]

    def describe(a, b):
        return next((f for f in _VOC_FIELDS if not _voc_field_same(f, a, b)), "nothing")

    for name in files:
        voc_id = name[len("Annotations/") : -len(".xml")]
        found, filename, size = [], None, None
        try:
            with archive.open(name) as stream:
                for _event, element in ET.iterparse(stream):  # noqa: S314
                    if element.tag == "object":
                        found.append((len(found) + 1, _voc_found(element)))
                        element.clear()
                    elif element.tag == "filename":
                        filename = element.text or ""
                    elif element.tag == "size" and size is None:
                        size = (element.findtext("width"), element.findtext("height"))
        except ET.ParseError as error:
            report.add(f"{name} is not XML: {str(error)[:80]}")
            continue
        for k, value in found:
            if value["class"] not in classes:
                report.add(f"{name} object {k}: class {_short(value['class'])} is not a published class")
        try:
            item, pairs, extra, missing, matched, classified, provenance = _match_file(
                db, voc_id, "voc", found, chosen, _voc_expected, key, same, fields
            )
        except _UNRENDERABLE as error:
            report.add(f"{name}: its item's published labels cannot be checked ({type(error).__name__})")
            continue
        if item is None:
            report.add(f"{name} is the file of no item the export takes")
            continue
        refs = []
        for (k, value), (uid, wanted) in matched:
            content = hashlib.sha256(repr(sorted(value.items())).encode()).hexdigest()
            refs.append((f"{name}#{k}", uid, name, content, provenance[uid]))
            shape = wanted["_shape"]
            if shape is not None:
                refs.append(
                    (
                        f"SegmentationObject/{voc_id}.png#{k}",
                        shape,
                        name,
                        "mask " + content,
                        provenance[shape],
                    )
                )
        refs += [(f"{name}#{k}", None, name, None, None) for (k, _), _ in pairs] + [
            (f"{name}#{k}", None, name, None, None) for k, _ in extra
        ]
        _record_references(db, refs)
        if filename != voc_id + item[4]:
            report.add(f"{name}: its image {_short(filename)} is not item {_short(item[0])}'s")
        if size != (str(item[2]), str(item[3])):
            report.add(f"{name}: its <size> is not item {_short(item[0])}'s {item[2]}x{item[3]}")
        _report_file(report, name, "object", item, pairs, extra, missing, describe)
        folder = item[1] or DEFAULT_SPLIT_FOLDER
        db.execute("INSERT OR IGNORE INTO voc_ids VALUES (?, ?)", (voc_id, folder))
        db.executemany(
            "INSERT INTO voc_classified (category, id, uid) VALUES (?, ?, ?)",
            ((category, voc_id, uid) for uid, category in classified),
        )
    _report_unmatched_items(db, chosen, report, "Annotations file")
    _check_voc_class_lists(archive, names, db, classes, report)


def _check_voc_class_lists(archive, names: list[str], db, classes: set, report: _LabelFailures) -> None:
    """ImageSets/Main/<class>_<split>.txt: "<id> 1" exactly for the images with a published
    classification of that class, "<id> -1" for the others."""
    folders = {row[0] for row in db.execute("SELECT DISTINCT folder FROM voc_ids")}
    prefix = "ImageSets/Main/"
    for folder in sorted(folders):
        _check_voc_split_list(archive, names, db, folder, report)
    for name in names:
        if not (name.startswith(prefix) and name.endswith(".txt")):
            continue
        base = name[len(prefix) : -len(".txt")]
        if base in folders:
            continue  # the split's image list (above)
        category, _, folder = base.rpartition("_")
        if category not in classes or folder not in folders:
            report.add(f"{name} is not the list of a published class in a split of the export")
            continue
        with archive.open(name) as stream:
            for number, raw in enumerate(stream, 1):
                voc_id, _, flag = raw.decode("utf-8", "replace").strip().rpartition(" ")
                listed = db.execute("SELECT folder FROM voc_ids WHERE id = ?", (voc_id,)).fetchone()
                label = db.execute(
                    "SELECT uid FROM voc_classified WHERE id = ? AND category = ?", (voc_id, category)
                ).fetchone()
                if listed is None or listed[0] != folder or flag not in ("1", "-1"):
                    report.add(f"{name} line {number} is not '<id of an image of the split> 1|-1'")
                elif flag == "1" and label is None:
                    report.add(
                        f"{name} line {number}: image {_short(voc_id)} has no published {_short(category)} classification"
                    )
                elif flag == "-1" and label is not None:
                    report.add(f"{name} line {number}: published label {_short(label[0])} is marked -1")
                elif label is not None:
                    db.execute(
                        "UPDATE voc_classified SET seen = 1 WHERE id = ? AND category = ?", (voc_id, category)
                    )
    for uid, category, voc_id in db.execute(
        "SELECT uid, category, id FROM voc_classified WHERE seen = 0 ORDER BY uid"
    ).fetchall():
        report.add(
            f"published label {_short(uid)} ({_short(category)} on image {_short(voc_id)}) is missing from ImageSets/Main"
        )


def _check_voc_split_list(archive, names: list[str], db, folder: str, report: _LabelFailures) -> None:
    """ImageSets/Main/<split>.txt lists each of the split's Annotations files once, and nothing else."""
    name = f"ImageSets/Main/{folder}.txt"
    if name not in names:
        report.add(f"{name}, the list of the split's images, is missing")
        return
    db.execute("CREATE TABLE IF NOT EXISTS voc_listed (id TEXT PRIMARY KEY)")
    db.execute("DELETE FROM voc_listed")
    with archive.open(name) as stream:
        for number, raw in enumerate(stream, 1):
            voc_id = raw.decode("utf-8", "replace").rstrip("\n")
            listed = db.execute("SELECT folder FROM voc_ids WHERE id = ?", (voc_id,)).fetchone()
            if listed is None or listed[0] != folder:
                report.add(f"{name} line {number}: {_short(voc_id)} is no Annotations file of the split")
            elif db.execute("INSERT OR IGNORE INTO voc_listed VALUES (?)", (voc_id,)).rowcount == 0:
                report.add(f"{name} line {number}: {_short(voc_id)} is listed twice")
    for (voc_id,) in db.execute(
        "SELECT id FROM voc_ids WHERE folder = ? AND id NOT IN (SELECT id FROM voc_listed) ORDER BY id",
        (folder,),
    ).fetchall():
        report.add(f"{name} does not list the split's image {_short(voc_id)}")


def _yolo_names(archive) -> tuple[dict, bool]:
    """data.yaml's class names by index (as text), and whether it says kpt_shape (a pose export)."""
    names: dict = {}
    pose = False
    with archive.open("data.yaml") as stream:
        in_names = False
        for raw in stream:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if line.startswith("kpt_shape:"):
                pose = True
            if line.startswith("names:"):
                in_names = True
                continue
            if in_names and line.startswith("  ") and ":" in line:
                index, _, value = line.strip().partition(":")
                try:
                    label = json.loads(value.strip())
                except ValueError:
                    label = value.strip()
                names[index.strip()] = label
            elif in_names:
                in_names = False
    return names, pose


def _yolo_box(geometry: dict) -> list | None:
    """yolo_writer._Writer.box_of: the label's box; a box derived from points covers a pixel at least."""
    if "bbox" in geometry:
        return [float(v) for v in geometry["bbox"]]
    if "rle" in geometry:
        return _rle_box(geometry["rle"])
    box = _tight_box(geometry)
    if box is None:
        return None
    x, y, w, h = box
    return [x, y, max(w, 1.0), max(h, 1.0)]


def _join_rings(rings: list) -> list:
    """yolo_writer.join_rings: one ring from several, bridged at their closest vertices (the first
    closest pair in row order, as numpy's argmin takes it)."""
    path = [(rings[0][i], rings[0][i + 1]) for i in range(0, len(rings[0]) - 1, 2)]
    for ring in rings[1:]:
        points = [(ring[i], ring[i + 1]) for i in range(0, len(ring) - 1, 2)]
        best, at, to = None, 0, 0
        for i, (ax, ay) in enumerate(path):
            for j, (bx, by) in enumerate(points):
                d = (ax - bx) ** 2 + (ay - by) ** 2
                if best is None or d < best:
                    best, at, to = d, i, j
        path = path[: at + 1] + points[to:] + points[:to] + [points[to]] + path[at:]
    return [v for xy in path for v in xy]


class _YoloRows:
    """What yolo_writer writes of an item's labels: rows as (class, values, text or None), where a
    mask's row in a segment export is (class, the mask's box in pixels, None)."""

    def __init__(self, task: str, index_of: dict, pose_category: str | None, k: int):
        self.task, self.index_of, self.pose_category, self.k = task, index_of, pose_category, k

    def __call__(self, item: tuple, labels: list[tuple]) -> tuple[list, None]:
        width, height = item[2], item[3]
        rows, seen = [], set()
        for uid, category, kind, geometry, *_ in labels:
            row = self.row(category, kind, geometry, width, height)
            if row is None:
                continue
            if row[2] is not None:
                if row[2] in seen:
                    continue  # the writer drops a duplicate row
                seen.add(row[2])
            rows.append((uid, (row[0], row[1], row[2], width, height)))
        return rows, None

    def describe(self, found, wanted) -> str:
        """Which part of a row differs from the published label's."""
        if found[0] != wanted[0]:
            return "class"
        if wanted[2] is None:
            return "mask outline"
        if len(found[1]) != len(wanted[1]):
            return "number of values"
        if self.task == "segment":
            return "polygon"
        box = all(map(_within_yolo_tolerance, found[1][:4], wanted[1][:4]))
        return "keypoints" if box else "box"

    def row(self, category: str, kind: str, g: dict, width, height):
        if kind == "classification" or (kind == "cuboid_3d" and "bbox" not in g):
            return None
        cls = self.index_of.get(category, "?")
        if self.task == "segment":
            if g.get("polygons"):
                rings = [list(r) for r in g["polygons"]]
            elif "rle" in g:
                box = _rle_box(g["rle"])
                return (cls, box, None) if box is not None else None
            else:
                box = _yolo_box(g)
                if box is None:
                    return None
                x, y, w, h = box
                rings = [[x, y, x + w, y, x + w, y + h, x, y + h]]
            rings = [r for r in rings if len(r) >= 6]
            if not rings:
                return None
            ring = _join_rings(rings) if len(rings) > 1 else rings[0]
            sizes = (width, height)
            values = [min(max(v, 0.0), float(sizes[i % 2])) / sizes[i % 2] for i, v in enumerate(ring)]
            texts = [f"{v:.6f}" for v in values]
        else:
            box = _yolo_box(g)
            if box is None:
                return None
            x, y, w, h = box
            x1, y1 = min(max(x, 0.0), width), min(max(y, 0.0), height)
            x2, y2 = min(max(x + w, 0.0), width), min(max(y + h, 0.0), height)
            if x2 - x1 <= 0 or y2 - y1 <= 0:
                return None
            values = [(x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width, (y2 - y1) / height]
            texts = [f"{v:.6f}" for v in values]
            if self.task == "pose":
                kp = g.get("keypoints")
                if kp is None or category != self.pose_category or len(kp) != 3 * self.k:
                    values += [0.0] * (3 * self.k)
                    texts += ["0"] * (3 * self.k)
                else:
                    for i in range(0, len(kp), 3):
                        v = int(kp[i + 2])
                        if v == 0:
                            values += [0.0, 0.0, 0.0]
                            texts += ["0", "0", "0"]
                            continue
                        cx = min(max(kp[i], 0.0), float(width)) / width
                        cy = min(max(kp[i + 1], 0.0), float(height)) / height
                        values += [cx, cy, float(v)]
                        texts += [f"{cx:.6f}", f"{cy:.6f}", str(v)]
        return cls, values, " ".join([cls, *texts])


def _within_yolo_tolerance(a: float, b: float) -> bool:
    return abs(a - b) <= YOLO_TOLERANCE


def _yolo_same(found, wanted) -> bool:
    cls, values, _ = found
    wanted_cls, wanted_values, text, width, height = wanted
    if cls != wanted_cls or wanted_values is None:
        return False
    if text is None:  # a mask's traced outline: its extent is the mask's box
        if len(values) < 6 or len(values) % 2:
            return False
        xs, ys = [v * width for v in values[0::2]], [v * height for v in values[1::2]]
        x, y, w, h = wanted_values
        edges = (min(xs) - x, min(ys) - y, max(xs) - x - w, max(ys) - y - h)
        return all(abs(e) <= YOLO_OUTLINE_PIXELS + YOLO_TOLERANCE * max(width, height) for e in edges)
    return len(values) == len(wanted_values) and all(map(_within_yolo_tolerance, values, wanted_values))


def _yolo_fields(found, wanted) -> list[bool]:
    return [found[0] == wanted[0], _yolo_same((wanted[0], found[1], None), wanted)]


def _check_yolo(archive, names: list[str], db, chosen: _Selection, report: _LabelFailures) -> None:
    """Each labels/<split>/<name>.txt holds its item's published labels (see the comment above)."""
    index, pose = _yolo_names(archive)
    index_of = {name: i for i, name in index.items()}
    files = [n for n in names if n.endswith(".txt") and (n.startswith("labels/") or "/labels/" in n)]
    task = "pose" if pose else "detect"
    if not pose:
        for name in files:
            with archive.open(name) as stream:
                first = next((line for line in stream if line.strip()), None)
            if first is not None:
                task = "detect" if len(first.split()) == 5 else "segment"
                break
    pose_category, k = None, 0
    if pose:
        keypoints = dict(db.execute("SELECT key, keypoints FROM classes"))
        ordered = sorted(index.items(), key=lambda pair: int(pair[0]) if pair[0].isdigit() else 1 << 30)
        pose_category = next((name for _, name in ordered if keypoints.get(name)), None)
        k = keypoints.get(pose_category, 0)
    expect = _YoloRows(task, index_of, pose_category, k)
    db.execute("UPDATE items SET done = 0")
    for name in files:
        found = []
        with archive.open(name) as stream:
            for number, raw in enumerate(stream, 1):
                tokens = raw.decode("utf-8", "replace").split()
                if not tokens:
                    continue
                if tokens[0] not in index:
                    report.add(f"{name} line {number}: class index not in data.yaml")
                    continue
                try:
                    values = [float(t) for t in tokens[1:]]
                except ValueError:
                    report.add(f"{name} line {number} is not a class index and numbers")
                    continue
                found.append((number, (tokens[0], values, " ".join(tokens))))
        try:
            item, pairs, extra, missing, matched, _, provenance = _match_file(
                db,
                name[: -len(".txt")],
                "yolo",
                found,
                chosen,
                expect,
                key=lambda value: value[2],
                same=_yolo_same,
                fields=_yolo_fields,
            )
        except _UNRENDERABLE as error:
            report.add(f"{name}: its item's published labels cannot be checked ({type(error).__name__})")
            continue
        if item is None:
            report.add(f"{name} is the label file of no item the export takes")
            continue
        _record_references(
            db,
            [(f"{name}:{n}", uid, name, value[2], provenance[uid]) for (n, value), (uid, _) in matched]
            + [(f"{name}:{n}", None, name, None, None) for (n, _), _ in pairs]
            + [(f"{name}:{n}", None, name, None, None) for n, _ in extra],
        )
        _report_file(report, name, "line", item, pairs, extra, missing, expect.describe)
    _report_unmatched_items(db, chosen, report, "YOLO label file")
    _check_yolo_settings(archive, db, pose_category, report)


def _yolo_settings(archive) -> tuple[dict, list[str]]:
    """data.yaml's top-level "key: value" settings, each value read as JSON (the writer's spelling)
    or kept as text, kpt_names' one entry as its value; and the keys that are there twice."""
    settings: dict = {}
    twice = []
    with archive.open("data.yaml") as stream:
        lines = [raw.decode("utf-8", "replace").rstrip("\r\n") for raw in stream]
    for number, line in enumerate(lines):
        if line.startswith(("#", " ")) or ":" not in line:
            continue
        key, _, value = line.partition(":")
        value = value.strip()
        if (
            key == "kpt_names"
            and not value
            and number + 1 < len(lines)
            and lines[number + 1].startswith("  ")
        ):
            value = lines[number + 1].partition(":")[2].strip()
        if key in settings:
            twice.append(key)
        try:
            settings[key] = json.loads(value) if value else None
        except ValueError:
            settings[key] = value
    return settings, twice


def _check_yolo_settings(archive, db, pose_category: str | None, report: _LabelFailures) -> None:
    """data.yaml's train, val and test point at the export's splits as the writer points them (train
    at images/train or images/default, val at images/val or, without one, at train's first folder;
    test only when there is one), and a pose export's kpt_shape, kpt_names and flip_idx are its pose
    class's: what Ultralytics trains on is what was published."""
    settings, twice = _yolo_settings(archive)
    for key in twice:
        report.add(f"data.yaml: {key} is there twice")
    order = sorted(
        {
            row[0] or DEFAULT_SPLIT_FOLDER
            for row in db.execute("SELECT DISTINCT split FROM items WHERE done = 1")
        },
        key=lambda name: (SPLIT_ORDER.get(name, 9), name),
    )
    train = [f"images/{s}" for s in order if s in ("train", "default")] or [f"images/{s}" for s in order]
    val = [f"images/{s}" for s in order if s == "val"] or train[:1]
    wanted = {"train": train, "val": val, "test": ["images/test"] if "test" in order else None}
    for key, paths in wanted.items():
        found = settings.get(key)
        if paths is None:
            if key in settings:
                report.add(f"data.yaml: {key} points at {_short(found)}, a split the export does not hold")
        elif not _same(found, paths[0] if len(paths) == 1 else paths):
            report.add(f"data.yaml: {key} points at {_short(found)}, not at the export's {', '.join(paths)}")
    pose = None
    if pose_category is not None:
        row = db.execute("SELECT pose FROM classes WHERE key = ?", (pose_category,)).fetchone()
        pose = json.loads(row[0]) if row and row[0] else None
    if pose is None:
        for key in ("kpt_shape", "flip_idx", "kpt_names"):
            if key in settings:
                report.add(f"data.yaml: {key} in an export without a pose class")
        return
    names, flip_idx = pose[0], pose[2] if len(pose) > 2 else None
    if not _same(settings.get("kpt_shape"), [len(names), 3]):
        report.add(f"data.yaml: kpt_shape {_short(settings.get('kpt_shape'))} is not [{len(names)}, 3]")
    if not _same(settings.get("kpt_names"), names):
        report.add(f"data.yaml: kpt_names differ from class {_short(pose_category)}'s keypoint names")
    wanted_flip = (
        flip_idx if isinstance(flip_idx, list) and flip_idx and len(flip_idx) == len(names) else None
    )
    if not _same(settings.get("flip_idx"), wanted_flip):
        report.add(f"data.yaml: flip_idx differs from class {_short(pose_category)}'s")


PROVENANCE_CSV = "provenance.csv"
# provenance.csv's columns, and the content row field each is checked against.
_PROVENANCE_FIELDS = (
    ("label_uid", "key"),
    ("item", "item"),
    ("category", "category"),
    ("geometry_type", "geometry_type"),
    ("is_final", "is_final"),
    ("annotator", "annotator"),
    ("made_at", "made_at"),
    ("guideline_version", "guideline_version"),
    ("source", "source"),
    ("model_name", "model_name"),
    ("model_version", "model_version"),
)


def _moment(value) -> str:
    """A time as one text whatever its ISO form (``+00:00`` or another offset, with or without
    microseconds); '' for none; the text itself when it is not a time (then it must match as text)."""
    if not value:
        return ""
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    if moment.tzinfo is None:
        return str(value)
    return moment.timestamp().hex()


def _provenance_values(row: dict) -> tuple:
    """A content labels row as provenance.csv writes it (guideline: its tag; flags: true/false)."""
    guideline = row.get("guideline_version")
    tag = str(guideline).rsplit(" / ", 1)[-1] if guideline else ""
    return (
        str(row.get("item")),
        str(row.get("category")),
        str(row.get("geometry_type")),
        "true" if row.get("is_final") else "false",
        str(row.get("annotator") or ""),
        _moment(row.get("made_at")),
        tag,
        str(row.get("source") or ""),
        str(row.get("model_name") or ""),
        str(row.get("model_version") or ""),
    )


def _check_provenance_csv(archive, db, failures: list[str]) -> None:
    """Every row of provenance.csv says what the published label it names says (who, when, under
    which guideline, by which means, and its item, class, kind and final flag): a provenance file
    changed in the archive, or written from a database changed behind the ledger's back, fails.
    Rows are matched by uid in the run's SQLite file (``published``, filled by ``_load_labels``):
    memory does not grow with the labels."""
    import csv
    import io

    report = _LabelFailures(failures)
    columns = [name for name, _ in _PROVENANCE_FIELDS]
    with archive.open(PROVENANCE_CSV) as raw:
        reader = csv.reader(io.TextIOWrapper(raw, encoding="utf-8", newline=""))
        header = next(reader, None)
        if header != columns:
            failures.append(f"{PROVENANCE_CSV} does not have the columns {', '.join(columns)}")
            return
        db.execute("CREATE TABLE listed (uid TEXT PRIMARY KEY)")
        for line, values in enumerate(reader, start=2):
            where = f"{PROVENANCE_CSV} line {line}"
            if len(values) != len(columns):
                report.add(f"{where}: {len(values)} fields, not {len(columns)}")
                continue
            uid, *rest = values
            if db.execute("INSERT OR IGNORE INTO listed VALUES (?)", (uid,)).rowcount == 0:
                report.add(f"{where}: label {_short(uid)} listed twice")
                continue
            found = db.execute("SELECT v FROM published WHERE uid = ?", (uid,)).fetchone()
            if found is None:
                report.add(f"{where}: label {_short(uid)} is not a published label")
                continue
            rest[5] = _moment(rest[5])
            published = json.loads(found[0])
            for index, (name, _) in enumerate(_PROVENANCE_FIELDS[1:]):
                if rest[index] != published[index]:
                    report.add(f"{where}: {name} of label {_short(uid)} differs from the published label")
                    break
    report.close()


def _check_voc_yolo_classes(archive, names: list[str], failures: list[str]) -> None:
    """The class lists of VOC and YOLO exports name published classes: labelmap.txt, and data.yaml's
    names (their objects and rows are checked against the published labels by _check_voc, _check_yolo)."""
    if "labelmap.txt" not in names and "data.yaml" not in names:
        return
    classes = {str(r.get("key")) for r in _jsonl(archive, "content/categories.jsonl")}
    report = _LabelFailures(failures)
    if "labelmap.txt" in names:
        with archive.open("labelmap.txt") as stream:
            for raw in stream:
                line = raw.decode("utf-8", "replace")
                if line.startswith("#"):
                    continue  # the "# label:color_rgb:parts:actions" header
                name = line.split(":", 1)[0].strip()
                if name and name != "background" and name not in classes:
                    report.add(f"labelmap.txt: class {_short(name)} is not a published class")
    if "data.yaml" in names:
        for label in _yolo_names(archive)[0].values():
            if label not in classes:
                report.add(f"data.yaml: class {_short(label)} is not a published class")
    report.close()


# --- Merkle verification, duplicated from governance/merkle.py on purpose ------------------------


class _ProofError(ValueError):
    """A Merkle proof did not verify; the message is the failure shown to the auditor."""


def _leaf_hash(entry: bytes) -> bytes:
    """Return SHA-256(0x00 || entry)."""
    return hashlib.sha256(b"\x00" + entry).digest()


def _node_hash(left: bytes, right: bytes) -> bytes:
    """Return SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _root(leaf_hashes: Sequence[bytes]) -> bytes:
    """Return the Merkle tree hash, pairing level by level and promoting an unpaired last node."""
    if not leaf_hashes:
        return hashlib.sha256(b"").digest()
    level = list(leaf_hashes)
    while len(level) > 1:
        # No zip(strict=False) here: the verifier still runs on Python 3.9.
        paired = [_node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def _popcount(value: int) -> int:
    """Return the number of set bits (int.bit_count needs Python 3.10)."""
    return bin(value).count("1")


def _verify_inclusion(
    *, leaf_hash: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check an inclusion proof with RFC 9162 section 2.1.3.2; raise _ProofError saying what failed."""
    if index >= tree_size:
        raise _ProofError(f"leaf index {index} is out of range for the signed tree of size {tree_size}")
    inner = (index ^ (tree_size - 1)).bit_length()
    expected = inner + _popcount(index >> inner)
    if len(proof) != expected:
        raise _ProofError(
            f"inclusion proof has {len(proof)} hashes, "
            f"leaf {index} of a tree of size {tree_size} needs {expected}"
        )
    fn, sn, r = index, tree_size - 1, leaf_hash
    for p in proof:
        if fn & 1 or fn == sn:
            r = _node_hash(p, r)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            r = _node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0 or r != root:
        raise _ProofError(INCLUSION_MISMATCH)


def _verify_consistency(
    *, old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Check a consistency proof with RFC 9162 section 2.1.4.2; raise _ProofError saying what failed."""
    if old_size > new_size:
        raise _ProofError(f"the log shrank: old tree size {old_size} is larger than new tree size {new_size}")
    if old_size == 0 or old_size == new_size:
        if proof:
            raise _ProofError(
                f"consistency proof has {len(proof)} hashes, sizes {old_size} and {new_size} need 0"
            )
        if old_size == new_size and old_root != new_root:
            raise _ProofError(
                f"two different signed roots for the same tree size {new_size}: the log was rewritten"
            )
        return
    shift = (old_size & -old_size).bit_length() - 1
    inner = ((old_size - 1) ^ (new_size - 1)).bit_length()
    seed = 0 if old_size == 1 << shift else 1
    expected = seed + inner - shift + _popcount((old_size - 1) >> inner)
    if len(proof) != expected:
        raise _ProofError(
            f"consistency proof has {len(proof)} hashes, sizes {old_size} to {new_size} need {expected}"
        )
    path = list(proof)
    if not seed:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if fn & 1 or fn == sn:
            fr = _node_hash(c, fr)
            sr = _node_hash(c, sr)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            sr = _node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise _ProofError("consistency proof does not lead to the new signed root")
    if fr != old_root:
        raise _ProofError("consistency proof does not rebuild the old signed root: the log was rewritten")
    if sr != new_root:
        raise _ProofError("consistency proof does not lead to the new signed root")


# --- Command line ---------------------------------------------------------------------------------


class _InputError(Exception):
    """An input file could not be read or parsed."""


def _read_json(path: str) -> Any:
    """Return the parsed JSON of a file, or raise _InputError naming the file."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise _InputError(f"cannot read {path}: {error}") from error


def _read_key(argument: str) -> Ed25519PublicKey:
    """Return the public key from a PEM or hex file, the JSON of ``/api/v1/ledger/public-key/``,
    or 64 hex characters given directly."""
    path = Path(argument)
    try:
        raw = path.read_bytes() if path.is_file() else argument.encode("utf-8")
        if raw.lstrip().startswith(b"{"):
            document = json.loads(raw)
            if not isinstance(document, dict) or not isinstance(document.get("public_key"), str):
                raise ValueError('the JSON has no "public_key" string')
            raw = document["public_key"].encode("utf-8")
        return load_public_key(raw)
    except (OSError, ValueError, UnsupportedAlgorithm) as error:
        raise _InputError(f"cannot read the public key {argument}: {error}") from error


def _bundle_key(bundle: dict, name: str) -> Ed25519PublicKey:
    """The key a bundle carries (the server adds it), for a check that is then only as good as the bundle."""
    carried = bundle.get("public_key")
    if not isinstance(carried, str):
        raise _InputError(f"{name} carries no public key: give the registry's key with --key")
    try:
        return load_public_key(carried)
    except (ValueError, UnsupportedAlgorithm) as error:
        raise _InputError(f"the public key inside {name} cannot be read: {error}") from error


def _normalise_fingerprint(value: str) -> str:
    text = value.strip().lower().replace(":", "")
    if not _HEX64.fullmatch(text):
        raise _InputError(
            "--fingerprint must be 64 hex characters (the key_id of /api/v1/ledger/public-key/)"
        )
    return text


def _check_fingerprint(key: Ed25519PublicKey, fingerprint: str | None) -> Result | None:
    """A failed Result when the key is not the pinned one; None when it is, or nothing is pinned."""
    if fingerprint is None or key_id(key) == fingerprint:
        return None
    return Result(failures=[f"the key's fingerprint {key_id(key)} is not the pinned {fingerprint}"])


def main(argv: Sequence[str] | None = None) -> int:
    """Run the verifier from the command line; return 0 when valid, 1 when not, 2 on unreadable input."""
    parser = argparse.ArgumentParser(description="Verify a governance ledger event or tree heads offline.")
    parser.add_argument(
        "--key",
        help="the registry's Ed25519 public key, pinned: PEM file, hex file, 64 hex chars, or the JSON of "
        "/api/v1/ledger/public-key/. Optional with --bundle (then the bundle's own key is used, UNPINNED)",
    )
    parser.add_argument(
        "--fingerprint",
        help="pin the key by its fingerprint (key_id: SHA-256 of the raw key, 64 hex chars) instead of a file",
    )
    parser.add_argument("--bundle", help='JSON file {"tree_head": ..., "event": ..., "proof": ...}')
    parser.add_argument(
        "--history",
        help="a label's history JSON file (GET /api/v1/labels/<uid>/history/): every event, proof and geometry",
    )
    parser.add_argument("--head", help="signed tree head JSON file")
    parser.add_argument("--event", help="event JSON file")
    parser.add_argument("--proof", help='inclusion proof JSON file {"leaf_index": ..., "audit_path": [...]}')
    parser.add_argument("--events", help="JSON list of every event from the first, to check the whole chain")
    parser.add_argument("--old-head", help="older signed tree head JSON file, with --head and --consistency")
    parser.add_argument("--consistency", help="consistency proof JSON file: a list of hex hashes")
    parser.add_argument("--archive", help="an export archive (zip) to check against the signed ledger")
    args = parser.parse_args(argv)

    pinned = True
    try:
        fingerprint = _normalise_fingerprint(args.fingerprint) if args.fingerprint else None
        if args.key:
            key = _read_key(args.key)
        elif args.bundle or args.history:
            key = None  # read from the bundle below
        elif fingerprint:
            parser.error("--fingerprint alone pins the key of a --bundle; with other inputs give --key")
        else:
            parser.error("--key is required unless you check a --bundle or a --history")
        if args.archive:
            result = verify_archive(args.archive, key)
        elif args.bundle or args.history:
            name = args.bundle or args.history
            bundle = _read_json(name)
            if not isinstance(bundle, dict):
                raise _InputError(f"{name} is not a JSON object")
            if key is None:
                key = _bundle_key(bundle, name)
                pinned = fingerprint is not None
            result = _check_fingerprint(key, fingerprint)
            if result is None and args.history:
                result = verify_history(bundle, key)
            elif result is None:
                result = verify(bundle.get("tree_head"), key, bundle.get("event"), bundle.get("proof"))
                if "geometries" in bundle:
                    result.failures += check_geometries([bundle.get("event")], bundle["geometries"])
        elif args.head and args.event and args.proof:
            result = verify(_read_json(args.head), key, _read_json(args.event), _read_json(args.proof))
        elif args.head and args.events:
            events = _read_json(args.events)
            if not isinstance(events, list):
                raise _InputError(f"{args.events} is not a JSON list")
            result = verify_chain(events, tree_head=_read_json(args.head), public_key=key)
        elif args.old_head and args.head and args.consistency:
            result = verify_consistency(
                old_head=_read_json(args.old_head),
                new_head=_read_json(args.head),
                public_key=key,
                proof_hex_list=_read_json(args.consistency),
            )
        else:
            parser.error(
                "give --archive, or --bundle, or --history, or --head with --event and --proof, "
                "or --head with --events, "
                "or --old-head with --head and --consistency"
            )
        if args.key and fingerprint and result.valid:
            result = _check_fingerprint(key, fingerprint) or result
    except _InputError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return 2

    if not pinned:
        # Checking a bundle against the key it carries shows it is consistent with itself; anyone
        # who rewrites the ledger can sign with a key of their own. Only a pinned key proves origin.
        fp = key_id(key)
        print(f"UNPINNED: checked against the key inside the bundle, fingerprint {fp}")
        print("  Compare it with the key_id of the registry's GET /api/v1/ledger/public-key/, kept from")
        print(f"  before; then pin it: --fingerprint {fp}  (or --key registry-key.json)")
    if result.valid:
        print("VALID" if pinned else "VALID (UNPINNED)")
        return 0
    for failure in result.failures:
        print(f"FAIL: {failure}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
