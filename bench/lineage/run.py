"""Lineage benchmark: a re-delivery matched against the version it replaces, in PostgreSQL.

    python bench/lineage/run.py [--labels N]          # default BENCH_LINEAGE_LABELS or 500,000
    BENCH_LINEAGE_LABELS=20000 python -m bench lineage

Three COCO deliveries of the same dataset, ~7 boxes per image (tiny distinct PNGs: the point is
the labels), ingested one after the other by ``marketplace.deliveries.service.ingest_delivery`` into a scratch
database (``registry_bench_lineage`` on BENCH_DATABASE_URL's server), each timed whole (zip and
image checks, labels, the write transaction with matching and ledger events, the file copy):

1. **first**: N labels into an empty dataset -- nothing to match; what every ingest cost before
   lineage, and the reference for the figure;
2. **corrected**: the same export after a supplier's fixes, same annotation ids: 2 % of boxes
   nudged by a pixel, 1 % relabelled, 1 % deleted, 1 % added -- matched by source id;
3. **renumbered**: the same content as 2 with every annotation id shuffled (what CVAT does) --
   the ids are refused as inconsistent and every label is matched by geometry.

For 2 and 3 the time spent in ``lineage.match_delivery`` (loading the previous version, the
matching itself) is reported on its own; the ledger events of matched labels are compared with
the previous version's inside ``lineage.lineage_events``, counted in the write transaction.
Each delivery's peak resident memory is measured on its own (``/proc/self/clear_refs`` "5" resets
VmHWM before it) and compared with the first's.
Targets: a re-delivery adds at most 30 % to the ingest time (issue 12) and peaks within ~1.3x of
the first delivery's memory (issue 13). Results: bench/results/lineage.json.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.ingest.run import _migrated_env, _peak_mb, _Phases, _recreate  # noqa: E402

DATA = ROOT / "bench" / "data" / "lineage"
RESULTS = ROOT / "bench" / "results"
W, H = 64, 48
PER_IMAGE = 7
CLASSES = [f"class_{i}" for i in range(1, 21)]


def _png(index: int) -> bytes:
    from PIL import Image

    img = Image.new("RGB", (W, H), (90, 140, 200))
    img.putpixel((0, 0), (index & 0xFF, (index >> 8) & 0xFF, (index >> 16) & 0xFF))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def generate(labels: int) -> tuple[Path, Path, Path]:
    """The three delivery zips (made once per size under bench/data/lineage/)."""
    DATA.mkdir(parents=True, exist_ok=True)
    paths = tuple(DATA / f"{name}-{labels}.zip" for name in ("first", "corrected", "renumbered"))
    if all(p.exists() for p in paths):
        return paths
    rng = random.Random(12)
    images = max(1, labels // PER_IMAGE)
    anns = []
    for a in range(labels):
        w, h = rng.uniform(4, 14), rng.uniform(4, 12)
        anns.append(
            {
                "id": a + 1,
                "image_id": 1 + a % images,
                "category_id": 1 + rng.randrange(len(CLASSES)),
                "bbox": [
                    round(rng.uniform(0, W - w), 2),
                    round(rng.uniform(0, H - h), 2),
                    round(w, 2),
                    round(h, 2),
                ],
                "iscrowd": 0,
            }
        )
    fixed, next_id = [], labels + 1
    for ann in anns:
        roll = rng.random()
        if roll < 0.01:
            continue  # deleted
        ann = {**ann, "bbox": list(ann["bbox"])}
        if roll < 0.03:
            ann["bbox"][0] = round(min(max(ann["bbox"][0] + rng.choice((-1, 1)), 0), W - ann["bbox"][2]), 2)
        elif roll < 0.04:
            ann["category_id"] = 1 + (ann["category_id"] % len(CLASSES))
        fixed.append(ann)
    for _ in range(labels // 100):
        w, h = rng.uniform(4, 14), rng.uniform(4, 12)
        fixed.append(
            {
                "id": next_id,
                "image_id": 1 + rng.randrange(images),
                "category_id": 1 + rng.randrange(len(CLASSES)),
                "bbox": [
                    round(rng.uniform(0, W - w), 2),
                    round(rng.uniform(0, H - h), 2),
                    round(w, 2),
                    round(h, 2),
                ],
                "iscrowd": 0,
            }
        )
        next_id += 1
    ids = list(range(1, len(fixed) + 1))
    rng.shuffle(ids)
    renumbered = [{**a, "id": i} for a, i in zip(fixed, ids, strict=True)]
    pngs = [_png(i + 1) for i in range(images)]
    for path, rows in zip(paths, (anns, fixed, renumbered), strict=True):
        doc = {
            "images": [
                {"id": i + 1, "file_name": f"{i + 1:09d}.png", "width": W, "height": H} for i in range(images)
            ],
            "annotations": rows,
            "categories": [{"id": i + 1, "name": n} for i, n in enumerate(CLASSES)],
        }
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
            zf.writestr("annotations/instances_default.json", json.dumps(doc, separators=(",", ":")))
            for i, data in enumerate(pngs):
                zf.writestr(f"images/{i + 1:09d}.png", data, compress_type=zipfile.ZIP_STORED)
    return paths


def _reset_peak() -> None:
    """Start a new high-water mark: VmHWM falls back to the current resident size (Linux)."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def _phase_peak_mb() -> float:
    """The resident high-water mark since ``_reset_peak`` (VmHWM, in MB)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def child(paths: list[str]) -> dict:
    """In a fresh process: ingest the three deliveries in order; time each, and the matching."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.core.files import File

    from governance.models import LabelEvent
    from marketplace.deliveries import lineage
    from marketplace.deliveries import service as ingest
    from marketplace.models import Dataset, Delivery, Organization

    phases = _Phases()
    lineage.match_delivery = phases.wrap("match", lineage.match_delivery)
    org = Organization.objects.create(name="Bench", slug="bench")
    dataset = Dataset.objects.create(
        slug="lineage", title="lineage", summary="bench", supplier=org, domain=""
    )
    out = {}
    for name, path in zip(("first", "corrected", "renumbered"), paths, strict=True):
        with open(path, "rb") as fh:
            delivery = ingest.create_delivery(dataset=dataset, archive=File(fh, name=Path(path).name))
        events_before = LabelEvent.objects.filter(dataset=dataset).count()
        phases.wall.pop("match", None)
        phases.cpu.pop("match", None)
        gc.collect()
        _reset_peak()
        start_mb = _phase_peak_mb()
        wall = time.perf_counter()
        result = ingest.ingest_delivery(delivery_id=delivery.pk)
        seconds = time.perf_counter() - wall
        peak_mb = _phase_peak_mb()
        if not result.ok:
            raise SystemExit(f"{name}: ingest failed: {result.problems[:5]}")
        report = Delivery.objects.get(pk=delivery.pk).report
        out[name] = {
            "seconds": seconds,
            "match_seconds": phases.wall.get("match", 0.0),
            "match_cpu": phases.cpu.get("match", 0.0),
            "start_mb": start_mb,
            "peak_mb": peak_mb,
            # The process's ru_maxrss so far: it is not reset, and tells in which delivery (or
            # between which) a higher process peak than the per-delivery ones occurred.
            "process_peak_mb": _peak_mb(),
            "labels": result.counts["labels"],
            "events": LabelEvent.objects.filter(dataset=dataset).count() - events_before,
            "lineage": report["lineage"]["counts"],
            "source_ids": report["lineage"].get("source_ids", {}).get("status"),
        }
    out["peak_mb"] = _peak_mb()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--labels", type=int, default=int(os.environ.get("BENCH_LINEAGE_LABELS", "500000")))
    parser.add_argument("--child", nargs="*", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.child)))
        return 0
    paths = generate(args.labels)
    db_name = os.environ.get("BENCH_LINEAGE_DB", "registry_bench_lineage")
    _recreate(db_name)
    with tempfile.TemporaryDirectory(prefix="bench-lineage-") as scratch:
        env = _migrated_env(db_name, scratch)
        run = subprocess.run(
            [sys.executable, __file__, "--child", *map(str, paths)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
    _recreate(db_name, drop_only=True)
    if run.returncode:
        sys.stderr.write(run.stderr[-4000:])
        return 1
    body = json.loads(run.stdout.strip().splitlines()[-1])
    first = body["first"]["seconds"]
    print(
        f"{args.labels:,} labels, ~{PER_IMAGE} boxes per image; PostgreSQL; process peak {body['peak_mb']:.0f} MB; "
        "peak MB per delivery: VmHWM reset before it (the resident size it starts from included); "
        "process: ru_maxrss after it, never reset"
    )
    print(
        f"{'delivery':<12}{'seconds':>9}{'matching s':>12}{'match CPU':>11}{'vs first':>10}{'peak MB':>9}{'vs first':>10}"
        f"{'process':>9}{'events':>9}  lineage"
    )
    first_mb = body["first"]["peak_mb"]
    for name in ("first", "corrected", "renumbered"):
        r = body[name]
        c = r["lineage"]
        print(
            f"{name:<12}{r['seconds']:>9.1f}{r['match_seconds']:>12.2f}"
            f"{r.get('match_cpu', 0.0):>11.2f}{r['seconds'] / first - 1:>+10.0%}"
            f"{r['peak_mb']:>9.0f}{r['peak_mb'] / first_mb:>9.2f}x{r['process_peak_mb']:>9.0f}"
            f"{r['events']:>9,}  uid {c['uid']:,} source id {c['source_id']:,} geometry {c['geometry']:,} "
            f"relabel {c['relabel']:,} new {c['new']:,} removed {c['removed']:,} modified {c['modified']:,}"
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "lineage.json").write_text(json.dumps({"labels": args.labels, **body}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
