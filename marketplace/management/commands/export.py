"""``python manage.py export SLUG VERSION --format coco|voc|yolo|croissant --out PATH``.

An operator's tool: it writes the archive (the JSON-LD for croissant) straight to PATH with
the same code as the buyers' exports, without an Export row, a license check or a download
record -- whoever runs manage.py already holds the database.
"""

import json
import os
import tempfile

from django.core.management.base import BaseCommand, CommandError

from marketplace.errors import DomainError
from marketplace.exports import packaging as export_packaging
from marketplace.exports import records as export_records
from marketplace.exports import service as export_service
from marketplace.models import DatasetVersion


class Command(BaseCommand):
    help = "Export a dataset version as COCO, Pascal VOC, YOLO or Croissant into a file."

    def add_arguments(self, parser):
        parser.add_argument("slug", help="dataset slug")
        parser.add_argument("version", type=int, help="version number")
        parser.add_argument("--format", required=True, choices=export_records.FORMATS)
        parser.add_argument("--out", required=True, help="file to write (.zip; .json for croissant)")
        parser.add_argument("--no-images", action="store_true", help="labels and documents only")
        parser.add_argument("--splits", default="", help="comma-separated: train,val,test,unassigned")
        parser.add_argument("--categories", default="", help="comma-separated category names")
        parser.add_argument(
            "--candidates", action="store_true", help="every annotator's candidate labels too"
        )
        parser.add_argument("--yolo-task", default=None, choices=["auto", "detect", "segment", "pose"])

    def handle(self, *args, slug, version, format, out, **opts):
        row = (
            DatasetVersion.objects.select_related("dataset")
            .filter(dataset__slug=slug, number=version)
            .first()
        )
        if row is None:
            raise CommandError(f"no version {version} of dataset {slug!r}")
        options = {
            "splits": [s for s in opts["splits"].split(",") if s],
            "categories": [c for c in opts["categories"].split(",") if c],
            "include_images": not opts["no_images"],
            "candidates": opts["candidates"],
        }
        if opts["yolo_task"]:
            options["yolo_task"] = opts["yolo_task"]
        try:
            options = export_service.normalise_options(version=row, format=format, options=options)
        except DomainError as exc:
            raise CommandError(exc.detail) from None
        folder = os.path.dirname(os.path.abspath(out))
        os.makedirs(folder, exist_ok=True)
        # Written next to the target and renamed: a failed export never leaves half a file at PATH.
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".export-", delete=False) as tmp:
            try:
                result = export_packaging.build_archive(
                    version=row, format=format, options=options, fileobj=tmp
                )
            except BaseException:
                os.unlink(tmp.name)
                raise
        os.replace(tmp.name, out)
        self.stdout.write(self.style.SUCCESS(f"Wrote {out} ({os.path.getsize(out)} bytes)"))
        for note in result.notes:
            self.stdout.write(f"  note: {json.dumps(note, ensure_ascii=False)}")
