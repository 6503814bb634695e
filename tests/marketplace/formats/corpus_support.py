"""The corpus of real exports: build each case's delivery zip and count its content independently.

Each case in ``corpus/manifest.json`` is one delivery as a tool wrote it (files copied untouched from
a public repository; origin, commit and license per case). Images are not committed: they are drawn
with Pillow at run time, at the size the source image had (or the annotation declares).

The counts here do NOT use our readers: COCO goes through pycocotools, the other formats through
their documented rules in a few lines each (an ``<object>`` per VOC box, a row per YOLO label line,
a shape element per CVAT shape, a result per Label Studio region).
"""

from __future__ import annotations

import io
import json
import posixpath
import zipfile
from collections import Counter
from pathlib import Path
from xml.etree import ElementTree  # noqa: S405 - only our own committed corpus is parsed here

from PIL import Image

CORPUS = Path(__file__).parent / "corpus"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
MANIFEST = CORPUS / "manifest.json"


def load_cases() -> list[dict]:
    return json.loads(MANIFEST.read_text())["cases"]


def _image(width: int, height: int, name: str, seed: int) -> bytes:
    buf = io.BytesIO()
    fmt = {".png": "PNG", ".bmp": "BMP"}.get(posixpath.splitext(name)[1].lower(), "JPEG")
    Image.new("RGB", (width, height), (seed * 37 % 256, seed * 91 % 256, 120)).save(buf, fmt)
    return buf.getvalue()


