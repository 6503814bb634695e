"""verify_offline.py --archive checks every annotation file against the published labels (issue #13).

The content rows are signed; the format files are not. An archive whose VOC, YOLO or COCO file was
rewritten (an attribute, a box, a class, an annotation dropped or added), with MANIFEST.sha256
recomputed to match, must fail, naming the file and the label; honest exports of every format and
task must verify. The archives are made by the real export service.
"""

import json
import random
import re
import uuid

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from marketplace.catalogue import publication
from marketplace.exports import packaging, service
from marketplace.formats import model as fmt
from marketplace.formats.voc import mask_uid
from marketplace.formats.yolo_writer import join_rings
from tests import factories as f
from tests.conftest import build_version

from . import test_verify_archive
from .test_verify_archive import load_verifier, rewrite, run_verifier

key_file = test_verify_archive.key_file  # the fixture

pytestmark = pytest.mark.django_db

BOX_ATTRIBUTES = {
    "occluded": True,
    "difficult": 0,
    "pose": "Left",
    "color": "red",
    "meta": {"b": 1, "a": [1, 2.5]},
    "parts": [{"name": "wheel", "bbox": [12.0, 60.0, 10.0, 8.0]}],
    "actions": {"parking": True},
}


def _rle(height=480, width=640, rows=(5, 25), cols=(10, 40)):
    grid = np.zeros((height, width), dtype=np.uint8, order="F")
    grid[rows[0] : rows[1], cols[0] : cols[1]] = 1
    return {"size": [height, width], "counts": mask_utils.encode(grid)["counts"].decode("ascii")}


@pytest.fixture
def labelled_version(dataset):
    """build_version's boxes and keypoints (item 0000 in val, 0001 and 0002 in train), plus on 0001 a
    box with attributes VOC writes as flags, pose, parts, actions and text, the mask that is the same
    VOC <object>, a two-ring polygon and a label with a kept COCO field; on 0002 a mask of its own, a
    classification and a candidate box."""
    version = build_version(dataset, number=1, items=3, publish=False)
    car = version.schema.categories.get(name="car")
    car.geometry_types = [fmt.BBOX, fmt.POLYGON, fmt.MASK, fmt.CLASSIFICATION]
    car.save()
    version.schema.categories.filter(name="person").update(flip_idx=[0, 2, 1])  # feet swap in a flip
    items = list(version.items.order_by("key"))
    items[1].attributes = {"weather": "fog", "time_of_day": "dusk"}
    items[1].save(update_fields=["attributes"])
    box_uid = uuid.uuid4()
    f.LabelFactory(
        item=items[1],
        category=car,
        uid=box_uid,
        geometry={"bbox": [30.5, 40.0, 50.0, 60.25]},
        attributes=BOX_ATTRIBUTES,
    )
    f.LabelFactory(
        item=items[1],
        category=car,
        uid=uuid.UUID(mask_uid(str(box_uid))),
        geometry_type=fmt.MASK,
        geometry={"rle": _rle(rows=(40, 100), cols=(31, 80))},
        attributes=BOX_ATTRIBUTES,
    )
    f.LabelFactory(
        item=items[1],
        category=car,
        geometry_type=fmt.POLYGON,
        geometry={
            "polygons": [
                [100.0, 100.0, 150.0, 100.0, 150.0, 140.0],
                [300.5, 300.0, 340.0, 310.0, 320.0, 350.0],
            ]
        },
    )
    f.LabelFactory(
        item=items[1],
        category=car,
        geometry={"bbox": [200.0, 210.0, 20.0, 20.0]},
        attributes={"coco_fields": ["score"], "score": 0.875, "color": "blue"},
    )
    f.LabelFactory(item=items[2], category=car, geometry_type=fmt.MASK, geometry={"rle": _rle()})
    f.LabelFactory(item=items[2], category=car, geometry_type=fmt.CLASSIFICATION, geometry={})
    f.LabelFactory(item=items[2], category=car, geometry={"bbox": [5.0, 5.0, 20.0, 20.0]}, is_final=False)
    publication.publish_version(version=version)
    version.refresh_from_db()
    return version


def export(version, tmp_path, format, **options):
    options = service.normalise_options(
        version=version, format=format, options={"include_images": False, **options}
    )
    path = tmp_path / f"{format}-{'-'.join(map(str, options.values()))}.zip"
    with open(path, "wb") as fh:
        packaging.build_archive(version=version, format=format, options=options, fileobj=fh)
    return path


