"""A version's annotation schema as the supplier defines it: categories, geometry kinds, attributes."""

from __future__ import annotations

import re

from django.db import transaction
from django.db.models import Count

from ..formats import model as fmt
from ..models import (
    AnnotationSchema,
    AttributeSpec,
    Category,
    DatasetVersion,
    Label,
)
from .editing import COLOR_RE, PALETTE, InvalidInput, _as_int, _editable

# --------------------------------------------------------------------------- schema


def _clean_category(raw: dict, where: str, errors: dict) -> dict:
    def err(field: str, message: str):
        errors.setdefault(f"{where}.{field}", []).append(message)

    if not isinstance(raw, dict):
        errors.setdefault(where, []).append("Each category is an object with a name.")
        return {}
    unknown = set(raw) - {
        "name",
        "source_id",
        "supercategory",
        "description",
        "geometry_types",
        "keypoint_names",
        "skeleton",
        "keypoint_sigmas",
        "flip_idx",
        "color",
        "id",
    }
    for name in sorted(unknown):
        err(name, "Not a category field.")
    name = str(raw.get("name") or "").strip()
    if not name:
        err("name", "A category needs a name.")
    elif len(name) > 120:
        err("name", "At most 120 characters.")
    kinds = raw.get("geometry_types") or []
    if isinstance(kinds, str):
        kinds = [k.strip() for k in kinds.split(",") if k.strip()]
    if not isinstance(kinds, list) or not kinds:
        err("geometry_types", f"Choose at least one geometry kind: {', '.join(fmt.GEOMETRY_TYPES)}.")
        kinds = []
    unknown_kinds = [k for k in kinds if k not in fmt.GEOMETRY_TYPES]
    if unknown_kinds:
        err(
            "geometry_types",
            f"Unknown geometry kind {', '.join(map(str, unknown_kinds))}; use {', '.join(fmt.GEOMETRY_TYPES)}.",
        )
    kinds = list(dict.fromkeys(k for k in kinds if k in fmt.GEOMETRY_TYPES))

    points = raw.get("keypoint_names") or []
    if isinstance(points, str):
        points = [p.strip() for p in re.split(r"[,\n]", points) if p.strip()]
    if not isinstance(points, list) or not all(isinstance(p, str) and p.strip() for p in points):
        err("keypoint_names", "Keypoint names are a list of non-empty names.")
        points = []
    points = [p.strip() for p in points]
    if len(set(points)) != len(points):
        err("keypoint_names", "Keypoint names must be unique.")
    if fmt.KEYPOINTS in kinds and not points:
        err("keypoint_names", "A keypoints category needs its keypoint names.")
    if points and fmt.KEYPOINTS not in kinds:
        err("keypoint_names", "Keypoint names need the “keypoints” geometry kind.")

    skeleton = raw.get("skeleton") or []
    pairs: list[list[int]] = []
    if not isinstance(skeleton, list):
        err("skeleton", "The skeleton is a list of [from, to] pairs.")
        skeleton = []
    for i, pair in enumerate(skeleton):
        ends = [_as_int(v) for v in pair] if isinstance(pair, list | tuple) else []
        if len(ends) != 2 or None in ends:
            err("skeleton", f"Bone {i + 1}: a bone is a pair of two keypoint numbers.")
            continue
        a, b = ends
        if not (1 <= a <= len(points) and 1 <= b <= len(points)):
            err(
                "skeleton",
                f"Bone {i + 1} ({a}-{b}): keypoints are numbered from 1 to {len(points)}, as in COCO.",
            )
        elif a == b:
            err("skeleton", f"Bone {i + 1} ({a}-{b}) joins a keypoint to itself.")
        elif sorted((a, b)) in (sorted(p) for p in pairs):
            err("skeleton", f"Bone {i + 1} ({a}-{b}) is listed twice.")
        else:
            pairs.append([a, b])

    flip = raw.get("flip_idx") or []
    if flip and (
        not isinstance(flip, list)
        or sorted(_as_int(v) if _as_int(v) is not None else -1 for v in flip) != list(range(len(points)))
    ):
        err("flip_idx", f"flip_idx is a 0-based permutation of the {len(points)} keypoints.")
        flip = []
    sigmas = raw.get("keypoint_sigmas") or []
    if sigmas and (
        not isinstance(sigmas, list)
        or len(sigmas) != len(points)
        or not all(isinstance(s, int | float) and not isinstance(s, bool) and s > 0 for s in sigmas)
    ):
        err("keypoint_sigmas", f"Give one positive sigma per keypoint ({len(points)}).")
        sigmas = []

    source_id = raw.get("source_id")
    if source_id in ("", None):
        source_id = None
    else:
        source_id = _as_int(source_id)
        if source_id is None or source_id < 0:
            err("source_id", "The id is a whole number, 0 or more.")
            source_id = None
    color = str(raw.get("color") or "").strip()
    if color and not COLOR_RE.match(color):
        err("color", "A colour is written #rrggbb.")
    return {
        "name": name,
        "source_id": source_id,
        "supercategory": str(raw.get("supercategory") or "").strip()[:120],
        "description": str(raw.get("description") or "").strip(),
        "geometry_types": kinds,
        "keypoint_names": points,
        "skeleton": pairs,
        "keypoint_sigmas": [float(s) for s in sigmas],
        "flip_idx": [int(v) for v in flip],
        "color": color.lower(),
    }


