"""The ``provenance.jsonl`` sidecar: who made each label, when, how, for formats that cannot say.

COCO, YOLO and Pascal VOC carry no author, time or guideline per annotation. A supplier
delivering them adds a ``provenance.jsonl`` file next to the annotations: UTF-8, one JSON
object per line, blank lines ignored. Two kinds of record:

**Per-label record** -- provenance of one label::

    {"label": "17", "annotator": "ann-042", "created_at": "2024-05-01T09:30:00Z",
     "guideline_version": "v1.2", "source": "human", "review": "accepted",
     "reviewer": "rev-007", "reviewed_at": "2024-05-02T10:00:00Z"}

=====================  ==================================================================
key                    value
=====================  ==================================================================
``label`` (required)   which label: for COCO the annotation ``id`` (a number or a string);
                       for YOLO ``"<label file>:<line>"``, e.g. ``"labels/train/0001.txt:3"``
                       (1-based line); for VOC ``"<xml file>#<object index>"``, e.g.
                       ``"Annotations/0001.xml#1"`` (1-based position among the file's
                       ``<object>`` elements); for CVAT ``"annotations.xml:<line>"`` of the
                       shape. Paths are as inside the delivery, ``/``-separated.
``annotator``          pseudonymous id of the person, e.g. ``"ann-042"``; never an e-mail
                       address (refused as personal data)
``created_at``         ISO-8601 date-time the label was made; no zone given means UTC
``updated_at``         ISO-8601 date-time of its last change (optional)
``guideline_version``  the annotation guideline it was made under, e.g. ``"v1.2"``
``source``             ``"human"``, ``"model"`` or ``"consensus"``
``model_name``         the model that proposed it (``source`` ``"model"``), e.g. ``"yolov8x"``
``model_version``      that model's version, e.g. ``"2024-04-rc2"``
``review``             ``"accepted"``, ``"rejected"``, ``"fixed"`` or ``""`` (not reviewed)
``reviewer``           pseudonymous id of the reviewer (not an e-mail address)
``reviewed_at``        ISO-8601 date-time of the review
=====================  ==================================================================

Every key but ``label`` is optional, and ``null`` means "not given".

**Defaults record** -- at most one, on any line: ``{"defaults": {...}}`` with the same keys
except ``label``. It applies to every label of the delivery for whatever neither the label's
own format nor its per-label record says, e.g.
``{"defaults": {"guideline_version": "v1.2", "source": "human"}}``.

Matching: a reference is compared with the label's ``source_id`` (as a string), its
``source_ref`` (``"<file>:<line>"`` or ``"<file>#<JSON pointer>"``), ``"<file>#<source_id>"``
and its ``uid``, in that order; the first that is in the sidecar wins.

Precedence, field by field: what the annotation format itself records, then the per-label
record, then the defaults. Unknown keys, bad JSON, bad dates, unknown ``source`` or ``review``
values, e-mail addresses and repeated ``label`` references are problems located by line; the
rest of a record is still used. A per-label record whose ``label`` matches no label is
reported by :class:`ProvenanceCoverage` (``unmatched``).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import BinaryIO

from . import model, strict_json

MAX_PROBLEMS = 1000
MAX_LINE_BYTES = 64 * 1024  # a provenance record is a few hundred bytes

REVIEWS = ("accepted", "rejected", "fixed", "")
RECORD_KEYS = (
    "annotator",
    "created_at",
    "updated_at",
    "guideline_version",
    "source",
    "model_name",
    "model_version",
    "review",
    "reviewer",
    "reviewed_at",
)
# JSON key -> Provenance field, where the names differ.
FIELD_FOR_KEY = {"created_at": "made_at"}
DATE_KEYS = ("created_at", "updated_at", "reviewed_at")
PERSON_KEYS = ("annotator", "reviewer")

# Provenance fields the sidecar fills; ``source`` is handled apart (see apply_provenance).
FILLED_FIELDS = (
    "annotator",
    "made_at",
    "updated_at",
    "guideline_version",
    "model_name",
    "model_version",
    "review",
    "reviewer",
    "reviewed_at",
)

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


def parse_timestamp(text: str) -> datetime:
    """An ISO-8601 date-time as an aware datetime; one without a zone is taken as UTC."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("not an ISO-8601 date-time")
    value = datetime.fromisoformat(text.strip())
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def looks_like_email(text: str) -> bool:
    """True if the text holds an e-mail address, which must never be stored as an annotator id."""
    return bool(_EMAIL.search(text))


