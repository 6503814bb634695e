"""Scale benchmark (issue 13): ledger verification vs its floor, canonical encoding, image checks vs sha256sum.

    python bench/scale/run.py [--events 500000] [--images 5000] [--pngs 50000]
                              [--only verify,encode,images,pngs] [--keep] [--reuse]
    make bench BENCH_SCALE_EVENTS=20000 BENCH_SCALE_IMAGES=300 BENCH_SCALE_REPEAT=1   # smaller, through make

Each part prints its figure next to the peer or floor measured in the same run, and their ratio:

verify   Appends ``--events`` label events (bench/ledger's generator) to a scratch PostgreSQL database
         (``BENCH_SCALE_DATABASE_URL``, default postgres://postgres@127.0.0.1:5432/reg_scale_bench;
         ``--keep`` keeps it, ``--reuse`` reads a kept one's events again), then times, each step in
         its own process (its peak RSS its own), best of ``BENCH_SCALE_REPEAT`` rounds (default 2):
         the floor, one process reading the rows ``ledger verify`` reads (the same ``COPY ... TO
         STDOUT``, timestamps formatted by the server) and chaining one SHA-256 over each row's bytes;
         ``manage.py ledger verify --dataset`` (every event's canonical JSON re-encoded and hashed, its
         prev_hash link, chunk boundaries, Merkle leaves and block roots, every tree head's root and
         Ed25519 signature, released content: none here), with one worker per core; its chain check
         in one process; and the previous verifier (``ledger.verify_dataset``). The one-process steps
         also show their PostgreSQL backend's CPU (read from /proc: a local server only).
encode   Canonical JSON of the same events' documents: the standard library (the documented rule,
         ``verify_offline.canonical_json``) against the orjson fast path (``governance.ledger.canonical``),
         in microseconds per event, CPU time of this process (the machine is shared).
images   ``--images`` JPEGs of 640x480, about 100 kB each, in a stored zip (generated once into
         bench/data/scale/): the ingest image checks (hash, header, decode at 1/8 scale) in one process
         and in the pool (``marketplace.deliveries.image_pool``, one worker per core, a chunk of images
         per task) against ``sha256sum`` over the same files; then storing them (deliveries.write)
         through the storage API and through the local fast path, each a second time (every blob
         present), against ``unzip -q`` of the same archive.
pngs     The same over ``--pngs`` tiny 32x24 PNGs (bench/ingest's images), where all is per-file overhead.

Results go to bench/results/scale.json. Wall-clock figures on a shared machine vary by +-30 %.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/reg_scale_bench"


def _recreate_database(url: str, *, drop_only: bool = False, reuse: bool = False) -> None:
    """Drop and create the scratch database; with ``reuse``, keep one that exists (``--reuse``)."""
    import psycopg

    name = urlsplit(url).path.lstrip("/")
    admin = urlunsplit(urlsplit(url)._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        if reuse and conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            return
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if not drop_only:
            conn.execute(f'CREATE DATABASE "{name}"')


CPU: dict[float, float] = {}  # wall seconds of a step -> CPU seconds of this process and its children


def _cpu() -> float:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def _timed(fn, *args, **kwargs):
    """(result, wall seconds); the CPU seconds (this process and the children it waited for) go to CPU."""
    cpu, started = _cpu(), time.perf_counter()
    result = fn(*args, **kwargs)
    wall = time.perf_counter() - started
    CPU[wall] = _cpu() - cpu
    return result, wall


def _shown(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


# --------------------------------------------------------------------------- verify


def bench_verify(n: int, rows: list) -> None:
    from django.db import transaction

    from bench.ledger.run import _events
    from governance import ledger
    from governance.ledger import chain, verify_chain
    from marketplace.models import Dataset, Organization

    org, _ = Organization.objects.get_or_create(slug="bench", defaults={"name": "Bench"})
    dataset, _ = Dataset.objects.get_or_create(
        slug="bench-scale", defaults={"title": "Bench", "summary": "-", "supplier": org, "domain": "x"}
    )
    peer, _ = Dataset.objects.get_or_create(
        slug="bench-stdlib", defaults={"title": "Peer", "summary": "-", "supplier": org, "domain": "x"}
    )
    if verify_chain._chain_size(dataset.pk) == n and verify_chain._chain_size(peer.pk) == n:
        print(f"reusing the {n:,} events of a kept database (--reuse): no append rows", file=sys.stderr)
        _bench_verify_reads(n, dataset, rows)
        return
    if verify_chain._chain_size(dataset.pk) or verify_chain._chain_size(peer.pk):
        raise SystemExit("the kept database holds another number of events: run without --reuse")

    def append(target) -> None:
        with transaction.atomic():
            ledger.append_events(dataset=target, events=_events(n))

    from governance import verify_offline

    fast_hash = chain.event_hash
    chain.event_hash = verify_offline.event_hash  # the encoder before this change
    try:
        _, t_std = _timed(append, peer)
    finally:
        chain.event_hash = fast_hash
    _, t_fast = _timed(append, dataset)
    rows.append(
        (
            "append",
            "peer: append (COPY) with the stdlib encoder",
            t_std,
            f"{t_std / n * 1e6:.1f} us/event",
            None,
        )
    )
    rows.append(
        (
            "append",
            "append (COPY) with the fast path",
            t_fast,
            f"{t_fast / n * 1e6:.1f} us/event",
            t_fast / t_std,
        )
    )
    ledger.sign_tree_head(dataset=dataset)
    _bench_verify_reads(n, dataset, rows)


def _bench_verify_reads(n: int, dataset, rows: list) -> None:
    """Each read step in a fresh process, so its peak memory (ru_maxrss) is its own, not the append's.

    The steps run in rounds (``BENCH_SCALE_REPEAT``, default 2), floor first in each, and each keeps its
    fastest round: on a shared machine one round alone can land on a busy minute.
    """
    from django.db import connections

    connections.close_all()
    workers = os.cpu_count() or 2
    steps = [
        ("floor", 1, "floor: COPY out + one SHA-256 chain (1 process)"),
        ("cli", workers, f"manage.py ledger verify --dataset ({workers} workers)"),
        ("chain", 1, "ledger verify's chain check, 1 process"),
        ("before", workers, f"before: ledger.verify_dataset, {workers} workers"),
    ]
    runs: dict[str, list[dict]] = {step: [] for step, _, _ in steps}
    for _ in range(max(1, int(os.environ.get("BENCH_SCALE_REPEAT", "2")))):
        for step, count, _ in steps:
            out = subprocess.run(
                [sys.executable, __file__, "--child", step, "--slug", dataset.slug, "--workers", str(count)],
                check=True,
                capture_output=True,
                text=True,
                env=os.environ,
            ).stdout
            runs[step].append(json.loads(out.strip().splitlines()[-1]))
    floor = min(r["wall"] for r in runs["floor"])
    for step, _, name in steps:
        best = min(runs[step], key=lambda r: r["wall"])
        wall = best["wall"]
        CPU[wall] = best["cpu"]
        others = ", ".join(f"{r['wall']:.2f}" for r in runs[step] if r is not best)
        memory = f"peak {best['rss_mb']:.0f} MB" + (
            f", each worker {best['workers_rss_mb']:.0f} MB" if best["workers_rss_mb"] else ""
        )
        rate = "" if step == "floor" else f"{n / wall:,.0f} events/s, "
        if best.get("server_cpu") is not None:
            memory += f", PostgreSQL CPU {best['server_cpu']:.2f} s"
        note = rate + memory + (f"; other rounds {others} s" if others else "")
        rows.append(("verify", name, wall, note, None if step == "floor" else wall / floor))


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


def _peak_rss_mb() -> float:
    """This process's peak RSS since its exec (VmHWM): ru_maxrss would carry the forking parent's peak over."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(step: str, slug: str, workers: int) -> None:
    """One verify step, timed in this process: wall, CPU (with its workers), peak RSS; one JSON line."""
    import io

    from django.core.management import call_command
    from django.db import connection

    from governance import ledger
    from governance.ledger import verify_chain
    from marketplace.models import Dataset

    dataset = Dataset.objects.get(slug=slug)
    n = verify_chain._chain_size(dataset.pk)

    def floor() -> bool:
        # The same rows verify_chain reads, out with COPY, and one SHA-256 chain over them.
        sql = verify_chain._PG_COPY.format(dataset_id=dataset.pk, lo=0, hi=n)
        chained = b"\0" * 32
        sha256 = hashlib.sha256
        tail = b""
        with connection.cursor() as cursor, cursor.connection.cursor() as raw, raw.copy(sql) as copy:
            for block in copy:
                lines = (tail + bytes(block)).split(b"\n")
                tail = lines.pop()
                for line in lines:
                    chained = sha256(line + chained).digest()
        return True

    def cli() -> bool:
        out = io.StringIO()
        call_command("ledger", "verify", "--dataset", slug, "--workers", str(workers), stdout=out)
        return f"{slug}: intact" in out.getvalue()

    run = {
        "floor": floor,
        "cli": cli,
        "chain": lambda: verify_chain.verify_dataset(dataset=dataset, workers=workers).ok,
        "before": lambda: ledger.verify_dataset(dataset=dataset, workers=workers).ok,
    }[step]
    backend = _backend_cpu() if workers == 1 else None
    ok, wall = _timed(run)
    server = None if backend is None else _backend_cpu(backend[0])[1] - backend[1]
    if not ok:
        raise SystemExit(f"{step}: the bench ledger did not verify")
    print(
        json.dumps(
            {
                "wall": wall,
                "cpu": CPU[wall],
                "rss_mb": _peak_rss_mb(),
                "workers_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
                "server_cpu": server,
            }
        )
    )


