"""NOTES.md: what an export dropped, converted or clipped, in words, inside the archive.

The same notes are the export's ``notes`` (API) and the library page's list under each export;
this renders them for someone who only has the zip. Every note names its kind and class and how
many labels it concerns; nothing the format could not hold goes unmentioned.
"""

from __future__ import annotations

from ..models import DatasetVersion

HEADINGS = {
    "dropped": "Dropped: not in this export",
    "converted": "Converted: in this export as something else",
    "clipped": "Clipped: moved to fit the image or the format",
    "info": "How to read this export",
}
ORDER = ["dropped", "converted", "clipped", "info"]


def _line(note: dict) -> str:
    where = " · ".join(
        part
        for part in (
            note.get("kind", "").replace("_", " "),
            f"class {note['category']!r}" if note.get("category") else "",
        )
        if part
    )
    count = note.get("count", 0)
    counted = f"{count} label{'s' if count != 1 else ''}" if note.get("code") != "info" else ""
    prefix = " — ".join(p for p in (where, counted) if p)
    return f"- {prefix + ': ' if prefix else ''}{note.get('detail', '')}"


def notes_markdown(*, version: DatasetVersion, format_label: str, notes: list[dict], summary: dict) -> str:
    """The NOTES.md of an export of ``version`` in ``format_label`` (e.g. "COCO")."""
    dataset = version.dataset
    lines = [
        f"# Notes on this export: {dataset.title}, version {version.number}, as {format_label}",
        "",
    ]
    counted = ", ".join(
        f"{summary[key]} {key}" for key in ("images", "annotations", "objects", "rows") if key in summary
    )
    if counted:
        lines += [f"Written: {counted}.", ""]
    lossy = [n for n in notes if n.get("code") in ("dropped", "converted", "clipped")]
    if not lossy:
        lines += ["Nothing was dropped, converted or clipped: every label is in this export as it is.", ""]
    for code in ORDER + sorted({n.get("code", "") for n in notes} - set(ORDER)):
        group = [n for n in notes if n.get("code") == code]
        if not group:
            continue
        lines += [f"## {HEADINGS.get(code, code)}", ""]
        lines += [_line(n) for n in group]
        lines.append("")
    lines += [
        "Every label's provenance is in provenance.csv; the license is LICENSE.txt; the datasheet is "
        "datasheet.md; croissant.json describes the files; MANIFEST.sha256 lists their hashes.",
        "",
    ]
    return "\n".join(lines)