def case_files(case: dict) -> dict[str, bytes]:
    """Every file of the delivery: the committed ones and the generated images."""
    root = CORPUS / case["name"]
    files = {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
    for i, (name, (w, h)) in enumerate(sorted(case["images"].items())):
        files[name] = _image(w, h, name, i)
    return files


def case_zip(case: dict) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in case_files(case).items():
            zf.writestr(name, data)
    return buf.getvalue()


# --------------------------------------------------------------------------- independent counts


def count_coco(files: dict[str, bytes]) -> dict:
    """pycocotools over every COCO file: images (by file name), annotations by kind."""
    from pycocotools.coco import COCO

    images: set[str] = set()
    kinds: Counter = Counter()
    visibility: Counter = Counter()
    for name, data in files.items():
        if not name.endswith(".json"):
            continue
        doc = json.loads(data)
        if not isinstance(doc, dict) or "images" not in doc:
            continue
        coco = COCO()
        coco.dataset = doc
        coco.createIndex()
        images |= {img["file_name"] for img in coco.imgs.values()}
        for ann in coco.anns.values():
            if "caption" in ann:
                kinds["caption"] += 1
            elif ann.get("keypoints"):
                kinds["keypoints"] += 1
                visibility.update(int(v) for v in ann["keypoints"][2::3])
            elif isinstance(ann.get("segmentation"), dict):
                kinds["mask"] += 1
            elif ann.get("segmentation"):
                kinds["polygon"] += 1
            elif ann.get("bbox"):
                kinds["bbox"] += 1
            else:
                kinds["classification"] += 1
    return {"items": len(images), "labels_by_kind": dict(kinds), "keypoint_visibility": dict(visibility)}


def count_voc(files: dict[str, bytes]) -> dict:
    """One box per ``<object>`` with a ``<bndbox>``; items: XMLs plus names in ImageSets/Main lists."""
    stems: set[str] = set()
    boxes = parts = 0
    for name, data in files.items():
        if not name.endswith(".xml"):
            continue
        root = ElementTree.fromstring(data)  # noqa: S314 - our committed corpus
        if root.tag != "annotation":
            continue
        stems.add(posixpath.splitext(posixpath.basename(name))[0].lower())
        for obj in root.iter("object"):
            if obj.find("bndbox") is not None:
                boxes += 1
            parts += sum(1 for p in obj.findall("part") if p.find("bndbox") is not None)
    for name, data in files.items():
        if "/ImageSets/Main/" in f"/{name}" and "_" not in posixpath.basename(name):
            # One id per line; datumaro writes '#' comment lines.
            stems |= {
                line.split()[0].lower()
                for line in data.decode().splitlines()
                if line.strip() and not line.lstrip().startswith("#")
            }
    kinds = {"bbox": boxes}
    masks = 0
    for name, data in files.items():
        if "/SegmentationObject/" in f"/{name}" and name.endswith(".png"):
            # One instance per colour (palette index) other than background and the void border.
            with Image.open(io.BytesIO(data)) as img:
                colours = {c for _, c in img.getcolors()}
                masks += len(colours - ({0, 255} if img.mode in ("P", "L") else {(0, 0, 0), (224, 224, 192)}))
    if masks:
        kinds["mask"] = masks
    return {"items": len(stems), "labels_by_kind": kinds, "parts": parts}


def count_yolo(files: dict[str, bytes]) -> dict:
    """One label per distinct non-empty row of each label file (Ultralytics drops repeated rows)."""
    kinds: Counter = Counter()
    label_files = 0
    image_stems = {posixpath.splitext(n)[0] for n in files if n.lower().endswith(IMAGE_SUFFIXES)}
    for name, data in files.items():
        base = posixpath.basename(name)
        if not name.endswith(".txt") or base in ("classes.txt", "train.txt", "val.txt", "test.txt"):
            continue
        beside = posixpath.splitext(name)[0] in image_stems  # LabelImg: x.txt beside x.jpg
        if not beside and not any(
            d in f"/{name}" for d in ("/labels/", "/labelTxt/", "obj_train_data/", "/train/", "/val/")
        ):
            continue
        label_files += 1
        rows = {line.strip() for line in data.decode().splitlines() if line.strip()}
        for row in rows:
            n = len(row.split())
            if "/labelTxt/" in f"/{name}" and n in (9, 10):
                kinds["polygon"] += 1  # DOTA: 4 corners, class name, difficulty
            elif n == 5:
                kinds["bbox"] += 1
            elif n == 9:
                kinds["polygon"] += 1  # 4 points: OBB
            elif n > 5 and (n - 1) % 2 == 0:
                kinds["polygon"] += 1
            else:
                kinds["keypoints"] += 1
    return {"labels_by_kind": dict(kinds), "label_files": label_files}


CVAT_SHAPES = {
    "box": "bbox",
    "polygon": "polygon",
    "polyline": "polyline",
    "points": "keypoints",
    "cuboid": "cuboid_2d",
    "mask": "mask",
    "tag": "classification",
}


def count_cvat(files: dict[str, bytes]) -> dict:
    """Shapes of every ``<image>``; for a video, one per track shape that is not ``outside``."""
    kinds: Counter = Counter()
    items: set[str] = set()
    frames: set[str] = set()
    for name, data in files.items():
        if not name.endswith(".xml"):
            continue
        root = ElementTree.fromstring(data)  # noqa: S314
        for image in root.iter("image"):
            items.add((image.get("subset") or "") + "/" + image.get("name"))
            for child in image:
                if child.tag in CVAT_SHAPES:
                    kinds[CVAT_SHAPES[child.tag]] += 1
        for track in root.iter("track"):
            for child in track:
                if child.tag in CVAT_SHAPES and child.get("outside") != "1":
                    kinds[CVAT_SHAPES[child.tag]] += 1
                    frames.add(child.get("frame"))
    return {"items": len(items) or len(frames), "labels_by_kind": dict(kinds)}


LS_KINDS = {
    "rectanglelabels": "bbox",
    "polygonlabels": "polygon",
    "keypointlabels": "keypoints",
    "choices": "classification",
    "brushlabels": "mask",
}


def count_labelstudio(files: dict[str, bytes]) -> dict:
    """Results by region type, over every annotation and prediction of every task."""
    kinds: Counter = Counter()
    tasks = 0
    for name, data in files.items():
        if not name.endswith(".json"):
            continue
        doc = json.loads(data)
        if not isinstance(doc, list):
            continue
        for task in doc:
            tasks += 1
            for entry in task.get("annotations", []) + task.get("predictions", []):
                if entry.get("was_cancelled"):
                    continue
                for result in entry.get("result", []):
                    kind = LS_KINDS.get(result.get("type"))
                    if kind == "bbox" and (result.get("value") or {}).get("rotation"):
                        kind = "polygon"  # a rotated rectangle is its four corners
                    if kind:
                        kinds[kind] += 1
    return {"items": tasks, "labels_by_kind": dict(kinds)}


COUNTERS = {
    "coco": count_coco,
    "voc": count_voc,
    "yolo": count_yolo,
    "cvat": count_cvat,
    "labelstudio": count_labelstudio,
}


def independent_counts(case: dict) -> dict:
    return COUNTERS[case["format"]](case_files(case))


def update_manifest(names: list[str] | None = None) -> list[str]:
    """Recompute the independent counts of the named cases (all when None); the changed names.

    Run ``python -m tests.marketplace.formats.corpus_support [name ...]`` after adding a case or
    changing a counter, and read the diff: the counts come from the rules above, never our readers.
    """
    manifest = json.loads(MANIFEST.read_text())
    changed = []
    for case in manifest["cases"]:
        if names and case["name"] not in names:
            continue
        counts = json.loads(json.dumps(independent_counts(case)))
        if counts != case.get("independent_counts"):
            case["independent_counts"] = counts
            changed.append(case["name"])
    MANIFEST.write_text(json.dumps(manifest, indent=1))
    return changed


if __name__ == "__main__":
    import sys

    print("\n".join(update_manifest(sys.argv[1:] or None)))