# --------------------------------------------------------------------------- encode


def bench_encode(n: int, rows: list) -> None:
    from bench.ledger.run import _events
    from governance import verify_offline
    from governance.ledger import canonical, chain

    recorded = chain._iso(chain.timezone.now())
    documents = [
        chain._document(
            "bench-scale",
            seq,
            str(e.label_uid),
            e.action,
            e.actor,
            e.occurred_at,
            recorded,
            e.guideline_version,
            e.source,
            e.model_name,
            e.model_version,
            chain._plain(e.payload),
            e.delivery_id,
            e.version_number,
        )  # fmt: skip
        for seq, e in enumerate(_events(n))
    ]
    assert all(canonical.canonical_json(d) == verify_offline.canonical_json(d) for d in documents)

    def per_event(encode) -> float:
        best = float("inf")
        for _ in range(5):
            started = time.process_time()
            for document in documents:
                encode(document)
            best = min(best, (time.process_time() - started) / len(documents))
        return best

    stdlib = per_event(verify_offline.canonical_json)
    fast = per_event(canonical.canonical_json)
    rows.append(
        (
            "encode",
            "peer: stdlib json (the documented rule), per event",
            stdlib,
            f"{stdlib * 1e6:.2f} us",
            None,
        )
    )
    rows.append(
        ("encode", "orjson fast path, per event", fast, f"{fast * 1e6:.2f} us, same bytes", fast / stdlib)
    )
    assert all(canonical.canonical_event(d) == verify_offline.canonical_json(d) for d in documents)
    event = per_event(canonical.canonical_event)
    rows.append(
        (
            "encode",
            "canonical_event (verify's: payload checked alone)",
            event,
            f"{event * 1e6:.2f} us, same bytes",
            event / stdlib,
        )
    )
    prev = "0" * 64
    ref_hash = per_event(lambda d: verify_offline.event_hash(d, prev))
    fast_hash = per_event(lambda d: canonical.event_hash(d, prev))
    rows.append(("encode", "peer: event hash with stdlib", ref_hash, f"{ref_hash * 1e6:.2f} us", None))
    rows.append(
        (
            "encode",
            "event hash with the fast path",
            fast_hash,
            f"{fast_hash * 1e6:.2f} us",
            fast_hash / ref_hash,
        )
    )


