"""``content/labels.jsonl`` built by PostgreSQL: each label's canonical row as one line of SQL text.

The labels' content rows (``governance.ledger.content``) are most of an export's Python time when
Python builds them (parse the geometry's JSON, normalise it, encode it canonically: ~14 us a label).
Here the database writes each line itself, with the same bytes, and an export reads them on a
connection of its own while its main thread writes the format's files: the server's work runs on
the other core and Python only copies bytes.

The same bytes: the rule is ``json.dumps(row, sort_keys=True, separators=(",", ":"),
ensure_ascii=False)`` of the row ``content.label_rows`` makes. The SQL writes a line only where it
can tell that its text is that rule's; otherwise it gives NULL and the row is made in Python
(``content.label_rows(uids=...)``), so every line is the rule's. What the SQL relies on:

- the keys in code point order, written out in the statement; strings through ``to_json(text)``,
  which escapes exactly what Python's encoder escapes with ``ensure_ascii=False`` (``"``, ``\\``,
  the control characters: ``\\b \\f \\n \\r \\t``, else ``\\u00xx`` in lower case);
- ``made_at``: ``to_char`` in UTC with microseconds and ``+00:00``, as ``datetime.isoformat``
  writes it (years 1000-9999 only: four digits either way);
- ``attributes``: only ``{}`` (any other value goes to Python);
- ``geometry``: the column's ``json`` text cast to ``jsonb`` (so keys in jsonb's order, whitespace
  and duplicate keys as jsonb normalises them, whatever spelling was stored), then its text with its
  ", " and ": " removed, when its only strings are the keys
  ``bbox`` and ``polygons`` (or ``bbox`` and ``keypoints``): jsonb orders keys by length, then
  bytes, which is code point order for these sets, and with no other string no ", " or ": " can
  be inside a string. Its numbers must read back the same in Python, which prints a float as the
  shortest text that reads back as it: jsonb's digits are kept when a number has at most 15 digits
  (token of 16 characters or fewer: such a decimal is the shortest text of its double), is not
  below 1e-4 (Python writes ``1e-05``; no ``0.0000``), has no trailing zero after a second decimal
  digit (``1.50``: Python writes ``1.5``) and is not a negative zero (``_plain`` writes ``0.0``).
  Anything else, or anything unsure (``-0.5`` is written as it is, but any ``-0`` goes to Python),
  takes the Python row.

Before that, ``STORED_GEOMETRY_SQL`` takes the stored text itself, its spaces removed, where it can
tell that this is already the rule's bytes (the spellings ingest and the ORM write, almost every
label): reading each geometry as jsonb was a third of the statement's server time (at 50,000 polygon
labels, 1.0-1.3 -> 0.7-0.8 s of server CPU for the statement, the same lines).

A stored text with an exponent goes to Python: jsonb writes ``1e2`` as ``100`` where Python writes
``100.0``. The column was ``jsonb`` until migration 0010 made it ``json``, which keeps the text as
written; without the cast the statement wrote a stored spelling (keys out of order, a duplicate key)
as it was, not as the rule does.

``tests/marketplace/test_export_content_lines.py`` compares the lines with ``content.label_rows``'s
on labels chosen to hit every one of those cases, on PostgreSQL, and
``test_export_content_lines_json`` on geometry text stored in each spelling.
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

from django.db import connection

from governance.ledger import content
from governance.ledger.canonical import canonical_json_finite

from ..models import DatasetVersion

FETCH_ROWS = 1000
SPOOL_CHUNK = 1024 * 1024

# The geometry's line text straight from its stored text, without reading it as jsonb (a third of the
# statement's cost), for the spellings ingest and the ORM write: NULL unless the stored text, its spaces
# removed, is the rule's bytes. ``{text}``: the stored text (``l.geometry::text``). What it relies on:
# the text is valid JSON (the column is ``json``); it begins with the key ``bbox`` and has no string
# but the keys ``bbox`` and, after it, ``polygons`` (two or four double quotes: no other key, no
# duplicate, no escape), so its keys are in code point order, once each; its only whitespace is spaces,
# which can then stand only between tokens; and its numbers pass the checks the jsonb path makes (no
# exponent: neither "e" nor "E" is anywhere, no "-0", no "0.0000", no trailing zero after a second
# decimal digit, no run of 17 digits and points), so each reads back in Python as the same spelling.
# Any other text gets NULL and goes through jsonb as before.
STORED_GEOMETRY_SQL = r"""
CASE WHEN (({text} LIKE '{{"bbox":%%'
             AND (octet_length({text}) - octet_length(replace({text}, '"', '')) = 2
                  OR (octet_length({text}) - octet_length(replace({text}, '"', '')) = 4
                      AND strpos({text}, '"polygons":') > 0)))
           OR ({text} LIKE '{{"polygons":%%'
               AND octet_length({text}) - octet_length(replace({text}, '"', '')) = 2))
      AND strpos({text}, 'e') = 0 AND strpos({text}, 'E') = 0
      AND strpos({text}, E'\n') = 0 AND strpos({text}, E'\t') = 0 AND strpos({text}, E'\r') = 0
      AND strpos({text}, '-0') = 0 AND strpos({text}, '0.0000') = 0
      AND {text} !~ '\.[0-9]+0[],}} ]|[0-9.]{{17}}'
     THEN CASE WHEN strpos({text}, ' ') = 0 THEN {text} ELSE replace({text}, ' ', '') END
