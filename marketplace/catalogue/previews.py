"""Preview images: a version's items with their labels drawn on them, at most 512 px on the long side,
watermarked for anyone not entitled, rendered once and kept in storage.

A preview is a re-encoded JPEG (metadata dropped) small enough not to stand in for the original; the
original file itself only ever leaves storage through views that ask `visibility.may_use`.
"""

from __future__ import annotations

import colorsys
import hashlib
import io
import logging
import math
import warnings
from dataclasses import dataclass

import numpy as np
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db.models import Count, Exists, OuterRef
from PIL import Image, ImageDraw, ImageFont
from pycocotools import mask as mask_utils

from ..formats import model as fmt
from ..models import AttributeSpec, Category, DatasetVersion, Item, Label

logger = logging.getLogger(__name__)

MAX_SIDE = 512  # long side of a preview, in pixels: enough to judge labels, too small to train on
JPEG_QUALITY = 82  # sharp enough for 2 px label outlines without blocking artefacts
LINE_WIDTH = 2
KEYPOINT_RADIUS = 3
MASK_ALPHA = 110  # of 255: the image stays readable under a mask
POLYGON_FILL_ALPHA = 50
WATERMARK_ALPHA = 70
# Bump when the drawing changes: it is part of the cache key, so old previews are not served again.
RENDERER_REVISION = 1
# Formats an original may be read as; anything else (EPS above all) is never opened.
IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF")
SAMPLE_LIMIT_DEFAULT = 12
SAMPLE_LIMIT_MAX = 48
# Cuboid corners (CVAT order: front TL, BL, TR, BR, then the back face alike) joined into 12 edges.
CUBOID_EDGES = [
    (0, 1),
    (1, 3),
    (3, 2),
    (2, 0),
    (4, 5),
    (5, 7),
    (7, 6),
    (6, 4),
    (0, 4),
    (1, 5),
    (2, 6),
    (3, 7),
]
# Kinds that have something to draw on a 2D image; a 3D cuboid is listed in the legend only.
DRAWN_KINDS = set(fmt.GEOMETRY_TYPES) - {fmt.CUBOID_3D}


# --------------------------------------------------------------------------- colours


def category_color(name: str, declared: str = "") -> str:
    """The category's declared colour, or one derived from its name: stable across versions and runs."""
    if declared and len(declared) == 7 and declared.startswith("#"):
        try:
            int(declared[1:], 16)
            return declared.lower()
        except ValueError:
            pass
    digest = hashlib.sha256(name.encode()).digest()
    hue = digest[0] / 255
    r, g, b = colorsys.hls_to_rgb(hue, 0.5, 0.75)  # saturated and mid-light: visible on photos
    return f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}"


def _rgb(color: str) -> tuple[int, int, int]:
    return int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16)


# --------------------------------------------------------------------------- what is shown


@dataclass
class LabelView:
    """What a preview draws of one label, and what the viewer's tooltip tells about it."""

    uid: str
    category: str
    category_id: int
    color: str
    geometry_type: str
    geometry: dict
    attributes: dict
    source: str
    model: str
    annotator: str | None
    guideline_version: str | None
    made_at: str | None
    skeleton: list

    def as_json(self) -> dict:
        return {
            "uid": self.uid,
            "category": self.category,
            "category_id": self.category_id,
            "color": self.color,
            "geometry_type": self.geometry_type,
            "geometry": self.geometry,
            "attributes": self.attributes,
            "source": self.source,
            "model": self.model or None,
            "annotator": self.annotator,
            "guideline_version": self.guideline_version,
            "made_at": self.made_at,
            "drawn": self.geometry_type in DRAWN_KINDS,
        }

    def box(self) -> list[float] | None:
        """The label's extent in image pixels, for the viewer's hover area."""
        return fmt.bbox_of(self.geometry)


