"""The label ledger: chaining, documents, tree heads, proofs, signing keys and publication."""

import base64
import hashlib
import uuid
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.exceptions import ImproperlyConfigured
from django.db import connection

from governance import ledger, verify_offline
from governance.ledger import merkle, signing
from governance.models import LabelEvent, LedgerChunk, TreeHead
from marketplace.catalogue import publication as catalogue_publication
from marketplace.models import Label
from tests import factories as f

from ..conftest import build_version
from .ledger_support import T0, events, ledgered_version, tampering


def sha256_of_json(value) -> str:
    """The hash rule of a label state's geometry, written with the offline verifier's encoder."""
    return hashlib.sha256(verify_offline.canonical_json(value)).hexdigest()


pytestmark = pytest.mark.django_db


def documents(dataset):
    return [
        ledger.event_document(e) for e in LabelEvent.objects.filter(dataset=dataset).select_related("dataset")
    ]


def bundle_is_valid(bundle):
    return verify_offline.verify(bundle["tree_head"], bundle["public_key"], bundle["event"], bundle["proof"])


# --- appending


def test_events_are_numbered_from_zero_and_each_links_to_the_one_before(dataset):
    ledger.append_events(dataset=dataset, events=events(5))

    docs = documents(dataset)
    assert [d["seq"] for d in docs] == [0, 1, 2, 3, 4]
    assert docs[0]["prev_hash"] == "0" * 64
    assert [d["prev_hash"] for d in docs[1:]] == [d["hash"] for d in docs[:-1]]


def test_each_hash_is_what_the_offline_verifier_computes_from_the_served_document(dataset):
    ledger.append_events(dataset=dataset, events=events(4))

    docs = documents(dataset)
    assert all(verify_offline.event_hash(d, d["prev_hash"]) == d["hash"] for d in docs)
    assert verify_offline.verify_chain(docs).valid


def test_the_hash_covers_every_field_that_matters(dataset):
    ledger.append_events(dataset=dataset, events=events(1))
    doc = documents(dataset)[0]

    assert set(doc) == {
        "dataset", "seq", "label_uid", "action", "actor", "occurred_at", "recorded_at", "guideline_version",
        "source", "model_name", "model_version", "payload", "delivery_id", "version_number", "prev_hash", "hash",
    }  # fmt: skip
    for name, other in [
        ("dataset", "other-dataset"), ("seq", 7), ("label_uid", str(uuid.uuid4())), ("action", "deleted"),
        ("actor", "A-99"), ("occurred_at", "2026-01-01T00:00:00.000000+00:00"),
        ("recorded_at", "2026-01-01T00:00:00.000000+00:00"), ("guideline_version", "v9"), ("source", "model"),
        ("model_name", "m"), ("model_version", "2"), ("payload", {}), ("delivery_id", 99), ("version_number", 9),
    ]:  # fmt: skip
        assert verify_offline.event_hash({**doc, name: other}, doc["prev_hash"]) != doc["hash"], name


def test_appending_continues_the_chain_of_earlier_appends(dataset):
    ledger.append_events(dataset=dataset, events=events(3))
    ledger.append_events(dataset=dataset, events=events(2, start=3))

    docs = documents(dataset)
    assert [d["seq"] for d in docs] == [0, 1, 2, 3, 4]
    assert verify_offline.verify_chain(docs).valid


def test_a_generator_is_consumed_in_batches_not_all_at_once(dataset, monkeypatch):
    monkeypatch.setattr(ledger.chain, "BATCH_SIZE", 4)
    pulled, written = [], []
    real_write = ledger.chain._write

    def spy_write(dataset_id, prepared, recorded_at):
        written.append((len(pulled), len(prepared)))
        real_write(dataset_id, prepared, recorded_at)

    def generator():
        for event in events(10):
            pulled.append(event)
            yield event

    monkeypatch.setattr(ledger.chain, "_write", spy_write)
    assert ledger.append_events(dataset=dataset, events=generator()) == 10
    # Each batch is written after pulling at most one batch more than has been written.
    assert written == [(4, 4), (8, 4), (10, 2)]


def test_the_chains_of_two_datasets_are_independent(dataset, supplier_org):
    other = f.DatasetFactory(supplier=supplier_org, slug="other")
    ledger.append_events(dataset=dataset, events=events(2))
    ledger.append_events(dataset=other, events=events(3, start=10))

    assert [d["seq"] for d in documents(other)] == [0, 1, 2]
    assert documents(other)[0]["prev_hash"] == "0" * 64


