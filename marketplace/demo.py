"""The demo catalogue: three published datasets from different domains and one supplier draft.

Every image is drawn here with Pillow from the same geometry its labels carry, so the labels
fit the pictures. Seeded, so two runs give the same catalogue; idempotent, so running it
again changes nothing.
"""

from __future__ import annotations

import io
import math
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import numpy as np
from django.contrib.auth import get_user_model
from django.db import transaction
from PIL import Image, ImageDraw, ImageFilter
from pycocotools import mask as mask_utils

from governance import ledger
from governance.models import Annotator, Guideline, GuidelineVersion

from . import catalogue
from .blobs import put_blob
from .demo_delivery import delivery_path, write_delivery
from .formats import model as fmt
from .models import (
    AnnotationSchema,
    AttributeSpec,
    Category,
    Dataset,
    DatasetVersion,
    Datasheet,
    Item,
    Label,
    License,
    Membership,
    Offer,
    Organization,
    Role,
)

# The accounts `make demo` prints and the README lists. Demo only: never on a public host.
DEMO_ACCOUNTS = [
    # username, password, role, organisation slug, is_staff
    ("supplier", "supplier-demo", Role.SUPPLIER, "northwind-vision", False),
    ("supplier2", "supplier2-demo", Role.SUPPLIER, "lattice-labs", False),
    ("buyer", "buyer-demo", Role.BUYER, "helio-robotics", False),
    ("auditor", "auditor-demo", Role.AUDITOR, "conformity-partners", False),
    ("admin", "admin-demo", None, None, True),
]

ORGANIZATIONS = [
    ("northwind-vision", "Northwind Vision", "Data vendor: street, people and infrastructure imagery.", "NL"),
    ("lattice-labs", "Lattice Labs", "Retail computer-vision data.", "DE"),
    ("helio-robotics", "Helio Robotics", "Builds perception for delivery robots.", "FR"),
    ("conformity-partners", "Conformity Partners", "Notified-body style AI Act assessments.", "BE"),
]

EPOCH = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

PERSON_KEYPOINTS = [
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
]  # fmt: skip
# COCO's person skeleton, 1-based pairs, exactly as person_keypoints_*.json ships it.
PERSON_SKELETON = [
    [16, 14], [14, 12], [17, 15], [15, 13], [12, 13], [6, 12], [7, 13], [6, 7], [6, 8], [7, 9],
    [8, 10], [9, 11], [2, 3], [1, 2], [1, 3], [2, 4], [3, 5], [4, 6], [5, 7],
]  # fmt: skip
PERSON_FLIP_IDX = [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15]
# A standing pose in a unit box (x right, y down), one row per keypoint.
STANDING_POSE = [
    (0.50, 0.07), (0.54, 0.05), (0.46, 0.05), (0.58, 0.07), (0.42, 0.07), (0.68, 0.22), (0.32, 0.22),
    (0.78, 0.40), (0.22, 0.40), (0.82, 0.56), (0.18, 0.56), (0.62, 0.55), (0.38, 0.55),
    (0.64, 0.76), (0.36, 0.76), (0.65, 0.97), (0.35, 0.97),
]  # fmt: skip
SKIN_TONES = {"light": (241, 207, 176), "medium": (198, 142, 101), "dark": (110, 72, 48)}


@dataclass
class DraftLabel:
    """A label before it has a database row: what the drawing code produces."""

    item_key: str
    category: str
    geometry_type: str
    geometry: dict
    attributes: dict = field(default_factory=dict)
    annotator: str | None = None
    guideline: str = "v1.0"
    source: str = fmt.HUMAN
    model_name: str = ""
    model_version: str = ""
    is_final: bool = True
    made_at: datetime | None = None
    uid: uuid.UUID = field(default_factory=uuid.uuid4)


@dataclass
class DraftItem:
    key: str
    image: Image.Image
    split: str
    attributes: dict = field(default_factory=dict)
    labels: list[DraftLabel] = field(default_factory=list)
    synthetic: bool = True


def _jpeg(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=85, optimize=True)
    return out.getvalue()


def _rle_from_polygon(points: list[tuple[float, float]], width: int, height: int) -> dict:
    """Rasterise a polygon and encode it as compressed COCO RLE (counts as str)."""
    canvas = Image.new("L", (width, height), 0)
    ImageDraw.Draw(canvas).polygon(points, fill=1)
    rle = mask_utils.encode(np.asfortranarray(np.array(canvas, dtype=np.uint8)))
    return {"size": [height, width], "counts": rle["counts"].decode("ascii")}


def _r(value: float) -> float:
    return round(value, 2)


# --------------------------------------------------------------------------- street scenes