def tampered(archive, target, change):
    """The archive with ``change(text) -> text`` applied to the file ``target``, its manifest re-listed."""
    seen = []

    def apply(name, data):
        if name != target:
            return data
        seen.append(name)
        return change(data.decode("utf-8")).encode("utf-8")

    out = rewrite(archive, apply, fix_manifest=True)
    assert seen, f"{target} is not in the archive"
    return out


def without(archive, dropped):
    """The archive without the file ``dropped``, its manifest re-listed."""
    return rewrite(archive, lambda name, data: data, fix_manifest=True, drop={dropped})


def assert_fails(archive, key_file, *expected):
    code, out = run_verifier(archive, key_file)
    assert code == 1, out
    for text in expected:
        assert text in out, out
    # The manifest and the content verified: the format file alone is what failed.
    assert "manifest" not in out and "content hash" not in out, out


def verifier_module():
    return load_verifier("verify_offline_formats")


# --- honest exports ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("format", "options"),
    [
        ("coco", {}),
        ("coco", {"candidates": True}),
        ("voc", {}),
        ("voc", {"candidates": True, "splits": ["train"]}),
        ("voc", {"categories": ["person"]}),
        ("yolo", {"yolo_task": "detect"}),
        ("yolo", {"yolo_task": "segment", "candidates": True}),
        ("yolo", {"yolo_task": "pose"}),
        ("yolo", {"yolo_task": "detect", "splits": ["val"]}),
    ],
    ids=lambda v: v if isinstance(v, str) else "-".join(f"{k}={v[k]}" for k in v) or "default",
)
def test_honest_exports_of_every_format_verify(labelled_version, tmp_path, key_file, format, options):
    code, out = run_verifier(export(labelled_version, tmp_path, format, **options), key_file)
    assert code == 0, out


# --- VOC --------------------------------------------------------------------------------------------

VOC_FILE = "Annotations/0001.xml"


def _first(pattern, replace):
    return lambda text: re.sub(pattern, replace, text, count=1, flags=re.S)


def _bump_xmin(text):
    return re.sub(r"<xmin>(\d+)</xmin>", lambda m: f"<xmin>{int(m.group(1)) + 3}</xmin>", text, count=1)


def _object_with(text, marker):
    return next(o for o in re.findall(r"  <object>.*?</object>\n", text, re.S) if marker in o)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (_first("<value>red</value>", "<value>green</value>"), "attributes differs from published label"),
        (_first(r"'a': \[1, 2\.5\]", "'a': [1, 3.5]"), "attributes differs from published label"),
        (_first("<pose>Left</pose>", "<pose>Right</pose>"), "pose differs from published label"),
        (_first("<occluded>1</occluded>", "<occluded>0</occluded>"), "flags differs from published label"),
        (_first("<name>wheel</name>", "<name>door</name>"), "parts differs from published label"),
        (_first("<parking>1</parking>", "<parking>0</parking>"), "actions differs from published label"),
        (_bump_xmin, "box differs from published label"),
        (_first("<name>car</name>", "<name>person</name>"), "class differs from published label"),
        (
            lambda t: t.replace(_object_with(t, "<name>person</name>"), ""),
            "is missing from Annotations/0001.xml",
        ),
        (
            lambda t: t.replace("</annotation>", _object_with(t, "<name>person</name>") + "</annotation>"),
            "is no published label of item 'images/train/0001.jpg'",
        ),
        (
            lambda t: t.replace("</bndbox>\n", "</bndbox>\n    <truncated_by>edge</truncated_by>\n", 1),
            "elements differs from published label",
        ),
    ],
    ids=[
        "attribute",
        "nested-attribute",
        "pose",
        "flag",
        "part",
        "action",
        "box",
        "class",
        "dropped",
        "added",
        "element",
    ],
)
def test_a_voc_object_altered_fails_with_a_rewritten_manifest(
    labelled_version, tmp_path, key_file, change, expected
):
    archive = export(labelled_version, tmp_path, "voc")
    assert_fails(tampered(archive, VOC_FILE, change), key_file, VOC_FILE, expected)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            _first("<width>640</width>", "<width>641</width>"),
            "its <size> is not item 'images/train/0001.jpg'",
        ),
        (_first("<height>480</height>", "<height>48O</height>"), "its <size> is not item"),
        (_first(r"<size>.*?</size>", ""), "its <size> is not item"),
    ],
    ids=["width", "height", "no-size"],
)
def test_a_voc_size_altered_fails(labelled_version, tmp_path, key_file, change, expected):
    archive = export(labelled_version, tmp_path, "voc")
    assert_fails(tampered(archive, VOC_FILE, change), key_file, VOC_FILE, expected)