def test_payload_numbers_come_back_from_the_database_as_they_were_hashed(dataset):
    awkward = {"floats": [1e16, -0.0, 1e-7, 0.1, 2.5e300, 123456789.123456789], "big": 2**70, "t": (1, 2)}
    ledger.append_events(dataset=dataset, events=events(1, payload=awkward))

    assert ledger.verify_dataset(dataset=dataset).ok


def test_it_refuses_payloads_that_are_not_json(dataset):
    with pytest.raises(ValueError):
        ledger.append_events(dataset=dataset, events=events(1, payload={"x": float("nan")}))
    with pytest.raises(ValueError):
        ledger.append_events(dataset=dataset, events=events(1, payload={1: "int key"}))
    with pytest.raises(ValueError):
        ledger.append_events(dataset=dataset, events=events(1, payload={"when": T0}))
    assert not LabelEvent.objects.filter(dataset=dataset).exists()


def test_it_refuses_unknown_actions_and_naive_times(dataset):
    with pytest.raises(ledger.LedgerError):
        ledger.append_events(dataset=dataset, events=[ledger.EventData(None, "invented", "x", T0)])
    with pytest.raises(ledger.LedgerError):
        ledger.append_events(
            dataset=dataset, events=[ledger.EventData(None, "created", "x", T0.replace(tzinfo=None))]
        )


def test_text_with_tabs_newlines_and_backslashes_survives_the_bulk_path(dataset):
    tricky = "A-1\t\\N\n\r\\ é 😀"
    ledger.append_events(
        dataset=dataset,
        events=[
            ledger.EventData(uuid.uuid4(), "created", tricky, T0, payload={"note": tricky}, source=tricky)
        ],
    )

    event = LabelEvent.objects.get(dataset=dataset)
    assert event.actor == tricky and event.payload == {"note": tricky}
    assert ledger.verify_dataset(dataset=dataset).ok


# --- label events


def test_created_events_say_who_when_under_which_guideline_and_what(dataset, supplier_org):
    guideline = f.GuidelineVersionFactory(guideline=f.GuidelineFactory(dataset=dataset), tag="v1.2")
    annotator = f.AnnotatorFactory(organization=supplier_org, pseudonym="A-17")
    version = build_version(dataset, publish=False, items=1, guideline_version=guideline, annotator=annotator)
    label = Label.objects.filter(version=version, category__name="car").get()
    Label.objects.filter(pk=label.pk).update(made_at=T0)

    ledger.append_events(
        dataset=dataset,
        events=ledger.label_created_events(
            Label.objects.filter(pk=label.pk), delivery_id=7, version_number=1
        ),
    )

    doc = documents(dataset)[0]
    assert doc["action"] == "created"
    assert doc["label_uid"] == str(label.uid)
    assert doc["actor"] == "A-17"
    assert doc["occurred_at"] == "2026-03-02T09:00:00.000000+00:00"
    assert doc["guideline_version"] == "v1.2"
    assert doc["source"] == "human"
    assert (doc["delivery_id"], doc["version_number"]) == (7, 1)
    assert doc["payload"] == {
        "after": {
            "category": "car",
            "geometry_type": "bbox",
            # The geometry stays in the label row; the event binds it by hash (ledger.events' rule).
            "geometry_sha256": sha256_of_json({"bbox": [10.0, 20.0, 100.0, 50.0]}),
            "attributes": {},
            "is_final": True,
            "item": "images/train/0000.jpg",
        }
    }


def test_a_model_made_label_names_the_model_as_its_actor(dataset):
    version = build_version(dataset, publish=False, items=1)
    label = Label.objects.filter(version=version).first()
    label.source, label.model_name, label.model_version = "model", "lane-prelabel", "0.9.3"

    event = next(ledger.label_created_events([label]))

    assert (event.actor, event.model_name, event.model_version) == ("lane-prelabel", "lane-prelabel", "0.9.3")