def _clean_attribute(raw: dict, where: str, category_names: set[str], errors: dict) -> dict:
    def err(field: str, message: str):
        errors.setdefault(f"{where}.{field}", []).append(message)

    if not isinstance(raw, dict):
        errors.setdefault(where, []).append("Each attribute is an object with a name.")
        return {}
    unknown = set(raw) - {
        "name",
        "type",
        "scope",
        "allowed_values",
        "categories",
        "describes_person",
        "target_distribution",
        "description",
        "id",
    }
    for name in sorted(unknown):
        err(name, "Not an attribute field.")
    name = str(raw.get("name") or "").strip()
    if not name:
        err("name", "An attribute needs a name.")
    kind = raw.get("type") or AttributeSpec.Type.CHOICE
    if kind not in AttributeSpec.Type.values:
        err("type", f"Type is one of {', '.join(AttributeSpec.Type.values)}.")
    scope = raw.get("scope") or AttributeSpec.Scope.LABEL
    if scope not in AttributeSpec.Scope.values:
        err("scope", f"Scope is one of {', '.join(AttributeSpec.Scope.values)}.")
    values = raw.get("allowed_values") or []
    if isinstance(values, str):
        values = [v.strip() for v in re.split(r"[,\n]", values) if v.strip()]
    if not isinstance(values, list) or not all(isinstance(v, str | int | float) for v in values):
        err("allowed_values", "Allowed values are a list.")
        values = []
    values = [str(v).strip() for v in values]
    if len(set(values)) != len(values):
        err("allowed_values", "Allowed values must be unique.")
    if kind == AttributeSpec.Type.CHOICE and not values:
        err("allowed_values", "A choice attribute needs its allowed values.")
    if kind == AttributeSpec.Type.BOOLEAN and values:
        err("allowed_values", "A yes/no attribute has no list of values.")
    cats = raw.get("categories") or []
    if isinstance(cats, str):
        cats = [c.strip() for c in cats.split(",") if c.strip()]
    if not isinstance(cats, list):
        err("categories", "Categories are a list of category names.")
        cats = []
    missing = [c for c in cats if c not in category_names]
    if missing:
        err("categories", f"No category named {', '.join(map(str, missing))} in this schema.")
    if cats and scope == AttributeSpec.Scope.ITEM:
        err("categories", "An image-level attribute applies to no category.")
    target = raw.get("target_distribution") or {}
    if not isinstance(target, dict):
        err("target_distribution", "The target distribution maps each value to a share between 0 and 1.")
        target = {}
    elif target:
        shares = list(target.values())
        if not all(isinstance(s, int | float) and not isinstance(s, bool) and 0 <= s <= 1 for s in shares):
            err("target_distribution", "Each target share is a number between 0 and 1.")
        elif sum(shares) > 1.0001:
            err("target_distribution", f"The target shares add up to {sum(shares):g}, more than 1.")
        if values and set(target) - set(values):
            err(
                "target_distribution",
                f"{', '.join(sorted(set(target) - set(values)))} is not an allowed value.",
            )
    person = raw.get("describes_person", False)
    if not isinstance(person, bool):
        person = str(person).lower() in ("1", "true", "yes", "on")
    return {
        "name": name[:120],
        "type": kind,
        "scope": scope,
        "allowed_values": values,
        "categories": cats,
        "describes_person": person,
        "target_distribution": target,
        "description": str(raw.get("description") or "").strip(),
    }