# --------------------------------------------------------------------------- images


def _jpeg(rng: random.Random, index: int) -> bytes:
    """A 640x480 JPEG of about 100 kB: a gradient under enough noise to hold the size up."""
    from PIL import Image

    noise = Image.frombytes("L", (640, 480), rng.randbytes(640 * 480)).convert("RGB")
    base = Image.linear_gradient("L").resize((640, 480)).convert("RGB")
    image = Image.blend(base, noise, 0.22)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=80)
    return buffer.getvalue()


def _image_set(shape: str, count: int) -> tuple[Path, list[Path]]:
    """The files and their stored zip, generated once into bench/data/scale/ (gitignored).

    ``jpeg``: 640x480 JPEGs of about 100 kB (the issue's real sizes); ``png``: the ingest bench's
    distinct 32x24 PNGs (bench/ingest's generator), where the per-file cost is all overhead.
    """
    folder = ROOT / "bench" / "data" / "scale" / f"{shape}-{count}"
    archive = folder / "delivery.zip"
    suffix = ".jpg" if shape == "jpeg" else ".png"
    files = [folder / "images" / f"{i:06d}{suffix}" for i in range(count)]
    if archive.exists():
        return archive, files
    from bench.ingest.run import _png

    (folder / "images").mkdir(parents=True, exist_ok=True)
    rng = random.Random(13)
    for i, path in enumerate(files):
        path.write_bytes(_jpeg(rng, i) if shape == "jpeg" else _png(i))
    partial = folder / "delivery.zip.part"
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_STORED) as zf:
        for path in files:
            zf.write(path, f"images/{path.name}")
    partial.rename(archive)
    return archive, files


