"""Ledger benchmark: append, sign, verify and prove over a million events in PostgreSQL.

    python bench/ledger/run.py [--events 1000000] [--keep]

Creates a scratch database (``registry_bench`` on the server of BENCH_DATABASE_URL, default
postgres://postgres@127.0.0.1:5432/registry_bench), migrates it, and drops it at the end unless
--keep. Peers measured in the same run, over the same leaves: the RFC 6962 root computed by a plain
recursive function (the RFC's definition, written out) and by pymerkle's InmemoryTree when pymerkle is
installed (``pip install pymerkle``; it is not a project dependency). Targets from issue 3: full
verification of 1M events < 10 s, one proof < 20 ms. Results go to bench/results/ledger.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def _admin_url(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/postgres"))


def _recreate_database(url: str, *, drop_only: bool = False) -> None:
    import psycopg

    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(_admin_url(url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if not drop_only:
            conn.execute(f'CREATE DATABASE "{name}"')


def _events(count: int, *, seed: int = 7):
    """Realistic label events: boxes with attributes by a handful of annotators over a few weeks."""
    from governance.ledger import EventData

    rng = random.Random(seed)
    start = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    annotators = [f"A-{n}" for n in range(10, 30)]
    categories = ["car", "pedestrian", "cyclist", "traffic_light"]
    for i in range(count):
        x, y = round(rng.uniform(0, 600), 2), round(rng.uniform(0, 400), 2)
        yield EventData(
            label_uid=uuid.UUID(int=rng.getrandbits(128), version=4),
            action="created",
            actor=annotators[i % len(annotators)],
            occurred_at=start + timedelta(seconds=7 * i),
            guideline_version="v1.2",
            source="human",
            payload={
                "after": {
                    "category": categories[i % 4],
                    "geometry_type": "bbox",
                    "geometry": {"bbox": [x, y, round(rng.uniform(8, 120), 2), round(rng.uniform(8, 90), 2)]},
                    "attributes": {"occluded": bool(i % 3 == 0)},
                    "is_final": True,
                    "item": f"images/train/{i // 8:07d}.jpg",
                }
            },
            delivery_id=1,
            version_number=1,
        )


def _rfc6962_root(leaves: list[bytes]) -> bytes:
    """The RFC 6962 definition written out: MTH(D[n]) = H(0x01 || MTH(D[0:k]) || MTH(D[k:n]))."""

    def mth(lo: int, hi: int) -> bytes:
        n = hi - lo
        if n == 1:
            return leaves[lo]
        k = 1 << ((n - 1).bit_length() - 1)
        return hashlib.sha256(b"\x01" + mth(lo, lo + k) + mth(lo + k, hi)).digest()

    return mth(0, len(leaves)) if leaves else hashlib.sha256(b"").digest()


def _timed(fn, *args, **kwargs):
    started = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - started


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--proofs", type=int, default=200)
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    args = parser.parse_args(argv)

    url = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/registry_bench")
    _recreate_database(url)
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("LOG_LEVEL", "ERROR")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection, transaction

    from governance import ledger
    from governance.ledger import merkle
    from governance.models import LabelEvent
    from marketplace.models import Dataset, Organization

    try:
        call_command("migrate", verbosity=0)
        org = Organization.objects.create(name="Bench", slug="bench")
        dataset = Dataset.objects.create(
            slug="bench-ledger", title="Bench", summary="-", supplier=org, domain="x"
        )
        peer_set = Dataset.objects.create(
            slug="bench-peer", title="Peer", summary="-", supplier=org, domain="x"
        )
        n = args.events
        rows = []
        _, t_gen = _timed(lambda: sum(1 for _ in _events(n)))
        rows.append(("bench-side: generating the events alone", t_gen, "included in the append below"))

        def append():
            with transaction.atomic():
                return ledger.append_events(dataset=dataset, events=_events(n))

        _, t_append = _timed(append)
        rows.append(("append (COPY, streamed, 5k batches)", t_append, f"{n / t_append:,.0f} events/s"))

        # Peer for appending: the same events through Django's bulk_create, on a 50k sample.
        sample = min(n, 50_000)
        vendor = connection.vendor

        def append_bulk_create():
            use_copy = ledger.chain._use_copy
            ledger.chain._use_copy = lambda: False
            try:
                with transaction.atomic():
                    return ledger.append_events(dataset=peer_set, events=_events(sample, seed=9))
            finally:
                ledger.chain._use_copy = use_copy

        _, t_bulk = _timed(append_bulk_create)
        rows.append(
            (f"peer: append with bulk_create ({sample:,})", t_bulk, f"{sample / t_bulk:,.0f} events/s")
        )

        head, t_sign = _timed(ledger.sign_tree_head, dataset=dataset)
        rows.append(("sign tree head (stream hashes, root, Ed25519)", t_sign, f"size {head.tree_size:,}"))

        report, t_verify = _timed(ledger.verify_dataset, dataset=dataset)
        assert report.ok, report.problems[:3]
        rows.append(
            ("verify: every hash, link and root (1 process)", t_verify, f"{n / t_verify:,.0f} events/s")
        )
        workers = os.cpu_count() or 2
        report, t_par = _timed(ledger.verify_dataset, dataset=dataset, workers=workers)
        assert report.ok, report.problems[:3]
        rows.append((f"verify with {workers} worker processes", t_par, f"{n / t_par:,.0f} events/s"))

        hashes, t_fetch = _timed(
            lambda: [
                bytes.fromhex(h)
                for h in LabelEvent.objects.filter(dataset=dataset)
                .order_by("seq")
                .values_list("hash", flat=True)
                .iterator(chunk_size=20_000)
            ]
        )
        leaves, t_leaves = _timed(lambda: [merkle.leaf_hash(h) for h in hashes])
        rows.append(("fetch all hashes + leaf hashes (shared by peers)", t_fetch + t_leaves, ""))
        root, t_root = _timed(merkle.root, leaves)
        assert root.hex() == head.root_hash
        rows.append(("root: governance.ledger.merkle (level by level)", t_root, "= signed root"))
        sys.setrecursionlimit(10_000)
        peer_root, t_peer = _timed(_rfc6962_root, leaves)
        rows.append(
            (
                "peer: root by the RFC's recursive definition",
                t_peer,
                "= signed root" if peer_root == root else "DIFFERS",
            )
        )
        try:
            from pymerkle import InmemoryTree
        except ImportError:
            rows.append(("peer: pymerkle InmemoryTree", float("nan"), "not installed (pip install pymerkle)"))
        else:

            def pymerkle_root():
                tree = InmemoryTree(algorithm="sha256")
                for h in hashes:
                    tree.append_entry(h)
                return tree.get_root()

            pm_root, t_pm = _timed(pymerkle_root)
            rows.append(
                (
                    "peer: pymerkle InmemoryTree (append + root)",
                    t_pm,
                    "= signed root" if pm_root == root else "DIFFERS",
                )
            )

        rng = random.Random(3)
        events = list(
            LabelEvent.objects.filter(dataset=dataset, seq__in=rng.sample(range(n), min(args.proofs, n)))
        )
        times = []
        for event in events:
            _, t = _timed(ledger.inclusion_proof_for, event, head=head)
            times.append(t)
        times.sort()
        p95 = times[int(len(times) * 0.95) - 1] if len(times) >= 20 else times[-1]
        rows.append(
            (
                f"inclusion proof, median of {len(times)}",
                statistics.median(times),
                f"p95 {p95 * 1000:.1f} ms, verified",
            )
        )
        full_proof, t_full = _timed(merkle.inclusion_proof, leaves, events[0].seq)
        rows.append(("peer: proof from all leaves in memory", t_full, "no chunk cache"))

        load = os.getloadavg()[0]
        print(
            f"\nLedger benchmark: {n:,} events, PostgreSQL {connection.pg_version // 10000}, "
            f"{os.cpu_count()} cores, load average {load:.1f} at the end\n"
        )
        width = max(len(r[0]) for r in rows)
        print(f"{'step':<{width}}  {'seconds':>9}  note")
        for name, seconds, note in rows:
            shown = f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"
            print(f"{name:<{width}}  {shown:>9}  {note}")
        results = ROOT / "bench" / "results"
        results.mkdir(parents=True, exist_ok=True)
        (results / "ledger.json").write_text(
            json.dumps(
                {
                    "events": n,
                    "vendor": vendor,
                    "load_average": load,
                    "rows": [{"step": a, "seconds": b, "note": c} for a, b, c in rows],
                },
                indent=2,
            )
        )
        return 0
    finally:
        from django.db import connections

        connections.close_all()
        if not args.keep:
            _recreate_database(url, drop_only=True)


if __name__ == "__main__":
    sys.exit(main())
