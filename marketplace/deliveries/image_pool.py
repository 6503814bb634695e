"""Image checks on every core: ``images.inspect_image`` (hash, header, decode at reduced scale) in a pool.

The images go to a pool of forked worker processes, a chunk of a few images per task, and each
worker runs the very same ``inspect_image`` on them and sends back small tuples. A zip on disk is
opened once by each worker for the pool's life (with the same limits) and read there: only member
names cross the pipe; so is the temporary local copy of an archive in object storage, through
``/proc/self/fd`` (Linux). Otherwise (an archive in memory) this process reads the entries and
sends their bytes. Per-image tasks cost the parent about as much as the check
itself (a pickled call and result each), which made a pool of 2 slower than one process.

Ingest walks the delivery's items through ``ahead()``, which keeps a bounded window of images in
flight (at most ``WINDOW_PER_WORKER`` per worker and ``MAX_BYTES_IN_FLIGHT`` bytes) and yields the
items in their order, so the report is the same as with one process, and memory stays flat however
many images.

Anything the pool cannot take (a missing file, an image above ``MAX_IMAGE_BYTES``, a read error) is
left to the in-process check, which reports it exactly as before. A worker that dies makes the rest of
the delivery fall back to the in-process check too.

Small deliveries (fewer than ``MIN_IMAGES`` images) and one-core machines check in-process: a fork
costs more than it saves there. ``IMAGE_CHECK_WORKERS`` (setting, environment) sets the pool size;
0 means one per core, 1 turns the pool off.
"""

from __future__ import annotations

import ctypes
import io
import multiprocessing
import os
import signal
import stat
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, astuple

from django.conf import settings

from ..formats import model as fmt
from ..formats.archive import ZipLimits, ZipSource
from . import images as checks  # the in-process checks this pool runs on every core

MIN_IMAGES = 64
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
# A task is a chunk of up to CHUNK_IMAGES images, sent earlier once it holds CHUNK_BYTES: about ten
# 100 kB photos, or 64 thumbnails, whose checks take ~0.1 ms each and would otherwise cost less than
# their task (a pickled call and result, a wake-up of a worker and of the parent).
CHUNK_IMAGES = 64
CHUNK_BYTES = 1024 * 1024
WINDOW_PER_WORKER = 256  # images ahead per worker: several chunks each, so no worker waits for the next
MAX_BYTES_IN_FLIGHT = 64 * 1024 * 1024

__all__ = ["PooledImageChecker", "ahead", "checker_for", "worker_count"]


def worker_count() -> int:
    """How many processes check images: the setting, or one per core the process may use."""
    configured = int(getattr(settings, "IMAGE_CHECK_WORKERS", 0) or 0)
    if configured > 0:
        return configured
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def checker_for(source) -> checks.ImageChecker:
    """The pooled checker when the delivery is large enough and there are cores to use, else the plain one."""
    workers = worker_count()
    if workers > 1:
        images = sum(1 for n in source.names() if n.lower().endswith(checks.IMAGE_EXTENSIONS))
        if images >= MIN_IMAGES:
            return PooledImageChecker(source, workers=workers)
    return checks.ImageChecker(source)


def ahead(images: checks.ImageChecker, records: Iterable) -> Iterator:
    """Yield ``records`` (items with a ``key``) in order; a pooled checker starts checking them early."""
    if isinstance(images, PooledImageChecker):
        return images.ahead(records)
    return iter(records)


class _BytesSource:
    """The one-file source ``inspect_image`` reads from, in a worker."""

    def __init__(self, data: bytes):
        self.data = data

    def open(self, key: str):
        return io.BytesIO(self.data)