def draw_street(rng: random.Random, index: int, split: str) -> DraftItem:
    """A daytime street: buildings, a road with lane markings, cars, pedestrians, a cyclist."""
    w, h = 640, 400
    img = Image.new("RGB", (w, h))
    d = ImageDraw.Draw(img)
    for y in range(0, 170):  # sky gradient
        t = y / 170
        d.line([(0, y), (w, y)], fill=(int(120 + 80 * t), int(170 + 50 * t), int(230 - 10 * t)))
    x = 0
    while x < w:  # buildings on the horizon
        bw = rng.randint(50, 110)
        bh = rng.randint(60, 150)
        shade = rng.randint(120, 200)
        d.rectangle([x, 170 - bh, x + bw, 185], fill=(shade, shade - 15, shade - 30))
        for wy in range(170 - bh + 10, 175, 18):
            for wx in range(x + 8, x + bw - 10, 16):
                d.rectangle(
                    [wx, wy, wx + 7, wy + 9], fill=(230, 230, 190) if rng.random() < 0.3 else (70, 80, 95)
                )
        x += bw + rng.randint(0, 6)
    d.rectangle([0, 185, w, h], fill=(112, 150, 90))  # verges
    road = [(250, 185), (390, 185), (w, h), (0, h)]
    d.polygon(road, fill=(88, 88, 92))
    item = DraftItem(
        key=f"images/{split}/street_{index:04d}.jpg",
        image=img,
        split=split,
        attributes={
            "time_of_day": rng.choice(["morning", "noon", "afternoon"]),
            "weather": rng.choice(["clear", "overcast"]),
            "country": rng.choice(["NL", "DE", "FR", "BE"]),
        },
    )
    item.labels.append(
        DraftLabel(
            item.key,
            "road",
            fmt.MASK,
            {"rle": _rle_from_polygon(road, w, h), "bbox": [0.0, 185.0, 640.0, 215.0]},
        )
    )
    for lane_top, lane_bottom in [(295, 200), (345, 440)]:  # dashed lane markings
        pts = [(lane_top, 188), ((lane_top + lane_bottom) / 2, 290), (lane_bottom, h - 2)]
        for i in range(0, 10, 2):
            t0, t1 = i / 10, (i + 1) / 10
            d.line(
                [
                    (lane_top + (lane_bottom - lane_top) * t0, 188 + (h - 190) * t0),
                    (lane_top + (lane_bottom - lane_top) * t1, 188 + (h - 190) * t1),
                ],
                fill=(240, 240, 240),
                width=3,
            )
        item.labels.append(
            DraftLabel(
                item.key,
                "lane_marking",
                fmt.POLYLINE,
                {"points": [_r(v) for p in pts for v in p]},
                {"style": "dashed"},
            )
        )
    for _ in range(rng.randint(2, 4)):  # cars, nearer ones bigger
        y0 = rng.randint(215, 320)
        scale = 0.5 + (y0 - 200) / 160
        cw, ch = 90 * scale, 42 * scale
        x0 = rng.uniform(20, w - cw - 20)
        color = rng.choice([(200, 30, 40), (30, 60, 160), (230, 230, 230), (30, 30, 30), (90, 110, 120)])
        d.rounded_rectangle([x0, y0, x0 + cw, y0 + ch * 0.75], radius=int(6 * scale), fill=color)
        d.polygon(
            [
                (x0 + cw * 0.2, y0),
                (x0 + cw * 0.3, y0 - ch * 0.3),
                (x0 + cw * 0.7, y0 - ch * 0.3),
                (x0 + cw * 0.8, y0),
            ],
            fill=color,
        )
        d.polygon(
            [
                (x0 + cw * 0.27, y0 - 1),
                (x0 + cw * 0.33, y0 - ch * 0.25),
                (x0 + cw * 0.67, y0 - ch * 0.25),
                (x0 + cw * 0.73, y0 - 1),
            ],
            fill=(160, 200, 230),
        )
        for wx in (x0 + cw * 0.22, x0 + cw * 0.78):
            d.ellipse(
                [wx - 8 * scale, y0 + ch * 0.6, wx + 8 * scale, y0 + ch * 0.6 + 16 * scale], fill=(20, 20, 20)
            )
        top, bottom = y0 - ch * 0.3, y0 + ch * 0.6 + 16 * scale
        outline = [
            x0,
            y0 + ch * 0.75,
            x0,
            y0,
            x0 + cw * 0.2,
            y0,
            x0 + cw * 0.3,
            top,
            x0 + cw * 0.7,
            top,
            x0 + cw * 0.8,
            y0,
            x0 + cw,
            y0,
            x0 + cw,
            y0 + ch * 0.75,
            x0 + cw * 0.78,
            bottom,
            x0 + cw * 0.22,
            bottom,
        ]
        geometry = {
            "bbox": [_r(x0), _r(top), _r(cw), _r(bottom - top)],
            "polygons": [[_r(v) for v in outline]],
        }
        item.labels.append(
            DraftLabel(item.key, "car", fmt.POLYGON, geometry, {"occluded": False, "truncated": False})
        )
    for _ in range(rng.randint(1, 3)):  # pedestrians on the verge
        px = rng.choice([rng.uniform(10, 200), rng.uniform(440, 620)])
        py = rng.uniform(240, 300)
        ph = 50 + (py - 240) * 0.5
        d.ellipse([px - ph * 0.08, py, px + ph * 0.08, py + ph * 0.16], fill=(220, 180, 150))
        d.rectangle(
            [px - ph * 0.12, py + ph * 0.16, px + ph * 0.12, py + ph * 0.6],
            fill=rng.choice([(40, 80, 140), (150, 40, 40), (60, 60, 60)]),
        )
        d.line(
            [(px - ph * 0.06, py + ph * 0.6), (px - ph * 0.08, py + ph)],
            fill=(30, 30, 50),
            width=max(2, int(ph * 0.06)),
        )
        d.line(
            [(px + ph * 0.06, py + ph * 0.6), (px + ph * 0.08, py + ph)],
            fill=(30, 30, 50),
            width=max(2, int(ph * 0.06)),
        )
        item.labels.append(
            DraftLabel(
                item.key,
                "pedestrian",
                fmt.BBOX,
                {"bbox": [_r(px - ph * 0.13), _r(py), _r(ph * 0.26), _r(ph)]},
                {"occluded": False},
            )
        )
    if rng.random() < 0.5:  # a cyclist
        cx, cy = rng.uniform(120, 500), rng.uniform(260, 320)
        for wx in (cx - 18, cx + 18):
            d.ellipse([wx - 11, cy + 18, wx + 11, cy + 40], outline=(20, 20, 20), width=3)
        d.line([(cx - 18, cy + 29), (cx, cy + 10), (cx + 18, cy + 29)], fill=(200, 120, 20), width=3)
        d.rectangle([cx - 5, cy - 22, cx + 5, cy + 10], fill=(30, 140, 80))
        d.ellipse([cx - 6, cy - 34, cx + 6, cy - 22], fill=(220, 180, 150))
        item.labels.append(
            DraftLabel(
                item.key,
                "cyclist",
                fmt.BBOX,
                {"bbox": [_r(cx - 29), _r(cy - 34), 58.0, 74.0]},
                {"occluded": False},
            )
        )
    tx = rng.uniform(420, 600)  # a traffic light
    d.rectangle([tx + 5, 120, tx + 8, 200], fill=(60, 60, 60))
    d.rectangle([tx, 90, tx + 13, 125], fill=(30, 30, 30))
    state = rng.choice(["red", "green"])
    d.ellipse(
        [tx + 3, 93 if state == "red" else 112, tx + 10, 100 if state == "red" else 119],
        fill=(230, 40, 40) if state == "red" else (40, 210, 80),
    )
    item.labels.append(
        DraftLabel(
            item.key, "traffic_light", fmt.BBOX, {"bbox": [_r(tx), 90.0, 13.0, 35.0]}, {"state": state}
        )
    )
    item.image = img.filter(ImageFilter.SMOOTH)
    return item


