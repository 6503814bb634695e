"""Export benchmark: a published version exported to COCO, YOLO and VOC, next to datumaro.

    python bench/export/run.py [--images N --labels N | --scale N | --full] [--formats coco,yolo,voc]
                               [--before PATH] [--db NAME] [--keep]
    python -m bench export              # issue 13's size: 50,000 images / 500,000 polygon labels

The data is the ingest benchmark's shape: one split, 80 categories under COCO's own ids (1..90
with gaps), polygon labels of 8-20 vertices with their boxes, 32x24 px images. The default is
issue 13's row, 50,000 images and 500,000 labels (the buyer's whole archive); ``--scale N`` takes
1/N of it (``--scale 10``: 5,000 / 50,000, a few minutes), ``--images/--labels`` any size, and
``--full`` the train2017 shape (118,287 images, 860,001 labels). The version is written straight into
a scratch PostgreSQL database (``registry_bench_export`` on BENCH_DATABASE_URL's server, default
postgres://postgres@127.0.0.1:5432) with ``bulk_create``, then marked published with its quality
reports computed, as publication does (``version_published``): a buyer exports a published version,
whose Croissant reads the stored reports. Its content files are stored by the function publication
calls (``catalogue.content_files``), which the export copies; that step's time is printed apart. That
setup is not the export's figure; the export is.

Measured, each in its own process so that peak memory (``ru_maxrss``) is its own, on the same
labels in the same run, labels only (no image files on either side), wall and CPU time (user +
system of the child, threads included) and, for ours, the CPU time of its PostgreSQL backends over the
child's life (start-up queries included; read from /proc, a local server only: "server" in the lines):

- **ours**: ``marketplace.exports.packaging.build_archive`` for coco, yolo (``yolo_task=detect``, what
  datumaro's YOLO writes) and voc: the labels streamed from PostgreSQL through the writer into a
  zip, with datasheet, license, provenance.csv, the content rows, croissant.json and the SHA-256
  manifest;
- **before** (``--before PATH``, e.g. ``--before /work/main``): the same export by another checkout of
  the project, on the same database, to measure a change in one run;
- **datumaro**: ``Dataset.import_from(<the same labels as COCO JSON>, "coco_instances")`` then
  ``export(..., "coco_instances" | "yolo" | "voc", save_media=False)``: what converting
  the same dataset takes with datumaro.

Memory flatness: ours is also run on a quarter of the images and labels, and with the image
files (a tiny JPEG per item, so the zip holds twice as many entries); the peaks should match.
Targets (issue 13): at least 5x faster than datumaro, peak memory under 300 MB whatever the size.
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
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "bench" / "data" / "export"
RESULTS = ROOT / "bench" / "results"
FULL_IMAGES, FULL_LABELS = 118_287, 860_001
ISSUE_IMAGES, ISSUE_LABELS = 50_000, 500_000  # issue 13's row: the buyer's whole archive
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
    """This process's peak resident memory since its exec: VmHWM.

    Not ``ru_maxrss``: Linux carries it over fork and exec, so a child forked by a parent that held the
    generated 500,000 annotations (1.2 GB) reported the parent's peak as its own.
    """
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_seconds() -> float:
    """This process's CPU time (user + system): on a shared machine, steadier than wall time."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --------------------------------------------------------------------------- the measured children


def child_load(annotation_file: str, slug: str) -> dict:
    """Write the COCO labels as a version: items and polygon labels, bulk-inserted."""
    _django()
    from django.db import connection, transaction
    from django.utils import timezone

    from governance.quality.reports import compute_quality_reports
    from marketplace.catalogue.content_files import compute_and_store_content
    from marketplace.models import DatasetVersion

    started = time.perf_counter()
    doc = json.loads(Path(annotation_file).read_text())
    with transaction.atomic():  # one commit, not one per batch
        version = _write_version(doc, slug)
    loaded = time.perf_counter() - started
    # Published, with the reports publication computes (what a buyer's export reads); the ledger's
    # events and content hash are left out: they are ingest's and publication's cost, not the export's.
    DatasetVersion.objects.filter(pk=version.pk).update(
        status=DatasetVersion.Status.PUBLISHED, published_at=timezone.now()
    )
    compute_quality_reports(version_id=version.pk)
    reports = time.perf_counter() - started - loaded
    with connection.cursor() as cursor:  # the statistics autovacuum gathers after a bulk load
        cursor.execute("ANALYZE")
    # The content files publication stores (catalogue.content_files), made by the very function
    # publication calls, so the export copies them as a buyer's does; timed apart, not the export's.
    stored = time.perf_counter()
    stored_cpu = _cpu_seconds()
    with transaction.atomic():
        compute_and_store_content(version=DatasetVersion.objects.get(pk=version.pk), record=True)
    return {
        "version_id": version.pk,
        "seconds": loaded,
        "reports_seconds": reports,
        "content_files_seconds": time.perf_counter() - stored,
        "content_files_cpu_seconds": _cpu_seconds() - stored_cpu,
    }


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


