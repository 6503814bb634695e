"""Ingest benchmark: issue 13's COCO delivery ingested into PostgreSQL, against pycocotools and the database's floor.

    python bench/ingest/run.py [--images N] [--labels N] [--polygons-only] [--full] [--db NAME] [--keep]
    BENCH_INGEST_FULL=1 python -m bench ingest        # the full train2017 shape

The delivery: one ``annotations/instances_train2017.json`` with 80 categories under COCO's own ids
(1..90 with gaps), ~10 labels per image (issue 13: 50,000 images, 500,000 labels, the default), and a
tiny distinct PNG per image (32x24 px: the point is the labels, not the pixels). In train2017's shares:
~82 % polygons of 8-20 vertices, ~17 % persons (COCO's ``person`` with its 17 keypoints and skeleton)
with a polygon and keypoints (v = 0, 1, 2), ~1 % crowd regions as uncompressed RLE (``iscrowd=1``).
``--polygons-only`` makes the earlier all-polygon delivery; ``--full`` train2017's 118,287 images and
860,001 labels. The zip is generated once into bench/data/ and checked once, independently, by
pycocotools: ``annToMask`` on every annotation (RLE areas and ``num_keypoints`` compared too).

In the same run, on the same annotation file, each in its own process so that peak memory
(``ru_maxrss``) is its own:

- **ingest**: ``marketplace.deliveries.service.ingest_delivery`` into a scratch PostgreSQL database
  (``registry_bench_ingest`` on BENCH_DATABASE_URL's server, default postgres://postgres@127.0.0.1:5432),
  everything included: zip checks, JSON, image checks, labels, the write transaction with its
  ledger events, and the image files copied to storage after the commit; below 64 MiB of JSON, again
  with the COCO file streamed (ijson), which larger files are anyway;
- **database floor**: the items, labels and ledger events that ingest wrote, dumped with COPY TO into
  files and loaded again with COPY FROM into a fresh draft version (indexes, triggers and the deferred
  foreign-key checks included, in a transaction rolled back), then with triggers and FKs off: the
  server's own per-row cost, a floor for ingest's wall time since client and server share the cores;
- **pycocotools**: ``COCO(path)``, what a training pipeline does first with this file.

Targets (issue 13): ingest time <= 1.5x pycocotools' load time, ingest peak memory <= 1/4 of its.
Results go to bench/results/ingest.json.

Memory at ten times the size (issue 13's "done means"), ingest only, no pycocotools, no floor:

    python bench/ingest/run.py --memory-only                  # 50,000 x 500,000, then 500,000 images x 500,000
    python bench/ingest/run.py --memory-only --labels-10x     # and 50,000 images x 5,000,000 labels (long)
    python bench/ingest/run.py --memory-only --shape 50000x5000000   # one delivery of your choice

Each delivery is ingested alone into a fresh scratch database; the peak resident memory (VmHWM,
reset at each phase's start through /proc/self/clear_refs) is printed per phase: before the read
(claim, archive opened), read and check, before the write, write transaction (images stored
alongside), after the write. The delivery limits (DELIVERY_MAX_ENTRIES, DELIVERY_MAX_JSON_BYTES) are
raised as far as the delivery needs and printed: their defaults refuse both 10x deliveries. The
COCO file is streamed whatever its size, as it is at the issue's sizes. Results go to
bench/results/ingest-memory*.json.
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
STREAM_ABOVE_BYTES = 64 * 2**20  # marketplace.formats.coco.STREAM_ABOVE_BYTES, read without Django
# COCO's 80 category ids: 1..90 with the ten gaps of the 2014 paper's 91-class list.
COCO_IDS = [i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]
IMAGE_W, IMAGE_H = 32, 24
ISSUE_IMAGES, ISSUE_LABELS = 50_000, 500_000  # issue 13's delivery: the default size
# Shares in train2017: ~1 % of instances are crowd RLE; person_keypoints_train2017 has ~150k of its
# 262k person annotations with keypoints, ~17 % of the 860k instances.
CROWD_SHARE, KEYPOINT_SHARE = 0.01, 0.17
PERSON_ID = 1
PERSON_KEYPOINTS = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
    "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip
PERSON_SKELETON = (
    (16, 14), (14, 12), (17, 15), (15, 13), (12, 13), (6, 12), (7, 13), (6, 7), (6, 8), (7, 9),
    (8, 10), (9, 11), (2, 3), (1, 2), (1, 3), (2, 4), (3, 5), (4, 6), (5, 7),
)  # fmt: skip


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


def _crowd_rle(rng: random.Random) -> tuple[dict, list[float], int]:
    """An uncompressed COCO RLE (column-major, zeros first) of a ragged blob: counts, bbox, area."""
    x0, w = rng.randint(0, IMAGE_W - 8), rng.randint(4, 8)
    column = []  # per column x, the rows [top, bottom) it covers
    for _ in range(w):
        top = rng.randint(0, IMAGE_H - 6)
        column.append((top, top + rng.randint(2, 6)))
    counts, run, value = [], 0, 0
    for x in range(IMAGE_W):
        top, bottom = column[x - x0] if x0 <= x < x0 + w else (IMAGE_H, IMAGE_H)
        for y in range(IMAGE_H):
            pixel = 1 if top <= y < bottom else 0
            if pixel != value:
                counts.append(run)
                run, value = 0, pixel
            run += 1
    counts.append(run)
    y_min, y_max = min(t for t, _ in column), max(b for _, b in column)
    area = sum(b - t for t, b in column)
    return {"size": [IMAGE_H, IMAGE_W], "counts": counts}, [x0, y_min, w, y_max - y_min], area


def _keypoints(rng: random.Random, bbox: list[float]) -> tuple[list[float], int]:
    """COCO's 17 keypoints inside the box: v=2 visible, v=1 hidden, v=0 unlabelled (x=y=0)."""
    x, y, w, h = bbox
    out, labelled = [], 0
    for _ in PERSON_KEYPOINTS:
        v = rng.choices((0, 1, 2), weights=(3, 1, 6))[0]
        if v:
            labelled += 1
            out += [round(x + rng.uniform(0, w), 2), round(y + rng.uniform(0, h), 2), v]
        else:
            out += [0, 0, 0]
    return out, labelled


