"""Model fields of our own."""

from __future__ import annotations

from django.db import models


class TextJSONField(models.JSONField):
    """A JSONField stored as PostgreSQL's ``json`` (text checked to be JSON), not ``jsonb``.

    For a column written by the hundred thousand and read whole, never searched inside: a label's
    geometry. ``jsonb`` parses each value into its binary form on the way in, a third of the server's
    cost of a label row (issue 13's bench at 50,000 labels: 29.6 -> 18.6 us of server CPU per row);
    ``json`` only checks the text and keeps it as written, which is also the text readers get back.
    What ``json`` cannot do: compare values (no ``=``, so no ``filter(geometry=...)`` or
    ``geometry__bbox=...`` in SQL, no DISTINCT over the column) or jsonb's operators (``@>``, ``?``);
    ``->`` and ``::text`` work. Other databases keep Django's JSON column (text on SQLite).

    The driver gives its values back as text, decoded by the field (``json_as_text``), as it does for
    jsonb: readers that parse the text themselves (lineage, content hashing) take it as it is.
    """

    def db_type(self, connection):
        if connection.vendor == "postgresql":
            return "json"
        return super().db_type(connection)


def json_as_text(sender, connection, **kwargs) -> None:
    """``connection_created`` receiver: PostgreSQL ``json`` values come back as text, as Django has
    jsonb's (psycopg would otherwise parse them with the standard library before the field's own
    decoding, which then fails on a dict)."""
    if connection.vendor != "postgresql":
        return
    from psycopg.types.string import TextLoader

    connection.connection.adapters.register_loader("json", TextLoader)
