"""The acceptance policy's severities: which problem codes refuse a delivery, which only adjust it.

Strict about safety and meaning, lenient about layout and convention (docs/deliveries.md,
"Acceptance policy"). A recoverable deviation is a *warning*: the reader says how many, where the
first one is and what it did, and the delivery goes in. An *info* note records something read
and deliberately not stored. Every other code is an error and fails the delivery.

No Django here: the readers and the ingest service both read these sets.
"""

from __future__ import annotations

# Recoverable deviations: the delivery goes in, adjusted as the message says.
WARNING_CODES = frozenset(
    {
        "skeleton_renumbered",  # COCO: 0-based skeleton pairs, read as 1-based (+1)
        "skeleton_dropped",  # COCO: skeleton naming keypoints that do not exist: not kept
        "keypoints_named",  # COCO: keypoint category without names: named 1..K
        "merged_image",  # COCO: an image declared by several task files: one item
        "extra_fields",  # COCO: unknown per-annotation fields kept as label attributes
        "model_name_from_version",  # Label Studio: a prediction with model_version only
        "voc_zero_based_decimal",  # VOC: decimal corners (CVAT, datumaro) read as 0-based
        "voc_zero_based_integer",  # VOC: Roboflow's (or a 0 corner's) integers read as 0-based
        "size_from_image",  # VOC: no <size>: the image's own size taken
        "mixed_rows",  # YOLO: box rows in a file of segment rows, read as boxes
        "missing_split",  # YOLO: data.yaml names a split folder the delivery does not have
        "split_reused",  # YOLO: val names the same folder as train: the images stay in train
        "no_schema",  # CVAT: no <meta><labels>: categories taken from the shapes
        "attribute_renamed",  # CVAT: an attribute named like a shape flag, kept as attribute:<name>
    }
)

# Read and deliberately not stored; never a reason to refuse.
INFO_CODES = frozenset(
    {
        "skipped_relation",  # Label Studio: relation results link two regions; not a label
        "captions_kept",  # COCO: captions kept as the item attribute "captions"
        "video_frames",  # CVAT for video: one item per frame with shapes
    }
)


def severity_of(code: str, *, warnings: frozenset = frozenset(), infos: frozenset = frozenset()) -> str:
    """error, warning or info for a problem code (the caller may add its own codes)."""
    if code in INFO_CODES or code in infos:
        return "info"
    if code in WARNING_CODES or code in warnings:
        return "warning"
    return "error"


class Adjustments:
    """Recoverable deviations, one report entry per code: how many, the first place, what was done."""

    def __init__(self):
        self._seen: dict[str, list] = {}  # code -> [file, line, pointer, message, count]

    def note(
        self, code: str, file: str, message: str, *, line: int | None = None, pointer: str | None = None
    ):
        seen = self._seen.get(code)
        if seen is None:
            self._seen[code] = [file, line, pointer, message, 1]
        else:
            seen[4] += 1

    def flush_into(self, problems: list) -> None:
        """Append one Problem per code to a reader's problem list (then forget them)."""
        from .model import Problem

        for code, (file, line, pointer, message, count) in self._seen.items():
            times = "" if count == 1 else f" ({count} times; the first is located here)"
            problems.append(
                Problem(file=file, message=message + times, line=line, pointer=pointer, code=code)
            )
        self._seen.clear()