SPLIT_LIST = "ImageSets/Main/train.txt"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda t: t.replace("0001\n", ""), f"{SPLIT_LIST} does not list the split's image '0001'"),
        (lambda t: t + "0001\n", "'0001' is listed twice"),
        (lambda t: t + "0000\n", "'0000' is no Annotations file of the split"),
        (lambda t: t + "../../etc/passwd\n", "is no Annotations file of the split"),
    ],
    ids=["dropped", "twice", "other-split", "stranger"],
)
def test_a_voc_split_list_altered_fails(labelled_version, tmp_path, key_file, change, expected):
    archive = export(labelled_version, tmp_path, "voc")
    assert_fails(tampered(archive, SPLIT_LIST, change), key_file, SPLIT_LIST, expected)


def test_a_voc_split_list_dropped_fails(labelled_version, tmp_path, key_file):
    archive = export(labelled_version, tmp_path, "voc")
    assert_fails(
        without(archive, SPLIT_LIST), key_file, f"{SPLIT_LIST}, the list of the split's images, is missing"
    )


def test_a_voc_classification_unlisted_fails(labelled_version, tmp_path, key_file):
    archive = export(labelled_version, tmp_path, "voc")
    altered = tampered(archive, "ImageSets/Main/car_train.txt", lambda t: t.replace("0002 1", "0002 -1"))
    assert_fails(altered, key_file, "ImageSets/Main/car_train.txt line 2: published label", "is marked -1")


def test_a_voc_file_dropped_or_swapped_fails(labelled_version, tmp_path, key_file):
    archive = export(labelled_version, tmp_path, "voc")
    assert_fails(
        without(archive, "Annotations/0002.xml"),
        key_file,
        "item 'images/train/0002.jpg' has no Annotations file",
    )

    # Two items' files with their contents swapped: each holds the other item's labels.
    import zipfile

    with zipfile.ZipFile(archive) as zf:
        one, two = zf.read("Annotations/0001.xml"), zf.read("Annotations/0002.xml")
    swapped = rewrite(
        archive,
        lambda name, data: {"Annotations/0001.xml": two, "Annotations/0002.xml": one}.get(name, data),
        fix_manifest=True,
    )
    assert_fails(swapped, key_file, "is missing from Annotations/0001.xml")


# --- YOLO -------------------------------------------------------------------------------------------

YOLO_FILE = "labels/train/0001.txt"


def _nudge(column, by):
    def change(text):
        lines = text.splitlines()
        tokens = lines[0].split()
        tokens[column] = f"{float(tokens[column]) + by:.6f}"
        lines[0] = " ".join(tokens)
        return "\n".join(lines) + "\n"

    return change


def _nudge_person(column, by):
    """The first row of class 1 (person, the pose category): its ``column`` moved by ``by``."""

    def change(text):
        lines = text.splitlines()
        row = next(i for i, line in enumerate(lines) if line.split()[0] == "1")
        tokens = lines[row].split()
        tokens[column] = f"{float(tokens[column]) + by:.6f}"
        lines[row] = " ".join(tokens)
        return "\n".join(lines) + "\n"

    return change


def _first_row_class(text):
    cls, rest = text.split(" ", 1)
    return ("1" if cls == "0" else "0") + " " + rest


@pytest.mark.parametrize(
    ("task", "change", "expected"),
    [
        ("detect", _nudge(1, 0.01), "line 1: box differs from published label"),
        ("detect", _nudge(3, 2e-6), "line 1: box differs from published label"),
        ("detect", _first_row_class, "line 1: class differs from published label"),
        ("detect", lambda t: t.split("\n", 1)[1], f"is missing from {YOLO_FILE}"),
        (
            "detect",
            lambda t: t + t.splitlines()[0].replace("0.", "0.1", 1) + "\n",
            "is no published label of item",
        ),
        ("segment", _nudge(2, 0.01), "line 1: polygon differs from published label"),
        ("pose", _nudge_person(5, 0.01), "keypoints differs from published label"),
    ],
    ids=["box", "box-by-2e-6", "class", "dropped", "added", "polygon", "keypoints"],
)
def test_a_yolo_row_altered_fails_with_a_rewritten_manifest(
    labelled_version, tmp_path, key_file, task, change, expected
):
    archive = export(labelled_version, tmp_path, "yolo", yolo_task=task)
    assert_fails(tampered(archive, YOLO_FILE, change), key_file, YOLO_FILE, expected)