def _annotation(a: int, images: int, rng: random.Random, mixed: bool) -> dict:
    """The a-th annotation: a polygon; with ``mixed``, ~1 % crowd RLE and ~17 % person keypoints."""
    kind = rng.random() if mixed else 1.0
    ann = {"id": a + 1, "image_id": 1 + (a * 7919) % images}
    if kind < CROWD_SHARE:
        rle, bbox, area = _crowd_rle(rng)
        category = COCO_IDS[rng.randrange(len(COCO_IDS))]
        ann.update(segmentation=rle, area=area, bbox=bbox, iscrowd=1, category_id=category)
        return ann
    ring, bbox = _polygon(rng)
    area = round(bbox[2] * bbox[3] * 0.7, 2)
    ann.update(segmentation=[ring], area=area, bbox=bbox, iscrowd=0)
    if kind < CROWD_SHARE + KEYPOINT_SHARE:
        keypoints, labelled = _keypoints(rng, bbox)
        ann.update(category_id=PERSON_ID, keypoints=keypoints, num_keypoints=labelled)
    else:
        ann["category_id"] = COCO_IDS[rng.randrange(len(COCO_IDS))]
    return ann


def _categories(mixed: bool) -> list[dict]:
    out = [{"id": c, "name": f"class_{c}", "supercategory": f"super_{c % 12}"} for c in COCO_IDS]
    if mixed:
        out[0] = {
            "id": PERSON_ID,
            "name": "person",
            "supercategory": "person",
            "keypoints": list(PERSON_KEYPOINTS),
            "skeleton": [list(pair) for pair in PERSON_SKELETON],
        }
    return out


def archive_path(images: int, labels: int, mixed: bool) -> Path:
    return DATA / f"coco-{'mixed-' if mixed else ''}{images}-{labels}.zip"