def person_attributes(version: DatasetVersion) -> set[str]:
    """Names of attributes that describe a person: shown aggregated only, never per label in previews."""
    return set(
        AttributeSpec.objects.filter(schema__version=version, describes_person=True).values_list(
            "name", flat=True
        )
    )


def label_views(
    items: list[Item], version: DatasetVersion, *, candidates_of: int | None = None
) -> dict[int, list[LabelView]]:
    """Final labels of these items, keyed by item id, with colour and provenance; or, with
    ``candidates_of`` (an annotator's id), that annotator's candidate labels (the review queue's)."""
    hidden = person_attributes(version)
    out: dict[int, list[LabelView]] = {item.pk: [] for item in items}
    chosen = (
        {"is_final": True} if candidates_of is None else {"is_final": False, "annotator_id": candidates_of}
    )
    labels = (
        Label.objects.filter(item__in=items, **chosen)
        .select_related("category", "annotator", "guideline_version")
        .order_by("item_id", "id")
    )
    for label in labels:
        c = label.category
        out[label.item_id].append(
            LabelView(
                uid=str(label.uid),
                category=c.name,
                category_id=c.pk,
                color=category_color(c.name, c.color),
                geometry_type=label.geometry_type,
                geometry=label.geometry or {},
                attributes={k: v for k, v in (label.attributes or {}).items() if k not in hidden},
                source=label.source,
                model=" ".join(p for p in (label.model_name, label.model_version) if p),
                annotator=label.annotator.pseudonym if label.annotator_id else None,
                guideline_version=label.guideline_version.tag if label.guideline_version_id else None,
                made_at=label.made_at.isoformat() if label.made_at else None,
                skeleton=c.skeleton or [],
            )
        )
    return out


def legend(labels: list[LabelView]) -> list[dict]:
    """One row per category: colour, kinds, how many labels, and whether they are drawn."""
    rows: dict[str, dict] = {}
    for lab in labels:
        row = rows.setdefault(
            lab.category,
            {"category": lab.category, "color": lab.color, "kinds": set(), "count": 0, "drawn": False},
        )
        row["kinds"].add(lab.geometry_type)
        row["count"] += 1
        row["drawn"] = row["drawn"] or lab.geometry_type in DRAWN_KINDS
    return [
        {**row, "kinds": sorted(row["kinds"])} for row in sorted(rows.values(), key=lambda r: r["category"])
    ]


def item_attributes(item: Item, version: DatasetVersion) -> dict:
    hidden = person_attributes(version)
    return {k: v for k, v in (item.attributes or {}).items() if k not in hidden}


# --------------------------------------------------------------------------- samples


def sample_items(
    *,
    version: DatasetVersion,
    category: str | None = None,
    split: str | None = None,
    limit: int = SAMPLE_LIMIT_DEFAULT,
) -> list[Item]:
    """Items to preview: the supplier's pinned items first, then items taken in turn from each
    category, so rare classes show up next to common ones. Stable: the same call gives the same items.
    """
    limit = max(1, min(int(limit), SAMPLE_LIMIT_MAX))
    items = Item.objects.filter(version=version)
    if split:
        items = items.filter(split=split)
    picked: list[int] = []
    if not category:
        picked += list(items.filter(pinned=True).order_by("key").values_list("pk", flat=True)[:limit])
    categories = Category.objects.filter(schema__version=version)
    if category:
        categories = categories.filter(name=category)
    # Rare classes first: with more classes than slots, the rare ones are the ones worth showing.
    categories = (
        categories.annotate(n=Count("labels"))
        .filter(n__gt=0)
        .order_by("n", "name")
        .values_list("pk", flat=True)
    )
    # Ordering by content hash is a fixed shuffle: spread over the set, identical on every call.
    queues = [
        list(
            items.filter(Exists(Label.objects.filter(item=OuterRef("pk"), category_id=c, is_final=True)))
            .order_by("sha256", "pk")
            .values_list("pk", flat=True)[:limit]
        )
        for c in list(categories[:limit])
    ]
    while len(picked) < limit and any(queues):
        for queue in queues:
            while queue and queue[0] in picked:
                queue.pop(0)
            if queue and len(picked) < limit:
                picked.append(queue.pop(0))
    if not category and len(picked) < limit:  # unlabelled versions still show images
        picked += list(
            items.exclude(pk__in=picked)
            .order_by("sha256", "pk")
            .values_list("pk", flat=True)[: limit - len(picked)]
        )
    by_pk = Item.objects.in_bulk(picked)
    return [by_pk[pk] for pk in picked]


