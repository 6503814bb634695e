"""Django's ``flush``, let past the append-only and released-content triggers on a test database only.

Emptying a whole *test* database is the one sanctioned way to remove ledger events and released
versions: Django's TransactionTestCase flushes between tests. The flag that lets the DELETE and
TRUNCATE triggers through is set and cleared inside the flush's own transaction, so no other
connection ever sees it set, and the triggers honour it only on a test database (PostgreSQL: named
``test_...``; SQLite: in memory), see governance/migrations/0007 and marketplace/migrations/0006.

Anywhere else, flush refuses to start while the database holds ledger events or released versions:
the ledger is the evidence of what was published and sold, and no flag deletes it in production.
"""

from django.core.management.base import CommandError
from django.core.management.commands import flush
from django.db import DEFAULT_DB_ALIAS, connections, transaction

FLAG_TABLE = "governance_ledger_maintenance"


def is_test_database(connection) -> bool:
    """The database's own answer, the one the triggers use: a test database or not."""
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("SELECT file FROM pragma_database_list WHERE name = 'main'")
            return cursor.fetchone()[0] == ""
        if connection.vendor == "postgresql":
            cursor.execute(r"SELECT current_database() LIKE 'test\_%'")
            return bool(cursor.fetchone()[0])
    return False


def holds_evidence(connection) -> bool:
    tables = set(connection.introspection.table_names())
    with connection.cursor() as cursor:
        for table, where in (
            ("governance_labelevent", ""),
            ("governance_treehead", ""),
            ("marketplace_datasetversion", " WHERE status <> 'draft'"),
        ):
            if table in tables:
                cursor.execute(f"SELECT 1 FROM {table}{where} LIMIT 1")  # noqa: S608
                if cursor.fetchone():
                    return True
    return False


class Command(flush.Command):
    help = flush.Command.help + " Refuses to erase the governance ledger unless this is a test database."

    def handle(self, **options):
        alias = options.get("database") or DEFAULT_DB_ALIAS
        connection = connections[alias]
        if FLAG_TABLE not in connection.introspection.table_names():
            return super().handle(**options)
        if not is_test_database(connection):
            if holds_evidence(connection):
                raise CommandError(
                    "This database holds ledger events or released versions: flush erases evidence "
                    "and is allowed on test databases only. Drop and re-create a development database "
                    "instead.",
                    returncode=1,
                )
            return super().handle(**options)
        true, false = ("1", "0") if connection.vendor == "sqlite" else ("true", "false")
        with transaction.atomic(using=alias):
            with connection.cursor() as cursor:
                cursor.execute(f"UPDATE {FLAG_TABLE} SET flush_in_progress = {true} WHERE id = 1")  # noqa: S608
            super().handle(**options)
            with connection.cursor() as cursor:
                cursor.execute(f"UPDATE {FLAG_TABLE} SET flush_in_progress = {false} WHERE id = 1")  # noqa: S608