def generate(images: int, labels: int, mixed: bool = True) -> Path:
    """bench/data/ingest/coco[-mixed]-<images>-<labels>.zip, made once; the annotations are written
    one at a time into the zip, so the generator holds no list of them."""
    DATA.mkdir(parents=True, exist_ok=True)
    target = archive_path(images, labels, mixed)
    if target.exists():
        return target
    started = time.perf_counter()
    rng = random.Random(2017)
    dumps = json.JSONEncoder(separators=(",", ":")).encode
    head = {
        "info": {"description": "synthetic, shaped like COCO train2017", "year": 2017},
        "licenses": [{"id": i, "name": f"license {i}", "url": ""} for i in range(1, 9)],
        "categories": _categories(mixed),
    }
    partial = target.with_suffix(".partial")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        with (
            zf.open("annotations/instances_train2017.json", "w", force_zip64=True) as raw,
            io.TextIOWrapper(raw, encoding="utf-8") as out,
        ):
            out.write(dumps(head)[:-1] + ',"images":[')
            for i in range(images):
                out.write(("," if i else "") + dumps(_image(i)))
            out.write('],"annotations":[')
            for a in range(labels):
                out.write(("," if a else "") + dumps(_annotation(a, images, rng, mixed)))
            out.write("]}")
        for i in range(images):
            zf.writestr(f"images/train2017/{i + 1:012d}.png", _png(i + 1), compress_type=zipfile.ZIP_STORED)
    partial.rename(target)
    print(f"generated {target.name} in {time.perf_counter() - started:.1f} s", flush=True)
    return target


def _image(i: int) -> dict:
    return {
        "id": i + 1,
        "file_name": f"{i + 1:012d}.png",
        "width": IMAGE_W,
        "height": IMAGE_H,
        "license": 1 + i % 8,
        "date_captured": "2013-11-14 11:18:45",
        "coco_url": f"http://images.cocodataset.org/train2017/{i + 1:012d}.jpg",
    }


def child_validate(annotation_file: str) -> dict:
    """The independent check of the generator: pycocotools loads the file and draws every annotation's
    mask (annToMask), polygons and crowd RLE alike; keypoints are counted against num_keypoints."""
    import numpy as np
    from pycocotools.coco import COCO

    with open(os.devnull, "w") as quiet:
        stdout, sys.stdout = sys.stdout, quiet
        try:
            coco = COCO(annotation_file)
        finally:
            sys.stdout = stdout
    kinds = {"polygon": 0, "crowd_rle": 0, "keypoints": 0}
    for ann in coco.anns.values():
        mask = coco.annToMask(ann)
        if mask.shape != (IMAGE_H, IMAGE_W) or not np.any(mask):
            raise SystemExit(f"annotation {ann['id']}: empty or misshapen mask")
        if ann["iscrowd"]:
            kinds["crowd_rle"] += 1
            if int(mask.sum()) != ann["area"]:
                raise SystemExit(f"annotation {ann['id']}: RLE area {mask.sum()} != {ann['area']}")
        else:
            kinds["polygon"] += 1
        if "keypoints" in ann:
            kinds["keypoints"] += 1
            if sum(1 for v in ann["keypoints"][2::3] if v) != ann["num_keypoints"]:
                raise SystemExit(f"annotation {ann['id']}: num_keypoints disagrees")
    return {"annotations": len(coco.anns), "images": len(coco.imgs), **kinds}


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