def sample_page(
    *,
    version: DatasetVersion,
    category: str | None = None,
    split: str | None = None,
    page: int = 1,
    page_size: int = SAMPLE_LIMIT_DEFAULT,
) -> tuple[list[Item], int]:
    """One page of a version's samples and how many there are in all.

    The order is fixed for a page size: first the stratified selection of ``sample_items`` (page 1
    is what the samples endpoint always answered), then every other matching item in the same
    fixed shuffle (content hash). Each page costs the selection (at most ``SAMPLE_LIMIT_MAX``
    items) and one offset query, whatever the version's size.
    """
    page_size = max(1, min(int(page_size), SAMPLE_LIMIT_MAX))
    head = sample_items(version=version, category=category, split=split, limit=page_size)
    matching = Item.objects.filter(version=version)
    if split:
        matching = matching.filter(split=split)
    if category:
        matching = matching.filter(
            Exists(Label.objects.filter(item=OuterRef("pk"), category__name=category, is_final=True))
        )
    count = matching.count()
    if page <= 1:
        return head, count
    start = (page - 1) * page_size - len(head)
    rest = matching.exclude(pk__in=[it.pk for it in head]).order_by("sha256", "pk")
    return list(rest[start : start + page_size]), count


# --------------------------------------------------------------------------- rendering


def preview_key(*, item: Item, version: DatasetVersion, entitled: bool) -> str:
    """Where a rendered preview is kept: the image's hash, the version (its labels) and who may see it."""
    flavour = "full" if entitled else "wm"
    return f"previews/{item.sha256[:2]}/{item.sha256}-v{version.pk}-{flavour}-r{RENDERER_REVISION}.jpg"


def preview_bytes(*, item: Item, entitled: bool) -> bytes:
    """The preview JPEG of an item: from storage when rendered before, else rendered (and stored)."""
    version = item.version
    key = preview_key(item=item, version=version, entitled=entitled)
    # Only a released version's labels are frozen; a draft's can still change, so it is not cached.
    cacheable = version.status != DatasetVersion.Status.DRAFT
    if cacheable and default_storage.exists(key):
        with default_storage.open(key, "rb") as fh:
            return fh.read()
    labels = label_views([item], version)[item.pk]
    original = open_original(item)
    data = render_preview(
        image=original,
        width=item.width,
        height=item.height,
        labels=labels,
        watermark=None if entitled else f"PREVIEW · {version.dataset.supplier.name}",
    )
    if cacheable and original is not None:
        saved = default_storage.save(key, ContentFile(data))
        if saved != key:  # a concurrent render won the race; keep one file under the key
            default_storage.delete(saved)
    return data


def open_original(item: Item) -> Image.Image | None:
    """The item's image, decoded safely; None (and a log line) if it is missing or not a safe image."""
    try:
        with default_storage.open(item.storage_key, "rb") as fh, warnings.catch_warnings():
            # A decompression bomb is an error here, not a warning: previews must not exhaust memory.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(fh, formats=IMAGE_FORMATS)
            image.draft("RGB", (MAX_SIDE, MAX_SIDE))  # JPEG: decode at reduced scale, much faster
            image.load()
            return image
    except (Image.DecompressionBombWarning, Image.DecompressionBombError, OSError) as exc:
        # OSError covers a missing file and Pillow's UnidentifiedImageError alike.
        logger.warning("preview: original %s of item %s not usable: %s", item.storage_key, item.pk, exc)
        return None