def test_version_events_record_new_changed_and_removed_labels_by_uid(dataset):
    v1 = build_version(dataset, number=1, items=2, publish=False)
    ledger.append_events(dataset=dataset, events=ledger.label_version_events(version=v1))
    assert {e.action for e in LabelEvent.objects.filter(dataset=dataset)} == {"created"}
    catalogue_publication.publish_version(version=v1)
    v2 = build_version(dataset, number=2, items=0, publish=False)
    kept, changed = Label.objects.filter(version=v1, item__key="images/train/0000.jpg").order_by("id")
    item = f.ItemFactory(version=v2, key="images/train/0000.jpg", split="val")
    for source, geometry in (
        (kept, kept.geometry),
        (changed, {"bbox": [1.0, 1.0, 5.0, 5.0], "keypoints": []}),
    ):
        f.LabelFactory(
            item=item,
            uid=source.uid,
            category=v2.schema.categories.get(name=source.category.name),
            geometry_type=source.geometry_type,
            geometry=geometry,
            attributes=source.attributes,
        )

    diff = list(ledger.label_version_events(version=v2, previous=v1))

    by_uid = {e.label_uid: e for e in diff}
    assert kept.uid not in by_uid
    assert by_uid[changed.uid].action == "modified"
    assert by_uid[changed.uid].payload["before"]["geometry_sha256"] == sha256_of_json(changed.geometry)
    assert by_uid[changed.uid].payload["after"]["geometry_sha256"] == sha256_of_json(
        {"bbox": [1.0, 1.0, 5.0, 5.0], "keypoints": []}
    )
    removed = set(
        Label.objects.filter(version=v1)
        .exclude(item__key="images/train/0000.jpg")
        .values_list("uid", flat=True)
    )
    assert {uid for uid, e in by_uid.items() if e.action == "deleted"} == removed
    assert all("after" not in e.payload for e in diff if e.action == "deleted")
    assert all(e.version_number == 2 for e in diff)


def test_dataset_events_are_refused_label_actions(dataset):
    with pytest.raises(ledger.LedgerError):
        ledger.record_dataset_event(dataset=dataset, action="created", actor="x")


# --- publication, tree heads and proofs


def test_publishing_records_the_publication_and_signs_a_tree_head_over_everything_before(dataset):
    version = ledgered_version(dataset, items=2)

    last = LabelEvent.objects.filter(dataset=dataset).order_by("-seq").first()
    head = TreeHead.objects.get(dataset=dataset)
    assert (last.action, last.version_number, last.actor) == ("version_published", 1, "org:northwind")
    assert last.payload["content_hash"] == version.content_hash
    assert (head.version, head.tree_size) == (version, 5)
    assert verify_offline.verify_chain(
        documents(dataset), tree_head=ledger.tree_head_document(head), public_key=ledger.public_key_pem()
    ).valid


def test_the_tree_head_signature_verifies_with_the_public_key_and_names_its_key_id(dataset):
    ledgered_version(dataset, items=1)
    head = ledger.tree_head_document(TreeHead.objects.get(dataset=dataset))

    public_key = verify_offline.load_public_key(ledger.public_key_pem())
    public_key.verify(base64.b64decode(head["signature"]), verify_offline.tree_head_message(head))
    assert head["key_id"] == verify_offline.key_id(public_key) == signing.key_id()


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 31])
def test_inclusion_proofs_from_cached_chunks_equal_proofs_over_all_leaves(dataset, monkeypatch, size):
    # chunks of 4 leaves, so small ledgers span several
    monkeypatch.setattr(ledger.tree_heads, "CHUNK_LEVEL", 2)
    ledger.append_events(dataset=dataset, events=events(size))
    head = ledger.sign_tree_head(dataset=dataset)
    docs = documents(dataset)
    leaves = [verify_offline.event_leaf_hash(d) for d in docs]

    assert head.root_hash == merkle.root(leaves).hex()
    assert LedgerChunk.objects.filter(dataset=dataset, level=2).count() == size // 4
    for event in LabelEvent.objects.filter(dataset=dataset).select_related("dataset"):
        proof = ledger.inclusion_proof_for(event)
        assert proof["audit_path"] == [h.hex() for h in merkle.inclusion_proof(leaves, event.seq)]
        assert bundle_is_valid(ledger.proof_bundle(event)).valid


