"""The label table's schema as it is against main's before issue 13's changes: server CPU per label row.

    python bench/ingest/run.py --images 5000 --labels 50000 --keep --db NAME   # an ingested version
    python bench/ingest/schema_ab.py --db NAME [--repeat 4]

The version's label rows are dumped with COPY TO (with new uids, so that they fit the same version
again), then loaded with COPY FROM in transactions that are rolled back, alternating the variants,
the fastest of ``--repeat`` kept for each. A variant is the current schema with some of issue 13's
changes undone inside the transaction (the DDL is not timed): what each change is worth, measured in
the same minutes on the same rows. CPU is the database backend's own (/proc/<pid>/stat): on a shared
machine wall time is noise. "fk" is the deferred foreign-key checks a commit would run.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.ingest.run import _columns, _database_url, _server_cpu  # noqa: E402

LABEL = "marketplace_label"
# Undo 0010: the geometry as jsonb.
AS_JSONB = [f"ALTER TABLE {LABEL} ALTER geometry TYPE jsonb USING geometry::jsonb"]
# Undo 0011: main's full indexes.
FULL_INDEXES = [
    "DROP INDEX label_candidates, label_annotator_set, label_guideline_set",
    f"CREATE INDEX ab_version_category ON {LABEL} (version_id, category_id)",
    f"CREATE INDEX ab_version_final ON {LABEL} (version_id, is_final)",
    f"CREATE INDEX ab_annotator ON {LABEL} (annotator_id)",
    f"CREATE INDEX ab_guideline ON {LABEL} (guideline_version_id)",
]
# Undo 0012: two single-column foreign keys instead of the composite one.
SINGLE_KEYS = [
    f"ALTER TABLE {LABEL} DROP CONSTRAINT label_item_in_its_version",
    f"ALTER TABLE {LABEL} ADD CONSTRAINT ab_item FOREIGN KEY (item_id) REFERENCES marketplace_item (id) "
    "DEFERRABLE INITIALLY DEFERRED",
    f"ALTER TABLE {LABEL} ADD CONSTRAINT ab_version FOREIGN KEY (version_id) REFERENCES "
    "marketplace_datasetversion (id) DEFERRABLE INITIALLY DEFERRED",
]
VARIANTS = {
    "as main (jsonb, 4 more indexes, 2 keys)": AS_JSONB + FULL_INDEXES + SINGLE_KEYS,
    "geometry jsonb": AS_JSONB,
    "main's indexes": FULL_INDEXES,
    "two single-column keys": SINGLE_KEYS,
    "this branch": [],
}


def _load(conn, path: Path, columns: list[str], ddl: list[str]) -> dict[str, float]:
    pid = conn.info.backend_pid
    with conn.transaction(force_rollback=True), conn.cursor() as cur:
        for statement in ddl:
            cur.execute(statement)
        started = _server_cpu(pid)
        with cur.copy(f"COPY {LABEL} ({', '.join(columns)}) FROM STDIN") as copy, path.open("rb") as fh:
            while block := fh.read(1 << 20):
                copy.write(block)
        copied = _server_cpu(pid)
        cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
        return {"copy": copied - started, "fk": _server_cpu(pid) - copied}


def main() -> int:
    import psycopg

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", required=True, help="a database the ingest bench kept (--keep)")
    parser.add_argument("--repeat", type=int, default=4)
    args = parser.parse_args()
    with psycopg.connect(_database_url(args.db)) as conn, tempfile.TemporaryDirectory() as scratch:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT version_id, count(*) FROM marketplace_label GROUP BY 1 ORDER BY 2 DESC LIMIT 1"
            )
            version, rows = cur.fetchone()
            columns = _columns(cur, LABEL)
            select = ", ".join("gen_random_uuid()" if c == "uid" else c for c in columns)
            path = Path(scratch) / "labels.copy"
            with (
                cur.copy(
                    f"COPY (SELECT {select} FROM {LABEL} WHERE version_id = {int(version)} ORDER BY id) TO STDOUT"
                ) as copy,
                path.open("wb") as fh,
            ):
                for block in copy:
                    fh.write(block)
        conn.commit()
        best: dict[str, dict[str, float]] = {}
        for _ in range(args.repeat):
            for name, ddl in VARIANTS.items():
                out = _load(conn, path, columns, ddl)
                if name not in best or sum(out.values()) < sum(best[name].values()):
                    best[name] = out
    print(
        f"{rows:,} label rows, server CPU per row (fastest of {args.repeat}); load {os.getloadavg()[0]:.1f}"
    )
    for name, out in best.items():
        per = {k: v / rows * 1e6 for k, v in out.items()}
        print(f"  {name:<42} COPY {per['copy']:5.1f}  fk {per['fk']:5.1f}  total {sum(per.values()):5.1f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
