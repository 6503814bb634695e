"""Merging a delivery's categories and attributes into the previous version's schema."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from ..formats import model as fmt
from ..models import (
    CATEGORY_COLOR_RE,
    AttributeSpec,
    Category,
)
from .report import Report

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- schema


def stored_color(value: str | None) -> str:
    """A delivered class colour as the schema stores it (``#rrggbb``); anything else (``rgba(...)``,
    ``#rrggbbaa``, a CSS name, which Label Studio configs carry) gives way to the palette's."""
    value = (value or "").strip()
    if len(value) == 4 and value.startswith("#"):
        value = "#" + "".join(ch * 2 for ch in value[1:])
    return value if CATEGORY_COLOR_RE.match(value) else ""


@dataclass
class CategorySpec:
    """A category of the new version's schema, before it has a row."""

    name: str
    source_id: int | None = None
    supercategory: str = ""
    description: str = ""
    geometry_types: list[str] = field(default_factory=list)
    keypoint_names: list[str] = field(default_factory=list)
    skeleton: list[list[int]] = field(default_factory=list)
    keypoint_sigmas: list = field(default_factory=list)
    flip_idx: list = field(default_factory=list)
    color: str = ""


PALETTE = [
    "#e6194b",
    "#3cb44b",
    "#4363d8",
    "#f58231",
    "#911eb4",
    "#46f0f0",
    "#f032e6",
    "#bcf60c",
    "#008080",
    "#9a6324",
]


def merge_schema(
    delivered: list[fmt.CategoryDef], previous: list[Category], report: Report
) -> dict[str, CategorySpec]:
    """The previous version's categories (ids, colours, keypoints kept) plus the delivery's new ones."""
    specs: dict[str, CategorySpec] = {}
    for c in previous:
        specs[c.name] = CategorySpec(
            name=c.name,
            source_id=c.source_id,
            supercategory=c.supercategory,
            description=c.description,
            geometry_types=list(c.geometry_types),
            keypoint_names=list(c.keypoint_names),
            skeleton=[list(e) for e in c.skeleton],
            keypoint_sigmas=list(c.keypoint_sigmas),
            flip_idx=list(c.flip_idx),
            color=c.color,
        )
    taken = {s.source_id for s in specs.values() if s.source_id is not None}
    fresh: list[CategorySpec] = []
    renumbered: list[tuple[CategorySpec, int]] = []
    for c in delivered:
        known = specs.get(c.name)
        if known is not None:
            for g in c.geometry_types:
                if g not in known.geometry_types:
                    known.geometry_types.append(g)
            if c.keypoints and known.keypoint_names and list(c.keypoints) != known.keypoint_names:
                report.error(
                    "",
                    f"category {c.name!r} has keypoints {c.keypoints} here but {known.keypoint_names} in the "
                    "previous version: keypoint definitions cannot change between versions",
                    code="schema_conflict",
                )
            elif c.keypoints and not known.keypoint_names:
                known.keypoint_names, known.skeleton = list(c.keypoints), [list(e) for e in c.skeleton]
            if c.source_id is not None and known.source_id is not None and c.source_id != known.source_id:
                report.add(
                    fmt.Problem(
                        file="",
                        message=f"category {c.name!r} keeps id {known.source_id} from the previous version "
                        f"(the delivery says {c.source_id})",
                        code="category_id_kept",
                    )
                )
            elif known.source_id is None and c.source_id is not None and c.source_id not in taken:
                known.source_id = c.source_id
                taken.add(c.source_id)
            continue
        spec = CategorySpec(
            name=c.name,
            supercategory=c.supercategory,
            geometry_types=list(c.geometry_types),
            keypoint_names=list(c.keypoints),
            skeleton=[list(e) for e in c.skeleton],
            color=stored_color(c.color),
        )
        if c.source_id is not None and c.source_id not in taken:
            spec.source_id = c.source_id
            taken.add(c.source_id)
        elif c.source_id is not None:
            renumbered.append((spec, c.source_id))
        specs[c.name] = spec
        fresh.append(spec)
    # Categories without an id (VOC names, an id already taken) get the next free one, so every
    # export can name them by number and keeps doing so in later versions.
    next_id = max((i for i in taken if i is not None), default=0) + 1
    for spec in fresh:
        if spec.source_id is None:
            spec.source_id = next_id
            next_id += 1
    for spec, wanted in renumbered:
        holder = next(s.name for s in specs.values() if s.source_id == wanted and s is not spec)
        report.add(
            fmt.Problem(
                file="",
                message=f"new category {spec.name!r} gets id {spec.source_id}: the delivery's id {wanted} "
                f"is {holder!r} in the previous version",
                code="category_id_kept",
            )
        )
    for i, spec in enumerate(specs.values()):
        if not spec.color:
            spec.color = PALETTE[i % len(PALETTE)]
    return specs


_CVAT_ATTRIBUTE_TYPES = {
    "checkbox": AttributeSpec.Type.BOOLEAN,
    "number": AttributeSpec.Type.NUMBER,
    "text": AttributeSpec.Type.TEXT,
    "select": AttributeSpec.Type.CHOICE,
    "radio": AttributeSpec.Type.CHOICE,
}


def merge_attribute_specs(delivered: list[fmt.CategoryDef], previous: list[AttributeSpec]) -> list[dict]:
    """The previous version's attribute specs plus those a CVAT delivery declares per label."""
    specs: dict[tuple[str, str], dict] = {}
    existing = {(a.scope, a.name) for a in previous}
    for a in previous:
        specs[(a.scope, a.name)] = {
            "name": a.name,
            "type": a.type,
            "scope": a.scope,
            "allowed_values": list(a.allowed_values),
            "categories": list(a.categories),
            "describes_person": a.describes_person,
            "target_distribution": dict(a.target_distribution),
            "description": a.description,
        }
    for c in delivered:
        for a in getattr(c, "attributes", None) or []:
            key = (AttributeSpec.Scope.LABEL, a.name)
            spec = specs.get(key)
            if spec is None:
                spec = specs[key] = {
                    "name": a.name,
                    "type": _CVAT_ATTRIBUTE_TYPES.get(a.input_type, AttributeSpec.Type.TEXT),
                    "scope": AttributeSpec.Scope.LABEL,
                    "allowed_values": [],
                    "categories": [],
                    "describes_person": False,
                    "target_distribution": {},
                    "description": "",
                }
            if spec["type"] == AttributeSpec.Type.CHOICE:
                for v in a.values:
                    if v not in spec["allowed_values"]:
                        spec["allowed_values"].append(v)
            # A spec new in this delivery applies to the labels that declare it; an existing spec
            # with no category list applies to all and stays so.
            if spec["categories"] and c.name not in spec["categories"]:
                spec["categories"].append(c.name)
            elif not spec["categories"] and (AttributeSpec.Scope.LABEL, a.name) not in existing:
                spec["categories"] = [c.name]
    return list(specs.values())