# --------------------------------------------------------------------------- people and poses


def _pose(rng: random.Random, x: float, y: float, height: float) -> list[tuple[float, float]]:
    width = height * 0.45
    swing = rng.uniform(-0.08, 0.08)
    points = []
    for i, (u, v) in enumerate(STANDING_POSE):
        if i in (9, 10):  # wrists swing
            u += swing * (1 if i == 9 else -1)
        if i in (15, 16):  # stride
            u += swing * 0.6 * (1 if i == 15 else -1)
        points.append((x + (u - 0.5) * width, y + v * height))
    return points


def draw_people(rng: random.Random, index: int, split: str) -> DraftItem:
    """People standing in a plaza, drawn from the 17 COCO keypoints their labels carry."""
    w, h = 512, 384
    img = Image.new("RGB", (w, h), (214, 206, 190))
    d = ImageDraw.Draw(img)
    for ty in range(200, h, 24):  # paving
        d.line([(0, ty), (w, ty)], fill=(190, 182, 168), width=2)
    d.rectangle([0, 0, w, 120], fill=(170, 190, 205))
    d.rectangle([0, 120, w, 200], fill=(160, 150, 140))
    item = DraftItem(
        key=f"images/{split}/plaza_{index:04d}.jpg",
        image=img,
        split=split,
        attributes={
            "region": rng.choice(["EU-North", "EU-South", "EU-West"]),
            "camera": rng.choice(["cam-A", "cam-B"]),
        },
    )
    count = rng.randint(1, 3)
    slots = sorted(rng.sample(range(count * 2 + 1), count))
    for slot in slots:
        age_band = rng.choices(["child", "adult", "senior"], weights=[2, 6, 2])[0]
        tone = rng.choices(list(SKIN_TONES), weights=[4, 4, 2])[0]
        height = {"child": 150, "adult": 250, "senior": 235}[age_band] * rng.uniform(0.9, 1.05)
        cx = 40 + (w - 80) * (slot + 0.5) / (count * 2 + 1)
        top = rng.uniform(70, h - height - 8)
        pts = _pose(rng, cx, top, height)
        skin = SKIN_TONES[tone]
        shirt = rng.choice([(40, 90, 160), (170, 60, 60), (60, 130, 80), (90, 90, 90)])
        limb = max(4, int(height * 0.04))
        for a, b in PERSON_SKELETON:
            pa, pb = pts[a - 1], pts[b - 1]
            body = a > 5 and b > 5
            d.line([pa, pb], fill=shirt if body else skin, width=limb if body else max(2, limb // 2))
        head_r = height * 0.07
        d.ellipse([pts[0][0] - head_r, pts[0][1] - head_r, pts[0][0] + head_r, pts[0][1] + head_r], fill=skin)
        keypoints = []
        for i, (px, py) in enumerate(pts):
            visibility = 1 if (i in (3, 4) and rng.random() < 0.3) else 2
            keypoints += [_r(px), _r(py), visibility]
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        bbox = [
            _r(min(xs) - 8),
            _r(min(ys) - head_r - 4),
            _r(max(xs) - min(xs) + 16),
            _r(max(ys) - min(ys) + head_r + 10),
        ]
        item.labels.append(
            DraftLabel(
                item.key,
                "person",
                fmt.KEYPOINTS,
                {"keypoints": keypoints, "bbox": bbox},
                {"age_band": age_band, "skin_tone": tone},
            )
        )
    return item


def with_candidates(rng: random.Random, item: DraftItem, annotators: list[str], made_at: datetime) -> None:
    """Each final label gets one independent candidate per annotator; the final is their consensus."""
    finals = list(item.labels)
    for label in finals:
        label.source = fmt.CONSENSUS
        label.annotator = None
        label.made_at = made_at + timedelta(hours=2)
        for n, pseudonym in enumerate(annotators):
            kp = list(label.geometry["keypoints"])
            for i in range(0, len(kp), 3):
                kp[i] = _r(kp[i] + rng.gauss(0, 2.5))
                kp[i + 1] = _r(kp[i + 1] + rng.gauss(0, 2.5))
            bx = [_r(v + rng.gauss(0, 3)) for v in label.geometry["bbox"]]
            attrs = dict(label.attributes)
            if rng.random() < 0.12:  # the occasional disagreement the agreement report should find
                attrs["age_band"] = rng.choice(["child", "adult", "senior"])
            if rng.random() < 0.08:
                attrs["skin_tone"] = rng.choice(list(SKIN_TONES))
            item.labels.append(
                DraftLabel(
                    item.key,
                    label.category,
                    label.geometry_type,
                    {"keypoints": kp, "bbox": bx},
                    attrs,
                    annotator=pseudonym,
                    guideline=label.guideline,
                    is_final=False,
                    made_at=made_at + timedelta(minutes=7 * n),
                )
            )


# --------------------------------------------------------------------------- bridge inspection


def draw_bridge(rng: random.Random, index: int, split: str) -> DraftItem:
    """A concrete bridge soffit with cracks, spalling, corrosion and a bearing; image-level condition."""
    w, h = 640, 480
    noise = np.clip(np.random.default_rng(rng.randint(0, 2**31)).normal(150, 12, (h, w)), 0, 255).astype(
        np.uint8
    )
    img = Image.merge("RGB", [Image.fromarray(noise)] * 3).filter(ImageFilter.GaussianBlur(1.2))
    d = ImageDraw.Draw(img)
    for y in range(60, h, 140):  # formwork joints
        d.line([(0, y), (w, y)], fill=(120, 120, 118), width=2)
    item = DraftItem(
        key=f"images/{split}/soffit_{index:04d}.jpg",
        image=img,
        split=split,
        attributes={"structure": f"BR-{rng.randint(100, 140)}", "span": rng.randint(1, 4)},
        synthetic=True,
    )
    defects = 0
    for _ in range(rng.randint(0, 3)):  # cracks: a polyline and its box
        x, y = rng.uniform(40, w - 200), rng.uniform(40, h - 150)
        pts = [(x, y)]
        for _ in range(rng.randint(4, 7)):
            x += rng.uniform(15, 35)
            y += rng.uniform(-12, 25)
            pts.append((x, y))
        d.line(pts, fill=(45, 42, 40), width=2)
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        flat = [_r(v) for p in pts for v in p]
        geometry = {
            "points": flat,
            "bbox": [_r(min(xs) - 2), _r(min(ys) - 2), _r(max(xs) - min(xs) + 4), _r(max(ys) - min(ys) + 4)],
        }
        item.labels.append(
            DraftLabel(
                item.key, "crack", fmt.POLYLINE, geometry, {"width_mm": rng.choice([0.2, 0.3, 0.5, 1.0])}
            )
        )
        defects += 1
    if rng.random() < 0.5:  # spalling: a darker irregular patch
        cx, cy, r = rng.uniform(100, w - 100), rng.uniform(100, h - 100), rng.uniform(20, 45)
        ring = [
            (cx + r * rng.uniform(0.7, 1.1) * math.cos(a), cy + r * rng.uniform(0.7, 1.1) * math.sin(a))
            for a in np.linspace(0, 2 * math.pi, 10, endpoint=False)
        ]
        d.polygon(ring, fill=(105, 100, 96))
        xs, ys = [p[0] for p in ring], [p[1] for p in ring]
        item.labels.append(
            DraftLabel(
                item.key,
                "spalling",
                fmt.BBOX,
                {"bbox": [_r(min(xs)), _r(min(ys)), _r(max(xs) - min(xs)), _r(max(ys) - min(ys))]},
                {"exposed_rebar": rng.random() < 0.4},
            )
        )
        defects += 1
    if rng.random() < 0.4:  # corrosion stain
        cx, cy = rng.uniform(80, w - 80), rng.uniform(80, h - 80)
        d.ellipse([cx - 30, cy - 14, cx + 30, cy + 14], fill=(150, 90, 40))
        d.ellipse([cx - 15, cy - 6, cx + 15, cy + 30], fill=(140, 80, 35))
        item.labels.append(
            DraftLabel(item.key, "corrosion", fmt.BBOX, {"bbox": [_r(cx - 30), _r(cy - 14), 60.0, 44.0]}, {})
        )
        defects += 1
    # A bearing block seen in perspective: the 2D cuboid is its projection, the 3D one its pose.
    bx, by, bw, bh, dx, dy = (
        rng.uniform(60, 420),
        rng.uniform(300, 360),
        rng.uniform(110, 150),
        rng.uniform(50, 70),
        28.0,
        -18.0,
    )
    front = [(bx, by), (bx, by + bh), (bx + bw, by), (bx + bw, by + bh)]  # tl, bl, tr, br
    back = [(x + dx, y + dy) for x, y in front]
    d.polygon([back[0], back[2], front[2], front[0]], fill=(175, 175, 178))
    d.polygon([front[2], back[2], back[3], front[3]], fill=(125, 125, 128))
    d.rectangle([front[0], front[3]], fill=(150, 150, 153), outline=(80, 80, 80))
    cuboid = [_r(v) for p in front + back for v in p]
    item.labels.append(
        DraftLabel(item.key, "bearing", fmt.CUBOID_2D, {"cuboid": cuboid}, {"type": "elastomeric"})
    )
    depth = round(rng.uniform(3.0, 6.0), 2)
    item.labels.append(
        DraftLabel(
            item.key,
            "bearing",
            fmt.CUBOID_3D,
            {
                "cuboid_3d": {
                    "position": [
                        round((bx + bw / 2 - w / 2) * depth / 800, 3),
                        round((by + bh / 2 - h / 2) * depth / 800, 3),
                        depth,
                    ],
                    "dimensions": [0.6, 0.4, 0.25],
                    "rotation": [0.0, round(rng.uniform(-0.3, 0.3), 3), 0.0],
                }
            },
            {"type": "elastomeric"},
            source=fmt.MODEL,
            model_name="bearing-pose-estimator",
            model_version="2.1.0",
        )
    )
    condition = "good" if defects == 0 else ("fair" if defects == 1 else "poor")
    item.labels.append(DraftLabel(item.key, f"condition_{condition}", fmt.CLASSIFICATION, {}, {}))
    return item


# --------------------------------------------------------------------------- writing it down


DATASHEETS = {
    "urban-street-scenes": {
        "purpose": "Training and evaluating object detection, drivable-area segmentation and lane detection for urban driving assistance in European cities.",
        "creators": "Northwind Vision's street-data team, for its own catalogue.",
        "funding": "Self-funded by Northwind Vision.",
        "instances": "Each instance is one 640x400 front-camera frame with cars, pedestrians, cyclists, traffic lights, the road surface (mask) and lane markings (polylines).",
        "sampling": "Frames sampled every 30 s from drives in four countries, balanced across time of day; the demo frames are rendered stand-ins.",
        "subpopulations": "Pedestrians are not described by any demographic attribute.",
        "sensitive_data": "Faces and licence plates are blurred at capture; no personal attributes are labelled.",
        "missing_information": "Traffic-light state is missing when the light faces away from the camera.",
        "recommended_splits": "train/val/test by drive, so that no drive spans two splits.",
        "acquisition": "Roof-mounted camera, 30 fps, frames sampled every 30 s.",
        "timeframe": "January to September 2025.",
        "setting": "Urban streets in NL, DE, FR and BE; daytime, dry weather.",
        "collectors": "Two employed drivers; annotators paid per hour above the local living wage.",
        "consent": "Public-space recording under the legitimate-interest basis with on-vehicle notices; faces blurred.",
        "preprocessing": "Face and licence-plate blurring; frames with motion blur above threshold removed.",
        "labelling": "Each frame labelled by one annotator under the guideline, reviewed by a second; lane markings pre-labelled by a model and corrected.",
        "annotation_platform": "CVAT 2.x, exported as CVAT for images 1.1.",
        "raw_data": "Raw video kept encrypted for 24 months; not distributed.",
        "intended_uses": "Detection, segmentation and lane detection research and product development.",
        "unsuitable_uses": "Identifying or tracking individuals; night-time or adverse-weather driving without additional data.",
        "biases": "Only daytime and dry weather; four Western European countries.",
        "limitations": "No night, rain or snow; few cyclists.",
        "social_impact": "Improved vulnerable-road-user detection; risk of over-trusting a model outside its conditions.",
        "distribution": "Through this registry under CC-BY-4.0.",
        "maintainer": "data@northwind.example",
        "update_policy": "Quarterly releases; labelling errors reported by buyers are fixed in the next version.",
        "retention": "No limit for the released frames.",
    },
    "pedestrian-poses": {
        "purpose": "Human pose estimation for robot navigation among pedestrians, with demographic attributes so that performance can be checked across groups.",
        "creators": "Northwind Vision's people-data team.",
        "instances": "512x384 plaza scenes; each person has 17 COCO keypoints, a box, an age band and a skin-tone group.",
        "subpopulations": "Yes: age band (child, adult, senior) and skin-tone group (light, medium, dark), labelled for bias measurement only.",
        "sensitive_data": "Skin tone and apparent age are special-category adjacent; they are kept pseudonymous and only reported in aggregate.",
        "recommended_splits": "train/val by camera.",
        "acquisition": "Fixed cameras in public plazas with posted notices.",
        "timeframe": "March to June 2026.",
        "setting": "Pedestrian plazas in northern, southern and western Europe.",
        "collectors": "Contracted annotation vendor; three independent annotators per image, consensus by a reviewer.",
        "labelling": "Three annotators label every person independently; keypoints are fused and attributes decided by majority vote.",
        "annotation_platform": "Label Studio 1.x.",
        "intended_uses": "Pose estimation; fairness evaluation across age and skin tone.",
        "unsuitable_uses": "Inferring identity, ethnicity or age of real individuals.",
        "biases": "Seniors and the medium skin-tone group are under-represented relative to the declared target distribution, and no senior with a dark skin tone appears; see the balance report.",
        "distribution": "By request: research license, reviewed by the supplier.",
        "maintainer": "people-data@northwind.example",
    },
    "bridge-inspection": {
        "purpose": "Automating visual bridge inspection: defect detection and overall condition rating.",
        "creators": "Northwind Vision with a civil-engineering partner.",
        "instances": "640x480 soffit images with crack polylines, spalling and corrosion boxes, bearing cuboids (2D projection and 3D pose) and an image-level condition.",
        "subpopulations": "No people.",
        "acquisition": "Drone imagery at 2-4 m distance; the demo frames are rendered stand-ins.",
        "setting": "Concrete highway bridges.",
        "labelling": "Defects by certified bridge inspectors; bearing 3D poses estimated by a model and checked.",
        "annotation_platform": "CVAT 2.x.",
        "intended_uses": "Defect detection and condition classification.",
        "limitations": "Concrete only; no steel structures.",
        "distribution": "Commercial license, per organisation.",
        "maintainer": "infra@northwind.example",
        "update_policy": "Yearly.",
    },
}


@dataclass
class Spec:
    slug: str
    title: str
    summary: str
    domain: str
    task_types: list[str]
    tags: list[str]
    categories: list[dict]
    attributes: list[dict]
    guideline: str
    guideline_versions: list[tuple[str, date, str]]
    drawer: object
    versions: list[int]  # images per released version (cumulative)
    draft_extra: int = 0
    annotators: list[str] = field(default_factory=list)
    candidates: bool = False


PALETTE = [
    "#e6194b",
    "#3cb44b",
    "#4363d8",
    "#f58231",
    "#911eb4",
    "#42d4f4",
    "#f032e6",
    "#9a6324",
    "#469990",
    "#808000",
]

SPECS = [
    Spec(
        slug="urban-street-scenes",
        title="Urban Street Scenes — Western Europe, daytime",
        summary="Front-camera frames from four European countries with vehicles, vulnerable road users, drivable area masks and lane markings.",
        domain="autonomous-driving",
        task_types=["detection", "segmentation", "lane-detection"],
        tags=["street", "adas", "lanes", "europe"],
        categories=[
            {
                "name": "car",
                "source_id": 1,
                "supercategory": "vehicle",
                "geometry_types": [fmt.BBOX, fmt.POLYGON],
            },
            {"name": "pedestrian", "source_id": 2, "supercategory": "person", "geometry_types": [fmt.BBOX]},
            {"name": "cyclist", "source_id": 3, "supercategory": "person", "geometry_types": [fmt.BBOX]},
            {
                "name": "traffic_light",
                "source_id": 4,
                "supercategory": "infrastructure",
                "geometry_types": [fmt.BBOX],
            },
            {"name": "road", "source_id": 5, "supercategory": "surface", "geometry_types": [fmt.MASK]},
            {
                "name": "lane_marking",
                "source_id": 6,
                "supercategory": "surface",
                "geometry_types": [fmt.POLYLINE],
            },
        ],
        attributes=[
            {"name": "occluded", "type": "boolean"},
            {
                "name": "state",
                "type": "choice",
                "allowed_values": ["red", "amber", "green"],
                "categories": ["traffic_light"],
            },
            {
                "name": "style",
                "type": "choice",
                "allowed_values": ["solid", "dashed"],
                "categories": ["lane_marking"],
            },
            {
                "name": "time_of_day",
                "type": "choice",
                "scope": "item",
                "allowed_values": ["morning", "noon", "afternoon"],
            },
            {
                "name": "weather",
                "type": "choice",
                "scope": "item",
                "allowed_values": ["clear", "overcast", "rain"],
            },
            {
                "name": "country",
                "type": "choice",
                "scope": "item",
                "allowed_values": ["NL", "DE", "FR", "BE"],
            },
        ],
        guideline="Street scene labelling guideline",
        guideline_versions=[
            ("v1.0", date(2026, 1, 10), "First release."),
            ("v1.1", date(2026, 3, 1), "Lane markings drawn through occlusions."),
            ("v1.2", date(2026, 6, 1), "Cyclist boxes include the bicycle."),
        ],
        drawer=draw_street,
        versions=[16, 24],
        draft_extra=4,
        annotators=["A-11", "A-17", "R-3"],
    ),
    Spec(
        slug="pedestrian-poses",
        title="Pedestrian Poses with Demographic Attributes",
        summary="People in public plazas with 17 COCO keypoints, boxes, age band and skin-tone group, each labelled by three independent annotators.",
        domain="robotics",
        task_types=["keypoints", "detection"],
        tags=["people", "pose", "fairness", "keypoints"],
        categories=[
            {
                "name": "person",
                "source_id": 1,
                "supercategory": "person",
                "geometry_types": [fmt.KEYPOINTS, fmt.BBOX],
                "keypoint_names": PERSON_KEYPOINTS,
                "skeleton": PERSON_SKELETON,
                "flip_idx": PERSON_FLIP_IDX,
            },
        ],
        attributes=[
            {
                "name": "age_band",
                "type": "choice",
                "allowed_values": ["child", "adult", "senior"],
                "describes_person": True,
                "target_distribution": {"child": 0.2, "adult": 0.55, "senior": 0.25},
            },
            {
                "name": "skin_tone",
                "type": "choice",
                "allowed_values": ["light", "medium", "dark"],
                "describes_person": True,
                "target_distribution": {"light": 0.34, "medium": 0.33, "dark": 0.33},
            },
            {
                "name": "region",
                "type": "choice",
                "scope": "item",
                "allowed_values": ["EU-North", "EU-South", "EU-West"],
            },
        ],
        guideline="Pose and attribute guideline",
        guideline_versions=[
            ("v1.0", date(2026, 2, 1), "First release."),
            ("v1.1", date(2026, 4, 15), "Skin-tone groups defined against the Monk scale swatches."),
        ],
        drawer=draw_people,
        versions=[20],
        annotators=["A-21", "A-22", "A-23"],
        candidates=True,
    ),
    Spec(
        slug="bridge-inspection",
        title="Bridge Inspection — Concrete Soffits",
        summary="Drone images of concrete bridge soffits with cracks, spalling, corrosion, bearing cuboids in 2D and 3D, and a condition rating per image.",
        domain="infrastructure",
        task_types=["classification", "detection", "3d-detection"],
        tags=["inspection", "civil-engineering", "defects", "drone"],
        categories=[
            {
                "name": "crack",
                "source_id": 1,
                "supercategory": "defect",
                "geometry_types": [fmt.POLYLINE, fmt.BBOX],
            },
            {"name": "spalling", "source_id": 2, "supercategory": "defect", "geometry_types": [fmt.BBOX]},
            {"name": "corrosion", "source_id": 3, "supercategory": "defect", "geometry_types": [fmt.BBOX]},
            {
                "name": "bearing",
                "source_id": 4,
                "supercategory": "component",
                "geometry_types": [fmt.CUBOID_2D, fmt.CUBOID_3D],
            },
            {
                "name": "condition_good",
                "source_id": 5,
                "supercategory": "condition",
                "geometry_types": [fmt.CLASSIFICATION],
            },
            {
                "name": "condition_fair",
                "source_id": 6,
                "supercategory": "condition",
                "geometry_types": [fmt.CLASSIFICATION],
            },
            {
                "name": "condition_poor",
                "source_id": 7,
                "supercategory": "condition",
                "geometry_types": [fmt.CLASSIFICATION],
            },
        ],
        attributes=[
            {"name": "width_mm", "type": "number", "categories": ["crack"]},
            {"name": "exposed_rebar", "type": "boolean", "categories": ["spalling"]},
            {
                "name": "type",
                "type": "choice",
                "allowed_values": ["elastomeric", "pot", "sliding"],
                "categories": ["bearing"],
            },
            {"name": "structure", "type": "text", "scope": "item"},
            {"name": "span", "type": "number", "scope": "item"},
        ],
        guideline="Inspection defect catalogue",
        guideline_versions=[
            ("v2.0", date(2025, 11, 1), "Aligned with the national inspection manual."),
            ("v2.1", date(2026, 2, 20), "Crack width classes."),
        ],
        drawer=draw_bridge,
        versions=[20],
        annotators=["E-1", "E-2"],
    ),
]


def _users_and_orgs() -> dict[str, Organization]:
    orgs = {}
    for slug, name, description, country in ORGANIZATIONS:
        orgs[slug], _ = Organization.objects.get_or_create(
            slug=slug, defaults={"name": name, "description": description, "country": country}
        )
    users = get_user_model().objects
    for username, password, role, org_slug, is_staff in DEMO_ACCOUNTS:
        user, created = users.get_or_create(username=username, defaults={"email": f"{username}@demo.example"})
        if created:
            user.set_password(password)
            user.is_staff = user.is_superuser = is_staff
            user.save()
        if role:
            Membership.objects.get_or_create(user=user, organization=orgs[org_slug], role=role)
    return orgs


def _licenses() -> dict[str, License]:
    cc_by, _ = License.objects.get_or_create(
        spdx_id="CC-BY-4.0",
        defaults={
            "name": "Creative Commons Attribution 4.0 International",
            "url": "https://creativecommons.org/licenses/by/4.0/legalcode",
            "text": "You are free to share and adapt the material for any purpose, even commercially, provided you give appropriate credit.",
            "commercial_use": True,
            "ai_training": True,
            "derivatives": True,
            "redistribution": True,
            "attribution_required": True,
        },
    )
    research, _ = License.objects.get_or_create(
        spdx_id="",
        name="Northwind Research Use License 1.0",
        defaults={
            "text": "Non-commercial research and evaluation only. No redistribution. Demographic attributes may only be used to measure and mitigate bias.",
            "commercial_use": False,
            "ai_training": True,
            "derivatives": True,
            "redistribution": False,
            "attribution_required": True,
            "duration_days": 365,
        },
    )
    commercial, _ = License.objects.get_or_create(
        spdx_id="",
        name="Northwind Commercial AI Training License 2.0",
        defaults={
            "text": "Use to train, evaluate and ship commercial models within the licensee organisation. No redistribution of the images. 5 named seats.",
            "commercial_use": True,
            "ai_training": True,
            "derivatives": True,
            "redistribution": False,
            "attribution_required": False,
            "duration_days": 730,
            "seats": 5,
        },
    )
    return {"open": cc_by, "research": research, "commercial": commercial}


def _new_version(
    dataset: Dataset, number: int, spec: Spec, sheet: dict
) -> tuple[DatasetVersion, dict[str, Category]]:
    version = DatasetVersion.objects.create(dataset=dataset, number=number)
    Datasheet.objects.create(version=version, **sheet)
    schema = AnnotationSchema.objects.create(version=version)
    categories = {}
    for i, c in enumerate(spec.categories):
        categories[c["name"]] = Category.objects.create(schema=schema, color=PALETTE[i % len(PALETTE)], **c)
    for a in spec.attributes:
        AttributeSpec.objects.create(schema=schema, **a)
    return version, categories


def _write_items(version, categories, items: list[DraftItem], annotators, guideline_versions) -> None:
    item_rows = []
    for it in items:
        data = _jpeg(it.image)
        key, sha = put_blob(data, suffix=".jpg")
        item_rows.append(
            Item(
                version=version,
                key=it.key,
                storage_key=key,
                sha256=sha,
                size_bytes=len(data),
                width=it.image.width,
                height=it.image.height,
                split=it.split,
                synthetic=it.synthetic,
                attributes=it.attributes,
            )
        )
    Item.objects.bulk_create(item_rows)
    by_key = {row.key: row for row in Item.objects.filter(version=version)}
    labels = []
    for it in items:
        for lab in it.labels:
            labels.append(
                Label(
                    uid=lab.uid,
                    version=version,
                    item=by_key[it.key],
                    category=categories[lab.category],
                    geometry_type=lab.geometry_type,
                    geometry=lab.geometry,
                    attributes=lab.attributes,
                    is_final=lab.is_final,
                    annotator=annotators.get(lab.annotator),
                    guideline_version=guideline_versions[lab.guideline],
                    source=lab.source,
                    model_name=lab.model_name,
                    model_version=lab.model_version,
                    made_at=lab.made_at,
                    source_ref=f"{it.key}#{len(labels)}",
                )
            )
    Label.objects.bulk_create(labels, batch_size=500)
    version.guideline_versions.set({guideline_versions[lab.guideline] for it in items for lab in it.labels})


def _build_dataset(spec: Spec, supplier: Organization, licenses: dict, *, seed: int) -> Dataset:
    rng = random.Random(seed)
    dataset = Dataset.objects.create(
        slug=spec.slug,
        title=spec.title,
        summary=spec.summary,
        domain=spec.domain,
        task_types=spec.task_types,
        tags=spec.tags,
        supplier=supplier,
        description=DATASHEETS[spec.slug].get("purpose", ""),
    )
    guideline = Guideline.objects.create(dataset=dataset, title=spec.guideline)
    gvs = {}
    for tag, effective, notes in spec.guideline_versions:
        text = f"{spec.guideline} {tag}\n\n{notes}\n\nDraw tight boxes; label every visible instance; mark occlusion."
        gvs[tag] = GuidelineVersion.objects.create(
            guideline=guideline, tag=tag, text=text, effective_date=effective, change_notes=notes
        )
    tags = list(gvs)
    annotators = {}
    for pseudonym in spec.annotators:
        role = (
            Annotator.Role.REVIEWER
            if pseudonym.startswith("R-")
            else (Annotator.Role.EXPERT if pseudonym.startswith("E-") else Annotator.Role.ANNOTATOR)
        )
        annotators[pseudonym], _ = Annotator.objects.get_or_create(
            organization=supplier,
            pseudonym=pseudonym,
            defaults={
                "role": role,
                "expertise": [spec.domain],
                "qualifications": ["certified bridge inspector"] if role == Annotator.Role.EXPERT else [],
                "training_records": [
                    {"what": f"{spec.guideline} {tags[0]} onboarding", "when": "2026-01-15", "passed": True}
                ],
            },
        )
    labellers = [p for p in spec.annotators if not p.startswith("R-")]
    splits = ["train", "train", "train", "val"]
    items: list[DraftItem] = []
    sheet = DATASHEETS[spec.slug]
    last_count = 0
    previous_version = None  # governance ledger: events record what changed since this version
    for number, count in enumerate(
        spec.versions + ([spec.versions[-1] + spec.draft_extra] if spec.draft_extra else []), start=1
    ):
        released = number <= len(spec.versions)
        tag = tags[min(number - 1, len(tags) - 1)]
        for i in range(last_count, count):
            made_at = EPOCH + timedelta(days=30 * (number - 1) + i // 4, minutes=13 * i)
            it = spec.drawer(rng, i, splits[i % len(splits)] if i % 10 != 9 else "test")
            for lab in it.labels:
                lab.guideline = tag
                lab.made_at = made_at
                if lab.source != fmt.MODEL:
                    lab.annotator = labellers[i % len(labellers)]
                if lab.geometry_type == fmt.POLYLINE and spec.slug == "urban-street-scenes":
                    lab.source, lab.model_name, lab.model_version = fmt.MODEL, "lane-prelabel", "0.9.3"
                    lab.annotator = None
            if spec.candidates:
                with_candidates(rng, it, labellers, made_at)
            items.append(it)
        if number > 1:
            # A fix between versions: the same labels (same uids), one box tightened per ten items.
            for it in items[:last_count:10]:
                for lab in it.labels:
                    if lab.geometry_type == fmt.BBOX and lab.is_final:
                        x, y, bw, bh = lab.geometry["bbox"]
                        lab.geometry = {
                            **lab.geometry,
                            "bbox": [_r(x + 1), _r(y + 1), _r(bw - 2), _r(bh - 2)],
                        }
                        lab.guideline = tag
                        break
        last_count = count
        version, categories = _new_version(dataset, number, spec, sheet)
        if not released:
            # The draft stays empty: its delivery is a file the supplier uploads (demo_delivery).
            jpegs = {it.key: _jpeg(it.image) for it in items}
            write_delivery(
                path=delivery_path(spec.slug, number),
                items=items,
                categories=spec.categories,
                jpeg_of=jpegs.get,
            )
            continue
        _write_items(version, categories, items, annotators, gvs)
        _record_ledger_events(dataset, version, previous_version, gvs)  # governance ledger
        previous_version = version
        notes = (
            "First release."
            if number == 1
            else f"{count - spec.versions[number - 2]} new images; tightened boxes under guideline {tag}."
        )
        catalogue.publish_version(
            version=version, release_notes=notes, at=EPOCH + timedelta(days=45 * number)
        )
    return dataset


# --------------------------------------------------------------------------- governance ledger

# Reviewer R-3 reviews and accepts the first box of every fifth image of the street dataset's first
# version, three days on: among them the boxes tightened in v2, whose histories then tell it all.
REVIEW_EVERY, REVIEW_DELAY = 5, timedelta(days=3)


def _record_ledger_events(
    dataset: Dataset, version: DatasetVersion, previous: DatasetVersion | None, gvs: dict
) -> None:
    """Ledger events for a demo version: what its labels' sources say, then the reviews.

    New labels are "created" by their annotator or model at the time they were made (the pedestrian
    candidates too) and a consensus label is a "consensus" event; boxes tightened since the previous
    version are "modified" with before and after. Publishing then signs a tree head over it all.
    """
    ledger.append_events(
        dataset=dataset, events=ledger.label_version_events(version=version, previous=previous)
    )
    reviewer = Annotator.objects.filter(
        organization_id=dataset.supplier_id, pseudonym="R-3", role=Annotator.Role.REVIEWER
    ).first()
    if reviewer is None or previous is not None or not dataset.slug.startswith("urban-street"):
        return
    labels = (
        Label.objects.filter(version=version, is_final=True, source=fmt.HUMAN, geometry_type=fmt.BBOX)
        .select_related("item", "category", "annotator", "guideline_version", "version")
        .order_by("item__key", "id")
    )
    first_box = {}
    for label in labels:
        first_box.setdefault(label.item.key, label)
    events = []
    for key, label in first_box.items():
        if int(key.rsplit("_", 1)[1].split(".")[0]) % REVIEW_EVERY:  # images/train/street_0010.jpg -> 10
            continue
        at = (label.made_at or EPOCH) + REVIEW_DELAY
        in_force = max(
            (g for g in gvs.values() if g.effective_date <= at.date()), key=lambda g: g.effective_date
        )
        for action, minutes in (("reviewed", 0), ("accepted", 4)):
            events.append(
                ledger.label_event(
                    label,
                    action=action,
                    actor=reviewer.pseudonym,
                    occurred_at=at + timedelta(minutes=minutes),
                    guideline_version=in_force.tag,
                    extra={"review": "second-pass check against the guideline"},
                )
            )
    ledger.append_events(dataset=dataset, events=events)


# --------------------------------------------------------------------------- end governance ledger


def _retail_draft(supplier: Organization) -> None:
    """A second supplier's dataset that has no released version: only they may see it."""
    dataset = Dataset.objects.create(
        slug="retail-shelf-products",
        title="Retail Shelf Products (in preparation)",
        supplier=supplier,
        summary="Packaged goods on supermarket shelves, boxes per product facing.",
        domain="retail",
        task_types=["detection"],
        tags=["retail", "shelves"],
    )
    version = DatasetVersion.objects.create(dataset=dataset, number=1)
    Datasheet.objects.create(version=version, purpose="Planogram compliance.")
    schema = AnnotationSchema.objects.create(version=version)
    Category.objects.create(
        schema=schema, name="product_facing", source_id=1, geometry_types=[fmt.BBOX], color=PALETTE[0]
    )


@transaction.atomic
def load_demo() -> list[tuple[str, str, str]]:
    """Create the demo catalogue if it is not there; return the demo accounts (user, password, role)."""
    orgs = _users_and_orgs()
    licenses = _licenses()
    supplier = orgs["northwind-vision"]
    for seed, spec in enumerate(SPECS, start=1):
        if Dataset.objects.filter(slug=spec.slug).exists():
            continue
        _build_dataset(spec, supplier, licenses, seed=seed)
    streets = Dataset.objects.get(slug="urban-street-scenes")
    people = Dataset.objects.get(slug="pedestrian-poses")
    bridges = Dataset.objects.get(slug="bridge-inspection")
    Offer.objects.get_or_create(
        dataset=streets,
        license=licenses["open"],
        access_mode=Offer.AccessMode.OPEN,
        defaults={"description": "Free download with attribution."},
    )
    Offer.objects.get_or_create(
        dataset=people,
        license=licenses["research"],
        access_mode=Offer.AccessMode.REQUEST,
        defaults={"description": "Research use; the supplier reviews each request."},
    )
    Offer.objects.get_or_create(
        dataset=people,
        license=licenses["commercial"],
        access_mode=Offer.AccessMode.PURCHASE,
        defaults={
            "price": Decimal("12000.00"),
            "description": "Commercial training license, 5 seats, 2 years.",
        },
    )
    Offer.objects.get_or_create(
        dataset=bridges,
        license=licenses["commercial"],
        access_mode=Offer.AccessMode.PURCHASE,
        defaults={"price": Decimal("4900.00"), "description": "Per organisation, 5 seats, 2 years."},
    )
    # The demo buyer bought Bridge Inspection the way a user would: an invoiced order, an
    # entitlement that expires with the license, the buyer's acceptance (their seat), a ledger event.
    from . import licensing  # imports the API error types; kept out of the module's import time

    licensing.purchase(
        user=get_user_model().objects.get(username="buyer"),
        offer=Offer.objects.get(dataset=bridges, access_mode=Offer.AccessMode.PURCHASE),
        idempotency_key="demo-bridge-inspection",
        accept_license=True,
    )
    if not Dataset.objects.filter(slug="retail-shelf-products").exists():
        _retail_draft(orgs["lattice-labs"])
    return [(u, p, (r.label if r else "staff")) for u, p, r, _, _ in DEMO_ACCOUNTS]