class _Record:
    def __init__(self, key):
        self.key = key


def _check_all(archive: Path, keys: list[str], make_checker, pooled: bool) -> int:
    """Check every image as ingest does (in order, forgetting each outcome); return how many passed."""
    from marketplace.formats.archive import ZipLimits, ZipSource

    source = ZipSource(archive, limits=ZipLimits(max_entries=len(keys) + 10))
    checker = make_checker(source)
    records = (_Record(k) for k in keys)
    walk = checker.ahead(records) if pooled else records
    good = 0
    for record in walk:
        good += not isinstance(checker.check(record.key), Exception)
        checker.forget(record.key)
    source.close()
    return good


def _per_image(seconds: float, count: int) -> str:
    return f"{seconds / count * 1e6:,.0f} us/image, {count / seconds:,.0f} images/s"


def bench_images(count: int, rows: list, shape: str = "jpeg") -> None:
    """Image checks (1 process, the pool) against sha256sum; storing them against ``unzip``."""
    from marketplace.deliveries import image_pool
    from marketplace.deliveries.images import ImageChecker

    part = f"img-{shape}"
    archive, files = _image_set(shape, count)
    total = sum(p.stat().st_size for p in files)
    keys = [f"images/{p.name}" for p in files]
    names = b"\0".join(bytes(p) for p in files)  # through xargs: 50,000 names are above ARG_MAX
    _, t_sum = _timed(
        subprocess.run, ["xargs", "-0", "sha256sum"], input=names, check=True, stdout=subprocess.DEVNULL
    )
    rows.append(
        (part, f"peer: sha256sum over {count:,} files ({total / count / 1024:.1f} kB each)", t_sum, "", None)
    )
    good, t_one = _timed(_check_all, archive, keys, ImageChecker, False)
    assert good == count
    rows.append((part, "image checks, 1 process", t_one, _per_image(t_one, count), t_one / t_sum))
    workers = image_pool.worker_count()
    pooled = lambda s: image_pool.PooledImageChecker(s, workers=workers)  # noqa: E731
    good, t_pool = _timed(_check_all, archive, keys, pooled, True)
    assert good == count
    rows.append((part, f"image checks, pool of {workers}", t_pool, _per_image(t_pool, count), t_pool / t_sum))
    bench_store(archive, files, keys, rows, part)


