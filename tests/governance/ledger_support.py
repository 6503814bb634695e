"""Helpers for the ledger tests: ledgers of known events, and tampering as a table owner would."""

import contextlib
import importlib
import uuid
from datetime import UTC, datetime, timedelta

from django.db import connection

from governance import ledger
from marketplace.models import Label

from ..conftest import build_version

TRIGGERS = importlib.import_module("governance.migrations.0004_append_only_triggers")
TEST_FLUSH_ONLY = importlib.import_module("governance.migrations.0007_ledger_flush_only_on_test_databases")
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def events(count, *, start=0, actor="A-17", payload=None):
    """``count`` label events with distinct uids and payloads."""
    for i in range(start, start + count):
        yield ledger.EventData(
            label_uid=uuid.UUID(int=i + 1),
            action="created",
            actor=actor,
            occurred_at=T0 + timedelta(minutes=i),
            guideline_version="v1.2",
            source="human",
            payload=payload
            if payload is not None
            else {"after": {"bbox": [i + 0.5, 2.0, 30.0, 40.0], "n": i}},
            delivery_id=1,
            version_number=1,
        )


def ledgered_version(dataset, *, number=1, items=3, **kwargs):
    """A published version whose labels have "created" events, signed at publication."""
    version = build_version(dataset, number=number, items=items, publish=False, **kwargs)
    ledger.append_events(
        dataset=dataset, events=ledger.label_created_events(Label.objects.filter(version=version))
    )
    from marketplace.catalogue import publication as catalogue_publication

    catalogue_publication.publish_version(version=version, release_notes=f"Release {number}")
    version.refresh_from_db()
    return version


@contextlib.contextmanager
def tampering():
    """Yield a cursor with the append-only triggers off, as the table owner can; put them back after."""
    vendor = connection.vendor
    with connection.cursor() as cursor:
        if vendor == "postgresql":
            # ALTER TABLE refuses while deferred foreign-key checks of this transaction are pending.
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            for table in TRIGGERS.TABLES:
                cursor.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
        else:
            for names in TRIGGERS.trigger_names(vendor).values():
                for name in names:
                    cursor.execute(f"DROP TRIGGER {name}")
        try:
            yield cursor
        finally:
            if vendor == "postgresql":
                cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
                for table in TRIGGERS.TABLES:
                    cursor.execute(f"ALTER TABLE {table} ENABLE TRIGGER USER")
                cursor.execute("SET CONSTRAINTS ALL DEFERRED")
            else:
                for statement in TRIGGERS.trigger_statements(vendor):
                    if "_no_delete" not in statement:  # 0007 replaced those
                        cursor.execute(statement)
                for statement in TEST_FLUSH_ONLY.sqlite_no_delete_statements():
                    cursor.execute(statement)
