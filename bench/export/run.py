"""Export benchmark: a version shaped like COCO train2017, exported to COCO, YOLO and VOC, next to datumaro.

    python bench/export/run.py [--scale N | --full] [--images N] [--labels N] [--formats coco,yolo,voc]
                               [--db NAME] [--keep]
    BENCH_EXPORT_FULL=1 python -m bench export        # the full train2017 shape

The data is the ingest benchmark's shape: one split, 80 categories under COCO's own ids (1..90
with gaps), polygon labels of 8-20 vertices with their boxes, 32x24 px images. Full scale is
118,287 images and 860,001 labels (``--full``, about 25 minutes, most of it datumaro's VOC);
the default is a fortieth (``--scale 40``), so a run takes under three minutes. The version is written straight into a scratch PostgreSQL database
(``registry_bench_export`` on BENCH_DATABASE_URL's server, default postgres://postgres@127.0.0.1:5432)
with ``bulk_create``: the point is the export, not the ingest.

Measured, each in its own process so that peak memory (``ru_maxrss``) is its own, on the same
labels in the same run, labels only (no image files on either side):

- **ours**: ``marketplace.exports.packaging.build_archive`` for coco, yolo (``yolo_task=detect``, what
  datumaro's YOLO writes) and voc: the labels streamed from PostgreSQL through the writer into a
  zip, with datasheet, license, provenance.csv, croissant.json and the SHA-256 manifest;
- **datumaro**: ``Dataset.import_from(<the same labels as COCO JSON>, "coco_instances")`` then
  ``export(..., "coco_instances" | "yolo" | "voc", save_media=False)``: what converting
  the same dataset takes with datumaro.

Memory flatness: ours is also run on a quarter of the images and labels, and with the image
files (a tiny JPEG per item, so the zip holds twice as many entries); the peaks should match.
Targets (issue 5): at least 5x faster than datumaro, peak memory under 300 MB whatever the size.
Results go to bench/results/export.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "bench" / "data" / "export"
RESULTS = ROOT / "bench" / "results"
FULL_IMAGES, FULL_LABELS = 118_287, 860_001
COCO_IDS = [i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]
IMAGE_W, IMAGE_H = 32, 24
FORMATS = ("coco", "yolo", "voc")
DATUMARO_FORMAT = {"coco": "coco_instances", "yolo": "yolo", "voc": "voc"}


# --------------------------------------------------------------------------- data


def _polygon(rng: random.Random) -> tuple[list[float], list[float]]:
    cx, cy = rng.uniform(6, IMAGE_W - 6), rng.uniform(5, IMAGE_H - 5)
    radius = rng.uniform(1.5, 5)
    n = rng.randint(8, 20)
    ring = []
    for k in range(n):
        angle = 2 * math.pi * k / n
        r = radius * rng.uniform(0.6, 1.0)
        ring += [round(cx + r * math.cos(angle), 2), round(cy + r * math.sin(angle), 2)]
    xs, ys = ring[0::2], ring[1::2]
    box = [round(min(xs), 2), round(min(ys), 2), round(max(xs) - min(xs), 2), round(max(ys) - min(ys), 2)]
    return ring, box


def generate(images: int, labels: int) -> Path:
    """bench/data/export/<images>-<labels>/annotations/instances_train.json, made once."""
    folder = DATA / f"{images}-{labels}"
    target = folder / "annotations" / "instances_train.json"
    (folder / "images" / "train").mkdir(parents=True, exist_ok=True)  # datumaro wants the folder, even empty
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    rng = random.Random(2017)
    doc = {
        "info": {"description": "synthetic, shaped like COCO train2017", "year": 2017},
        "licenses": [{"id": 1, "name": "bench", "url": ""}],
        "images": [
            {"id": i + 1, "file_name": f"{i + 1:012d}.jpg", "width": IMAGE_W, "height": IMAGE_H}
            for i in range(images)
        ],
        "annotations": [],
        "categories": [{"id": c, "name": f"class_{c}", "supercategory": f"super_{c % 12}"} for c in COCO_IDS],
    }
    for a in range(labels):
        ring, box = _polygon(rng)
        doc["annotations"].append(
            {
                "id": a + 1,
                "image_id": 1 + (a * 7919) % images,
                "category_id": COCO_IDS[rng.randrange(len(COCO_IDS))],
                "segmentation": [ring],
                "area": round(box[2] * box[3] * 0.7, 2),
                "bbox": box,
                "iscrowd": 0,
            }
        )
    partial = target.with_suffix(".partial")
    partial.write_text(json.dumps(doc, separators=(",", ":")))
    partial.rename(target)
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


def _django():
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def _cpu_seconds() -> float:
    """This process's CPU time (user + system): on a shared machine, steadier than wall time."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --------------------------------------------------------------------------- the measured children


