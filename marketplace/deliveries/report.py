"""What an ingest reports: problem codes and severities, the report, the result, progress."""

from __future__ import annotations

import logging
import os
import re
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.utils import timezone

from ..formats import model as fmt
from ..formats import policy
from ..models import (
    Delivery,
    Item,
)

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- constants

FORMATS = ("coco", "voc", "yolo", "cvat", "labelstudio")
PROVENANCE_FILE = "provenance.jsonl"

# The report lists at most this many problems; the rest are counted by severity.
MAX_REPORTED_PROBLEMS = 1000
# Everything not listed here is an error: it fails the delivery.
INFO_CODES = frozenset({"skipped_cancelled", "too_many_problems"})
WARNING_CODES = frozenset(
    {
        "duplicate_row",  # YOLO: an exact repeat of a row, dropped
        "clipped",  # YOLO: a box inside Ultralytics' 1% tolerance, clipped to the image
        "inconsistent",  # COCO: num_keypoints disagrees with the keypoints (derived anyway)
        "mask_class_mismatch",  # VOC: the class PNG and the XML disagree; the PNG wins
        "duplicate_content",  # two items are the same file
        "extension_mismatch",  # a .jpg that is a PNG: stored under its real type
        "category_id_kept",  # the previous version's category id wins over the delivery's
        "unmatched_provenance",  # provenance.jsonl names labels the delivery does not have
    }
)

_SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "dev": "val",
    "test": "test",
    "testing": "test",
    "test-dev": "test",
}
# Labels from a source that carries its own stable ids get a uid derived from them, per dataset,
# so the same source label delivered again keeps its identity (and its ledger history).
UID_NAMESPACE = uuid.UUID("6f1c1d1e-5b7e-4d4a-9d55-5d1f0c3b7a21")

PROGRESS_INTERVAL = 0.5  # seconds between progress writes
STORE_THREADS = 8  # concurrent writes to storage (before the write transaction)
SPOOL_BATCH = 2000
ITEM_KEY_MAX = Item._meta.get_field("key").max_length
ITEM_BATCH = 1000
LABEL_BATCH = 5000

# --------------------------------------------------------------------------- results and report


@dataclass
class IngestResult:
    """What one ingest run made of a delivery."""

    delivery_id: int
    status: str
    version_number: int | None = None
    counts: dict = field(default_factory=dict)
    problems: list[dict] = field(default_factory=list)
    created: bool = False  # this call wrote the version (False: it existed, or the delivery failed)

    @property
    def ok(self) -> bool:
        return self.status == Delivery.Status.INGESTED


def severity_of(code: str) -> str:
    """error (fails the delivery), warning or info, by problem code (the readers' own in formats.policy)."""
    return policy.severity_of(code, warnings=WARNING_CODES, infos=INFO_CODES)


def problem_dict(problem: fmt.Problem) -> dict:
    """One problem as the report, the API and the page show it."""
    if problem.line is not None:
        location = f"line {problem.line}"
    elif problem.pointer is not None:
        location = problem.pointer
    else:
        location = ""
    return {
        "severity": severity_of(problem.code),
        "code": problem.code,
        "file": problem.file,
        "location": location,
        "line": problem.line,
        "pointer": problem.pointer,
        "message": problem.message,
    }


class Report:
    """Problems of one run, capped, counted by severity."""

    def __init__(self, limit: int | None = None):
        self.limit = limit or MAX_REPORTED_PROBLEMS
        self.problems: list[dict] = []
        self.counts: Counter = Counter()
        self.dropped = 0

    def add(self, problem: fmt.Problem) -> None:
        entry = problem_dict(problem)
        self.counts[entry["severity"]] += 1
        if len(self.problems) < self.limit:
            self.problems.append(entry)
        else:
            self.dropped += 1

    def extend(self, problems: Iterable[fmt.Problem]) -> None:
        for p in problems:
            self.add(p)

    def error(self, file: str, message: str, *, code: str, line=None, pointer=None) -> None:
        self.add(fmt.Problem(file=file, message=message, line=line, pointer=pointer, code=code))

    @property
    def has_errors(self) -> bool:
        return self.counts["error"] > 0

    def as_dict(self) -> dict:
        # Errors first: they are what the supplier must fix.
        order = {"error": 0, "warning": 1, "info": 2}
        return {
            "problems": sorted(self.problems, key=lambda p: order[p["severity"]]),
            "problem_counts": {s: self.counts[s] for s in ("error", "warning", "info")},
            "problems_not_listed": self.dropped,
        }