def _status_mb(field: str) -> float:
    """VmHWM (peak) or VmRSS (now) of this process, from /proc/self/status, in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024  # kB
    raise SystemExit(f"no {field} in /proc/self/status (Linux only)")


def _reset_peak() -> None:
    """Start a new high-water mark: VmHWM becomes the current RSS (proc(5), clear_refs "5").

    ru_maxrss cannot do this, and a child's ru_maxrss starts from its parent's high-water mark."""
    Path("/proc/self/clear_refs").write_text("5")


class _MemoryPhases:
    """Peak resident memory (VmHWM) within some functions of the ingest service, one after the other."""

    def __init__(self):
        self.peak: dict[str, float] = {}

    def wrap(self, name: str, fn):
        def wrapper(*args, **kwargs):
            # What happened since the last reset (opening the archive, before the first phase).
            self.peak[f"before {name}"] = _status_mb("VmHWM")
            _reset_peak()
            try:
                return fn(*args, **kwargs)
            finally:
                self.peak[name] = max(self.peak.get(name, 0.0), _status_mb("VmHWM"))
                _reset_peak()

        return wrapper


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

    phases, memory = _Phases(), _MemoryPhases()
    check, write, copy = "read and check", "write transaction", "copy images to storage"
    ingest.validate_delivery = phases.wrap(check, memory.wrap(check, ingest.validate_delivery))
    ingest.write_version = phases.wrap(write, memory.wrap(write, ingest.write_version))
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
    before = _status_mb("VmRSS")
    _reset_peak()
    wall, cpu = time.perf_counter(), time.process_time()
    result = ingest.ingest_delivery(delivery_id=delivery.pk)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    memory.peak["after the write"] = _status_mb("VmHWM")  # since the last phase ended
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
        # VmHWM per phase, reset at each phase's start: the peaks of this process alone (the image
        # check workers are processes of their own), and the resident memory before the ingest.
        "rss_mb_before_ingest": before,
        "peak_mb_by_phase": memory.peak,
        "vm_peak_mb": max(memory.peak.values()),
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


# The database floor: the rows an ingest wrote, loaded again by COPY from files. table -> (the column
# naming the scope, how a dumped row is changed so that it fits a fresh dataset and version).
FLOOR_TABLES = {
    # Items keep their ids shifted past the table's last one, and labels name them so: on PostgreSQL
    # one foreign key checks a label's item and version together (item_id, version_id).
    "marketplace_item": ("version_id", {"version_id": "{version}", "id": "id + {item_offset}"}),
    "marketplace_label": ("version_id", {"version_id": "{version}", "item_id": "item_id + {item_offset}"}),
    # hash is unique: a bijection on hex digits keeps it 64 hex characters and distinct.
    "governance_labelevent": (
        "dataset_id",
        {"dataset_id": "{dataset}", "hash": "translate(hash, '0123456789abcdef', '123456789abcdef0')"},
    ),
}


# Loads per variant, the fastest kept; by default 3 below 200,000 labels, 1 above (where one load of
# each variant takes minutes on a shared machine and the server's CPU seconds vary less than wall).
FLOOR_REPEAT = os.environ.get("BENCH_FLOOR_REPEAT", "")


def _floor_repeat(labels: int) -> int:
    return int(FLOOR_REPEAT) if FLOOR_REPEAT else (3 if labels < 200_000 else 1)


def _columns(cur, table: str) -> list[str]:
    cur.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = %s AND column_name <> 'id' "
        "ORDER BY ordinal_position",
        [table],
    )
    return [row[0] for row in cur.fetchall()]


def _clone_row(cur, table: str, row_id: int, overrides: dict[str, str]) -> int:
    cols = _columns(cur, table)
    values = ", ".join(overrides.get(c, c) for c in cols)
    cur.execute(
        f"INSERT INTO {table} ({', '.join(cols)}) SELECT {values} FROM {table} WHERE id = %s RETURNING id",
        [row_id],
    )
    return cur.fetchone()[0]


def _server_cpu(pid: int) -> float:
    """CPU seconds (user + system) the database backend ``pid`` has used: /proc/<pid>/stat, fields
    14 and 15. The server runs on this machine; on a shared one this is the figure to trust."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _load_floor(conn, files: dict[str, Path], columns: dict[str, list[str]], *, replica: bool) -> dict:
    """COPY the dumped files into the tables inside one transaction, then roll it back; wall and
    server CPU seconds per step. With ``replica`` triggers and foreign keys are off
    (session_replication_role): what is left is the heap, the TOAST and the indexes."""
    wall: dict[str, float] = {}
    cpu: dict[str, float] = {}
    pid = conn.info.backend_pid

    def timed(step, fn):
        started, started_cpu = time.perf_counter(), _server_cpu(pid)
        fn()
        wall[step], cpu[step] = time.perf_counter() - started, _server_cpu(pid) - started_cpu

    def load(cur, table, path):
        with (
            cur.copy(f"COPY {table} ({', '.join(columns[table])}) FROM STDIN") as copy,
            path.open("rb") as fh,
        ):
            while block := fh.read(1 << 20):
                copy.write(block)

    with conn.transaction(force_rollback=True), conn.cursor() as cur:
        if replica:
            cur.execute("SET LOCAL session_replication_role = replica")
        for table, path in files.items():
            timed(table, lambda table=table, path=path: load(cur, table, path))
        # The deferred FK checks a COMMIT would run.
        timed("foreign key checks", lambda: cur.execute("SET CONSTRAINTS ALL IMMEDIATE"))
    return {"wall": wall, "server_cpu": cpu}


