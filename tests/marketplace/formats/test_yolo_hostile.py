"""Hostile data.yaml and label rows: refused before any expansion, with short messages (issue #14)."""

from __future__ import annotations

import random

import pytest

from marketplace.formats import safe_yaml
from marketplace.formats.model import FormatError
from marketplace.formats.yolo import MAX_CLASSES, MAX_ROW_VALUES, read_yolo

from .builders import image_bytes, zip_source

# The bomb from the report: 937 bytes whose aliases nest eight levels deep under kpt_shape.
# yaml.safe_load expands it to 10**8 list items (gigabytes; half a minute of CPU).
YAML_BOMB = (
    "names: [person]\ntrain: images/train\n"
    "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
    "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
    "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
    "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
    "f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
    "g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\n"
    "h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g, *g]\n"
    "kpt_shape: [*h, *h]\n"
)


def _read(data_yaml: str, labels: dict[str, str] | None = None):
    files: dict[str, bytes | str] = {"data.yaml": data_yaml, "images/train/a.jpg": image_bytes(64, 48)}
    files.update(labels or {})
    return read_yolo(zip_source(files))


def _refusal(data_yaml: str):
    with pytest.raises(FormatError) as caught:
        _read(data_yaml)
    return caught.value.problems


def test_the_alias_bomb_is_refused_at_its_first_anchor_with_a_short_message():
    problems = _refusal(YAML_BOMB)

    assert [(p.file, p.line, p.code) for p in problems] == [("data.yaml", 3, "unsafe_yaml")]
    assert "anchors" in problems[0].message and len(problems[0].message) < 300


def test_a_lone_alias_is_refused_too():
    with pytest.raises(safe_yaml.UnsafeYAML, match="aliases"):
        safe_yaml.load("a: *nowhere\n")


def test_deep_nesting_is_refused_without_a_recursion_error():
    problems = _refusal("names: [a]\nx: " + "[" * 200 + "]" * 200 + "\n")
    assert problems[0].code == "unsafe_yaml" and "deeper" in problems[0].message
    # libyaml's own scanner stops at 1,000 levels: still a located YAML problem, not a crash
    (problem,) = _refusal("names: [a]\nx: " + "[" * 50_000 + "]" * 50_000 + "\n")
    assert problem.line == 2 and len(problem.message) < 400


def test_a_5000_digit_integer_is_a_yaml_problem_not_a_crash():
    problems = _refusal(f"names: [a]\nnc: {'9' * 5000}\n")
    assert problems[0].code == "unsafe_yaml" and len(problems[0].message) < 400


def test_millions_of_classes_without_names_are_refused_before_any_is_made_up():
    problems = _refusal("train: images/train\nnc: 3000000\n")
    assert [(p.line, p.code) for p in problems] == [(2, "too_large")]


def test_more_names_than_the_class_limit_are_refused():
    names = "\n".join(f"  - c{i}" for i in range(MAX_CLASSES + 1))
    problems = _refusal(f"train: images/train\nnames:\n{names}\n")
    assert problems[0].code == "too_large" and len(problems[0].message) < 300


def test_sixty_thousand_distinct_names_under_the_limit_are_checked_for_duplicates_in_linear_time():
    # 40,000 names, two of them equal: names.count() in a loop made this 1.6e9 comparisons.
    names = [f"c{i}" for i in range(40_000)]
    names[-1] = "c7"
    listing = "\n".join(f"  - {n}" for n in names)
    problems = _refusal(f"train: images/train\nnames:\n{listing}\n")
    assert [p.code for p in problems] == ["duplicate_name"]
    assert "'c7'" in problems[0].message


def test_a_huge_class_name_is_refused_and_not_repeated_in_the_message():
    problems = _refusal(f"train: images/train\nnames: [{'x' * 100_000}]\n")
    assert problems[0].code == "too_large" and len(problems[0].message) < 300


def test_a_kpt_shape_with_absurd_keypoint_count_is_refused():
    problems = _refusal("train: images/train\nnames: [a]\nkpt_shape: [1000000, 3]\n")
    assert problems[0].line == 3 and "kpt_shape" in problems[0].message


def test_a_row_with_more_points_than_the_limit_is_refused_without_parsing_it():
    rng = random.Random(14)  # varied digits: a row of one repeated value trips the zip ratio check
    row = "0 " + " ".join(f"{rng.random():.6f}" for _ in range(MAX_ROW_VALUES + 1))
    parsed = _read("train: images/train\nnames: [a]\n", {"labels/train/a.txt": row + "\n"})
    labels = list(parsed.labels)

    assert labels == []
    assert [(p.file, p.line, p.code) for p in parsed.problems] == [("labels/train/a.txt", 1, "too_large")]
    assert str(MAX_ROW_VALUES) in parsed.problems[0].message


def test_a_row_that_is_not_numbers_is_quoted_briefly():
    junk = "".join(random.Random(6).choice("abcdefgh") for _ in range(20_000))
    parsed = _read("train: images/train\nnames: [a]\n", {"labels/train/a.txt": f"0 {junk}\n"})
    list(parsed.labels)
    assert len(parsed.problems[0].message) < 300
