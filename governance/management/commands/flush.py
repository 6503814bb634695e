"""Django's ``flush``, allowed past the ledger's append-only triggers for the length of the flush.

Emptying the whole database is the one sanctioned way to remove ledger events (Django's
TransactionTestCase flushes between tests; a developer resets a laptop database). The flag that lets
the DELETE and TRUNCATE triggers through is set and cleared inside the flush's own transaction, so no
other connection ever sees it set. See governance/migrations/0004_append_only_triggers.py.
"""

from django.core.management.commands import flush
from django.db import DEFAULT_DB_ALIAS, connections, transaction

FLAG_TABLE = "governance_ledger_maintenance"


class Command(flush.Command):
    help = flush.Command.help + " Also lets the governance ledger's append-only triggers through."

    def handle(self, **options):
        alias = options.get("database") or DEFAULT_DB_ALIAS
        connection = connections[alias]
        if FLAG_TABLE not in connection.introspection.table_names():
            return super().handle(**options)
        true, false = ("1", "0") if connection.vendor == "sqlite" else ("true", "false")
        with transaction.atomic(using=alias):
            with connection.cursor() as cursor:
                cursor.execute(f"UPDATE {FLAG_TABLE} SET flush_in_progress = {true} WHERE id = 1")  # noqa: S608
            super().handle(**options)
            with connection.cursor() as cursor:
                cursor.execute(f"UPDATE {FLAG_TABLE} SET flush_in_progress = {false} WHERE id = 1")  # noqa: S608
