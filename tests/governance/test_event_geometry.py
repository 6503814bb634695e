"""Label events bind the geometry by its hash: histories and bundles carry the geometries, checked offline.

The rule (``governance/ledger/events.py``, ``verify_offline.py``): a label state holds ``geometry_sha256``
= SHA-256 of the geometry's canonical JSON; the geometry stays in the label row. Events written before
the rule hold the geometry inline and stay valid. The hashes below are computed here with the standard
library's ``json.dumps`` under the documented rule, not with the server's encoder.
"""

import copy
import hashlib
import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from django.urls import reverse

from governance import ledger, verify_offline
from governance.models import LabelEvent, ReviewTask
from governance.quality import consensus
from marketplace.formats import model as fmt
from marketplace.models import Label

from ..conftest import build_version
from .ledger_support import ledgered_version
from .quality_support import multi_annotated_version

pytestmark = pytest.mark.django_db

VERIFIER = Path(verify_offline.__file__)


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def rule_hash(geometry) -> str:
    """The documented rule, written out: sorted keys, no spaces, UTF-8, no NaN."""
    text = json.dumps(geometry, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def run_verifier(tmp_path, history: dict, *, mode: str = "--history"):
    (tmp_path / "key.pem").write_text(history["public_key"])
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(history))
    return subprocess.run(
        [sys.executable, str(VERIFIER), "--key", str(tmp_path / "key.pem"), mode, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def two_versions(dataset):
    """v1 published; v2 published with one label's box moved and one label removed."""
    v1 = ledgered_version(dataset, items=2)
    v2 = build_version(dataset, number=2, items=2, publish=False)
    moved = Label.objects.filter(version=v2, geometry_type=fmt.BBOX).order_by("id").first()
    # build_version made new uids: give v2's labels v1's, so that they are the same labels.
    for new, old in zip(
        Label.objects.filter(version=v2).order_by("id"),
        Label.objects.filter(version=v1).order_by("id"),
        strict=True,
    ):
        Label.objects.filter(pk=new.pk).update(uid=old.uid)
    moved.refresh_from_db()
    Label.objects.filter(pk=moved.pk).update(geometry={"bbox": [1.0, 2.0, 3.5, 4.0]})
    ledger.append_events(dataset=dataset, events=ledger.label_version_events(version=v2, previous=v1))
    from marketplace.catalogue import publication

    publication.publish_version(version=v2, release_notes="Release 2")
    v2.refresh_from_db()
    return v1, v2, Label.objects.get(pk=moved.pk)


def test_a_created_event_binds_the_stored_geometry_by_its_hash(dataset):
    version = ledgered_version(dataset, items=2)

    for label in Label.objects.filter(version=version):
        [event] = LabelEvent.objects.filter(dataset=dataset, label_uid=label.uid)
        assert "geometry" not in event.payload["after"]
        assert event.payload["after"]["geometry_sha256"] == rule_hash(label.geometry)


def test_a_history_carries_the_geometries_its_events_bind_and_verifies_offline(
    api_for, auditor, two_versions, tmp_path
):
    v1, _v2, moved = two_versions
    before = Label.objects.get(version=v1, uid=moved.uid)

    history = api_for(auditor).get(f"/api/v1/labels/{moved.uid}/history/").json()

    assert [e["event"]["action"] for e in history["events"]] == ["created", "modified"]
    modified = history["events"][1]["event"]["payload"]
    assert modified["before"]["geometry_sha256"] == rule_hash(before.geometry)
    assert modified["after"]["geometry_sha256"] == rule_hash({"bbox": [1.0, 2.0, 3.5, 4.0]})
    assert history["geometries"] == {
        rule_hash(before.geometry): before.geometry,
        rule_hash(moved.geometry): moved.geometry,
    }
    run = run_verifier(tmp_path, history)
    assert (run.returncode, run.stdout.strip()) == (0, "VALID"), run.stdout + run.stderr


def test_a_geometry_altered_in_a_history_bundle_fails_offline(api_for, auditor, two_versions, tmp_path):
    _v1, _v2, moved = two_versions
    history = api_for(auditor).get(f"/api/v1/labels/{moved.uid}/history/").json()
    digest = rule_hash(moved.geometry)

    tampered = copy.deepcopy(history)
    tampered["geometries"][digest]["bbox"][0] = 1.5  # the box moved by half a pixel, in the bundle only
    run = run_verifier(tmp_path, tampered)
    assert run.returncode == 1
    assert (
        "the bundle's geometry does not hash to the event's geometry_sha256: geometry altered" in run.stdout
    )
    assert "'after' state" in run.stdout  # which state of which event

    dropped = copy.deepcopy(history)
    del dropped["geometries"][digest]
    run = run_verifier(tmp_path, dropped)
    assert run.returncode == 1 and "no geometry in the bundle" in run.stdout


def test_an_event_edited_in_a_history_bundle_fails_offline(api_for, auditor, two_versions, tmp_path):
    _v1, _v2, moved = two_versions
    history = api_for(auditor).get(f"/api/v1/labels/{moved.uid}/history/").json()

    history["events"][0]["event"]["actor"] = "someone else"
    run = run_verifier(tmp_path, history)

    assert run.returncode == 1 and "event 0 (seq" in run.stdout and "field edited?" in run.stdout


def test_a_one_event_bundle_carries_its_geometry_and_a_changed_one_fails(
    api_for, auditor, two_versions, tmp_path
):
    _v1, _v2, moved = two_versions
    event = LabelEvent.objects.get(dataset=moved.version.dataset, label_uid=moved.uid, action="modified")

    bundle = api_for(auditor).get(f"/api/v1/ledger/events/{event.pk}/bundle/").json()
    assert set(bundle["geometries"]) == {
        event.payload["before"]["geometry_sha256"],
        event.payload["after"]["geometry_sha256"],
    }
    assert run_verifier(tmp_path, bundle, mode="--bundle").returncode == 0

    bundle["geometries"][rule_hash(moved.geometry)] = {"bbox": [9.0, 2.0, 3.5, 4.0]}
    run = run_verifier(tmp_path, bundle, mode="--bundle")
    assert run.returncode == 1 and "geometry altered" in run.stdout


def test_events_written_before_the_rule_keep_their_inline_geometry_and_verify(
    dataset, api_for, auditor, tmp_path
):
    version = build_version(dataset, items=1, publish=False)
    label = Label.objects.filter(version=version).select_related("item", "category").first()
    old_form = {
        "category": label.category.name,
        "geometry_type": label.geometry_type,
        "geometry": label.geometry,
        "attributes": label.attributes,
        "is_final": label.is_final,
        "item": label.item.key,
    }
    ledger.append_events(
        dataset=dataset,
        events=[ledger.label_event(label, action="created", include_after=False, extra={"after": old_form})],
    )
    from marketplace.catalogue import publication

    publication.publish_version(version=version, release_notes="Release 1")

    history = api_for(auditor).get(f"/api/v1/labels/{label.uid}/history/").json()
    assert history["events"][0]["event"]["payload"]["after"]["geometry"] == label.geometry
    assert history["geometries"] == {}  # nothing bound by hash: nothing to carry
    run = run_verifier(tmp_path, history)
    assert (run.returncode, run.stdout.strip()) == (0, "VALID"), run.stdout


def test_the_history_page_shows_each_bound_geometry_beside_its_hash(client_for, auditor, two_versions):
    _v1, _v2, moved = two_versions

    page = client_for(auditor).get(reverse("label-history", args=[moved.uid])).content.decode()

    assert rule_hash(moved.geometry) in page
    assert "3.5" in page  # the moved box, read from the label row


def test_a_reviewer_fix_keeps_the_overwritten_geometry_inline_so_the_history_still_resolves(
    dataset, supplier
):
    version = multi_annotated_version(dataset, publish=False)
    consensus.build_review_queue(version=version)
    task = ReviewTask.objects.get(version=version)
    car = Label.objects.filter(version=version, item=task.item, is_final=True, geometry_type=fmt.BBOX).first()
    first = car.geometry
    if not LabelEvent.objects.filter(label_uid=car.uid).exists():
        ledger.append_events(
            dataset=dataset, events=ledger.label_created_events(Label.objects.filter(pk=car.pk))
        )

    consensus.fix_review(
        task=task, user=supplier, label_uid=car.uid, geometry={"bbox": [5.0, 5.0, 20.0, 10.0]}
    )

    fix = LabelEvent.objects.get(dataset=dataset, label_uid=car.uid, action="modified")
    assert fix.payload["before"]["geometry"] == first  # the row no longer holds it: the event does
    assert fix.payload["after"]["geometry_sha256"] == rule_hash({"bbox": [5.0, 5.0, 20.0, 10.0]})
    events = list(LabelEvent.objects.filter(dataset=dataset, label_uid=car.uid).order_by("seq"))
    documents = [ledger.event_document(e) for e in events]
    geometries = ledger.events.geometries_of_events(events)
    assert verify_offline.check_geometries(documents, geometries) == []
    car.refresh_from_db()
    assert car.geometry != first and geometries[rule_hash(first)] == first
    # Without any row's geometry, the created event's hash still resolves from the fix's inline
    # "before": only the fix's own "after" (held by the row) is missing.
    [missing] = verify_offline.check_geometries(documents, {})
    assert "'after' state" in missing and f"seq {events[-1].seq}" in missing


def test_an_unchanged_label_has_no_modified_event_even_if_its_numbers_are_written_otherwise(dataset):
    v1 = build_version(dataset, items=1, publish=False)
    v2 = build_version(dataset, number=2, items=1, publish=False)
    label = Label.objects.filter(version=v1, geometry_type=fmt.BBOX).first()
    twin = Label.objects.filter(version=v2, geometry_type=fmt.BBOX).first()
    box = [int(v) if float(v).is_integer() else v for v in label.geometry["bbox"]]
    Label.objects.filter(pk=twin.pk).update(uid=label.uid, geometry={"bbox": box})  # 10 for 10.0
    Label.objects.filter(version=v2).exclude(pk=twin.pk).delete()
    Label.objects.filter(version=v1).exclude(pk=label.pk).delete()

    diff = list(ledger.label_version_events(version=v2, previous=v1))

    assert diff == []  # compared by value, as before the hash rule (whose bytes differ: 10 vs 10.0)


# --------------------------------------------------------------------------- content verification


def raw_update_label(label, geometry, *, text: str | None = None) -> None:
    """Change a released label row behind the triggers' back, as the table owner could (``text``: as spelt)."""
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # ALTER TABLE refuses while deferred foreign-key checks of this transaction are pending.
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            cursor.execute("ALTER TABLE marketplace_label DISABLE TRIGGER USER")
            cursor.execute(
                "UPDATE marketplace_label SET geometry = %s WHERE id = %s",
                [json.dumps(geometry) if text is None else text, label.pk],
            )
            cursor.execute("ALTER TABLE marketplace_label ENABLE TRIGGER USER")
            cursor.execute("SET CONSTRAINTS ALL DEFERRED")
        else:
            triggers = cursor.execute(
                "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'marketplace_label'"
            ).fetchall()
            for name, _sql in triggers:
                cursor.execute(f"DROP TRIGGER {name}")
            cursor.execute(
                "UPDATE marketplace_label SET geometry = %s WHERE id = %s",
                [json.dumps(geometry) if text is None else text, label.pk],
            )
            for _name, sql in triggers:
                cursor.execute(sql)


def test_a_released_row_whose_geometry_no_longer_hashes_to_its_event_is_reported(two_versions):
    from governance.ledger import content_verification

    _v1, v2, moved = two_versions
    assert content_verification.verify_version(v2) is None

    raw_update_label(moved, {"bbox": [1.0, 2.0, 3.5, 40.0]})

    difference = content_verification.verify_label_geometries(v2)
    assert difference.table == "marketplace_label" and difference.field == "geometry"
    assert difference.row == f"uid='{moved.uid}'" and "geometry_sha256" in difference.detail
    assert content_verification.verify_version(v2) is not None  # the content hash says so too


def test_a_row_changed_without_an_event_before_publication_is_found_by_its_event(dataset):
    from governance.ledger import content_verification
    from marketplace.catalogue import publication

    version = build_version(dataset, items=2, publish=False)
    ledger.append_events(
        dataset=dataset, events=ledger.label_created_events(Label.objects.filter(version=version))
    )
    label = Label.objects.filter(version=version, geometry_type=fmt.BBOX).order_by("id").first()
    Label.objects.filter(pk=label.pk).update(geometry={"bbox": [0.0, 0.0, 1.0, 1.0]})  # no event says so
    publication.publish_version(version=version, release_notes="Release 1")
    version.refresh_from_db()

    difference = content_verification.verify_version(version)

    # The content hash was taken of the changed row: only the label's event tells.
    assert (
        difference is not None and difference.row == f"uid='{label.uid}'" and difference.field == "geometry"
    )


def test_a_geometry_is_checked_by_its_stored_bytes_and_by_value_whatever_its_spelling(
    two_versions, monkeypatch
):
    """The stored text is hashed as it is; a spelling other than the rule's is decoded and hashed by the rule."""
    from governance.ledger import content_verification

    _v1, v2, moved = two_versions
    geometry = {"bbox": [1.0, 2.0, 3.5, 4.0]}  # what moved's event binds

    raw_update_label(moved, None, text='{ "bbox" : [1.0,2.0, 3.5,4.0] }')  # the same value, spelt otherwise
    assert content_verification.verify_label_geometries(v2) is None

    canonical = json.dumps(geometry, sort_keys=True, separators=(",", ":"))
    raw_update_label(moved, None, text=canonical)
    # From here the rule's bytes must be enough: nothing is decoded.
    monkeypatch.setattr(content_verification, "geometry_sha256", lambda *a, **k: pytest.fail("decoded"))
    for other in Label.objects.filter(version=v2).exclude(pk=moved.pk):
        raw_update_label(other, None, text=json.dumps(other.geometry, sort_keys=True, separators=(",", ":")))
    assert content_verification.verify_label_geometries(v2) is None

    raw_update_label(moved, None, text=canonical.replace("3.5", "3.25"))  # the rule's spelling, another box
    monkeypatch.undo()
    difference = content_verification.verify_label_geometries(v2)
    assert difference is not None and difference.row == f"uid='{moved.uid}'"


def test_rows_whose_events_hold_the_geometry_inline_verify_and_a_changed_one_is_found(dataset):
    from governance.ledger import content_verification
    from marketplace.catalogue import publication

    version = build_version(dataset, items=2, publish=False)
    labels = list(Label.objects.filter(version=version).select_related("item", "category").order_by("id"))
    old_form = [
        ledger.label_event(
            lab,
            action="created",
            include_after=False,
            extra={"after": {"category": lab.category.name, "geometry": lab.geometry, "item": lab.item.key}},
        )
        for lab in labels
    ]
    ledger.append_events(dataset=dataset, events=old_form)
    publication.publish_version(version=version, release_notes="Release 1")
    version.refresh_from_db()
    assert content_verification.verify_version(version) is None

    raw_update_label(labels[0], {"bbox": [0.0, 0.0, 2.0, 2.0]})
    assert content_verification.verify_label_geometries(version).row == f"uid='{labels[0].uid}'"


# --------------------------------------------------------------------------- a deleted draft's geometries


@pytest.fixture
def deleted_draft(dataset):
    """v1 published; a draft v2 with one label's box moved, its events written, then the draft deleted."""
    from marketplace.workspace import lifecycle

    v1 = ledgered_version(dataset, items=2)
    v2 = build_version(dataset, number=2, items=2, publish=False)
    for new, old in zip(
        Label.objects.filter(version=v2).order_by("id"),
        Label.objects.filter(version=v1).order_by("id"),
        strict=True,
    ):
        Label.objects.filter(pk=new.pk).update(uid=old.uid, geometry=old.geometry)
    moved = Label.objects.filter(version=v2, geometry_type=fmt.BBOX).order_by("id").first()
    moved_geometry = {"bbox": [1.0, 2.0, 3.5, 4.0]}
    Label.objects.filter(pk=moved.pk).update(geometry=moved_geometry)
    ledger.append_events(dataset=dataset, events=ledger.label_version_events(version=v2, previous=v1))
    lifecycle.delete_draft(version=v2)
    return v1, moved.uid, moved_geometry


def test_deleting_a_draft_holds_only_the_geometries_no_other_version_holds(dataset, deleted_draft):
    from governance.models import HeldGeometry

    _v1, uid, moved_geometry = deleted_draft

    held = list(HeldGeometry.objects.filter(dataset=dataset))
    # The unchanged labels' geometries are still in v1's rows: only the moved box needed keeping.
    assert [(h.label_uid, h.sha256, h.geometry) for h in held] == [
        (uid, rule_hash(moved_geometry), moved_geometry)
    ]


def test_a_deleted_drafts_geometry_is_in_the_history_and_verifies_offline(
    api_for, supplier, dataset, deleted_draft, tmp_path
):
    from marketplace.workspace import lifecycle

    _v1, uid, moved_geometry = deleted_draft
    lifecycle.start_draft(dataset=dataset)  # the next draft takes number 2 again: its events are v2's

    history = api_for(supplier).get(f"/api/v1/labels/{uid}/history/").json()

    modified = [e["event"]["payload"] for e in history["events"] if e["event"]["action"] == "modified"]
    assert [m["after"]["geometry_sha256"] for m in modified] == [rule_hash(moved_geometry)]
    assert history["geometries"][rule_hash(moved_geometry)] == moved_geometry
    run = run_verifier(tmp_path, history)
    assert (run.returncode, run.stdout.strip()) == (0, "VALID"), run.stdout + run.stderr


def test_a_held_geometry_that_does_not_hash_to_its_key_is_not_shown(dataset):
    from governance.ledger.events import history_geometries
    from governance.models import HeldGeometry

    bound = {"bbox": [0.0, 0.0, 1.0, 1.0]}
    event = {"payload": {"after": {"geometry_sha256": rule_hash(bound)}}}
    forged = HeldGeometry(
        dataset=dataset,
        sha256=rule_hash(bound),
        label_uid=uuid.uuid4(),
        geometry={"bbox": [9.0, 9.0, 1.0, 1.0]},
    )

    assert history_geometries([event], [forged]) == {}
    assert history_geometries(
        [event], [HeldGeometry(dataset=dataset, sha256="x", label_uid=uuid.uuid4(), geometry=bound)]
    ) == {rule_hash(bound): bound}


def test_held_geometries_cannot_be_changed_or_deleted_even_in_sql(dataset, deleted_draft):
    from django.db import connection, transaction

    from governance.models import HeldGeometry, LedgerAppendOnlyError

    held = HeldGeometry.objects.get(dataset=dataset)
    for statement in (
        "UPDATE governance_heldgeometry SET geometry = '{}'",
        "DELETE FROM governance_heldgeometry",
    ):
        with (
            pytest.raises(Exception, match="append_only"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(statement)
    with pytest.raises(LedgerAppendOnlyError):
        HeldGeometry.objects.filter(pk=held.pk).delete()
    with pytest.raises(LedgerAppendOnlyError):
        held.delete()
    assert HeldGeometry.objects.filter(pk=held.pk).exists()