def test_a_yolo_label_file_dropped_fails(labelled_version, tmp_path, key_file):
    archive = export(labelled_version, tmp_path, "yolo", yolo_task="detect")
    assert_fails(without(archive, YOLO_FILE), key_file, "item 'images/train/0001.jpg' has no YOLO label file")


def _swap_train_and_val(text):
    return (
        text.replace('train: "images/train"', "@")
        .replace('val: "images/val"', 'val: "images/train"')
        .replace("@", 'train: "images/val"')
    )


@pytest.mark.parametrize(
    ("task", "change", "expected"),
    [
        (
            "detect",
            _swap_train_and_val,
            "data.yaml: train points at 'images/val', not at the export's images/train",
        ),
        (
            "detect",
            lambda t: t + 'test: "images/val"\n',
            "test points at 'images/val', a split the export does not",
        ),
        ("detect", lambda t: t + 'val: "images/train"\n', "data.yaml: val is there twice"),
        ("detect", lambda t: t + "kpt_shape: [3, 3]\n", "number of values differs from published label"),
        (
            "pose",
            lambda t: t.replace("kpt_shape: [3, 3]", "kpt_shape: [3, 2]"),
            "kpt_shape '[3, 2]' is not [3, 3]",
        ),
        (
            "pose",
            lambda t: t.replace('["head", "left_foot", "right_foot"]', '["head", "right_foot", "left_foot"]'),
            "kpt_names differ from class 'person'",
        ),
        (
            "pose",
            lambda t: t.replace("flip_idx: [0, 2, 1]", "flip_idx: [0, 1, 2]"),
            "flip_idx differs from class",
        ),
        ("pose", lambda t: t.replace("flip_idx: [0, 2, 1]\n", ""), "flip_idx differs from class 'person'"),
    ],
    ids=[
        "train-val-swapped",
        "test-added",
        "val-twice",
        "kpt-shape-added",
        "kpt-shape",
        "kpt-names",
        "flip-idx",
        "flip-idx-dropped",
    ],
)
def test_a_yolo_data_yaml_altered_fails(labelled_version, tmp_path, key_file, task, change, expected):
    """data.yaml says which images Ultralytics trains and validates on and how it reads a pose row."""
    archive = export(labelled_version, tmp_path, "yolo", yolo_task=task)
    assert_fails(tampered(archive, "data.yaml", change), key_file, expected)


# --- COCO -------------------------------------------------------------------------------------------

COCO_FILE = "annotations/instances_train.json"


def _coco(change):
    import json

    def apply(text):
        document = json.loads(text)
        change(document)
        return json.dumps(document)

    return apply


def _with(document, test):
    return next(a for a in document["annotations"] if test(a))


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda d: _with(d, lambda a: "color" in a.get("attributes", {}))["attributes"].update(
                color="green"
            ),
            "attributes differs",
        ),
        (lambda d: _with(d, lambda a: "score" in a).update(score=0.5), "field 'score' differs"),
        (lambda d: d["annotations"][0].update(source="tampered"), "source differs"),
        (lambda d: d["annotations"][0].update(annotator="someone-else"), "annotator differs"),
        (lambda d: d["annotations"][0].update(created_at="2031-01-01T00:00:00+00:00"), "created_at differs"),
        (lambda d: d["annotations"][0].update(occluded=True), "field 'occluded' differs"),
        (
            lambda d: _with(d, lambda a: "segmentation_is_box" in a).pop("segmentation_is_box"),
            "segmentation differs",
        ),
        (lambda d: d["annotations"][0].update(area=1.0), "area differs"),
        (
            lambda d: _with(
                d, lambda a: "segmentation_is_box" not in a and isinstance(a["segmentation"], list)
            )["segmentation"][0].__setitem__(0, float("nan")),
            "polygons differs",
        ),
        (lambda d: _with(d, lambda a: "keypoints" in a).update(num_keypoints=1), "num_keypoints differs"),
        (
            lambda d: _with(
                d, lambda a: isinstance(a["segmentation"], dict) and "color" not in a.get("attributes", {})
            )["bbox"].__setitem__(0, 12.0),
            "box differs",
        ),
        (
            lambda d: d["annotations"][0].update(
                image_id=next(i["id"] for i in d["images"] if i["id"] != d["annotations"][0]["image_id"])
            ),
            "is on image",
        ),
        (
            lambda d: next(i for i in d["images"] if i.get("classifications"))["classifications"][0].update(
                attributes={"weather": "rain"}
            ),
            "attributes differs",
        ),
    ],
    ids=[
        "attribute",
        "kept-field",
        "source",
        "annotator",
        "created-at",
        "added-field",
        "box-mark",
        "area",
        "nan-coordinate",
        "num-keypoints",
        "mask-box",
        "moved-to-another-image",
        "classification-attribute",
    ],
)
def test_a_coco_annotation_altered_fails_with_a_rewritten_manifest(
    labelled_version, tmp_path, key_file, change, expected
):
    archive = export(labelled_version, tmp_path, "coco")
    assert_fails(tampered(archive, COCO_FILE, _coco(change)), key_file, f"{COCO_FILE}: label '", expected)