def render_preview(
    *, image: Image.Image | None, width: int, height: int, labels: list[LabelView], watermark: str | None
) -> bytes:
    """Draw the labels on the image scaled to at most MAX_SIDE; add the watermark; encode as JPEG."""
    scale = min(1.0, MAX_SIDE / max(width, height))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if image is None:
        base = Image.new("RGB", size, (208, 211, 217))
        _text(ImageDraw.Draw(base), (8, 8), "image not available", fill=(60, 60, 60), size=14)
    else:
        base = image.convert("RGB").resize(size, Image.Resampling.LANCZOS)
    canvas = base.convert("RGBA")
    sx, sy = size[0] / width, size[1] / height

    fills = Image.new("RGBA", size, (0, 0, 0, 0))
    for lab in labels:
        if "rle" in lab.geometry:
            _draw_mask(fills, lab, size)
    fill_draw = ImageDraw.Draw(fills)
    for lab in labels:
        if lab.geometry_type == fmt.POLYGON:
            for ring in lab.geometry.get("polygons", []):
                pts = _points(ring, sx, sy)
                if len(pts) >= 3:
                    fill_draw.polygon(pts, fill=(*_rgb(lab.color), POLYGON_FILL_ALPHA))
    canvas = Image.alpha_composite(canvas, fills)

    draw = ImageDraw.Draw(canvas)
    captions = []
    for lab in labels:
        color = (*_rgb(lab.color), 255)
        g = lab.geometry
        kind = lab.geometry_type
        if kind == fmt.CLASSIFICATION:
            captions.append(lab)
        elif kind == fmt.BBOX or (kind == fmt.KEYPOINTS and "bbox" in g):
            x, y, w, h = g["bbox"]
            draw.rectangle(
                [x * sx, y * sy, (x + w) * sx, (y + h) * sy],
                outline=color,
                width=LINE_WIDTH if kind == fmt.BBOX else 1,
            )
        if kind == fmt.POLYGON:
            for ring in g.get("polygons", []):
                pts = _points(ring, sx, sy)
                if len(pts) >= 2:
                    draw.line([*pts, pts[0]], fill=color, width=LINE_WIDTH)
        elif kind == fmt.POLYLINE and "points" in g:
            draw.line(_points(g["points"], sx, sy), fill=color, width=LINE_WIDTH, joint="curve")
        elif kind == fmt.KEYPOINTS and "keypoints" in g:
            _draw_keypoints(draw, g["keypoints"], lab.skeleton, color, sx, sy)
        elif kind == fmt.CUBOID_2D and "cuboid" in g:
            corners = _points(g["cuboid"], sx, sy)
            if len(corners) == 8:
                for a, b in CUBOID_EDGES:
                    draw.line([corners[a], corners[b]], fill=color, width=LINE_WIDTH)
    if captions:
        _draw_captions(canvas, captions)
    if watermark:
        canvas = _watermark(canvas, watermark)
    out = io.BytesIO()
    # No chroma subsampling (4:4:4): with the default 4:2:0 a 2 px coloured outline smears into the photo.
    canvas.convert("RGB").save(out, format="JPEG", quality=JPEG_QUALITY, optimize=True, subsampling=0)
    return out.getvalue()


def _points(flat: list[float], sx: float, sy: float) -> list[tuple[float, float]]:
    return [(flat[i] * sx, flat[i + 1] * sy) for i in range(0, len(flat) - 1, 2)]


