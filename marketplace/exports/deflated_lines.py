"""``content/labels.jsonl`` deflated while the format's files are written, ready to copy into the zip.

``content_lines.SpooledLabelLines`` has PostgreSQL build the labels' canonical lines on a helper
thread's connection during the export; the lines were then deflated at the end, after the format's
files, by one thread while the other core idled (0.23 s of a 2.4 s export at 50,000 labels, ~2.5 s
at 500,000). Here the helper thread deflates each chunk as it arrives (``writing.DeflatedFile``;
zlib releases the GIL), so the end of the export only copies the deflated bytes into the archive
(``ZipSink.copy_deflated``): the same entry, byte for byte, and a fifth of the spooled bytes on disk.
"""

from __future__ import annotations

from django.db import connection

from ..formats.writing import DeflatedFile
from ..models import DatasetVersion
from .content_lines import SpooledLabelLines, label_lines


class DeflatedLabelLines(SpooledLabelLines):
    """``SpooledLabelLines`` whose helper thread deflates the lines instead of spooling them as text."""

    def __init__(self, version: DatasetVersion):
        super().__init__(version)
        self.deflated = DeflatedFile()

    def _spool(self) -> None:
        try:
            for chunk in label_lines(self.version):
                if self.stop.is_set():
                    return
                self.deflated.write(chunk)
            self.deflated.finish()
        finally:
            connection.close()  # this thread's own connection

    def result(self) -> DeflatedFile:
        """The deflated lines, once the helper thread is done."""
        self.future.result()
        return self.deflated

    def close(self) -> None:
        super().close()
        self.deflated.close()