@pytest.mark.parametrize(("old", "new"), [(1, 2), (3, 7), (4, 8), (5, 17), (8, 9), (6, 6), (0, 5), (13, 31)])
def test_consistency_proofs_between_tree_heads_verify_offline(dataset, monkeypatch, old, new):
    monkeypatch.setattr(ledger.tree_heads, "CHUNK_LEVEL", 2)
    ledger.append_events(dataset=dataset, events=events(old))
    old_head = ledger.sign_tree_head(dataset=dataset)
    ledger.append_events(dataset=dataset, events=events(new - old, start=old))
    new_head = ledger.sign_tree_head(dataset=dataset)
    leaves = [verify_offline.event_leaf_hash(d) for d in documents(dataset)]

    proof = ledger.consistency_proof_for(old_head, new_head)

    assert proof == [h.hex() for h in merkle.consistency_proof(leaves, old)]
    result = verify_offline.verify_consistency(
        old_head=ledger.tree_head_document(old_head),
        new_head=ledger.tree_head_document(new_head),
        public_key=ledger.public_key_pem(),
        proof_hex_list=proof,
    )
    assert result.valid, result.failures


def test_an_event_after_the_last_tree_head_has_no_proof_yet(dataset):
    ledgered_version(dataset, items=1)
    event = ledger.record_dataset_event(dataset=dataset, action="export_downloaded", actor="user:1")

    with pytest.raises(ledger.LedgerError, match="not covered"):
        ledger.inclusion_proof_for(event)


def test_a_proof_against_an_older_head_still_verifies(dataset):
    ledgered_version(dataset, items=1)
    first_head = TreeHead.objects.get(dataset=dataset)
    ledgered_version(dataset, number=2, items=1)
    event = LabelEvent.objects.select_related("dataset").get(dataset=dataset, seq=0)

    assert bundle_is_valid(ledger.proof_bundle(event, head=first_head)).valid
    assert bundle_is_valid(ledger.proof_bundle(event)).valid


def test_it_refuses_to_sign_over_a_ledger_that_no_longer_extends_an_earlier_head(dataset):
    ledgered_version(dataset, items=1)
    with tampering() as cursor:
        cursor.execute(
            "UPDATE governance_labelevent SET hash = %s WHERE dataset_id = %s AND seq = 0",
            ["ab" * 32, dataset.pk],
        )

    with pytest.raises(ledger.LedgerIntegrityError, match="no longer extends"):
        ledger.sign_tree_head(dataset=dataset)


def test_the_first_publication_of_an_empty_dataset_signs_one_event(dataset):
    build_version(dataset, items=0)

    head = TreeHead.objects.get(dataset=dataset)
    assert head.tree_size == 1


# --- the signing key


def test_the_configured_key_signs_and_a_bad_one_is_refused(settings, dataset):
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    settings.LEDGER_SIGNING_KEY = pem.replace("\n", "\\n")  # one-line env var form

    assert signing.key_id() == verify_offline.key_id(key.public_key())
    head = ledger.sign_tree_head(dataset=dataset)
    assert head.key_id == signing.key_id()

    settings.LEDGER_SIGNING_KEY = "not a key"
    with pytest.raises(ImproperlyConfigured):
        signing.signing_key()


def test_without_a_configured_key_a_development_key_is_generated_once_and_reused(settings, tmp_path, caplog):
    settings.LEDGER_SIGNING_KEY = ""
    settings.VAR_DIR = tmp_path
    signing._development_key.cache_clear()
    try:
        first = signing.key_id()
        signing._development_key.cache_clear()
        assert signing.key_id() == first
        assert (tmp_path / signing.DEV_KEY_NAME).stat().st_mode & 0o077 == 0
        assert "LEDGER_SIGNING_KEY is not set" in caplog.text
    finally:
        signing._development_key.cache_clear()


# --- concurrency


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks: PostgreSQL")
def test_concurrent_appends_to_one_dataset_never_fork_the_chain(supplier_org):
    import threading

    from django.db import connections, transaction

    dataset = f.DatasetFactory(supplier=supplier_org, slug="busy")
    barrier = threading.Barrier(4)
    errors = []

    def worker(n):
        try:
            barrier.wait()
            with transaction.atomic():
                ledger.append_events(dataset=dataset, events=events(25, start=n * 100, actor=f"A-{n}"))
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert not errors
    docs = documents(dataset)
    assert [d["seq"] for d in docs] == list(range(100))
    assert verify_offline.verify_chain(docs).valid
    # Each append is one contiguous run: the lock held one appender back until the other committed.
    actors = [d["actor"] for d in docs]
    assert all(len(set(actors[i : i + 25])) == 1 for i in range(0, 100, 25))


def test_recorded_at_is_the_time_of_the_append(dataset):
    before = T0.now(T0.tzinfo) - timedelta(seconds=1)
    ledger.append_events(dataset=dataset, events=events(1))

    assert LabelEvent.objects.get(dataset=dataset).recorded_at > before