def read_provenance(
    stream: BinaryIO, *, name: str = "provenance.jsonl"
) -> tuple[dict[str, model.Provenance], model.Provenance, list[model.Problem]]:
    """Read a provenance.jsonl sidecar: per-label provenance by label reference, the defaults, problems."""
    table: dict[str, model.Provenance] = {}
    first_line: dict[str, int] = {}
    defaults = model.Provenance()
    defaults_line: int | None = None
    problems: list[model.Problem] = []

    def problem(line: int, message: str, key: str | None = None, code: str = "invalid") -> None:
        if len(problems) < MAX_PROBLEMS:
            problems.append(
                model.Problem(name, message, line=line, pointer=f"/{key}" if key else None, code=code)
            )
        elif len(problems) == MAX_PROBLEMS:
            problems.append(
                model.Problem(name, "too many problems; the rest are not listed", code="too_many_problems")
            )

    for number, text in _lines(stream, problem):
        if not text.strip():
            continue
        try:
            record = strict_json.loads(text)
        except strict_json.StrictJSONError as exc:  # NaN, 1e400, huge integers, NUL, lone surrogates
            problem(number, f"not acceptable JSON: {exc}", code="invalid_json")
            continue
        except (ValueError, RecursionError) as exc:
            problem(number, f"not valid JSON: {exc}")
            continue
        if not isinstance(record, dict):
            problem(number, "each line must be a JSON object")
            continue
        if "defaults" in record:
            if set(record) != {"defaults"} or not isinstance(record["defaults"], dict):
                problem(number, 'a defaults record is {"defaults": {...}} and nothing else')
                continue
            if defaults_line is not None:
                problem(number, f"a second defaults record (the first is on line {defaults_line}); ignored")
                continue
            defaults_line = number
            defaults = _provenance(record["defaults"], number, problem)
            continue
        reference = record.get("label")
        if isinstance(reference, bool) or not isinstance(reference, (str, int)) or reference == "":
            problem(number, "a per-label record needs a 'label' reference (string or integer)", "label")
            continue
        reference = str(reference)
        if reference in table:
            problem(
                number,
                f"label {reference!r} already has provenance on line {first_line[reference]}; ignored",
                "label",
                code="duplicate",
            )
            continue
        fields = {k: v for k, v in record.items() if k != "label"}
        table[reference] = _provenance(fields, number, problem)
        first_line[reference] = number
    return table, defaults, problems


def _lines(stream: BinaryIO, problem) -> Iterator[tuple[int, str]]:
    """(line number, text) for each line, refusing lines too long to be a provenance record."""
    number = 0
    while True:
        raw = stream.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        number += 1
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            problem(number, f"line is longer than {MAX_LINE_BYTES} bytes; skipped")
            while raw and not raw.endswith(b"\n"):
                raw = stream.readline(MAX_LINE_BYTES)
            continue
        if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        try:
            yield number, raw.decode("utf-8")
        except UnicodeDecodeError:
            problem(number, "line is not UTF-8")


def _provenance(fields: dict, line: int, problem) -> model.Provenance:
    """A Provenance from one record's keys, reporting and dropping the values that do not fit."""
    provenance = model.Provenance()
    for key, value in fields.items():
        if key not in RECORD_KEYS:
            problem(line, f"unknown key {key!r} (known: label, {', '.join(RECORD_KEYS)})", key, "unknown_key")
            continue
        if value is None:
            continue
        if not isinstance(value, str):
            problem(line, f"{key} must be a string", key)
            continue
        if key in DATE_KEYS:
            try:
                value = parse_timestamp(value)
            except ValueError:
                problem(line, f"{key}={value!r} is not an ISO-8601 date-time", key, "bad_date")
                continue
        elif key == "source" and value not in model.SOURCES:
            problem(line, f"source={value!r} is not one of {', '.join(model.SOURCES)}", key, "unknown_source")
            continue
        elif key == "review" and value not in REVIEWS:
            problem(line, f"review={value!r} is not one of accepted, rejected, fixed or ''", key)
            continue
        elif key in PERSON_KEYS and looks_like_email(value):
            problem(line, f"{key} must be a pseudonymous id, not an e-mail address", key, "personal_data")
            continue
        setattr(provenance, FIELD_FOR_KEY.get(key, key), value)
    return provenance


