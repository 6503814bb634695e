"""No code path changes or removes a ledger event or a tree head: the ORM refuses, and so does the database."""

import pytest
from django.core.management import call_command
from django.db import IntegrityError, connection, models, transaction
from django.utils import timezone

from governance import ledger
from governance.models import LabelEvent, LedgerAppendOnlyError, TreeHead
from marketplace.models import ReleasedDatasetError
from tests import factories as f

from .ledger_support import TRIGGERS, events, ledgered_version

pytestmark = pytest.mark.django_db


@pytest.fixture
def ledgered(dataset):
    ledgered_version(dataset, items=1)
    return dataset


def raw(sql, params=()):
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)


# --- the ORM


def test_saving_an_existing_event_is_refused(ledgered):
    event = LabelEvent.objects.filter(dataset=ledgered).first()
    event.actor = "someone else"

    with pytest.raises(LedgerAppendOnlyError, match="append-only"):
        event.save()


def test_creating_an_event_outside_the_ledger_service_is_refused(ledgered):
    with pytest.raises(LedgerAppendOnlyError, match="append_events"):
        LabelEvent(dataset=ledgered, seq=99, action="created", occurred_at=timezone.now()).save()


def test_deleting_an_event_is_refused(ledgered):
    with pytest.raises(LedgerAppendOnlyError):
        LabelEvent.objects.filter(dataset=ledgered).first().delete()


@pytest.mark.parametrize("model", [LabelEvent, TreeHead])
def test_queryset_update_and_delete_are_refused(ledgered, model):
    with pytest.raises(LedgerAppendOnlyError):
        model.objects.filter(dataset=ledgered).update(dataset=ledgered)
    with pytest.raises(LedgerAppendOnlyError):
        model.objects.filter(dataset=ledgered).delete()
    with pytest.raises(LedgerAppendOnlyError):
        model.objects.bulk_update(list(model.objects.filter(dataset=ledgered)), ["dataset"])


def test_a_signed_tree_head_cannot_be_edited_or_deleted(ledgered):
    head = TreeHead.objects.get(dataset=ledgered)
    head.root_hash = "00" * 32
    with pytest.raises(LedgerAppendOnlyError):
        head.save()
    with pytest.raises(LedgerAppendOnlyError):
        head.delete()


def test_a_dataset_with_a_ledger_cannot_be_deleted(ledgered):
    # Released versions are refused first (issue #16); the ledger's PROTECT stands behind that.
    with pytest.raises((models.ProtectedError, ReleasedDatasetError)):
        ledgered.delete()


# --- the database triggers, past the ORM


@pytest.mark.parametrize("table", TRIGGERS.TABLES)
def test_an_update_that_bypasses_the_orm_is_refused_by_the_database(ledgered, table):
    model = LabelEvent if table == "governance_labelevent" else TreeHead
    with pytest.raises(IntegrityError, match="ledger_append_only"), transaction.atomic():
        models.QuerySet(model).filter(dataset=ledgered).update(dataset=ledgered)
    with pytest.raises(IntegrityError, match="ledger_append_only"):
        raw(f"UPDATE {table} SET dataset_id = dataset_id")


@pytest.mark.parametrize("table", TRIGGERS.TABLES)
def test_a_delete_that_bypasses_the_orm_is_refused_by_the_database(ledgered, table):
    model = LabelEvent if table == "governance_labelevent" else TreeHead
    with pytest.raises(IntegrityError, match="ledger_append_only"), transaction.atomic():
        models.QuerySet(model).filter(dataset=ledgered)._raw_delete(connection.alias)
    with pytest.raises(IntegrityError, match="ledger_append_only"):
        raw(f"DELETE FROM {table}")
    assert model.objects.filter(dataset=ledgered).exists()


def test_editing_a_payload_with_raw_sql_is_refused(ledgered):
    with pytest.raises(IntegrityError, match="ledger_append_only"):
        raw("UPDATE governance_labelevent SET payload = %s WHERE seq = 0", ['{"forged": true}'])


@pytest.mark.skipif(connection.vendor != "postgresql", reason="TRUNCATE is PostgreSQL's")
def test_truncating_the_ledger_is_refused_on_postgresql(ledgered):
    raw("SET CONSTRAINTS ALL IMMEDIATE")  # TRUNCATE waits for this transaction's deferred FK checks
    with pytest.raises(IntegrityError, match="ledger_append_only"):
        raw("TRUNCATE governance_labelevent")


def test_the_triggers_exist_after_all_migrations():
    # A later migration that rebuilds these tables on SQLite drops their triggers: this notices.
    names = {name for per_table in TRIGGERS.trigger_names(connection.vendor).values() for name in per_table}
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
        else:
            cursor.execute("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")
        present = {row[0] for row in cursor.fetchall()}
    assert names <= present


def test_appending_still_works_with_the_triggers_in_place(dataset):
    assert ledger.append_events(dataset=dataset, events=events(3)) == 3
    assert ledger.verify_dataset(dataset=dataset).ok


# --- emptying the whole database: the one sanctioned way


@pytest.mark.django_db(transaction=True)
def test_flush_empties_the_ledger_and_leaves_the_triggers_armed(supplier_org):
    dataset = f.DatasetFactory(supplier=supplier_org, slug="flushed")
    ledger.append_events(dataset=dataset, events=events(2))

    call_command("flush", interactive=False, verbosity=0)

    assert not LabelEvent.objects.exists()
    dataset = f.DatasetFactory(supplier=f.OrganizationFactory(), slug="after-flush")
    ledger.append_events(dataset=dataset, events=events(1))
    with pytest.raises(IntegrityError, match="ledger_append_only"):
        raw("DELETE FROM governance_labelevent")
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT flush_in_progress FROM {TRIGGERS.FLAG_TABLE}")
        assert not cursor.fetchone()[0]