class _ServerCPU:
    """CPU seconds the PostgreSQL backends of one database used meanwhile (a local server only: /proc).

    Sampled every 20 ms from the parent, so that it counts the same for any checkout's child (``--before``
    runs another checkout's run.py); a backend that ends between two samples loses at most that much.
    The scratch database has no other client during a measured child.
    """

    def __init__(self, database: str):
        self.marker = f" {database} ".encode()
        self.first: dict[str, float] = {}
        self.last: dict[str, float] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)

    def _sample(self, into: dict[str, float]) -> None:
        tick = os.sysconf("SC_CLK_TCK")
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                cmd = cmdline.read_bytes()
                if not cmd.startswith(b"postgres: ") or self.marker not in cmd:
                    continue
                fields = (cmdline.parent / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            into[cmdline.parent.name] = (int(fields[11]) + int(fields[12])) / tick

    def _watch(self) -> None:
        while not self.stop.wait(0.02):
            self._sample(self.last)

    def __enter__(self):
        self._sample(self.first)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()
        self._sample(self.last)

    def seconds(self) -> float:
        return sum(cpu - self.first.get(pid, 0.0) for pid, cpu in self.last.items())


def _run_child(kind: str, args: list[str], env: dict, root: Path = ROOT) -> dict:
    database = urlsplit(env.get("DATABASE_URL", "")).path.lstrip("/")
    with _ServerCPU(database) as server:
        out = subprocess.run(
            [sys.executable, str(root / "bench" / "export" / "run.py"), f"--child={kind}", *args],
            cwd=root,
            env=env,
            check=False,
            capture_output=True,
            text=True,
        )
    if out.returncode:
        raise SystemExit(f"{kind} {args} failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["server_cpu_seconds"] = server.seconds()
    return result


# --------------------------------------------------------------------------- main


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    full = os.environ.get("BENCH_EXPORT_FULL", "").lower() in ("1", "true", "yes")
    parser.add_argument("--full", action="store_true", default=full, help="train2017's shape")
    parser.add_argument("--scale", type=int, default=1, help="1/N of issue 13's 50,000 / 500,000 (default 1)")
    parser.add_argument("--images", type=int, default=None)
    parser.add_argument("--labels", type=int, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    parser.add_argument("--formats", default=",".join(FORMATS), help="comma-separated (default: all three)")
    parser.add_argument("--before", default=None, help="another checkout to export with too (before/after)")
    parser.add_argument(
        "--db",
        default=os.environ.get("BENCH_EXPORT_DB", "registry_bench_export"),
        help="scratch database name",
    )
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("args", nargs="*", help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> int:
    args = _arguments()
    if args.child:
        child = {"load": child_load, "ours": child_ours, "datumaro": child_datumaro}[args.child]
        print(json.dumps(child(*args.args)))
        return 0
    full_images, full_labels = (FULL_IMAGES, FULL_LABELS) if args.full else (ISSUE_IMAGES, ISSUE_LABELS)
    scale = 1 if args.full else args.scale
    images = args.images or full_images // scale
    labels = args.labels or full_labels // scale
    formats = [f for f in args.formats.split(",") if f in FORMATS]
    before = Path(args.before).resolve() if args.before else None
    _recreate(args.db)
    with tempfile.TemporaryDirectory(prefix="bench-export-") as scratch:
        env = {
            **os.environ,
            "DATABASE_URL": _database_url(args.db),
            "MEDIA_ROOT": str(Path(scratch) / "media"),
            "VAR_DIR": str(Path(scratch) / "var"),
            "LOG_LEVEL": "WARNING",
            "CELERY_BROKER_URL": "",
        }
        results = _measure(images, labels, formats, before, env, scratch)
    if not args.keep:
        _recreate(args.db, drop_only=True)
    print(_report(results, formats))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "export.json").write_text(json.dumps(results, indent=2))
    return 0


def _line(name: str, run: dict) -> str:
    server = f" + {run['server_cpu_seconds']:.2f} s server" if run.get("server_cpu_seconds") else ""
    return f"{name} {run['seconds']:.1f} s ({run['cpu_seconds']:.2f} s CPU{server}) / {run['peak_mb']:.0f} MB"


def _measure(
    images: int, labels: int, formats: list[str], before: Path | None, env: dict, scratch: str
) -> dict:
    """Load the version (and its quarter), then each format: ours, before (if asked), datumaro."""
    big = generate(images, labels)
    small = generate(images // 4, labels // 4)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True
    )
    loaded = _run_child("load", [str(big), "train2017"], env)
    quarter = _run_child("load", [str(small), "train2017-quarter"], env)
    results: dict = {"images": images, "labels": labels, "ours": {}, "before": {}, "datumaro": {}}
    results["load_seconds"], results["reports_seconds"] = loaded["seconds"], loaded["reports_seconds"]
    print(
        f"loaded {images:,} images and {labels:,} polygon labels in {loaded['seconds']:.1f} s "
        f"(+ {loaded['reports_seconds']:.1f} s of quality reports, as publication computes them; "
        f"+ {loaded['content_files_seconds']:.1f} s, {loaded['content_files_cpu_seconds']:.2f} s CPU, "
        "to hash and store the content files as publication does)",
        flush=True,
    )
    version = str(loaded["version_id"])
    for format in formats:
        ours = _run_child("ours", [version, format, f"{scratch}/ours-{format}.zip"], env)
        results["ours"][format] = ours
        text = f"  {format}: {_line('ours', ours)}"
        if before is not None:
            was = _run_child("ours", [version, format, f"{scratch}/before-{format}.zip"], env, root=before)
            results["before"][format] = was
            text += f", {_line('before', was)}"
        theirs = _run_child("datumaro", [str(big.parent.parent), format, f"{scratch}/datumaro-{format}"], env)
        results["datumaro"][format] = theirs
        text += (
            f", {_line('datumaro', theirs)}: {theirs['seconds'] / ours['seconds']:.1f}x wall, "
            f"{theirs['cpu_seconds'] / ours['cpu_seconds']:.1f}x CPU"
        )
        print(text, flush=True)
    results["ours_quarter_coco"] = _run_child(
        "ours", [str(quarter["version_id"]), "coco", f"{scratch}/q.zip"], env
    )
    if "yolo" in formats:
        # With the images: twice as many files in the zip, the case where a naive writer's memory grows.
        results["ours_yolo_images"] = _run_child("ours", [version, "yolo", f"{scratch}/yi.zip", "yes"], env)
        results["ours_quarter_yolo_images"] = _run_child(
            "ours", [str(quarter["version_id"]), "yolo", f"{scratch}/qyi.zip", "yes"], env
        )
    return results


def _report(results: dict, formats: list[str]) -> str:
    images, labels = results["images"], results["labels"]
    lines = [
        f"version: {images:,} images, {labels:,} polygon labels (labels only, no image files); "
        f"load average {os.getloadavg()[0]:.1f}",
        f"{'':<8}{'ours s':>9}{'CPU s':>8}{'datumaro s':>12}{'CPU s':>8}{'speed-up':>10}{'CPU':>7}"
        f"{'ours MB':>9}{'datumaro MB':>13}{'ours zip MB':>13}",
    ]
    for format in formats:
        ours, theirs = results["ours"][format], results["datumaro"][format]
        lines.append(
            f"{format:<8}{ours['seconds']:>9.1f}{ours['cpu_seconds']:>8.1f}{theirs['seconds']:>12.1f}"
            f"{theirs['cpu_seconds']:>8.1f}{theirs['seconds'] / ours['seconds']:>9.1f}x"
            f"{theirs['cpu_seconds'] / ours['cpu_seconds']:>6.1f}x{ours['peak_mb']:>9.0f}{theirs['peak_mb']:>13.0f}"
            f"{ours['bytes'] / 2**20:>13.1f}"
        )
        if format in results["before"]:
            was = results["before"][format]
            lines.append(
                f"{'  before':<8}{was['seconds']:>9.1f}{was['cpu_seconds']:>8.1f}  ({_line('before', was)})"
            )
    q = results["ours_quarter_coco"]
    if "coco" in results["ours"]:
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
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