def _image(document, test=lambda image: True):
    return next(i for i in document["images"] if test(i))


def _category(document, name):
    return next(c for c in document["categories"] if c["name"] == name)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: _image(d).update(width=_image(d)["width"] + 1), "size or attributes differ"),
        (lambda d: _image(d).update(height=str(_image(d)["height"])), "size or attributes differ"),
        (
            lambda d: _image(d, lambda i: "attributes" in i)["attributes"].update(weather="clear"),
            "size or attributes differ",
        ),
        (
            lambda d: _image(d, lambda i: "attributes" not in i).update(attributes={"x": 1}),
            "attributes differ",
        ),
        (lambda d: _image(d).update(file_name="elsewhere.jpg"), "is no published item's"),
        (lambda d: _category(d, "person")["keypoints"].reverse(), "keypoints or skeleton differ"),
        (lambda d: _category(d, "person")["skeleton"].append([2, 3]), "keypoints or skeleton differ"),
        (
            lambda d: _category(d, "car").update(keypoints=["roof"], skeleton=[]),
            "keypoints or skeleton differ",
        ),
        (
            lambda d: d["categories"].append({**_category(d, "person"), "name": "car"}),
            "is there twice",
        ),
    ],
    ids=[
        "width",
        "height-as-text",
        "item-attribute",
        "item-attribute-added",
        "image-renamed",
        "keypoint-names-reordered",
        "skeleton-edge-added",
        "keypoints-added",
        "category-id-twice",
    ],
)
def test_a_coco_image_or_category_altered_fails_with_a_rewritten_manifest(
    labelled_version, tmp_path, key_file, change, expected
):
    """The image entries hold the published items' sizes and attributes, the categories the published
    classes' keypoint names and skeleton, each under one id."""
    archive = export(labelled_version, tmp_path, "coco")
    assert_fails(tampered(archive, COCO_FILE, _coco(change)), key_file, f"{COCO_FILE}: ", expected)


# --- the verifier's own geometry, against the libraries the writers use ------------------------------


def test_the_mask_box_is_pycocotools_box():
    verifier = verifier_module()
    rng = np.random.default_rng(13)
    for _ in range(200):
        h, w = int(rng.integers(1, 40)), int(rng.integers(1, 40))
        grid = np.asfortranarray((rng.random((h, w)) < rng.random() * 0.3).astype(np.uint8))
        coded = mask_utils.encode(grid)
        rle = {"size": [h, w], "counts": coded["counts"].decode("ascii")}
        assert verifier._rle_box(rle) == [float(v) for v in mask_utils.toBbox(coded)]
        assert sum(verifier._rle_counts(rle)[1::2]) == int(mask_utils.area(coded))


def test_joined_rings_are_the_yolo_writers():
    verifier = verifier_module()
    rng = random.Random(13)
    for _ in range(100):
        rings = [
            [round(rng.uniform(0, 50), rng.choice([0, 2])) for _ in range(2 * rng.randint(3, 8))]
            for _ in range(rng.randint(2, 4))
        ]
        assert verifier._join_rings(rings) == join_rings(rings)