def _fastest(a: dict, b: dict) -> dict:
    return b if sum(b["server_cpu"].values()) < sum(a["server_cpu"].values()) else a


def child_floor(slug: str) -> dict:
    """The database's own cost of the rows an ingest wrote: items, labels and ledger events of the
    dataset ``slug`` dumped with COPY TO into files, re-pointed at a fresh draft version of a fresh
    dataset, and timed loading with COPY FROM (indexes, triggers and deferred FK checks included) in
    a transaction that is rolled back; then again with triggers and FKs off."""
    import psycopg

    wall, cpu = time.perf_counter(), time.process_time()
    with psycopg.connect(os.environ["DATABASE_URL"]) as conn, tempfile.TemporaryDirectory() as scratch:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT d.id, v.id FROM marketplace_dataset d JOIN marketplace_datasetversion v "
                "ON v.dataset_id = d.id WHERE d.slug = %s ORDER BY v.number DESC LIMIT 1",
                [slug],
            )
            dataset_id, version_id = cur.fetchone()
            dataset = _clone_row(cur, "marketplace_dataset", dataset_id, {"slug": "slug || '-floor'"})
            version = _clone_row(
                cur,
                "marketplace_datasetversion",
                version_id,
                {"dataset_id": str(dataset), "status": "'draft'"},
            )
            conn.commit()
            files, columns, rows = {}, {}, {}
            cur.execute("SELECT coalesce(max(id), 0) FROM marketplace_item")
            (item_offset,) = cur.fetchone()
            for table, (scope, overrides) in FLOOR_TABLES.items():
                columns[table] = (["id"] if "id" in overrides else []) + _columns(cur, table)
                select = ", ".join(
                    overrides.get(c, c).format(version=version, dataset=dataset, item_offset=item_offset)
                    for c in columns[table]
                )
                scope_id = dataset_id if scope == "dataset_id" else version_id
                files[table] = Path(scratch) / f"{table}.copy"
                with (
                    cur.copy(
                        f"COPY (SELECT {select} FROM {table} WHERE {scope} = {int(scope_id)} ORDER BY id) TO STDOUT"
                    ) as copy,
                    files[table].open("wb") as fh,
                ):
                    for block in copy:
                        fh.write(block)
                cur.execute(f"SELECT count(*) FROM {table} WHERE {scope} = %s", [scope_id])
                rows[table] = cur.fetchone()[0]
        cur = conn.cursor()
        cur.execute("ANALYZE")
        conn.commit()
        # The machine is shared: each load is repeated, alternating, and the fastest of each is kept.
        cpu_load = time.process_time()
        full = _load_floor(conn, files, columns, replica=False)
        cpu_load = time.process_time() - cpu_load
        bare = _load_floor(conn, files, columns, replica=True)
        repeat = _floor_repeat(rows["marketplace_label"])
        for _ in range(repeat - 1):
            full = _fastest(full, _load_floor(conn, files, columns, replica=False))
            bare = _fastest(bare, _load_floor(conn, files, columns, replica=True))
        sizes = {t: p.stat().st_size for t, p in files.items()}
        with conn.cursor() as cur:
            cur.execute("DELETE FROM marketplace_datasetversion WHERE id = %s", [version])
            cur.execute("DELETE FROM marketplace_dataset WHERE id = %s", [dataset])
        conn.commit()
    return {
        "repeat": repeat,
        "seconds": sum(full["wall"].values()),
        "cpu_seconds": cpu_load,
        "server_cpu_seconds": sum(full["server_cpu"].values()),
        "full": full,
        "no_triggers_no_fks": bare,
        "rows": rows,
        "bytes": sizes,
        "peak_mb": _peak_mb(),
        "total_seconds": time.perf_counter() - wall,
        "total_cpu_seconds": time.process_time() - cpu,
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


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    full = os.environ.get("BENCH_INGEST_FULL", "").lower() in ("1", "true", "yes")
    parser.add_argument("--full", action="store_true", default=full, help="train2017 scale")
    parser.add_argument("--images", type=int, default=None, help=f"default {ISSUE_IMAGES:,} (issue 13)")
    parser.add_argument("--labels", type=int, default=None, help=f"default {ISSUE_LABELS:,} (issue 13)")
    parser.add_argument(
        "--polygons-only", action="store_true", help="no crowd RLE, no keypoints (the earlier delivery)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    parser.add_argument(
        "--db",
        default=os.environ.get("BENCH_INGEST_DB", "registry_bench_ingest"),
        help="scratch database name",
    )
    parser.add_argument(
        "--memory-only",
        action="store_true",
        help="ingest only (no pycocotools, no floor): peak memory per phase at 1x and 10x the images "
        "(the same labels), with --labels-10x also at 10x the labels (the same images)",
    )
    parser.add_argument(
        "--labels-10x", action="store_true", help="with --memory-only: the 10x-labels row too"
    )
    parser.add_argument(
        "--shape",
        action="append",
        default=[],
        metavar="IMAGESxLABELS",
        help="with --memory-only: these deliveries instead (repeatable), e.g. --shape 50000x5000000",
    )
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("arg", nargs="?", help=argparse.SUPPRESS)
    return parser.parse_args()


def _child(kind: str, arg: str) -> dict:
    if kind == "generate-unchecked":  # --memory-only: no pycocotools pass (5M labels would need ~12 GB)
        images, labels, mixed = arg.split(",")
        archive = generate(int(images), int(labels), mixed == "mixed")
        with zipfile.ZipFile(archive) as zf:
            json_bytes = zf.getinfo("annotations/instances_train2017.json").file_size
            entries = len(zf.infolist())
        return {"archive": str(archive), "json_bytes": json_bytes, "entries": entries}
    if kind == "generate":
        images, labels, mixed = arg.split(",")
        archive = generate(int(images), int(labels), mixed == "mixed")
        checked = archive.with_suffix(".checked.json")
        if not checked.exists():  # validated once per generated file
            with tempfile.TemporaryDirectory() as scratch:
                path = Path(scratch) / "instances.json"
                _extract_annotations(archive, path)
                checked.write_text(json.dumps(_run_child("validate", str(path), dict(os.environ))))
        return {"archive": str(archive), "checked": json.loads(checked.read_text())}
    if kind in ("ingest", "ingest-streamed"):
        return child_ingest(arg, streamed=kind == "ingest-streamed")
    if kind == "pycocotools":
        return child_pycocotools(arg)
    if kind == "validate":
        return child_validate(arg)
    if kind == "floor":
        return child_floor(arg)
    raise SystemExit(f"unknown child {kind!r}")


def _extract_annotations(archive: Path, target: Path) -> None:
    with (
        zipfile.ZipFile(archive) as zf,
        zf.open("annotations/instances_train2017.json") as src,
        target.open("wb") as dst,
    ):
        while chunk := src.read(1 << 20):
            dst.write(chunk)


def _migrated_env(db_name: str, scratch: str, **extra: str) -> dict:
    """The children's environment on the scratch database and folders, the database migrated."""
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(db_name),
        "MEDIA_ROOT": str(Path(scratch) / "media"),
        "VAR_DIR": str(Path(scratch) / "var"),
        "LOG_LEVEL": "WARNING",
        "CELERY_BROKER_URL": "",
        **extra,
    }
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True
    )
    return env


