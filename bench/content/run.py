"""Content verification benchmark: the whole ``ledger verify`` of a released version, next to its floor.

    python bench/content/run.py [--images N --labels N | --scale N] [--before PATH] [--db NAME]
                                [--keep] [--reuse]
    python -m bench content            # issue 13's size: 50,000 images / 500,000 labels

The version is made as a supplier's is: bench/ingest's COCO delivery (polygons, crowd RLE, keypoints)
ingested by ``ingest_delivery`` into a scratch PostgreSQL database (``reg_content_bench`` on
BENCH_DATABASE_URL's server, default postgres://postgres@127.0.0.1:5432; ``--db`` another name),
then released by ``publish_version`` (content hash, row reference, signed tree head). That setup is
not timed; ``--keep`` keeps the database (and its media and signing key, in bench/data/content/)
and ``--reuse`` measures a kept one again.

Measured, each step in its own process (its peak memory its own), in rounds (``BENCH_CONTENT_REPEAT``,
default 2), each keeping its fastest round; wall, CPU of the process and CPU of its PostgreSQL backend
(read from /proc: a local server only):

- **floor**: the rows the labels part is made from (``content.label_rows``'s statement: the label
  joined to its item, class and annotator), read out with ``COPY ... TO STDOUT``, one SHA-256 over
  each line plus the part's SHA-256 over those digests: reading and hashing, no canonical row made;
- **canonical lines**: the same with the lines the export's statement builds
  (``marketplace.exports.content_lines``: the canonical rows, built by the server);
- **content**: ``content_verification.verify_version`` (every part against the signed content hash,
  guideline files, each label's geometry against its event's hash), one process;
- **labels part**: that check's labels part alone (``_verify_rows`` reduced to the labels);
- **geometries**: ``verify_label_geometries`` alone;
- **ledger verify**: ``manage.py ledger verify --dataset`` (chain and content, the auditor's command);
- **before** (``--before PATH``): ``verify_version`` and the command by another checkout, on the same
  database, to measure a change in one run.

Results go to bench/results/content.json. Wall-clock figures on a shared machine vary by +-30 %.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.ingest import run as ingest_bench  # noqa: E402

ISSUE_IMAGES, ISSUE_LABELS = 50_000, 500_000
SLUG = "train2017"
RESULTS = ROOT / "bench" / "results" / "content.json"


def _env(db_name: str, scratch: str) -> dict:
    return {
        **os.environ,
        "DATABASE_URL": ingest_bench._database_url(db_name),
        "MEDIA_ROOT": str(Path(scratch) / "media"),
        "VAR_DIR": str(Path(scratch) / "var"),
        "LOG_LEVEL": "WARNING",
        "CELERY_BROKER_URL": "",
        "GENERATE_SECRETS": "true",
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }


def _exists(db_name: str) -> bool:
    import psycopg

    with psycopg.connect(ingest_bench._database_url("postgres"), autocommit=True) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [db_name]).fetchone() is not None


def make_version(images: int, labels: int, db_name: str, env: dict) -> None:
    """Ingest the delivery into a fresh database and publish it (not timed)."""
    archive = ingest_bench.generate(images, labels, True)
    ingest_bench._recreate(db_name)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True
    )
    started = time.perf_counter()
    ingest_bench._run_child("ingest", str(archive), env)
    published = _run(["--child", "publish"], ROOT, env)
    print(
        f"version made: {images:,} images, {labels:,} labels in {time.perf_counter() - started:.1f} s; "
        f"publish_version (content hash, row reference, signed head) {published['wall']:.1f} s / "
        f"{published['cpu']:.1f} s CPU",
        flush=True,
    )


def _run(args: list[str], checkout: Path, env: dict) -> dict:
    """One step in a fresh process of ``checkout`` (this script, run from there), its JSON line back."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "content" / "run.py"), *args],
        cwd=checkout,
        env={**env, "PYTHONPATH": str(checkout)},
        check=False,
        capture_output=True,
        text=True,
    )
    if out.returncode:
        sys.stderr.write(out.stderr[-4000:])
        raise SystemExit(f"bench step {args} failed (exit {out.returncode})")
    return json.loads(out.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- the measured children


def _django() -> None:
    # A --before checkout is first on PYTHONPATH: its own packages, not this one's.
    sys.path.insert(0, os.environ.get("PYTHONPATH", str(ROOT)).split(os.pathsep)[0])
    import django

    django.setup()


def _backend_cpu(pid: int | None = None) -> tuple[int, float] | None:
    """(pid, CPU seconds) of this connection's PostgreSQL backend, read from /proc (a local server only)."""
    from django.db import connection

    if pid is None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            pid = cursor.fetchone()[0]
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return pid, (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu() -> float:
    """CPU seconds of this process and of the children it waited for (the command's chain workers)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def _peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def child_publish() -> dict:
    from django.db import connection

    from marketplace.catalogue.publication import publish_version
    from marketplace.models import DatasetVersion

    version = DatasetVersion.objects.get(dataset__slug=SLUG, status=DatasetVersion.Status.DRAFT)
    started, cpu = time.perf_counter(), time.process_time()
    publish_version(version=version)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    with connection.cursor() as cursor:  # the statistics autovacuum gathers after a bulk load
        cursor.execute("ANALYZE")
    return {"version_id": version.pk, "wall": wall, "cpu": cpu}


def _copy_and_hash(select: str) -> bool:
    """COPY a statement's rows out, one SHA-256 a line and one over the digests (a part's digest)."""
    from django.db import connection

    part, sha256, tail = hashlib.sha256(), hashlib.sha256, b""
    with (
        connection.cursor() as cursor,
        cursor.connection.cursor() as raw,
        raw.copy(f"COPY ({select}) TO STDOUT") as copy,
    ):
        for block in copy:
            lines = (tail + bytes(block)).split(b"\n")
            tail = lines.pop()
            for line in lines:
                part.update(sha256(line).digest())
    return bool(part.digest())


def _floor(version) -> bool:
    """The rows the labels part is made from (``content.label_rows``'s statement), COPY'd out and hashed."""
    from governance.ledger import content
    from marketplace.models import Label

    query = Label.objects.filter(version=version).order_by("uid").values_list(*content._LABEL_COLUMNS)
    sql, params = query.query.sql_with_params()
    return _copy_and_hash(sql % tuple(int(p) for p in params))


def _floor_lines(version) -> bool:
    """The labels' canonical lines as the export's statement builds them, COPY'd out and hashed."""
    from marketplace.exports import content_lines

    return _copy_and_hash(content_lines.LABEL_LINES_SQL.replace("%s", str(int(version.pk))))


def _labels_part(version) -> bool:
    from governance.ledger import content, content_verification

    event = content.published_event(version)
    expected = event.payload["parts"]["labels"]
    reduced = getattr(content_verification, "_part_digest", None)
    if reduced is not None:
        return reduced(version, "labels") == expected
    digest = content.PartDigest()  # a checkout from before content_sql: the Python rows
    for row in content.iter_rows(version, "labels"):
        digest.add(content.row_digest(row))
    return digest.as_dict() == expected


def child_step(step: str) -> dict:
    from django.core.management import call_command

    from governance.ledger import content_verification
    from marketplace.models import DatasetVersion

    version = DatasetVersion.objects.select_related("dataset").get(
        dataset__slug=SLUG, status=DatasetVersion.Status.PUBLISHED
    )

    def cli() -> bool:
        out = io.StringIO()
        call_command("ledger", "verify", "--dataset", SLUG, stdout=out)
        return f"{SLUG}: intact" in out.getvalue()

    run = {
        "floor": lambda: _floor(version),
        "floor_lines": lambda: _floor_lines(version),
        "content": lambda: content_verification.verify_version(version) is None,
        "labels": lambda: _labels_part(version),
        "geometries": lambda: content_verification.verify_label_geometries(version) is None,
        "cli": cli,
    }[step]
    backend = _backend_cpu()
    cpu, wall = _cpu(), time.perf_counter()
    ok = run()
    wall, cpu = time.perf_counter() - wall, _cpu() - cpu
    # The command closes its connection and its chain workers have their own: no server figure then.
    after = None if backend is None else _backend_cpu(backend[0])
    server = None if after is None or step == "cli" else after[1] - backend[1]
    if not ok:
        raise SystemExit(f"{step}: the bench version did not verify")
    checkout = str(Path(content_verification.__file__).resolve().parents[2])
    return {"wall": wall, "cpu": cpu, "server_cpu": server, "rss_mb": _peak_rss_mb(), "checkout": checkout}


# --------------------------------------------------------------------------- the run


STEPS = [
    ("floor", "floor: COPY of the label rows + SHA-256 a line"),
    ("floor_lines", "COPY of the canonical lines SQL builds + SHA-256"),
    ("labels", "labels part against its signed digest"),
    ("geometries", "label geometries against their events"),
    ("content", "verify_version (all parts, files, geometries)"),
    ("cli", "manage.py ledger verify --dataset (chain + content)"),
]


def measure(env: dict, before: Path | None) -> dict:
    runs: dict[str, list[dict]] = {}
    plan = [(step, ROOT, step) for step, _ in STEPS]
    if before is not None:
        plan += [(f"before {step}", before, step) for step in ("labels", "geometries", "content", "cli")]
    for _ in range(max(1, int(os.environ.get("BENCH_CONTENT_REPEAT", "2")))):
        for name, checkout, step in plan:
            runs.setdefault(name, []).append(_run(["--child", "step", "--step", step], checkout, env))
    return {name: min(found, key=lambda r: r["wall"]) for name, found in runs.items()}


def report(best: dict, labels: int) -> None:
    """Each step's best round, and its ratio to the floor: wall, and CPU of client plus server."""
    floor = best["floor"]
    floor_cpu = floor["cpu"] + (floor["server_cpu"] or 0)
    names = dict(STEPS) | {f"before {s}": f"before: {n}" for s, n in STEPS}
    load = os.getloadavg()[0]
    print(f"\nContent verification: {labels:,} labels, {os.cpu_count()} cores, load {load:.1f} at the end\n")
    print(f"{'step':<58} {'wall':>8} {'CPU':>8} {'server':>8} {'peak':>7}  wall/floor  CPU/floor")
    for name, run in best.items():
        server = "n/a" if run["server_cpu"] is None else f"{run['server_cpu']:.2f} s"
        # The command's chain workers have backends of their own: no server figure, no CPU ratio.
        cpu_ratio = (
            "" if run["server_cpu"] is None else f"{(run['cpu'] + run['server_cpu']) / floor_cpu:.2f}x"
        )
        print(
            f"{names[name]:<58} {run['wall']:>6.2f} s {run['cpu']:>6.2f} s {server:>8} "
            f"{run['rss_mb']:>4.0f} MB  {run['wall'] / floor['wall']:>9.2f}x  {cpu_ratio:>9}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=None)
    parser.add_argument("--labels", type=int, default=None)
    parser.add_argument("--scale", type=int, default=1, help="1/N of the issue's size")
    parser.add_argument("--db", default=os.environ.get("BENCH_CONTENT_DB", "reg_content_bench"))
    parser.add_argument("--before", type=Path, default=None, help="another checkout, measured too")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    parser.add_argument("--reuse", action="store_true", help="measure a kept database again")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--step", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _django()
        out = child_publish() if args.child == "publish" else child_step(args.step)
        print(json.dumps(out))
        return 0
    images = args.images or ISSUE_IMAGES // args.scale
    labels = args.labels or ISSUE_LABELS // args.scale
    # The media and the ledger's signing key of the database's version: kept with it (--keep).
    scratch = ROOT / "bench" / "data" / "content" / args.db
    env = _env(args.db, str(scratch))
    try:
        if not (args.reuse and _exists(args.db) and scratch.exists()):
            shutil.rmtree(scratch, ignore_errors=True)
            make_version(images, labels, args.db, env)
        best = measure(env, args.before)
    finally:
        if not args.keep:
            ingest_bench._recreate(args.db, drop_only=True)
            shutil.rmtree(scratch, ignore_errors=True)
    report(best, labels)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"images": images, "labels": labels, "steps": best}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