@pytest.fixture
def clashing_version(dataset):
    """Item keys whose files the writers name alike, told apart by "-2", "-3" (a.jpg, A.jpg and a.png
    share VOC's id and YOLO's label file "a", case aside; images/a.jpg and images/train/a.jpg COCO's
    file name "a.jpg"), a key with "images/" inside, and an item without labels; each labelled item
    has boxes of its own."""
    version = build_version(dataset, number=1, items=1, publish=False)
    car = version.schema.categories.get(name="car")
    keys = [
        "images/train/a.jpg",
        "images/train/a.png",
        "images/a.jpg",
        "images/train/A.jpg",
        "x/images/b.jpg",
    ]
    for i, key in enumerate(keys):
        item = f.ItemFactory(version=version, key=key, split="train")
        f.LabelFactory(item=item, category=car, geometry={"bbox": [10.0 * i, 5.0, 20.0, 30.0 + i]})
        f.LabelFactory(item=item, category=car, geometry={"bbox": [1.0, 2.0 * i, 3.0 + i, 4.0]})
    f.ItemFactory(version=version, key="images/train/empty.jpg", split="train")
    publication.publish_version(version=version)
    version.refresh_from_db()
    return version


@pytest.mark.parametrize(
    ("format", "options"), [("coco", {}), ("voc", {}), ("yolo", {"yolo_task": "detect"})]
)
def test_items_whose_file_names_clash_verify(clashing_version, tmp_path, key_file, format, options):
    import zipfile

    archive = export(clashing_version, tmp_path, format, **options)
    with zipfile.ZipFile(archive) as zf:
        listed = set(zf.namelist())
        renamed = [n for n in listed if re.search(r"-[0-9]\.(xml|txt)$", n)]
        if format == "coco":
            renamed = re.findall(rb'"file_name": ?"[^"]*-[0-9]\.jpg"', zf.read(COCO_FILE))
    assert renamed, sorted(
        listed
    )  # the case this test is about: "A.jpg" after "a.jpg" is "A-2.jpg"  # the case this test is about
    code, out = run_verifier(archive, key_file)
    assert code == 0, out


def _sidecar(change):
    import json

    def apply(text):
        records = [json.loads(line) for line in text.splitlines()]
        change(records)
        return "".join(json.dumps(r) + "\n" for r in records)

    return apply


@pytest.mark.parametrize(("format", "options"), [("voc", {}), ("yolo", {"yolo_task": "segment"})])
def test_the_provenance_sidecar_rewritten_fails(labelled_version, tmp_path, key_file, format, options):
    archive = export(labelled_version, tmp_path, format, **options)
    altered = tampered(
        archive, "provenance.jsonl", _sidecar(lambda rs: rs[0].update(annotator="someone-else"))
    )
    assert_fails(altered, key_file, "provenance.jsonl line 1: annotator of '", "differs from published label")
    dropped = tampered(archive, "provenance.jsonl", _sidecar(lambda rs: rs.pop()))
    assert_fails(dropped, key_file, "has no provenance.jsonl line")


# --- content/labels.jsonl read once -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("format", "options"), [("yolo", {"yolo_task": "detect"}), ("voc", {}), ("coco", {})]
)
def test_the_labels_content_file_is_read_once(
    labelled_version, tmp_path, key_file, monkeypatch, format, options
):
    # Its part digest, the format files' published labels and provenance.csv's come from one pass.
    import zipfile

    archive = export(labelled_version, tmp_path, format, **options)
    opened = []
    real_open = zipfile.ZipFile.open
    monkeypatch.setattr(
        zipfile.ZipFile,
        "open",
        lambda self, name, *a, **k: opened.append(name) or real_open(self, name, *a, **k),
    )
    verifier = verifier_module()

    result = verifier.verify_archive(archive, verifier.load_public_key(key_file.read_text()))

    assert result.valid, result.failures
    assert "provenance.csv" in opened
    assert opened.count("content/labels.jsonl") == 2  # the manifest's SHA-256, then the one pass


@pytest.mark.parametrize("format", ["yolo", "voc"])
def test_a_labels_content_line_altered_still_fails(labelled_version, tmp_path, key_file, format):
    archive = export(labelled_version, tmp_path, format)

    def recrowd(text):
        first, rest = text.split("\n", 1)
        row = json.loads(first)
        row["iscrowd"] = not row["iscrowd"]
        return json.dumps(row, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n" + rest

    code, out = run_verifier(tampered(archive, "content/labels.jsonl", recrowd), key_file)
    assert code == 1 and "content/labels.jsonl is not the published labels" in out, out