def _measure(archive: Path, db_name: str, keep: bool) -> dict:
    """Every measured child, in the same run, against one scratch database."""
    _recreate(db_name)
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as scratch:
        env = _migrated_env(db_name, scratch)
        annotation_file = Path(scratch) / "instances_train2017.json"
        _extract_annotations(archive, annotation_file)
        out = {"json_mb": annotation_file.stat().st_size / 2**20}
        out["ingest"] = _run_child("ingest", str(archive), env)
        out["floor"] = _run_child("floor", "train2017", env)
        # Above the threshold the plain ingest streams already: a second run would measure the same.
        if annotation_file.stat().st_size <= STREAM_ABOVE_BYTES:
            out["ingest_streamed"] = _run_child("ingest-streamed", str(archive), env)
        out["pycocotools"] = _run_child("pycocotools", str(annotation_file), env)
    if not keep:
        _recreate(db_name, drop_only=True)
    return out


def _memory_curve(shapes: list[tuple[int, int]], mixed: str, db_name: str) -> list[dict]:
    """--memory-only: each delivery ingested alone into a fresh scratch database; peaks per phase."""
    out = []
    for images, labels in shapes:
        made = _run_child("generate-unchecked", f"{images},{labels},{mixed}", dict(os.environ))
        _recreate(db_name)
        with tempfile.TemporaryDirectory(prefix="bench-ingest-") as scratch:
            # The defaults (250,000 entries, 512 MiB of JSON) refuse the 10x deliveries: raised here,
            # only as far as this delivery needs, and said so in the output.
            env = _migrated_env(
                db_name,
                scratch,
                DELIVERY_MAX_ENTRIES=str(max(250_000, made["entries"])),
                DELIVERY_MAX_JSON_BYTES=str(max(512 * 2**20, made["json_bytes"])),
            )
            # Below STREAM_ABOVE_BYTES the COCO file would be loaded whole; streamed, as a large
            # file is, a reduced-scale run shows what the issue's sizes do.
            run = _run_child("ingest-streamed", made["archive"], env)
        _recreate(db_name, drop_only=True)
        run.update(
            images=images,
            labels_declared=labels,
            json_mb=made["json_bytes"] / 2**20,
            env_limits={k: env[k] for k in ("DELIVERY_MAX_ENTRIES", "DELIVERY_MAX_JSON_BYTES")},
        )
        out.append(run)
        print(_memory_row(run, out[0]), flush=True)
    return out


