"""A published version is evidence (issue #16): an insider's change is refused by the database, or, with
the triggers dropped as a table owner could, named by ``manage.py ledger verify`` at the right row."""

import contextlib
import importlib
import io
import uuid

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from governance import ledger
from governance.ledger import content
from governance.ledger import content_verification as verify_content
from governance.models import GuidelineImmutableError, GuidelineVersion
from marketplace.catalogue import publication, stats
from marketplace.models import (
    AnnotationSchema,
    Category,
    DatasetVersion,
    Datasheet,
    FrozenVersionError,
    Item,
    Label,
)
from tests import factories as f
from tests.conftest import build_version

RELEASED = importlib.import_module("marketplace.migrations.0006_released_content_triggers")

pytestmark = pytest.mark.django_db


@pytest.fixture
def guideline_version(dataset):
    return f.GuidelineVersionFactory(
        guideline=f.GuidelineFactory(dataset=dataset, title="Boxes"), tag="v1", text="Draw tight boxes."
    )


@pytest.fixture
def version(dataset, guideline_version):
    v = build_version(dataset, number=1, items=3, publish=False, guideline_version=guideline_version)
    v.guideline_versions.add(guideline_version)
    Datasheet.objects.filter(version=v).update(limitations="Daytime only.", biases="Few cyclists.")
    publication.publish_version(version=v, release_notes="first")
    v.refresh_from_db()
    return v


def raw(sql, params=()):
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)