@dataclass
class ProvenanceCoverage:
    """How the labels of a delivery got their provenance, for the ingest report.

    Each label counts once: ``per_label`` matched a record of the sidecar; ``defaults`` matched
    none but took at least one field from the defaults record; ``native`` took nothing from the
    sidecar but its format already named an annotator or a time; ``nothing`` has none of these.
    ``conflicts`` counts fields where the sidecar disagreed with what the format said (the
    format wins).
    """

    per_label: int = 0
    defaults: int = 0
    native: int = 0
    nothing: int = 0
    conflicts: int = 0
    matched: set[str] = field(default_factory=set, repr=False)

    @property
    def total(self) -> int:
        return self.per_label + self.defaults + self.native + self.nothing

    def unmatched(self, table: dict[str, model.Provenance]) -> list[str]:
        """The sidecar's label references that matched no label (typos, or labels not delivered)."""
        return sorted(reference for reference in table if reference not in self.matched)

    def as_dict(self) -> dict[str, int]:
        return {
            "per_label": self.per_label,
            "defaults": self.defaults,
            "native": self.native,
            "nothing": self.nothing,
            "conflicts": self.conflicts,
        }


def apply_provenance(
    labels: Iterable[model.LabelRecord],
    table: dict[str, model.Provenance],
    defaults: model.Provenance,
    *,
    coverage: ProvenanceCoverage | None = None,
) -> Iterator[model.LabelRecord]:
    """Fill each label's missing provenance fields from its sidecar record, then from the defaults.

    A field is missing when it is ``None`` or ``""``. ``source`` is missing while it holds
    ``human``, the model's default, because ``model.Provenance`` cannot tell "human" from "not
    said": a sidecar can turn a label into ``model`` or ``consensus``, never back into ``human``.
    """
    coverage = coverage if coverage is not None else ProvenanceCoverage()
    for label in labels:
        reference, entry = _match(label, table)
        own = label.provenance
        merged = dataclasses.replace(own)
        took_default = False
        for name in FILLED_FIELDS:
            current = getattr(own, name)
            if entry is not None and not _missing(getattr(entry, name)):
                if _missing(current):
                    setattr(merged, name, getattr(entry, name))
                    continue
                if current != getattr(entry, name):
                    coverage.conflicts += 1
            if _missing(getattr(merged, name)) and not _missing(getattr(defaults, name)):
                setattr(merged, name, getattr(defaults, name))
                took_default = True
        if own.source == model.HUMAN:
            if entry is not None and entry.source != model.HUMAN:
                merged.source = entry.source
            elif defaults.source != model.HUMAN:
                merged.source = defaults.source
                took_default = True
        elif entry is not None and entry.source not in (model.HUMAN, own.source):
            coverage.conflicts += 1

        if entry is not None:
            coverage.per_label += 1
            coverage.matched.add(reference)
        elif took_default:
            coverage.defaults += 1
        elif own.annotator or own.made_at:
            coverage.native += 1
        else:
            coverage.nothing += 1
        yield dataclasses.replace(label, provenance=merged)


def _match(
    label: model.LabelRecord, table: dict[str, model.Provenance]
) -> tuple[str, model.Provenance | None]:
    for reference in label_references(label):
        entry = table.get(reference)
        if entry is not None:
            return reference, entry
    return "", None


def label_references(label: model.LabelRecord) -> list[str]:
    """The references a sidecar record may use for this label, in the order they are tried."""
    references = []
    if label.source_id is not None and label.source_id != "":
        references.append(str(label.source_id))
    if label.source_ref:
        references.append(label.source_ref)
        if label.source_id is not None and label.source_id != "":
            # "<file>#<index>": the file of source_ref ("a.xml:12" or "a.json#/x") and the
            # label's index in it, which is how VOC objects are referenced.
            file = re.sub(r":\d+$", "", label.source_ref.split("#", 1)[0])
            references.append(f"{file}#{label.source_id}")
    if label.uid:
        references.append(label.uid)
    return references


def _missing(value) -> bool:
    return value is None or value == ""