def child_load(annotation_file: str, slug: str) -> dict:
    """Write the COCO labels as a version: items and polygon labels, bulk-inserted."""
    _django()
    from django.db import transaction

    started = time.perf_counter()
    doc = json.loads(Path(annotation_file).read_text())
    with transaction.atomic():  # one commit, not one per batch
        version = _write_version(doc, slug)
    return {"version_id": version.pk, "seconds": time.perf_counter() - started}


def _store_image(index: int) -> str:
    """A tiny distinct JPEG in storage, so exports with images have files to stream."""
    import io

    from PIL import Image

    from marketplace.blobs import put_blob

    img = Image.new("RGB", (IMAGE_W, IMAGE_H), (index % 251, (index // 251) % 251, 90))
    img.putpixel((0, 0), (index & 0xFF, (index >> 8) & 0xFF, (index >> 16) & 0xFF))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=70)
    return put_blob(buf.getvalue(), suffix=".jpg")[0]


def _write_version(doc: dict, slug: str):
    from marketplace.formats import model as fmt
    from marketplace.models import (
        AnnotationSchema,
        Category,
        Dataset,
        DatasetVersion,
        Datasheet,
        Item,
        Label,
        Organization,
    )

    org, _ = Organization.objects.get_or_create(slug="bench", defaults={"name": "Bench"})
    dataset = Dataset.objects.create(slug=slug, title=slug, summary="bench", supplier=org, domain="bench")
    version = DatasetVersion.objects.create(dataset=dataset, number=1)
    Datasheet.objects.create(version=version, purpose="Benchmark.")
    schema = AnnotationSchema.objects.create(version=version)
    cats = {
        c["id"]: Category.objects.create(
            schema=schema,
            name=c["name"],
            source_id=c["id"],
            supercategory=c["supercategory"],
            geometry_types=[fmt.POLYGON],
        )
        for c in doc["categories"]
    }
    items = [
        Item(
            version=version,
            key=f"images/train/{img['file_name']}",
            storage_key=_store_image(img["id"]),
            sha256=f"{img['id']:064x}",
            width=img["width"],
            height=img["height"],
            split="train",
        )
        for img in doc["images"]
    ]
    Item.objects.bulk_create(items, batch_size=5000)
    item_ids = dict(Item.objects.filter(version=version).values_list("key", "pk"))
    by_image = {img["id"]: item_ids[f"images/train/{img['file_name']}"] for img in doc["images"]}
    batch = []
    for a in doc["annotations"]:
        batch.append(
            Label(
                version=version,
                item_id=by_image[a["image_id"]],
                category=cats[a["category_id"]],
                geometry_type=fmt.POLYGON,
                geometry={"polygons": a["segmentation"], "bbox": a["bbox"]},
            )
        )
        if len(batch) == 5000:
            Label.objects.bulk_create(batch)
            batch = []
    Label.objects.bulk_create(batch)
    return version


def child_ours(version_id: str, format: str, out: str, images: str = "no") -> dict:
    _django()
    from django.urls import get_resolver

    from marketplace.exports import packaging as export_packaging
    from marketplace.exports import service as export_service
    from marketplace.models import DatasetVersion

    # A worker has its URLconf loaded long before an export runs; importing it (and what it imports,
    # scipy among others) is start-up cost, not export cost.
    get_resolver().url_patterns  # noqa: B018
    version = DatasetVersion.objects.get(pk=int(version_id))
    options = {"include_images": images == "yes"}
    if format == "yolo":
        options["yolo_task"] = "detect"
    options = export_service.normalise_options(version=version, format=format, options=options)
    baseline = _peak_mb()
    started, cpu = time.perf_counter(), _cpu_seconds()
    with open(out, "wb") as fh:
        result = export_packaging.build_archive(version=version, format=format, options=options, fileobj=fh)
    return {
        "seconds": time.perf_counter() - started,
        "cpu_seconds": _cpu_seconds() - cpu,
        "peak_mb": _peak_mb(),
        "baseline_mb": baseline,
        "bytes": os.path.getsize(out),
        "summary": {k: v for k, v in result.summary.items() if not isinstance(v, dict)},
    }


def child_datumaro(annotation_root: str, format: str, out: str) -> dict:
    import logging

    import datumaro as dm

    logging.disable(logging.WARNING)
    started, cpu = time.perf_counter(), _cpu_seconds()
    dataset = dm.Dataset.import_from(annotation_root, "coco_instances")
    dataset.export(out, DATUMARO_FORMAT[format], save_media=False)
    elapsed, cpu = time.perf_counter() - started, _cpu_seconds() - cpu
    size = sum(p.stat().st_size for p in Path(out).rglob("*") if p.is_file())
    return {"seconds": elapsed, "cpu_seconds": cpu, "peak_mb": _peak_mb(), "bytes": size}


def _run_child(kind: str, args: list[str], env: dict) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, f"--child={kind}", *args],
        cwd=ROOT,
        env=env,
        check=False,
        capture_output=True,
        text=True,
    )
    if out.returncode:
        raise SystemExit(f"{kind} {args} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    full = os.environ.get("BENCH_EXPORT_FULL", "").lower() in ("1", "true", "yes")
    parser.add_argument("--full", action="store_true", default=full, help="train2017 scale")
    parser.add_argument("--scale", type=int, default=40, help="1/N of train2017 (default 40)")
    parser.add_argument("--images", type=int, default=None)
    parser.add_argument("--labels", type=int, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    parser.add_argument("--formats", default=",".join(FORMATS), help="comma-separated (default: all three)")
    parser.add_argument(
        "--db",
        default=os.environ.get("BENCH_EXPORT_DB", "registry_bench_export"),
        help="scratch database name",
    )
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("args", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child = {"load": child_load, "ours": child_ours, "datumaro": child_datumaro}[args.child]
        print(json.dumps(child(*args.args)))
        return 0

    scale = 1 if args.full else args.scale
    images = args.images or FULL_IMAGES // scale
    labels = args.labels or FULL_LABELS // scale
    big = generate(images, labels)
    small = generate(images // 4, labels // 4)
    db_name = args.db
    formats = [f for f in args.formats.split(",") if f in FORMATS]
    _recreate(db_name)
    results: dict = {"images": images, "labels": labels, "ours": {}, "datumaro": {}}
    with tempfile.TemporaryDirectory(prefix="bench-export-") as scratch:
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
        loaded = _run_child("load", [str(big), "train2017"], env)
        quarter = _run_child("load", [str(small), "train2017-quarter"], env)
        results["load_seconds"] = loaded["seconds"]
        print(
            f"loaded {images:,} images and {labels:,} polygon labels in {loaded['seconds']:.1f} s", flush=True
        )
        for format in formats:
            ours = _run_child(
                "ours", [str(loaded["version_id"]), format, f"{scratch}/ours-{format}.zip"], env
            )
            theirs = _run_child(
                "datumaro", [str(big.parent.parent), format, f"{scratch}/datumaro-{format}"], env
            )
            results["ours"][format] = ours
            results["datumaro"][format] = theirs
            print(
                f"  {format}: ours {ours['seconds']:.1f} s ({ours['cpu_seconds']:.1f} s CPU) / {ours['peak_mb']:.0f} MB, "
                f"datumaro {theirs['seconds']:.1f} s ({theirs['cpu_seconds']:.1f} s CPU) / {theirs['peak_mb']:.0f} MB, "
                f"ratio {theirs['seconds'] / ours['seconds']:.1f}x wall, {theirs['cpu_seconds'] / ours['cpu_seconds']:.1f}x CPU",
                flush=True,
            )
        results["ours_quarter_coco"] = _run_child(
            "ours", [str(quarter["version_id"]), "coco", f"{scratch}/quarter-coco.zip"], env
        )
        if "yolo" in formats:
            # With the images: twice as many files in the zip, the case where a naive writer's memory grows.
            results["ours_yolo_images"] = _run_child(
                "ours", [str(loaded["version_id"]), "yolo", f"{scratch}/ours-yolo-images.zip", "yes"], env
            )
            results["ours_quarter_yolo_images"] = _run_child(
                "ours", [str(quarter["version_id"]), "yolo", f"{scratch}/quarter-yolo-images.zip", "yes"], env
            )
    if not args.keep:
        _recreate(db_name, drop_only=True)

    lines = [
        f"version: {images:,} images, {labels:,} polygon labels (labels only, no image files)",
        f"{'':<8}{'ours s':>9}{'datumaro s':>12}{'speed-up':>10}{'ours MB':>10}{'datumaro MB':>13}{'ours zip MB':>13}",
    ]
    for format in formats:
        ours, theirs = results["ours"][format], results["datumaro"][format]
        lines.append(
            f"{format:<8}{ours['seconds']:>9.1f}{theirs['seconds']:>12.1f}{theirs['seconds'] / ours['seconds']:>9.1f}x"
            f"{ours['peak_mb']:>10.0f}{theirs['peak_mb']:>13.0f}{ours['bytes'] / 2**20:>13.1f}"
        )
    q = results["ours_quarter_coco"]
    lines.append(
        f"memory flatness, ours coco: {q['peak_mb']:.0f} MB at a quarter of the size, "
        f"{results['ours']['coco']['peak_mb']:.0f} MB at full size of this run "
        f"(process before exporting: {results['ours']['coco']['baseline_mb']:.0f} MB)"
    )
    if "yolo" in formats:
        a, b = results["ours_quarter_yolo_images"], results["ours_yolo_images"]
        lines.append(
            f"with the images (yolo): {b['seconds']:.1f} s, {b['bytes'] / 2**20:.0f} MB zip; peak {a['peak_mb']:.0f} MB "
            f"at a quarter of the size, {b['peak_mb']:.0f} MB at full size of this run"
        )
    lines.append("targets: >= 5x faster than datumaro; peak memory < 300 MB whatever the size")
    print("\n".join(lines))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "export.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