def _die_with_parent() -> None:
    """A checker process ends when the process that forked it dies (a worker SIGKILLed mid-ingest):
    forked, it holds both ends of the pool's pipes and a copy of the database connection, so it
    would otherwise wait forever (seen in CI's production smoke test). Linux only; elsewhere a no-op."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent died before the line above: nobody will send the signal
        os._exit(0)


# An outcome crosses the process boundary as a plain tuple: ("ok", ImageInfo's fields in order),
# ("error", the problems as dicts) or ("local", None): check it again in the parent, its way.
Outcome = tuple[str, object]
_LOCAL: Outcome = ("local", None)


def _inspect_bytes(pairs: list[tuple[str, bytes]]) -> list[Outcome]:
    """In a worker: ``inspect_image`` on each (key, bytes) of a chunk."""
    return [_inspect(_BytesSource(data), key) for key, data in pairs]


_worker_archive: dict[str, ZipSource] = {}


def _inspect_in_archive(path: str, limits: ZipLimits, keys: list[str]) -> list[Outcome]:
    """In a worker: ``inspect_image`` on each entry of a chunk, read from the worker's own handle.

    The handle the worker inherited from the parent shares its file offset with it; a fresh one
    does not. It is opened (and checked, with the same limits) once per worker and archive, and
    kept for the pool's life.
    """
    source = _worker_archive.get(path)
    if source is None:
        for stale in _worker_archive.values():
            stale.close()
        _worker_archive.clear()
        try:
            source = _worker_archive[path] = ZipSource(path, limits=limits)
        except Exception:  # noqa: BLE001 - the archive changed or vanished: the parent checks these itself
            return [_LOCAL] * len(keys)
    return [_inspect(source, key) for key in keys]


def _inspect(source, key: str) -> Outcome:
    try:
        return "ok", astuple(checks.inspect_image(source, key))
    except fmt.FormatError as error:
        return "error", [asdict(p) for p in error.problems]
    except Exception:  # noqa: BLE001 - anything else: the parent checks it again and reports it its way
        return _LOCAL


def _archive_path(source) -> str | None:
    """A path the workers can open the archive by, when it is a file (they then read it themselves).

    A zip opened from a path gives that path. An unnamed temporary file (the local copy of an archive
    in object storage) gives ``/proc/self/fd/N`` on Linux: the forked workers inherit descriptor N, and
    opening that path gives each its own file offset (the inherited descriptor shares the parent's).
    """
    if not isinstance(source, ZipSource):
        return None
    zf = getattr(source, "_zip", None)
    name = getattr(zf, "filename", None)
    if isinstance(name, str) and os.path.isfile(name):
        return name
    try:
        fd = zf.fp.fileno()
        opened, here = os.fstat(fd), os.stat(f"/proc/self/fd/{fd}")
    except (AttributeError, OSError, ValueError):  # in memory, or not on Linux: the bytes are sent
        return None
    same = (opened.st_dev, opened.st_ino) == (here.st_dev, here.st_ino)
    return f"/proc/self/fd/{fd}" if same and stat.S_ISREG(opened.st_mode) else None


class PooledImageChecker(checks.ImageChecker):
    """An ``ImageChecker`` whose checks of upcoming images run in a pool of processes, a chunk per task."""

    def __init__(self, source, *, workers: int):
        super().__init__(source)
        self.workers = workers
        self.window = workers * WINDOW_PER_WORKER
        # At least a few chunks per worker in the window, or a worker idles between two of them.
        self.chunk = max(1, min(CHUNK_IMAGES, WINDOW_PER_WORKER // 4))
        self.pending: dict[str, tuple[Future, int, int]] = {}  # sent: key -> (future, index, size)
        self.unsent: dict[str, tuple[int, bytes | None]] = {}  # the chunk being filled: key -> (size, data)
        self.unsent_bytes = 0
        self.in_flight_bytes = 0
        self.pool: ProcessPoolExecutor | None = None
        self.broken = False
        # A zip on disk is read by the workers themselves: the bytes need not cross a pipe (which costs
        # about as much as the check). Otherwise (a temporary file from object storage) they are sent.
        self.path = _archive_path(source)

    def check(self, key: str) -> checks.ImageInfo | fmt.FormatError:
        if key in self.unsent:
            self._flush()
        waiting = self.pending.pop(key, None)
        if waiting is not None:
            future, index, size = waiting
            self.in_flight_bytes -= size
            if key not in self.results:
                try:
                    outcomes = future.result()
                except BrokenProcessPool:
                    self._give_up()
                else:
                    self._keep(key, outcomes[index])
        return super().check(key)  # the stored outcome, or the in-process check

    def _keep(self, key: str, outcome: Outcome) -> None:
        kind, value = outcome
        if kind == "ok":
            self.results[key] = checks.ImageInfo(*value)
        elif kind == "error":
            self.results[key] = fmt.FormatError([fmt.Problem(**p) for p in value])

    def ahead(self, records: Iterable) -> Iterator:
        window: deque = deque()
        try:
            for record in records:
                self._submit(record.key)
                window.append(record)
                while len(window) > self.window or self.in_flight_bytes > MAX_BYTES_IN_FLIGHT:
                    yield window.popleft()
            self._flush()
            while window:
                yield window.popleft()
        finally:
            self.close()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None
        self._forget_in_flight()

    def _submit(self, key: str) -> None:
        """Add one image to the chunk being filled; send the chunk once it is full."""
        if self.broken or key in self.results or key in self.pending or key in self.unsent:
            return
        data = None
        if self.path is not None:
            try:
                size = self.source.size(key)
            except KeyError:  # missing: the in-process check reports it as before
                return
            if size > checks.MAX_IMAGE_BYTES:
                return
        else:
            try:
                with self.source.open(key) as stream:
                    data = stream.read(checks.MAX_IMAGE_BYTES + 1)
            except Exception:  # noqa: BLE001 - missing or unreadable: the in-process check reports it
                return
            if len(data) > checks.MAX_IMAGE_BYTES:
                return
            size = len(data)
        self.unsent[key] = (size, data)
        self.unsent_bytes += size
        self.in_flight_bytes += size
        if len(self.unsent) >= self.chunk or self.unsent_bytes >= CHUNK_BYTES:
            self._flush()

    def _flush(self) -> None:
        """Send the chunk being filled to the pool as one task."""
        if not self.unsent or self.broken:
            return
        keys = list(self.unsent)
        if self.path is not None:
            task = (_inspect_in_archive, self.path, self.source.limits, keys)
        else:
            task = (_inspect_bytes, [(key, data) for key, (_, data) in self.unsent.items()])
        if self.pool is None:
            # Forked: the workers need no Django setup, and they never touch this process's database
            # connection (they only decode bytes and exit without running its finalisers).
            self.pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=multiprocessing.get_context("fork"),
                initializer=_die_with_parent,
            )
        try:
            future = self.pool.submit(*task)
        except BrokenProcessPool:
            self._give_up()
            return
        for index, (key, (size, _)) in enumerate(self.unsent.items()):
            self.pending[key] = (future, index, size)
        self.unsent.clear()
        self.unsent_bytes = 0

    def _give_up(self) -> None:
        """A worker died (killed, out of memory): check the rest in this process."""
        self.broken = True
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = None
        self._forget_in_flight()

    def _forget_in_flight(self) -> None:
        self.pending.clear()
        self.unsent.clear()
        self.unsent_bytes = 0
        self.in_flight_bytes = 0
