"""CPU seconds of the streamed COCO reader's passes over one annotation file: before and after, same run.

    python bench/ingest/passes.py [--images N] [--labels N] [--read-coco]   # default: issue 13's size

``before`` is the frozen copy of the reader that made five passes (tests/marketplace/formats/
coco_stream_reference.py): the guards, the top level's shape, ``images`` (a whole yajl parse, the
syntax check), ``categories`` (another whole parse). ``after`` is ``coco_stream.read_outline``: one
pass, the guards run on the bytes yajl reads. Then the annotations (the labels' own pass, the same
for both) and the ratio of the whole outline, after / before; with ``--read-coco``, the whole COCO
read (every item and label, image headers included), before and after. The file is bench/ingest/run.py's.
CPU seconds (``time.process_time``), not wall time: the machine may be shared.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
import zipfile
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


from bench.ingest.run import ISSUE_IMAGES, ISSUE_LABELS, generate  # noqa: E402
from marketplace.formats import coco, coco_stream  # noqa: E402
from marketplace.formats.archive import ZipSource  # noqa: E402
from tests.marketplace.formats import coco_stream_reference as before  # noqa: E402

MEMBER = "annotations/instances_train2017.json"
LIMITS = {"max_bytes": 1 << 40, "max_depth": 100, "name": MEMBER}


def cpu(label: str, fn) -> float:
    started = time.process_time()
    fn()
    spent = time.process_time() - started
    print(f"  {label:<44} {spent:6.2f} s", flush=True)
    return spent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=ISSUE_IMAGES)
    parser.add_argument("--labels", type=int, default=ISSUE_LABELS)
    parser.add_argument("--read-coco", action="store_true", help="also time read_coco, before and after")
    args = parser.parse_args()
    archive = zipfile.ZipFile(generate(args.images, args.labels))
    opener = functools.partial(archive.open, MEMBER)
    print(f"{MEMBER}: {archive.getinfo(MEMBER).file_size / 2**20:.0f} MiB, CPU seconds per pass")

    def inflate():
        with opener() as f:
            while f.read(1 << 20):
                pass

    cpu("inflating the member once", inflate)
    print("before (five passes):")
    cpu("guards (size, depth, strict_json, captions)", lambda: before._guards(opener(), **LIMITS))
    cpu("_shape", lambda: before._shape(opener()))
    cpu('_only("images") (whole parse)', lambda: before._only(opener(), "images"))
    cpu('_only("categories") (whole parse)', lambda: before._only(opener(), "categories"))
    old = cpu("read_outline, all of the above", lambda: before.read_outline(opener, **LIMITS))
    print("after (one pass):")
    new = cpu("read_outline", lambda: coco_stream.read_outline(opener, **LIMITS))
    doc = coco_stream.read_outline(opener, **LIMITS)
    assert isinstance(doc["annotations"], coco_stream.StreamedArray), "the whole-file reader was used"
    assert doc == {**before.read_outline(opener, **LIMITS), "annotations": doc["annotations"]}
    print("both:")
    cpu("the annotations (StreamedArray, ijson.items)", lambda: sum(1 for _ in doc["annotations"]))
    print(f"read_outline after / before: {new / old:.2f}")
    if args.read_coco:
        print("read_coco, every item and label read (the reading in ingest's read-and-check phase):")
        coco.STREAM_ABOVE_BYTES = -1  # streamed whatever the size, as above 64 MiB
        spent = {}
        for label, reader in (("before", before.read_outline), ("after", coco_stream.read_outline)):
            with (
                mock.patch.object(coco_stream, "read_outline", reader),
                ZipSource(archive.filename) as source,
            ):
                spent[label] = cpu(label, lambda source=source: _read_all(source))
        print(f"read_coco after / before: {spent['after'] / spent['before']:.2f}")
    return 0


def _read_all(source) -> None:
    parsed = coco.read_coco(source)
    for _ in parsed.items:
        pass
    for _ in parsed.labels:
        pass


if __name__ == "__main__":
    sys.exit(main())