def _memory_row(run: dict, first: dict) -> str:
    phases = run["peak_mb_by_phase"]
    by_phase = ", ".join(f"{k} {v:.0f}" for k, v in phases.items())
    return (
        f"{run['images']:>9,} images {run['labels']:>10,} labels (JSON {run['json_mb']:,.0f} MB): "
        f"peak {run['vm_peak_mb']:.0f} MB = {run['vm_peak_mb'] / first['vm_peak_mb']:.2f}x the first row; "
        f"before the ingest {run['rss_mb_before_ingest']:.0f} MB; by phase (VmHWM, MB): {by_phase}; "
        f"{run['seconds']:.0f} s wall, {run['cpu_seconds']:.0f} s CPU; limits: {run['env_limits']}"
    )


def _row(name: str, run: dict, labels: int) -> str:
    rate = labels / run["seconds"]
    return f"{name:<40}{run['seconds']:>9.1f}{run['cpu_seconds']:>8.1f}{rate:>11,.0f}{run['peak_mb']:>10.0f}"


def _report(images: int, labels: int, archive: Path, checked: dict, m: dict) -> list[str]:
    ours, floor, theirs = m["ingest"], m["floor"], m["pycocotools"]
    n = ours["labels"]
    lines = [
        f"delivery: {images:,} images, {labels:,} labels ({checked['polygon'] - checked['keypoints']:,} "
        f"polygons, {checked['keypoints']:,} with keypoints, {checked['crowd_rle']:,} crowd RLE; every "
        f"mask drawn by pycocotools), annotation JSON {m['json_mb']:.0f} MB, "
        f"zip {archive.stat().st_size / 2**20:.0f} MB",
        f"{'':<40}{'seconds':>9}{'CPU s':>8}{'labels/s':>11}{'peak MB':>10}",
        _row("ingest (everything, PostgreSQL)", ours, n),
    ]
    if "ingest_streamed" in m:
        lines.append(_row("ingest, COCO streamed (ijson)", m["ingest_streamed"], n))
    lines += [
        _row(
            "database floor (COPY; CPU: the server's)",
            {**floor, "cpu_seconds": floor["server_cpu_seconds"]},
            n,
        ),
        _row("pycocotools COCO(path)", theirs, theirs["labels"]),
        f"ratio: ingest/pycocotools time {ours['seconds'] / theirs['seconds']:.2f}x (target <= 1.5x), "
        f"memory {ours['peak_mb'] / theirs['peak_mb']:.2f}x (target <= 0.25x); "
        f"ingest/floor time {ours['seconds'] / floor['seconds']:.2f}x; "
        f"floor/pycocotools {floor['seconds'] / theirs['seconds']:.2f}x",
        f"database floor, server CPU (wall) per row, COPY into a rolled-back transaction, fastest of "
        f"{floor.get('repeat', 3)}: " + _per_row(floor["full"], floor["rows"]),
        "  same with triggers and FKs off (session_replication_role = replica): "
        + _per_row(floor["no_triggers_no_fks"], floor["rows"]),
        "ingest phases, wall / CPU seconds: "
        + "; ".join(f"{k} {v['seconds']:.1f} / {v['cpu_seconds']:.1f}" for k, v in ours["phases"].items()),
        f"ledger events written: {ours['events']:,}; the ingest process held {ours['peak_mb_before_ingest']:.0f} MB "
        "before the ingest began (Python, Django, codecs)",
        f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs "
        "(wall time well above CPU time: the machine or the database was busy)",
    ]
    return lines