def bench_store(archive: Path, files: list[Path], keys: list[str], rows: list, part: str) -> None:
    """Storing the images (deliveries.write): the storage API path and the local fast path, vs ``unzip``."""
    from django.test import override_settings

    from marketplace.blobs import blob_key
    from marketplace.deliveries import write
    from marketplace.formats.archive import ZipLimits, ZipSource

    count = len(keys)
    pairs = [
        (k, blob_key(hashlib.sha256(p.read_bytes()).hexdigest(), p.suffix))
        for k, p in zip(keys, files, strict=True)
    ]
    scratch = Path(tempfile.mkdtemp(prefix="bench-store-", dir=ROOT / "bench" / "data"))
    try:
        _, t_unzip = _timed(
            subprocess.run, ["unzip", "-q", str(archive), "-d", str(scratch / "unzip")], check=True
        )
        rows.append((part, "peer: unzip -q of the same archive", t_unzip, "", None))
        runs = [
            (
                "store, storage API (8 threads)",
                "api",
                lambda source: write._store_generic(source, iter(pairs)),
            ),
            (
                "store, local fast path (8 threads)",
                "local",
                lambda source: write._store_local(source, iter(pairs)),
            ),
        ]
        for name, folder, store in runs:
            limits = ZipLimits(max_entries=count + 10)
            with (
                override_settings(MEDIA_ROOT=str(scratch / folder)),
                ZipSource(archive, limits=limits) as source,
            ):
                _, seconds = _timed(store, source)
                rows.append((part, name, seconds, _per_image(seconds, count), seconds / t_unzip))
                _, again = _timed(store, source)
                rows.append((part, f"{name}, again (all present)", again, _per_image(again, count), None))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


# --------------------------------------------------------------------------- main


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # Defaults: the sizes, or BENCH_SCALE_EVENTS / BENCH_SCALE_IMAGES (``make bench`` passes no arguments).
    events = int(os.environ.get("BENCH_SCALE_EVENTS", "500000"))
    images = int(os.environ.get("BENCH_SCALE_IMAGES", "5000"))
    parser.add_argument("--events", type=int, default=events, help="ledger events (the issue: 500,000)")
    parser.add_argument("--images", type=int, default=images, help="JPEGs of 640x480 (the issue: 5,000)")
    pngs = int(os.environ.get("BENCH_SCALE_PNGS", "50000"))
    parser.add_argument("--pngs", type=int, default=pngs, help="tiny PNGs (the ingest bench's shape)")
    parser.add_argument("--only", default="verify,encode,images,pngs", help="comma-separated parts")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # one verify step, run by bench_verify
    parser.add_argument("--slug", help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument(
        "--reuse", action="store_true", help="use a kept scratch database's events (same --events) again"
    )
    args = parser.parse_args(argv)
    parts = set(args.only.split(","))

    url = os.environ.get("BENCH_SCALE_DATABASE_URL", DEFAULT_URL)
    if not args.child:
        _recreate_database(url, reuse=args.reuse)
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("LOG_LEVEL", "ERROR")
    import django

    django.setup()
    if args.child:
        _child(args.child, args.slug, args.workers)
        return 0
    from django.core.management import call_command
    from django.db import connections

    rows: list[tuple] = []
    try:
        call_command("migrate", verbosity=0)
        if "encode" in parts:
            bench_encode(min(args.events, 50_000), rows)
        if "verify" in parts:
            bench_verify(args.events, rows)
        if "images" in parts:
            bench_images(args.images, rows)
        if "pngs" in parts:
            bench_images(args.pngs, rows, shape="png")
    finally:
        connections.close_all()
        if not args.keep:
            _recreate_database(url, drop_only=True)

    load = os.getloadavg()[0]
    print(
        f"\nScale benchmark: {args.events:,} events, {args.images:,} images, {os.cpu_count()} cores, "
        f"load average {load:.1f} at the end\n"
    )
    width = max(len(r[1]) for r in rows)
    print(f"{'part':<7} {'step':<{width}}  {'time':>9}  {'ratio':>6}  {'client CPU':>10}  note")
    for part, name, seconds, note, ratio in rows:
        shown = f"{seconds * 1e6:.2f} us" if seconds < 1e-3 else _shown(seconds)
        cpu = f"{CPU[seconds]:.2f} s" if seconds in CPU else ""
        print(
            f"{part:<7} {name:<{width}}  {shown:>9}  {'' if ratio is None else f'{ratio:.2f}x':>6}  {cpu:>10}  {note}"
        )
    print(
        "\nratio: wall time to the peer or floor of the same part, measured in this run. client CPU: this\n"
        "process, its workers and sha256sum (not PostgreSQL). encode rows are CPU time per event."
    )
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "scale.json").write_text(
        json.dumps(
            {
                "events": args.events,
                "images": args.images,
                "load_average": load,
                "rows": [
                    {"part": p, "step": s, "seconds": t, "cpu_seconds": CPU.get(t), "note": n, "ratio": r}
                    for p, s, t, n, r in rows
                ],
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
