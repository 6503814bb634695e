"""`has_element`: "this JSON list contains this string", on PostgreSQL and on SQLite.

Django's JSONField `contains` is not supported on SQLite, and the catalogue filters on list
fields (task types, tags, geometry kinds) must work on both the embedded and production databases.
"""

import json

from django.db.models import JSONField, Lookup


@JSONField.register_lookup
class HasElement(Lookup):
    lookup_name = "has_element"
    prepare_rhs = False

    def as_postgresql(self, compiler, connection):
        lhs, lhs_params = self.process_lhs(compiler, connection)
        return f"{lhs} @> %s::jsonb", [*lhs_params, json.dumps([self.rhs])]

    def as_sqlite(self, compiler, connection):
        lhs, lhs_params = self.process_lhs(compiler, connection)
        return f"EXISTS (SELECT 1 FROM json_each({lhs}) WHERE json_each.value = %s)", [*lhs_params, self.rhs]

    def as_sql(self, compiler, connection):
        raise NotImplementedError(
            f"has_element is implemented for PostgreSQL and SQLite, not {connection.vendor}"
        )
