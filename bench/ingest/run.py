"""Ingest benchmark: a COCO delivery shaped like COCO train2017, ingested into PostgreSQL.

    python bench/ingest/run.py [--images N] [--labels N] [--full] [--db NAME] [--keep]
    BENCH_INGEST_FULL=1 python -m bench ingest        # the full train2017 shape

The delivery: one ``annotations/instances_train2017.json`` with 80 categories under COCO's own ids
(1..90 with gaps), ~7.3 polygon annotations of 8-20 vertices per image (train2017's average), and a
tiny distinct PNG per image (32x24 px: the point is the labels, not the pixels). Full scale is
118,287 images and 860,001 labels (``--full`` or BENCH_INGEST_FULL=1); the default is a twentieth
(BENCH_INGEST_SCALE=20), so a run takes a minute or two. The zip is generated once into
bench/data/ and reused.

In the same run, on the same annotation file, each in its own process so that peak memory
(``ru_maxrss``) is its own:

- **ingest**: ``marketplace.deliveries.service.ingest_delivery`` into a scratch PostgreSQL database
  (``registry_bench_ingest`` on BENCH_DATABASE_URL's server, default postgres://postgres@127.0.0.1:5432),
  everything included: zip checks, JSON, image checks, labels, the write transaction with its
  ledger events, and the image files copied to storage after the commit;
- **pycocotools**: ``COCO(path)``, what a training pipeline does first with this file.

Targets (issue 4): ingest time <= 1.5x pycocotools' load time, ingest peak memory <= 1/4 of its.
Results go to bench/results/ingest.json.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "bench" / "data" / "ingest"
RESULTS = ROOT / "bench" / "results"
FULL_IMAGES, FULL_LABELS = 118_287, 860_001
# COCO's 80 category ids: 1..90 with the ten gaps of the 2014 paper's 91-class list.
COCO_IDS = [i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]
IMAGE_W, IMAGE_H = 32, 24


# --------------------------------------------------------------------------- generation


def _png(index: int) -> bytes:
    """A tiny picture that no other index gives: its first pixels spell the index."""
    from PIL import Image

    img = Image.new("RGB", (IMAGE_W, IMAGE_H), (90, 140, 200))
    img.putpixel((0, 0), (index & 0xFF, (index >> 8) & 0xFF, (index >> 16) & 0xFF))
    img.putpixel((1, 0), (index * 7 % 256, index * 13 % 256, index * 29 % 256))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def _polygon(rng: random.Random) -> tuple[list[float], list[float]]:
    """A star-shaped polygon inside the image, and its bbox."""
    cx, cy = rng.uniform(6, IMAGE_W - 6), rng.uniform(5, IMAGE_H - 5)
    radius = rng.uniform(1.5, 5)
    n = rng.randint(8, 20)
    ring = []
    for k in range(n):
        angle = 2 * math.pi * k / n
        r = radius * rng.uniform(0.6, 1.0)
        ring += [round(cx + r * math.cos(angle), 2), round(cy + r * math.sin(angle), 2)]
    xs, ys = ring[0::2], ring[1::2]
    return ring, [
        round(min(xs), 2),
        round(min(ys), 2),
        round(max(xs) - min(xs), 2),
        round(max(ys) - min(ys), 2),
    ]


def generate(images: int, labels: int) -> Path:
    """bench/data/ingest/coco-<images>-<labels>.zip, made once."""
    DATA.mkdir(parents=True, exist_ok=True)
    target = DATA / f"coco-{images}-{labels}.zip"
    if target.exists():
        return target
    started = time.perf_counter()
    rng = random.Random(2017)
    doc_images = [
        {
            "id": i + 1,
            "file_name": f"{i + 1:012d}.png",
            "width": IMAGE_W,
            "height": IMAGE_H,
            "license": 1 + i % 8,
            "date_captured": "2013-11-14 11:18:45",
            "coco_url": f"http://images.cocodataset.org/train2017/{i + 1:012d}.jpg",
        }
        for i in range(images)
    ]
    annotations = []
    for a in range(labels):
        ring, bbox = _polygon(rng)
        annotations.append(
            {
                "id": a + 1,
                "image_id": 1 + (a * 7919) % images,
                "category_id": COCO_IDS[rng.randrange(len(COCO_IDS))],
                "segmentation": [ring],
                "area": round(bbox[2] * bbox[3] * 0.7, 2),
                "bbox": bbox,
                "iscrowd": 0,
            }
        )
    doc = {
        "info": {"description": "synthetic, shaped like COCO train2017", "year": 2017},
        "licenses": [{"id": i, "name": f"license {i}", "url": ""} for i in range(1, 9)],
        "images": doc_images,
        "annotations": annotations,
        "categories": [{"id": c, "name": f"class_{c}", "supercategory": f"super_{c % 12}"} for c in COCO_IDS],
    }
    partial = target.with_suffix(".partial")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.writestr("annotations/instances_train2017.json", json.dumps(doc, separators=(",", ":")))
        for i in range(images):
            zf.writestr(f"images/train2017/{i + 1:012d}.png", _png(i + 1), compress_type=zipfile.ZIP_STORED)
    partial.rename(target)
    print(f"generated {target.name} in {time.perf_counter() - started:.1f} s", flush=True)
    return target


# --------------------------------------------------------------------------- database


def _server_url() -> str:
    return os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")


def _database_url(name: str) -> str:
    return urlunsplit(urlsplit(_server_url())._replace(path=f"/{name}"))


def _recreate(name: str, *, drop_only: bool = False) -> None:
    import psycopg

    with psycopg.connect(_database_url("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if not drop_only:
            conn.execute(f'CREATE DATABASE "{name}"')


# --------------------------------------------------------------------------- the measured children


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


class _Phases:
    """Wall and CPU seconds spent in some functions of the ingest service."""

    def __init__(self):
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    def wrap(self, name: str, fn):
        def wrapper(*args, **kwargs):
            wall, cpu = time.perf_counter(), time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.wall[name] = self.wall.get(name, 0.0) + time.perf_counter() - wall
                self.cpu[name] = self.cpu.get(name, 0.0) + time.process_time() - cpu

        return wrapper


def child_ingest(archive: str, streamed: bool = False) -> dict:
    """Run in a fresh process: ingest the archive as a new delivery; time, phases, peak memory.

    ``streamed``: the COCO file is read by ``formats.coco_stream`` (ijson) whatever its size.
    """
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.core.files import File

    from marketplace.formats import coco

    if streamed:
        coco.STREAM_ABOVE_BYTES = -1

    from governance.models import LabelEvent
    from marketplace.deliveries import service as ingest
    from marketplace.deliveries import write as delivery_write
    from marketplace.models import Dataset, Label, Organization

    phases = _Phases()
    check, write, copy = "read and check", "write transaction", "copy images to storage"
    ingest.validate_delivery = phases.wrap(check, ingest.validate_delivery)
    ingest.write_version = phases.wrap(write, ingest.write_version)
    # The copy runs from write_version's on_commit, which looks the name up in deliveries.write.
    delivery_write.store_delivery_files = phases.wrap(copy, delivery_write.store_delivery_files)

    suffix = "-streamed" if streamed else ""
    org = Organization.objects.create(name="Bench", slug=f"bench{suffix}")
    dataset = Dataset.objects.create(
        slug=f"train2017{suffix}", title="train2017", summary="bench", supplier=org, domain=""
    )
    with open(archive, "rb") as fh:
        delivery = ingest.create_delivery(dataset=dataset, archive=File(fh, name=Path(archive).name))
    baseline = _peak_mb()
    wall, cpu = time.perf_counter(), time.process_time()
    result = ingest.ingest_delivery(delivery_id=delivery.pk)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if not result.ok:
        raise SystemExit(f"ingest failed: {result.problems[:5]}")
    # The copy runs when the write transaction commits, inside write_version: count it once.
    for table in (phases.wall, phases.cpu):
        table[write] -= table.get(copy, 0.0)
    return {
        "seconds": wall,
        "cpu_seconds": cpu,
        "peak_mb": _peak_mb(),
        "peak_mb_before_ingest": baseline,
        "labels": Label.objects.filter(version__dataset=dataset).count(),
        "events": LabelEvent.objects.filter(dataset=dataset).count(),
        "items": result.counts["items"],
        "phases": {k: {"seconds": v, "cpu_seconds": phases.cpu[k]} for k, v in phases.wall.items()},
    }


def child_pycocotools(annotation_file: str) -> dict:
    from pycocotools.coco import COCO

    wall, cpu = time.perf_counter(), time.process_time()
    with open(os.devnull, "w") as quiet:
        stdout, sys.stdout = sys.stdout, quiet
        try:
            coco = COCO(annotation_file)
        finally:
            sys.stdout = stdout
    return {
        "seconds": time.perf_counter() - wall,
        "cpu_seconds": time.process_time() - cpu,
        "peak_mb": _peak_mb(),
        "labels": len(coco.anns),
        "items": len(coco.imgs),
    }


def _run_child(kind: str, arg: str, env: dict) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, f"--child={kind}", arg],
        cwd=ROOT,
        env=env,
        check=False,
        capture_output=True,
        text=True,
    )
    if out.returncode:
        sys.stderr.write(out.stderr[-4000:])
        raise SystemExit(f"bench child {kind!r} failed (exit {out.returncode})")
    return json.loads(out.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    full = os.environ.get("BENCH_INGEST_FULL", "").lower() in ("1", "true", "yes")
    parser.add_argument("--full", action="store_true", default=full, help="train2017 scale")
    parser.add_argument("--images", type=int, default=None)
    parser.add_argument("--labels", type=int, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    parser.add_argument(
        "--db",
        default=os.environ.get("BENCH_INGEST_DB", "registry_bench_ingest"),
        help="scratch database name",
    )
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("arg", nargs="?", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child == "generate":
        images, labels = map(int, args.arg.split(","))
        print(json.dumps({"archive": str(generate(images, labels))}))
        return 0
    if args.child in ("ingest", "ingest-streamed"):
        print(json.dumps(child_ingest(args.arg, streamed=args.child == "ingest-streamed")))
        return 0
    if args.child == "pycocotools":
        print(json.dumps(child_pycocotools(args.arg)))
        return 0

    scale = 1 if args.full else int(os.environ.get("BENCH_INGEST_SCALE", "20"))
    images = args.images or FULL_IMAGES // scale
    labels = args.labels or FULL_LABELS // scale
    # Everything big happens in child processes: a child's ru_maxrss starts from its parent's
    # high-water mark (Linux carries it over fork and exec), so this process must stay small.
    archive = Path(_run_child("generate", f"{images},{labels}", dict(os.environ))["archive"])
    db_name = args.db
    _recreate(db_name)
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as scratch:
        env = {
            **os.environ,
            "DATABASE_URL": _database_url(db_name),
            "MEDIA_ROOT": str(Path(scratch) / "media"),
            "VAR_DIR": str(Path(scratch) / "var"),
            "LOG_LEVEL": "WARNING",
            "CELERY_BROKER_URL": "",
        }
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True
        )
        annotation_file = Path(scratch) / "instances_train2017.json"
        with (
            zipfile.ZipFile(archive) as zf,
            zf.open("annotations/instances_train2017.json") as src,
            annotation_file.open("wb") as dst,
        ):
            while chunk := src.read(1 << 20):
                dst.write(chunk)
        json_mb = annotation_file.stat().st_size / 2**20

        ours = _run_child("ingest", str(archive), env)
        streamed = _run_child("ingest-streamed", str(archive), env)
        theirs = _run_child("pycocotools", str(annotation_file), env)
    if not args.keep:
        _recreate(db_name, drop_only=True)

    rate = ours["labels"] / ours["seconds"]
    lines = [
        f"delivery: {images:,} images, {labels:,} polygon labels, annotation JSON {json_mb:.0f} MB, "
        f"zip {archive.stat().st_size / 2**20:.0f} MB",
        f"{'':<34}{'seconds':>9}{'CPU s':>8}{'labels/s':>11}{'peak MB':>10}",
        f"{'ingest (everything, PostgreSQL)':<34}{ours['seconds']:>9.1f}{ours['cpu_seconds']:>8.1f}"
        f"{rate:>11,.0f}{ours['peak_mb']:>10.0f}",
        f"{'ingest, COCO streamed (ijson)':<34}{streamed['seconds']:>9.1f}{streamed['cpu_seconds']:>8.1f}"
        f"{streamed['labels'] / streamed['seconds']:>11,.0f}{streamed['peak_mb']:>10.0f}",
        f"{'pycocotools COCO(path)':<34}{theirs['seconds']:>9.1f}{theirs['cpu_seconds']:>8.1f}"
        f"{theirs['labels'] / theirs['seconds']:>11,.0f}{theirs['peak_mb']:>10.0f}",
        f"ratio: time {ours['seconds'] / theirs['seconds']:.2f}x (target <= 1.5x), "
        f"memory {ours['peak_mb'] / theirs['peak_mb']:.2f}x (target <= 0.25x); streamed: time "
        f"{streamed['seconds'] / theirs['seconds']:.2f}x, memory {streamed['peak_mb'] / theirs['peak_mb']:.2f}x "
        f"(files above {64} MiB stream by default)",
        "ingest phases, wall / CPU seconds: "
        + "; ".join(f"{k} {v['seconds']:.1f} / {v['cpu_seconds']:.1f}" for k, v in ours["phases"].items()),
        f"ledger events written: {ours['events']:,}; the ingest process held {ours['peak_mb_before_ingest']:.0f} MB "
        "before the ingest began (Python, Django, codecs)",
        f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs "
        "(wall time well above CPU time: the machine or the database was busy)",
    ]
    print("\n".join(lines))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "ingest.json").write_text(
        json.dumps(
            {
                "images": images,
                "labels": labels,
                "json_mb": json_mb,
                "ingest": ours,
                "ingest_streamed": streamed,
                "pycocotools": theirs,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
