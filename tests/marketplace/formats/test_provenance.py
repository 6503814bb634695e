"""The provenance.jsonl sidecar: reading it, and filling labels' provenance from it."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime

from marketplace.formats import model, provenance
from marketplace.formats.provenance import ProvenanceCoverage, apply_provenance, read_provenance


def _jsonl(*records) -> io.BytesIO:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    return io.BytesIO(("\n".join(lines) + "\n").encode())


def _label(source_id=None, source_ref="", **provenance_fields) -> model.LabelRecord:
    return model.LabelRecord(
        item_key="images/a.jpg",
        category="car",
        geometry_type=model.BBOX,
        geometry={"bbox": [1, 2, 3, 4]},
        source_id=source_id,
        source_ref=source_ref,
        provenance=model.Provenance(**provenance_fields),
    )


SIDECAR = [
    {"defaults": {"guideline_version": "v1.2", "annotator": "vendor-team-a"}},
    {
        "label": 17,
        "annotator": "ann-042",
        "created_at": "2024-05-01T09:30:00Z",
        "source": "human",
        "review": "accepted",
        "reviewer": "rev-007",
        "reviewed_at": "2024-05-02T10:00:00+02:00",
    },
    {
        "label": "labels/train/0001.txt:3",
        "source": "model",
        "model_name": "yolov8x",
        "model_version": "2024-04",
    },
    {"label": "Annotations/0001.xml#2", "annotator": "ann-043", "guideline_version": "v1.3"},
]


def test_it_reads_per_label_records_and_the_defaults():
    table, defaults, problems = read_provenance(_jsonl(*SIDECAR))

    assert problems == []
    assert sorted(table) == ["17", "Annotations/0001.xml#2", "labels/train/0001.txt:3"]
    coco = table["17"]
    assert coco.annotator == "ann-042"
    assert coco.made_at == datetime(2024, 5, 1, 9, 30, tzinfo=UTC)
    assert coco.review == "accepted"
    assert coco.reviewer == "rev-007"
    assert coco.reviewed_at == datetime(2024, 5, 2, 8, 0, tzinfo=UTC)
    yolo = table["labels/train/0001.txt:3"]
    assert (yolo.source, yolo.model_name, yolo.model_version) == (model.MODEL, "yolov8x", "2024-04")
    assert defaults.guideline_version == "v1.2"
    assert defaults.annotator == "vendor-team-a"


def test_the_defaults_record_may_come_on_any_line():
    table, defaults, problems = read_provenance(_jsonl(*SIDECAR[1:], SIDECAR[0]))

    assert problems == []
    assert defaults.guideline_version == "v1.2"
    assert len(table) == 3


def test_a_date_without_a_zone_is_taken_as_utc():
    table, _, _ = read_provenance(_jsonl({"label": 1, "created_at": "2024-05-01T09:30:00"}))

    assert table["1"].made_at == datetime(2024, 5, 1, 9, 30, tzinfo=UTC)


def test_each_bad_line_is_a_problem_on_its_line_and_the_rest_is_read():
    stream = _jsonl(
        {"label": 1, "annotator": "ann-1"},
        "{not json",
        {"label": 2, "annotator": "ann-2", "colour": "red"},
        {"label": 3, "created_at": "yesterday"},
        {"label": 4, "source": "robot"},
        {"label": 5, "annotator": "jane@example.com"},
        {"label": 1, "annotator": "ann-9"},
        {"annotator": "ann-6"},
        {"defaults": {"source": "human"}},
        {"defaults": {"source": "model"}},
        ["a", "list"],
        {"label": 6, "review": "maybe"},
    )
    table, defaults, problems = read_provenance(stream, name="delivery/provenance.jsonl")

    assert [(p.line, p.code) for p in problems] == [
        (2, "invalid"),
        (3, "unknown_key"),
        (4, "bad_date"),
        (5, "unknown_source"),
        (6, "personal_data"),
        (7, "duplicate"),
        (8, "invalid"),
        (10, "invalid"),
        (11, "invalid"),
        (12, "invalid"),
    ]
    assert all(p.file == "delivery/provenance.jsonl" for p in problems)
    assert problems[1].pointer == "/colour"
    assert table["1"].annotator == "ann-1"  # the first record of a label wins
    assert table["2"].annotator == "ann-2"  # the known keys of a record with an unknown one are kept
    assert table["3"].made_at is None
    assert table["5"].annotator is None
    assert defaults.source == model.HUMAN


def test_an_overlong_line_is_a_problem_not_a_memory_spike():
    stream = _jsonl({"label": 1}, '{"label": 2, "annotator": "' + "x" * 100_000 + '"}', {"label": 3})
    table, _, problems = read_provenance(stream)

    assert [(p.line, p.code) for p in problems] == [(2, "invalid")]
    assert sorted(table) == ["1", "3"]


def test_missing_fields_are_filled_from_the_label_record_then_the_defaults():
    table, defaults, _ = read_provenance(_jsonl(*SIDECAR))
    labels = [
        _label(source_id=17, source_ref="annotations.json#/annotations/0"),
        _label(source_id=None, source_ref="labels/train/0001.txt:3"),
        _label(source_id=2, source_ref="Annotations/0001.xml:31"),
        _label(source_id=18, source_ref="annotations.json#/annotations/1"),
    ]
    coco, yolo, voc, unlisted = apply_provenance(labels, table, defaults)

    assert (coco.provenance.annotator, coco.provenance.guideline_version) == ("ann-042", "v1.2")
    assert coco.provenance.review == "accepted"
    assert yolo.provenance.source == model.MODEL
    assert yolo.provenance.model_name == "yolov8x"
    assert yolo.provenance.annotator == "vendor-team-a"
    assert (voc.provenance.annotator, voc.provenance.guideline_version) == ("ann-043", "v1.3")
    assert unlisted.provenance.annotator == "vendor-team-a"
    assert unlisted.provenance.made_at is None


def test_what_the_format_itself_says_wins_over_the_sidecar():
    table, defaults, _ = read_provenance(_jsonl(*SIDECAR))
    made = datetime(2023, 1, 1, tzinfo=UTC)
    label = _label(source_id=17, annotator="ls-user-3", made_at=made, source=model.MODEL)
    coverage = ProvenanceCoverage()

    (result,) = apply_provenance([label], table, defaults, coverage=coverage)

    assert result.provenance.annotator == "ls-user-3"
    assert result.provenance.made_at == made
    assert result.provenance.source == model.MODEL
    assert result.provenance.reviewer == "rev-007"  # missing, so filled
    assert coverage.conflicts == 2
    assert label.provenance.reviewer is None  # the input label is left as it was


def test_coverage_counts_how_each_label_got_its_provenance():
    table, _, _ = read_provenance(_jsonl(*SIDECAR[1:]))
    defaults = model.Provenance(guideline_version="v1.2")
    labels = [
        _label(source_id=17),
        _label(source_id=99),
        _label(source_id=100, annotator="ls-user-1"),
    ]
    coverage = ProvenanceCoverage()

    list(apply_provenance(labels, table, defaults, coverage=coverage))
    list(
        apply_provenance(
            [_label(source_id=101, guideline_version="v2")], table, model.Provenance(), coverage=coverage
        )
    )

    assert coverage.as_dict() == {"per_label": 1, "defaults": 2, "native": 0, "nothing": 1, "conflicts": 0}
    assert coverage.total == 4
    assert coverage.unmatched(table) == ["Annotations/0001.xml#2", "labels/train/0001.txt:3"]


def test_a_label_with_its_own_author_and_no_sidecar_counts_as_native():
    coverage = ProvenanceCoverage()

    list(
        apply_provenance(
            [_label(source_id=1, annotator="ls-user-1")], {}, model.Provenance(), coverage=coverage
        )
    )

    assert coverage.as_dict()["native"] == 1


def test_apply_provenance_streams():
    def endless():
        n = 0
        while True:
            n += 1
            yield _label(source_id=n)

    stream = apply_provenance(endless(), {}, model.Provenance(annotator="team"))

    assert next(stream).provenance.annotator == "team"
    assert next(stream).source_id == 2


def test_the_schema_text_names_every_key():
    for key in ("label", *provenance.RECORD_KEYS):
        assert f"``{key}``" in provenance.__doc__
    assert '``{"defaults": {...}}``' in provenance.__doc__