class DeliveryFailed(Exception):
    """Validation found errors: nothing may be written."""


# --------------------------------------------------------------------------- small helpers


def normalise_split(raw: str) -> str:
    """A source's subset name as one of train, val, test or '' (train2017 -> train)."""
    s = (raw or "").strip().lower()
    if s in _SPLIT_ALIASES:
        return _SPLIT_ALIASES[s]
    return _SPLIT_ALIASES.get(re.sub(r"[-_]?\d+$", "", s), "")


class FreshUids:
    """``uuid.uuid4()`` drawn ``batch`` at a time: one ``os.urandom`` call, not one per label.

    Each uid is 16 random bytes with the version and variant bits set as ``uuid.uuid4`` sets them
    (``UUID(bytes=..., version=4)``): version 4, RFC 4122 variant; 122 random bits each.
    """

    # The bits UUID(..., version=4) clears and sets: the variant's two and the version's four.
    _KEEP = ~((0xC000 << 48) | (0xF000 << 64)) & ((1 << 128) - 1)
    _SET = (0x8000 << 48) | (4 << 76)

    def __init__(self, batch: int = 4096):
        self.batch = batch
        self._ints: Iterator[int] = iter(())

    def _draw(self) -> Iterator[int]:
        raw = os.urandom(16 * self.batch)
        keep, set_ = self._KEEP, self._SET
        return iter([(int.from_bytes(raw[i : i + 16]) & keep) | set_ for i in range(0, len(raw), 16)])

    def __call__(self) -> uuid.UUID:
        value = next(self._ints, None)
        if value is None:
            self._ints = self._draw()
            value = next(self._ints)
        return uuid_of_int(value)


_new_object, _set_slot = object.__new__, object.__setattr__


def uuid_of_int(value: int) -> uuid.UUID:
    """``uuid.UUID(int=value)`` for a value known to be 128 bits, without the constructor's checks of
    its arguments (0.9 -> 0.45 us; a label's uid is made once and rebuilt from the spool once or twice)."""
    uid = _new_object(uuid.UUID)
    _set_slot(uid, "int", value)
    _set_slot(uid, "is_safe", uuid.SafeUUID.unknown)
    return uid


def label_uid(dataset_id: int, source_uid: str | None, fresh=uuid.uuid4) -> uuid.UUID:
    """The label's uid: the source's own when it is a UUID, derived from it when not, else new
    (``fresh()``: ``uuid.uuid4``, or a ``FreshUids`` for many labels)."""
    if source_uid is None or source_uid == "":
        return fresh()
    try:
        return uuid.UUID(str(source_uid))
    except ValueError:
        return uuid.uuid5(UID_NAMESPACE, f"{dataset_id}:{source_uid}")


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class Progress:
    """Writes a delivery's progress in its own short statements, at most every PROGRESS_INTERVAL."""

    def __init__(self, delivery_id: int):
        self.delivery_id = delivery_id
        self.last = 0.0
        self.percent = -1

    def set(self, percent: int, *, stage: str | None = None, force: bool = False, **counts) -> None:
        percent = max(0, min(99, int(percent)))
        now = time.monotonic()
        if not force and (percent == self.percent or now - self.last < PROGRESS_INTERVAL):
            return
        self.last, self.percent = now, percent
        report = {"stage": stage or "", "counts": counts} if stage else None
        update: dict[str, Any] = {"progress": percent, "touched_at": timezone.now()}
        if report is not None:
            update["report"] = report
        Delivery.objects.filter(pk=self.delivery_id).update(**update)