def _draw_mask(layer: Image.Image, lab: LabelView, size: tuple[int, int]) -> None:
    rle = dict(lab.geometry["rle"])
    try:
        h, w = rle["size"]
        if isinstance(rle.get("counts"), list):
            rle = mask_utils.frPyObjects(rle, h, w)
        else:
            rle["counts"] = rle["counts"].encode("ascii")
        with warnings.catch_warnings():
            # pycocotools' own NumPy 2 deprecation notice; nothing we can change from here.
            warnings.simplefilter("ignore", DeprecationWarning)
            bitmap = mask_utils.decode(rle)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:  # a malformed mask must not break it
        logger.warning("preview: mask of label %s not decodable: %s", lab.uid, exc)
        return
    stencil = Image.fromarray(np.asarray(bitmap, dtype=np.uint8) * 255, mode="L").resize(
        size, Image.Resampling.NEAREST
    )
    layer.paste(Image.new("RGBA", size, (*_rgb(lab.color), MASK_ALPHA)), (0, 0), stencil)


def _draw_keypoints(draw, kp: list, skeleton: list, color, sx: float, sy: float) -> None:
    points = {}
    for i in range(0, len(kp) - 2, 3):
        if kp[i + 2] > 0:
            points[i // 3 + 1] = (kp[i] * sx, kp[i + 1] * sy, kp[i + 2])
    for a, b in skeleton:  # COCO skeletons are 1-based pairs
        if a in points and b in points:
            draw.line([points[a][:2], points[b][:2]], fill=color, width=LINE_WIDTH)
    r = KEYPOINT_RADIUS
    for x, y, v in points.values():
        # Visible points are filled; labelled-but-occluded ones (v=1) are hollow.
        draw.ellipse([x - r, y - r, x + r, y + r], outline=color, fill=color if v == 2 else None, width=1)


def _font(size: int):
    return ImageFont.load_default(size=size)


def _text(draw, xy, text: str, *, fill, size: int = 13) -> None:
    draw.text(xy, text, fill=fill, font=_font(size))


def _draw_captions(canvas: Image.Image, captions: list[LabelView]) -> None:
    """Image-level classes as a caption bar along the bottom edge."""
    bar_h = 22
    w, h = canvas.size
    bar = Image.new("RGBA", canvas.size, (0, 0, 0, 0))
    d = ImageDraw.Draw(bar)
    d.rectangle([0, h - bar_h, w, h], fill=(0, 0, 0, 160))
    x = 6
    for lab in captions:
        d.rectangle([x, h - bar_h + 6, x + 10, h - bar_h + 16], fill=(*_rgb(lab.color), 255))
        x += 14
        d.text((x, h - bar_h + 4), lab.category, fill=(255, 255, 255, 255), font=_font(13))
        x += int(d.textlength(lab.category, font=_font(13))) + 12
    canvas.alpha_composite(bar)


def _watermark(canvas: Image.Image, text: str) -> Image.Image:
    """Diagonal text tiled across the whole image, plus a solid badge: visible, hard to crop out."""
    w, h = canvas.size
    diag = int(math.hypot(w, h)) + 40
    tile = Image.new("RGBA", (diag, diag), (0, 0, 0, 0))
    d = ImageDraw.Draw(tile)
    font = _font(max(14, w // 24))
    step_y = max(40, w // 7)
    line = f"{text}   " * 6
    for row, y in enumerate(range(0, diag, step_y)):
        d.text((-(row % 2) * step_y, y), line, fill=(255, 255, 255, WATERMARK_ALPHA), font=font)
    tile = tile.rotate(30, resample=Image.Resampling.BICUBIC)
    left, top = (diag - w) // 2, (diag - h) // 2
    canvas = Image.alpha_composite(canvas, tile.crop((left, top, left + w, top + h)))
    badge = ImageDraw.Draw(canvas)
    label = "PREVIEW · license to see the original"
    tw = badge.textlength(label, font=_font(12))
    badge.rectangle([w - tw - 12, 0, w, 18], fill=(20, 26, 38, 200))
    badge.text((w - tw - 6, 2), label, fill=(255, 255, 255, 255), font=_font(12))
    return canvas
