"""The demo's pictures, drawn with Pillow from the same geometry as their labels."""

from __future__ import annotations

import io
import math
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from pycocotools import mask as mask_utils

from ..formats import model as fmt
from ..models import (
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