@contextlib.contextmanager
def triggers_dropped():
    """The released-content triggers off, as the table owner can; put back afterwards."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    RELEASED.drop_triggers_on(connection)
    try:
        yield
    finally:
        RELEASED.create_triggers_on(connection)


def verify_output(*args):
    out = io.StringIO()
    try:
        call_command("ledger", "verify", "--workers", "1", *args, stdout=out)
    except CommandError as error:
        return error.returncode, out.getvalue()
    return 0, out.getvalue()


# --- the five insider changes, each as raw SQL


def first_label(version):
    return Label.objects.filter(version=version).order_by("uid").first()


def delete_a_label(version, guideline_version):
    label = first_label(version)
    raw("DELETE FROM marketplace_label WHERE id = %s", [label.pk])
    return "marketplace_label", f"uid='{label.uid}'", "removed"


def delete_an_item_with_its_labels(version, guideline_version):
    item = Item.objects.filter(version=version).order_by("key").last()
    raw("DELETE FROM marketplace_label WHERE item_id = %s", [item.pk])
    raw("DELETE FROM marketplace_item WHERE id = %s", [item.pk])
    return "marketplace_item", f"key='{item.key}'", "removed"


def rename_a_class(version, guideline_version):
    car = Category.objects.get(schema__version=version, name="car")
    raw("UPDATE marketplace_category SET name = 'vehicle' WHERE id = %s", [car.pk])
    return "marketplace_category", "name=", "after publication"


def rewrite_the_datasheet(version, guideline_version):
    raw(
        "UPDATE marketplace_datasheet SET limitations = 'None known.', biases = 'None.' WHERE version_id = %s",
        [version.pk],
    )
    return "marketplace_datasheet", "field='biases'", "changed"


def rewrite_a_guideline_text(version, guideline_version):
    raw(
        "UPDATE governance_guidelineversion SET text = 'Loose boxes are fine.' WHERE id = %s",
        [guideline_version.pk],
    )
    return "governance_guidelineversion", "version='Boxes / v1' field text_sha256", "changed"


CHANGES = [
    delete_a_label,
    delete_an_item_with_its_labels,
    rename_a_class,
    rewrite_the_datasheet,
    rewrite_a_guideline_text,
]


@pytest.mark.parametrize("change", CHANGES, ids=lambda c: c.__name__)
def test_the_database_refuses_the_change(version, guideline_version, change):
    with pytest.raises(IntegrityError, match="version_frozen|guideline_immutable"):
        change(version, guideline_version)


@pytest.mark.parametrize("change", CHANGES, ids=lambda c: c.__name__)
def test_with_the_triggers_dropped_ledger_verify_names_the_row(version, guideline_version, change):
    assert verify_output()[0] == 0
    with triggers_dropped():
        table, row, what = change(version, guideline_version)

        code, out = verify_output("--dataset", version.dataset.slug)

    assert code == 1
    line = next(line for line in out.splitlines() if "CONTENT CHANGED" in line)
    assert table in line and row in line and what in line, out


def test_a_renamed_class_is_named_with_its_old_name(version, guideline_version):
    with triggers_dropped():
        rename_a_class(version, guideline_version)
        difference = verify_content.verify_version(version)
    assert difference.table == "marketplace_category"
    assert difference.row == "name='car'" and "removed" in difference.detail


def test_an_edited_label_geometry_names_the_field(version):
    label = first_label(version)
    with triggers_dropped():
        # 0002's UPDATE trigger on labels is dropped too: disable it the same way, per vendor.
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute("ALTER TABLE marketplace_label DISABLE TRIGGER USER")
            else:
                cursor.execute("DROP TRIGGER marketplace_label_frozen_update")
        try:
            raw(
                "UPDATE marketplace_label SET attributes = %s WHERE id = %s",
                ['{"age_band": "child"}', label.pk],
            )
            difference = verify_content.verify_version(version)
        finally:
            with connection.cursor() as cursor:
                if connection.vendor == "postgresql":
                    cursor.execute("ALTER TABLE marketplace_label ENABLE TRIGGER USER")
    assert difference.table == "marketplace_label"
    assert difference.row == f"uid='{label.uid}'" and difference.field == "attributes"
    if connection.vendor == "sqlite":
        migration = importlib.import_module("marketplace.migrations.0002_frozen_version_triggers")
        with connection.cursor() as cursor:
            for statement in migration._statements(
                migration.SQLITE_CONTENT.format(table="marketplace_label")
            ):
                if "frozen_update" in statement:
                    cursor.execute(statement)


def test_an_untouched_database_verifies(version):
    code, out = verify_output()
    assert code == 0 and "street-scenes: intact" in out
    assert verify_content.verify_version(version) is None


def test_the_signed_event_carries_the_content_rule_and_parts(version):
    event = content.published_event(version)
    assert event.payload["content_rule"] == 2
    assert set(event.payload["parts"]) == set(content.PARTS)
    assert event.payload["parts"]["labels"]["count"] == 6
    assert (
        event.payload["content_hash"]
        == version.content_hash
        == content.content_hash_of(event.payload["parts"])
    )


def test_a_forged_row_reference_is_not_believed(version):
    with triggers_dropped():
        delete_a_label(version, None)
        content.ContentDigestBlock.objects.filter(version=version, part="labels").update(rows="")
        difference = verify_content.verify_version(version)
    assert difference.table == "marketplace_label" and not difference.row
    assert "cannot be named" in difference.detail


# --- versions published under content rule 1 keep it


def publish_under_rule_1(version):
    """What publication did before content rule 2: the rule-1 hash, no content_rule in the event."""
    version.content_hash = stats.compute_content_hash(version=version)
    version.status = DatasetVersion.Status.PUBLISHED
    version.published_at = timezone.now()
    version.save()
    ledger.record_dataset_event(
        dataset=version.dataset,
        action="version_published",
        actor="org:old",
        payload={"content_hash": version.content_hash, "release_notes": ""},
        version_number=version.number,
    )
    ledger.sign_tree_head(dataset=version.dataset, version=version)


def test_a_rule_1_version_verifies_under_rule_1_and_a_change_is_reported(dataset):
    old = build_version(dataset, number=1, items=2, publish=False)
    publish_under_rule_1(old)
    assert verify_output()[0] == 0

    with triggers_dropped():
        delete_a_label(old, None)
        code, out = verify_output()
    assert code == 1 and "content rule 1" in out


# --- the ORM and its QuerySets refuse as well


def test_querysets_refuse_to_change_released_content(version, guideline_version):
    for qs in (
        Datasheet.objects.filter(version=version),
        AnnotationSchema.objects.filter(version=version),
        Category.objects.filter(schema__version=version),
        Item.objects.filter(version=version),
        Label.objects.filter(version=version),
    ):
        with pytest.raises(FrozenVersionError):
            qs.update(pk=0)
        with pytest.raises(FrozenVersionError):
            qs.delete()
    with pytest.raises(FrozenVersionError):
        DatasetVersion.objects.filter(pk=version.pk).delete()
    with pytest.raises(GuidelineImmutableError):
        GuidelineVersion.objects.filter(pk=guideline_version.pk).update(text="x")


def test_a_guideline_version_is_immutable_and_undeletable_once_used(version, guideline_version):
    guideline_version.text = "Something else"
    with pytest.raises(GuidelineImmutableError):
        guideline_version.save()
    with pytest.raises(GuidelineImmutableError):
        GuidelineVersion.objects.get(pk=guideline_version.pk).delete()
    with pytest.raises(IntegrityError, match="guideline_immutable"):
        raw("DELETE FROM governance_guidelineversion WHERE id = %s", [guideline_version.pk])


def test_an_unused_guideline_version_can_still_be_deleted(dataset):
    unused = f.GuidelineVersionFactory(guideline=f.GuidelineFactory(dataset=dataset), tag="v9")
    unused.delete()
    assert not GuidelineVersion.objects.filter(pk=unused.pk).exists()


def test_a_draft_stays_editable(dataset):
    draft = build_version(dataset, number=1, items=1, publish=False)
    raw("UPDATE marketplace_datasheet SET biases = 'b' WHERE version_id = %s", [draft.pk])
    raw("UPDATE marketplace_category SET name = 'auto' WHERE name = 'car'")
    Label.objects.filter(version=draft).delete()
    draft.delete()


def test_a_released_version_cannot_be_deleted_by_sql(version):
    with pytest.raises(IntegrityError, match="version_frozen"):
        raw(
            "DELETE FROM marketplace_datasetversion_guideline_versions WHERE datasetversion_id = %s",
            [version.pk],
        )
    with pytest.raises(IntegrityError, match="version_frozen"):
        raw("DELETE FROM marketplace_datasetversion WHERE id = %s", [version.pk])


# --- many rows in one statement: PostgreSQL checks them once per statement, all of them

LABEL_COLUMNS = (
    "uid, version_id, item_id, category_id, geometry_type, geometry, attributes, iscrowd, is_final, "
    "source, model_name, model_version, source_ref, source_id"
)


def _new_uid() -> str:
    return "gen_random_uuid()" if connection.vendor == "postgresql" else "lower(hex(randomblob(16)))"


def copy_labels_into(target, source):
    """INSERT ... SELECT: every label of ``source`` again, in ``target``, in one statement.

    Each on an item of ``target``: on PostgreSQL a label's item must be in the label's version."""
    raw(
        f"INSERT INTO marketplace_label ({LABEL_COLUMNS}) SELECT {_new_uid()}, %s, "
        "(SELECT min(id) FROM marketplace_item WHERE version_id = %s), category_id, "
        "geometry_type, geometry, attributes, iscrowd, is_final, source, model_name, model_version, "
        "source_ref, source_id FROM marketplace_label WHERE version_id = %s",
        [target.pk, target.pk, source.pk],
    )


def test_many_labels_inserted_in_one_statement_into_a_released_version_are_refused(version):
    before = Label.objects.count()
    with pytest.raises(IntegrityError, match="version_frozen"):
        copy_labels_into(version, version)
    assert Label.objects.count() == before


def test_one_released_row_among_draft_rows_refuses_the_whole_statement(dataset, version):
    draft = build_version(dataset, number=2, items=2, publish=False)
    item = Item.objects.filter(version=draft).first()
    category = Category.objects.filter(schema__version=draft).first()
    before = Label.objects.count()
    # The released version's id comes last: a check of the first row only would let it through.
    with pytest.raises(IntegrityError, match="version_frozen"):
        raw(
            f"INSERT INTO marketplace_label ({LABEL_COLUMNS}) SELECT {_new_uid()}, v.id, %s, %s, 'bbox', "
            "'{}', '{}', false, true, 'human', '', '', '', '' FROM marketplace_datasetversion v "
            "WHERE v.id IN (%s, %s) ORDER BY v.id = %s",
            [item.pk, category.pk, draft.pk, version.pk, version.pk],
        )
    assert Label.objects.count() == before


def test_many_rows_in_one_statement_into_a_draft_are_accepted(dataset, version):
    draft = build_version(dataset, number=2, items=1, publish=False)
    copy_labels_into(draft, version)
    assert Label.objects.filter(version=draft).count() > Label.objects.filter(version=version).count()


def test_many_categories_inserted_in_one_statement_into_a_released_schema_are_refused(version):
    schema = AnnotationSchema.objects.get(version=version)
    before = Category.objects.count()
    with pytest.raises(IntegrityError, match="version_frozen"):
        raw(
            "INSERT INTO marketplace_category (schema_id, name, source_id, supercategory, description, "
            "geometry_types, keypoint_names, skeleton, keypoint_sigmas, flip_idx, color) SELECT schema_id, "
            "name || '-late', source_id + 1000, supercategory, description, geometry_types, keypoint_names, "
            "skeleton, keypoint_sigmas, flip_idx, color FROM marketplace_category WHERE schema_id = %s",
            [schema.pk],
        )
    assert Category.objects.count() == before


@pytest.mark.skipif("connection.vendor != 'postgresql'")
def test_a_multi_row_copy_into_a_released_version_is_refused(version):
    """What a bulk loader does (psycopg COPY): refused by the statement trigger, nothing written."""
    template = Label.objects.filter(version=version).values_list("item_id", "category_id").first()
    rows = [
        (uuid.uuid4(), version.pk, *template, "bbox", '{"bbox": [0, 0, 1, 1]}', "{}", False, True)
        for _ in range(50)
    ]
    before = Label.objects.count()
    with (
        pytest.raises(IntegrityError, match="version_frozen"),
        transaction.atomic(),
        connection.wrap_database_errors,  # psycopg's error as Django's, as execute() does
        connection.cursor() as cursor,
        cursor.copy(f"COPY marketplace_label ({LABEL_COLUMNS}) FROM STDIN") as copy,
    ):
        for row in rows:
            copy.write_row((*row, "human", "", "", "", ""))
    assert Label.objects.count() == before


def test_the_triggers_exist_after_all_migrations():
    vendor = connection.vendor
    with connection.cursor() as cursor:
        if vendor == "sqlite":
            cursor.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
        else:
            cursor.execute("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")
        present = {row[0] for row in cursor.fetchall()}
    assert set(RELEASED.trigger_names(vendor)) <= present


def _present_triggers():
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
        else:
            cursor.execute("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")
        return {row[0] for row in cursor.fetchall()}


def test_a_later_migration_can_recreate_the_triggers_of_a_rebuilt_table(version):
    """What a migration that rebuilds marketplace_label on SQLite calls (recreate_for): idempotent."""
    label_triggers = {
        n for n, t in RELEASED.trigger_names(connection.vendor).items() if t == "marketplace_label"
    }
    assert label_triggers
    with connection.cursor() as cursor:
        for name in label_triggers:  # as a table rebuild does on SQLite
            cursor.execute(
                f"DROP TRIGGER IF EXISTS {name}"
                + ("" if connection.vendor == "sqlite" else " ON marketplace_label")
            )
    assert not label_triggers & _present_triggers()
    run = RELEASED.recreate_for("marketplace_label")
    run(None, type("SchemaEditor", (), {"connection": connection})())
    run(None, type("SchemaEditor", (), {"connection": connection})())  # twice: no error
    assert set(RELEASED.trigger_names(connection.vendor)) <= _present_triggers()
    label = Label.objects.filter(version=version).first()
    with pytest.raises(IntegrityError, match="version_frozen"):
        raw("DELETE FROM marketplace_label WHERE id = %s", [label.pk])


# --- license terms are bound where they are accepted


def test_the_entitlement_event_carries_the_license_hash_and_terms_and_the_license_freezes(version):
    import hashlib

    from governance.models import LabelEvent
    from marketplace.licensing import service as licensing
    from marketplace.models import License, Offer

    lic = f.LicenseFactory(name="Custom", text="Use it well.", commercial_use=True, ai_training=False)
    offer = Offer.objects.create(dataset=version.dataset, license=lic, access_mode="request", price=0)
    licensing.grant_entitlement(organization=f.OrganizationFactory(), offer=offer)

    event = LabelEvent.objects.filter(dataset=version.dataset, action="entitlement_granted").get()
    shown = f"{lic.name}\n{lic.url}\n{lic.text}".encode()
    assert event.payload["license_sha256"] == hashlib.sha256(shown).hexdigest()
    assert event.payload["license_terms"]["commercial_use"] is True
    assert event.payload["license_terms"]["ai_training"] is False

    lic.text = "Use it however."
    with pytest.raises(Exception, match="accepted"):
        lic.save()
    with pytest.raises(IntegrityError, match="license_accepted"):
        raw("UPDATE marketplace_license SET ai_training = %s WHERE id = %s", [True, lic.pk])
    # Offers stay editable: the price and the mode are not the terms.
    Offer.objects.filter(pk=offer.pk).update(price=10, access_mode="purchase")
    assert License.objects.get(pk=lic.pk).text == "Use it well."


# --- flush erases evidence on test databases only


def test_flush_refuses_outside_a_test_database(version, monkeypatch):
    from governance.management.commands import flush

    monkeypatch.setattr(flush, "is_test_database", lambda connection: False)
    with pytest.raises(CommandError, match="test databases only"):
        call_command("flush", interactive=False, verbosity=0)
    assert DatasetVersion.objects.filter(pk=version.pk).exists()


def test_the_flush_flag_alone_does_not_let_a_file_database_delete_events(tmp_path):
    # The SQLite triggers of migration 0007 on a file database, as a production SQLite would be.
    import sqlite3

    migration = importlib.import_module("governance.migrations.0007_ledger_flush_only_on_test_databases")
    db = sqlite3.connect(tmp_path / "prod.sqlite3")
    db.executescript(
        "CREATE TABLE governance_labelevent (id INTEGER); CREATE TABLE governance_treehead (id INTEGER);"
        "CREATE TABLE governance_ledger_maintenance (id INTEGER PRIMARY KEY, flush_in_progress INTEGER);"
        "INSERT INTO governance_ledger_maintenance VALUES (1, 1); INSERT INTO governance_labelevent VALUES (7);"
    )
    for statement in migration.sqlite_no_delete_statements():
        db.execute(statement)
    with pytest.raises(sqlite3.IntegrityError, match="ledger_append_only"):
        db.execute("DELETE FROM governance_labelevent")
    db.close()


@pytest.mark.parametrize("change", CHANGES, ids=lambda c: c.__name__)
def test_the_api_job_checks_content_as_the_cli_does_and_says_so(
    version, guideline_version, change, api_for, auditor, django_capture_on_commit_callbacks
):
    def job_report():
        with django_capture_on_commit_callbacks(execute=True):  # the chunk tasks run (eagerly)
            started = api_for(auditor).post(
                "/api/v1/ledger/verify/", {"dataset": version.dataset.slug}, format="json"
            )
        assert started.status_code == 202
        return api_for(auditor).get(f"/api/v1/ledger/verify/{started.json()['id']}/").json()["report"]

    before = job_report()
    assert (before["ok"], before["ledger_ok"], before["content_ok"]) == (True, True, True)
    assert any(line.startswith("content:") for line in before["checked"])
    with triggers_dropped():
        table, row, what = change(version, guideline_version)
        report = job_report()
        _, out = verify_output("--dataset", version.dataset.slug)

    assert (report["ok"], report["ledger_ok"], report["content_ok"]) == (False, True, False)
    [difference] = report["content_differences"]
    assert table in difference and row in difference and what in difference
    assert difference in next(line for line in out.splitlines() if "CONTENT CHANGED" in line)
