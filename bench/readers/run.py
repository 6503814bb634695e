"""Readers' growth: is any reader quadratic in names, classes or points? (issue #17)

    python bench/readers/run.py [--base 2000] [--steps 3]

Each probe builds an in-memory delivery whose size grows along ONE axis (number of classes, of
files naming distinct classes, of points in one shape ...), doubling ``--steps`` times from
``--base``, and times the pure reader (items and labels consumed, no Django, no database). A
linear reader takes about twice as long per doubling; a quadratic one four times. The ratio of
the last doubling is printed and stored in bench/results/readers.json; a ratio above 3 is
flagged. Small sizes on purpose: it runs in seconds on a shared machine.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
import zipfile
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from marketplace.formats.archive import ZipSource  # noqa: E402
from marketplace.formats.coco import read_coco  # noqa: E402
from marketplace.formats.cvat import read_cvat  # noqa: E402
from marketplace.formats.labelstudio import read_labelstudio  # noqa: E402
from marketplace.formats.voc import read_voc  # noqa: E402
from marketplace.formats.yolo import read_yolo  # noqa: E402

W = H = 64


def _jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (W, H), (90, 120, 150)).save(buf, "JPEG")
    return buf.getvalue()


JPEG = _jpeg()


def _source(files: dict[str, bytes | str]) -> ZipSource:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    buf.seek(0)
    return ZipSource(buf, name="bench.zip")


def _ring(n: int) -> list[float]:
    """n points on a circle inside the image."""
    import math

    out = []
    for i in range(n):
        a = 2 * math.pi * i / n
        out += [round(32 + 30 * math.cos(a), 3), round(32 + 30 * math.sin(a), 3)]
    return out


# -- probes: n -> (reader, files) --------------------------------------------------------------


def yolo_darknet_classes(n):
    names = "\n".join(f"class{i}" for i in range(n))
    return read_yolo, {
        "obj.names": names,
        "obj_train_data/a.jpg": JPEG,
        "obj_train_data/a.txt": "0 0.5 0.5 0.2 0.2\n",
    }


def yolo_classes_txt(n):
    names = "\n".join(f"class{i}" for i in range(n))
    return read_yolo, {"classes.txt": names, "a.jpg": JPEG, "a.txt": "0 0.5 0.5 0.2 0.2\n"}


def yolo_segment_points(n):
    ring = " ".join(f"{v / 64:.5f}" for v in _ring(n))
    return read_yolo, {
        "data.yaml": "names: [a]\ntrain: images/train\nval: images/train\n",
        "images/train/a.jpg": JPEG,
        "labels/train/a.txt": f"0 {ring}\n",
    }


def voc_files_with_distinct_classes(n):
    files = {}
    for i in range(n):
        files[f"Annotations/{i}.xml"] = (
            f"<annotation><filename>{i}.jpg</filename><size><width>{W}</width><height>{H}</height></size>"
            f"<object><name>class{i}</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>9</xmax><ymax>9</ymax>"
            "</bndbox></object></annotation>"
        )
        files[f"JPEGImages/{i}.jpg"] = JPEG
    return read_voc, files


def coco_categories(n):
    doc = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": W, "height": H}],
        "categories": [{"id": i + 1, "name": f"class{i}"} for i in range(n)],
        "annotations": [
            {"id": i + 1, "image_id": 1, "category_id": i + 1, "bbox": [1, 1, 8, 8], "area": 64, "iscrowd": 0}
            for i in range(n)
        ],
    }
    return read_coco, {"annotations/instances_train.json": json.dumps(doc), "a.jpg": JPEG}


def coco_polygon_points(n):
    doc = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": W, "height": H}],
        "categories": [{"id": 1, "name": "a"}],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 1,
                "segmentation": [_ring(n)],
                "area": 1.0,
                "bbox": [2, 2, 60, 60],
                "iscrowd": 0,
            }
        ],
    }
    return read_coco, {"annotations/instances_train.json": json.dumps(doc), "a.jpg": JPEG}


def cvat_labels(n):
    labels = "".join(f"<label><name>class{i}</name><attributes/></label>" for i in range(n))
    boxes = "".join(f'<box label="class{i}" xtl="1" ytl="1" xbr="9" ybr="9" occluded="0"/>' for i in range(n))
    xml = (
        f'<?xml version="1.0"?><annotations><version>1.1</version><meta><task><labels>{labels}</labels></task>'
        f'</meta><image id="0" name="a.jpg" width="{W}" height="{H}">{boxes}</image></annotations>'
    )
    return read_cvat, {"annotations.xml": xml, "images/a.jpg": JPEG}


def cvat_polygon_points(n):
    points = ";".join(f"{x},{y}" for x, y in zip(_ring(n)[0::2], _ring(n)[1::2], strict=True))
    xml = (
        '<?xml version="1.0"?><annotations><version>1.1</version><meta><task><labels><label><name>a</name>'
        f'</label></labels></task></meta><image id="0" name="a.jpg" width="{W}" height="{H}">'
        f'<polygon label="a" points="{points}" occluded="0"/></image></annotations>'
    )
    return read_cvat, {"annotations.xml": xml, "images/a.jpg": JPEG}


def labelstudio_tasks_with_distinct_labels(n):
    tasks = [
        {
            "id": i,
            "data": {"image": f"/data/upload/1/{i}.jpg"},
            "annotations": [
                {
                    "id": i,
                    "result": [
                        {
                            "id": f"r{i}",
                            "type": "rectanglelabels",
                            "from_name": "label",
                            "to_name": "image",
                            "original_width": W,
                            "original_height": H,
                            "value": {
                                "x": 10,
                                "y": 10,
                                "width": 20,
                                "height": 20,
                                "rectanglelabels": [f"class{i}"],
                            },
                        }
                    ],
                }
            ],
        }
        for i in range(n)
    ]
    files = {"export.json": json.dumps(tasks)}
    files.update({f"{i}.jpg": JPEG for i in range(n)})
    return read_labelstudio, files


PROBES = {
    "yolo darknet: classes in obj.names": (yolo_darknet_classes, 1),
    "yolo: classes in classes.txt": (yolo_classes_txt, 1),
    "yolo: points of one segment row": (yolo_segment_points, 4),
    "voc: files naming distinct classes": (voc_files_with_distinct_classes, 0.25),
    "coco: categories (one annotation each)": (coco_categories, 1),
    "coco: points of one polygon": (coco_polygon_points, 4),
    "cvat: labels (one box each)": (cvat_labels, 1),
    "cvat: points of one polygon": (cvat_polygon_points, 4),
    "labelstudio: tasks with distinct labels": (labelstudio_tasks_with_distinct_labels, 0.25),
}


def _time(probe, n: int) -> float:
    reader, files = probe(n)
    source = _source(files)
    start = time.perf_counter()
    parsed = reader(source)
    list(parsed.items)
    list(parsed.labels)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    results = {}
    for name, (probe, scale) in PROBES.items():
        sizes = [max(2, int(args.base * scale * 2**k)) for k in range(args.steps)]
        times = [min(_time(probe, n) for _ in range(2)) for n in sizes]
        ratio = times[-1] / times[-2] if times[-2] > 0 else float("nan")
        flag = "  <-- grows faster than linear" if ratio > 3 else ""
        print(f"{name:45s} n={sizes} s={[round(t, 4) for t in times]} last doubling x{ratio:.2f}{flag}")
        results[name] = {"sizes": sizes, "seconds": times, "last_doubling_ratio": ratio}
    out = ROOT / "bench" / "results" / "readers.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