def _per_row(load: dict, rows: dict) -> str:
    parts = []
    for step, cpu in load["server_cpu"].items():
        wall, n = load["wall"][step], rows.get(step)
        name = step.split("_", 1)[1] if step in FLOOR_TABLES else step
        per = f" = {cpu / n * 1e6:.0f} ({wall / n * 1e6:.0f}) us/row" if n else ""
        parts.append(f"{name} {cpu:.2f} s ({wall:.2f}){per}")
    return "; ".join(parts)


def main() -> int:
    args = _arguments()
    if args.child:
        print(json.dumps(_child(args.child, args.arg)))
        return 0
    if args.full:
        images, labels = args.images or FULL_IMAGES, args.labels or FULL_LABELS
    else:
        images, labels = args.images or ISSUE_IMAGES, args.labels or ISSUE_LABELS
    mixed = "polygons" if args.polygons_only else "mixed"
    if args.memory_only:
        # 1x, then ten times the images with the same labels (what grows per image), then ten
        # times the labels on the same images (what grows per label).
        shapes = [(images, labels), (10 * images, labels)]
        if args.labels_10x:
            shapes.append((images, 10 * labels))
        if args.shape:
            shapes = [tuple(int(n) for n in shape.lower().split("x")) for shape in args.shape]
        runs = _memory_curve(shapes, mixed, args.db)
        print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        RESULTS.mkdir(parents=True, exist_ok=True)
        name = "ingest-memory" + ("-" + "-".join(args.shape) if args.shape else "")
        (RESULTS / f"{name}.json").write_text(json.dumps(runs, indent=2))
        return 0
    # Everything big happens in child processes: a child's ru_maxrss starts from its parent's
    # high-water mark (Linux carries it over fork and exec), so this process must stay small.
    made = _run_child("generate", f"{images},{labels},{mixed}", dict(os.environ))
    archive = Path(made["archive"])
    measured = _measure(archive, args.db, args.keep)
    print("\n".join(_report(images, labels, archive, made["checked"], measured)))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "ingest.json").write_text(
        json.dumps({"images": images, "labels": labels, "checked": made["checked"], **measured}, indent=2)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