END"""

# One line a label, or NULL (and the uid) where the statement cannot vouch for the bytes.
LABEL_LINES_SQL = r"""
SELECT CASE WHEN l.attributes = '{}'::jsonb
         AND g.canonical IS NOT NULL
         AND (l.made_at IS NULL OR extract(year FROM l.made_at AT TIME ZONE 'UTC') BETWEEN 1000 AND 9999)
    THEN '{"annotator":' || coalesce(to_json(a.pseudonym)::text, 'null')
      || ',"attributes":{},"category":' || to_json(c.name)::text
      || ',"geometry":' || g.canonical
      || ',"geometry_type":' || to_json(l.geometry_type)::text
      || ',"guideline_version":' || coalesce(to_json(gl.title || ' / ' || gv.tag)::text, 'null')
      || ',"is_final":' || l.is_final::text
      || ',"iscrowd":' || l.iscrowd::text
      || ',"item":' || to_json(i.key)::text
      || ',"key":"' || l.uid::text
      || '","made_at":' || coalesce(
           '"' || to_char(l.made_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"') || '"', 'null')
      || ',"model_name":' || to_json(l.model_name)::text
      || ',"model_version":' || to_json(l.model_version)::text
      || ',"source":' || to_json(l.source)::text
      || '}'
  END AS line,
  l.uid::text
FROM marketplace_label l
CROSS JOIN LATERAL (
  SELECT coalesce(fast, CASE WHEN s !~ '[0-9][eE]'
                              AND strpos(rest, '"') = 0
                              AND strpos(t, '-0') = 0
                              AND strpos(t, '0.0000') = 0
                              AND t !~ '\.[0-9]+0[],}]|[0-9.]{17}'
                             THEN replace(replace(t, ', ', ','), ': ', ':') END) AS canonical
  FROM (
    SELECT s, fast, t, CASE WHEN strpos(t, '"polygons": ') > 0
                            THEN replace(replace(t, '"bbox": ', ''), '"polygons": ', '')
                            ELSE replace(replace(t, '"bbox": ', ''), '"keypoints": ', '') END AS rest
    FROM (
      SELECT s, fast, CASE WHEN fast IS NULL THEN s::jsonb::text END AS t
      FROM (SELECT s, {FAST} AS fast FROM (SELECT l.geometry::text AS s OFFSET 0) AS stored OFFSET 0) AS f
      OFFSET 0
    ) AS slow
  ) AS checked
) AS g
JOIN marketplace_item i ON i.id = l.item_id
JOIN marketplace_category c ON c.id = l.category_id
LEFT JOIN governance_annotator a ON a.id = l.annotator_id
LEFT JOIN governance_guidelineversion gv ON gv.id = l.guideline_version_id
LEFT JOIN governance_guideline gl ON gl.id = gv.guideline_id
WHERE l.version_id = %s
ORDER BY l.uid
""".replace("{FAST}", STORED_GEOMETRY_SQL.format(text="s"))


def database_builds_lines() -> bool:
    return connection.vendor == "postgresql"


def label_lines(version: DatasetVersion) -> Iterator[bytes]:
    """``content/labels.jsonl``'s bytes, a few thousand lines at a time, in uid order.

    On PostgreSQL the lines are the statement's (and Python's for the rows it leaves out); on another
    database ``content.label_rows`` encoded here.
    """
    if not database_builds_lines():
        for row in content.label_rows(version):
            yield canonical_json_finite(row) + b"\n"
        return
    with connection.chunked_cursor() as cursor:
        cursor.execute(LABEL_LINES_SQL, [version.pk])
        while rows := cursor.fetchmany(FETCH_ROWS):
            missing = [uid for line, uid in rows if line is None]
            if missing:
                made = {
                    row["key"]: canonical_json_finite(row).decode()
                    for row in content.label_rows(version, uids=missing)
                }
                lines = [made[uid] if line is None else line for line, uid in rows]
            else:
                lines = [line for line, _ in rows]
            lines.append("")
            yield "\n".join(lines).encode()


class SpooledLabelLines:
    """``label_lines`` made by a helper thread, on its own connection, into a temporary file.

    Started before the format's files are written, so PostgreSQL builds the lines on the other core
    meanwhile; ``chunks()`` waits for the end and gives the file back in chunks. Only outside a
    transaction: the helper's connection would not see rows the caller's transaction has not
    committed (``start`` says whether it started; the caller reads ``label_lines`` in turn otherwise).
    The export reads the format's labels and these lines in separate statements either way, each
    with its own snapshot, as it did before.
    """

    def __init__(self, version: DatasetVersion):
        self.version = version
        self.file = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
        self.pool: ThreadPoolExecutor | None = None
        self.future: Future | None = None
        self.stop = threading.Event()

    def start(self) -> bool:
        if not database_builds_lines() or connection.in_atomic_block:
            return False
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="export-content")
        self.future = self.pool.submit(self._spool)
        return True

    def _spool(self) -> None:
        try:
            for chunk in label_lines(self.version):
                if self.stop.is_set():
                    return
                self.file.write(chunk)
        finally:
            connection.close()  # this thread's own connection

    def chunks(self) -> Iterator[bytes]:
        self.future.result()
        self.file.seek(0)
        while chunk := self.file.read(SPOOL_CHUNK):
            yield chunk

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.stop.set()
        if self.pool is not None:
            self.pool.shutdown(wait=True)
        self.file.close()