@transaction.atomic
def set_schema(
    *, version: DatasetVersion, categories: list[dict], attributes: list[dict]
) -> AnnotationSchema:
    """Replace a draft's categories and attributes, matched by name so its labels keep their category.

    A category that labels of this version use cannot be removed, lose a geometry kind its labels
    are drawn as, or change its number of keypoints; the error says which and how many.
    """
    version = _editable(version)
    errors: dict[str, list[str]] = {}
    if not isinstance(categories, list) or not isinstance(attributes, list):
        raise InvalidInput(
            {"schema": ["Send “categories” and “attributes” as lists."]}, code="invalid_schema"
        )
    cats = [_clean_category(raw, f"categories[{i}]", errors) for i, raw in enumerate(categories)]
    names = [c.get("name") for c in cats if c.get("name")]
    for name in {n for n in names if names.count(n) > 1}:
        errors.setdefault("categories", []).append(f"Two categories are named “{name}”.")
    ids = [c["source_id"] for c in cats if c.get("source_id") is not None]
    for sid in {i for i in ids if ids.count(i) > 1}:
        errors.setdefault("categories", []).append(f"Two categories have id {sid}.")
    attrs = [
        _clean_attribute(raw, f"attributes[{i}]", set(names), errors) for i, raw in enumerate(attributes)
    ]
    keys = [(a.get("scope"), a.get("name")) for a in attrs if a.get("name")]
    for scope, name in {k for k in keys if keys.count(k) > 1}:
        errors.setdefault("attributes", []).append(f"Two {scope} attributes are named “{name}”.")

    schema, _ = AnnotationSchema.objects.get_or_create(version=version)
    existing = {c.name: c for c in schema.categories.all()}
    used = {
        row["category__name"]: row
        for row in Label.objects.filter(version=version)
        .values("category__name")
        .annotate(n=Count("id"))
        .order_by()
    }
    kinds_used: dict[str, set[str]] = {}
    for cat_name, kind in (
        Label.objects.filter(version=version).values_list("category__name", "geometry_type").distinct()
    ):
        kinds_used.setdefault(cat_name, set()).add(kind)
    wanted = {c["name"]: c for c in cats if c.get("name")}
    for name, row in sorted(used.items()):
        if name not in wanted:
            errors.setdefault("categories", []).append(
                f"“{name}” has {row['n']} label{'s' if row['n'] != 1 else ''} in this version and cannot be removed."
            )
            continue
        lost = kinds_used.get(name, set()) - set(wanted[name]["geometry_types"])
        if lost:
            errors.setdefault("categories", []).append(
                f"“{name}” has labels drawn as {', '.join(sorted(lost))}; keep that geometry kind."
            )
        old = existing.get(name)
        if old and old.keypoint_names and len(old.keypoint_names) != len(wanted[name]["keypoint_names"]):
            errors.setdefault("categories", []).append(
                f"“{name}” has keypoint labels with {len(old.keypoint_names)} points; the number of "
                "keypoints cannot change in this version."
            )
    if errors:
        raise InvalidInput(errors, code="invalid_schema")

    # Give every category an id: exports name classes by number, and later versions keep them.
    taken = {c["source_id"] for c in cats if c["source_id"] is not None}
    next_id = max(taken, default=0) + 1
    for i, c in enumerate(cats):
        if c["source_id"] is None:
            old = existing.get(c["name"])
            if old is not None and old.source_id is not None and old.source_id not in taken:
                c["source_id"] = old.source_id
            else:
                c["source_id"] = next_id
                next_id += 1
            taken.add(c["source_id"])
        c["color"] = (
            c["color"]
            or (existing[c["name"]].color if c["name"] in existing else "")
            or PALETTE[i % len(PALETTE)]
        )
    # Free the ids first: (schema, source_id) is unique and two kept categories may swap ids.
    Category.objects.filter(schema=schema).exclude(name__in=wanted).delete()
    Category.objects.filter(schema=schema).update(source_id=None)
    for c in cats:
        obj = existing.get(c["name"]) or Category(schema=schema)
        for field, value in c.items():
            setattr(obj, field, value)
        obj.save()
    AttributeSpec.objects.filter(schema=schema).delete()
    AttributeSpec.objects.bulk_create([AttributeSpec(schema=schema, **a) for a in attrs])
    return schema


def schema_as_dict(version: DatasetVersion) -> dict:
    """The schema in the shape :func:`set_schema` takes, so a client can read, edit and send it back."""
    schema = AnnotationSchema.objects.filter(version=version).first()
    if schema is None:
        return {"categories": [], "attributes": []}
    cat_fields = [
        "name",
        "source_id",
        "supercategory",
        "description",
        "geometry_types",
        "keypoint_names",
        "skeleton",
        "keypoint_sigmas",
        "flip_idx",
        "color",
    ]
    attr_fields = [
        "name",
        "type",
        "scope",
        "allowed_values",
        "categories",
        "describes_person",
        "target_distribution",
        "description",
    ]
    return {
        "categories": list(schema.categories.order_by("source_id", "name").values(*cat_fields)),
        "attributes": list(schema.attributes.order_by("scope", "name").values(*attr_fields)),
    }
